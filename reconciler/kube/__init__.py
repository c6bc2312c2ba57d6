"""Kubernetes adapter: cluster clients built from kubeconfig contexts, reused per process."""

from reconciler.kube.client import ClientFactory, Kind, KubeClient, resolve_kubeconfig

__all__ = ["ClientFactory", "Kind", "KubeClient", "resolve_kubeconfig"]
