"""kubesim: a Kubernetes API server simulator for tests, demos and benchmarks.

No real API server can run on our machines, so the platform is exercised against this
one: it speaks the real REST API over HTTP (kubectl and the official client work against
it unchanged), serves many clusters from one process under ``/clusters/NAME``, simulates
the controllers that write status, and lets tests inject faults per cluster.  It imports
nothing of the platform it serves.
"""

from kubesim.runtime import SimHandle, kubeconfig_for, run, serve

__all__ = ["SimHandle", "kubeconfig_for", "run", "serve"]
