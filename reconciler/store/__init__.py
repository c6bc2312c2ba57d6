"""Redis adapter: provisioning, key names, locks and the record of outcomes."""
