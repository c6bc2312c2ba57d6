"""Health of core (``v1``) objects that are not workloads: Services, claims, namespaces.

Most core objects are healthy as soon as they exist; these three can wait on something
outside the cluster (a cloud load balancer, a volume provisioner, finalizers).
"""

from __future__ import annotations

from reconciler.health.base import (
    HealthResult,
    degraded,
    entries,
    healthy,
    progressing,
    text,
)
from reconciler.model import Health, Manifest


def load_balancer_addresses(obj: Manifest) -> list[str]:
    """Addresses in ``status.loadBalancer.ingress`` (IPs or host names), in order.

    Shared with Ingress, whose status has the same shape.
    """
    found: list[str] = []
    for entry in entries(obj, "status", "loadBalancer", "ingress"):
        address = text(entry, "ip") or text(entry, "hostname")
        found.append(address or "(unnamed)")
    return found


def service_health(obj: Manifest) -> HealthResult:
    """Service: only a LoadBalancer waits, for the cloud to hand out an address."""
    kind = text(obj, "spec", "type", default="ClusterIP")
    if kind != "LoadBalancer":
        return healthy(f"Service of type {kind} is ready")
    addresses = load_balancer_addresses(obj)
    if not addresses:
        return progressing("Waiting for the load balancer to be assigned an address")
    return healthy("Load balancer is ready at " + ", ".join(addresses))


def persistent_volume_claim_health(obj: Manifest) -> HealthResult:
    """PersistentVolumeClaim: Bound is ready; Lost means the volume is gone for good."""
    phase = text(obj, "status", "phase")
    if phase == "Bound":
        volume = text(obj, "spec", "volumeName")
        return healthy(f"Claim is bound to volume {volume}" if volume else "Claim is bound")
    if phase == "Lost":
        return degraded("Claim lost its volume: the bound PersistentVolume no longer exists")
    if phase in ("Pending", ""):
        return progressing("Waiting for a volume to be provisioned or bound")
    return HealthResult(Health.UNKNOWN, f"Claim is in unexpected phase {phase}")


def namespace_health(obj: Manifest) -> HealthResult:
    """Namespace: Terminating lasts until every object inside is gone."""
    if text(obj, "status", "phase") == "Terminating":
        return progressing("Namespace is terminating: waiting for its contents to be deleted")
    return healthy("Namespace is active")
