"""Health of Ingresses, which wait on an ingress controller outside our control."""

from __future__ import annotations

from reconciler.health.base import HealthResult, healthy, progressing
from reconciler.health.core import load_balancer_addresses
from reconciler.model import Manifest


def ingress_health(obj: Manifest) -> HealthResult:
    """Ingress: Healthy once the controller published any address, as Argo CD does.

    Some controllers never publish an address; their Ingresses stay Progressing, which is
    the price of not calling a route ready before anything serves it.
    """
    addresses = load_balancer_addresses(obj)
    if not addresses:
        return progressing("Waiting for the ingress controller to assign an address")
    return healthy("Ingress is served at " + ", ".join(addresses))
