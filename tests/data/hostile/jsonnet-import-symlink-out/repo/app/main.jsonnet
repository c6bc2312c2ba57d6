importstr "../lib/secret.libsonnet"
