"""Health of objects that extend the API: CustomResourceDefinitions and APIServices.

They matter for ordering: custom resources cannot be applied until their CRD is
Established, and nothing served by an aggregated API works until its APIService is
Available, so the engine waits on these results between apply phases.
"""

from __future__ import annotations

from reconciler.health.base import (
    HealthResult,
    condition,
    condition_is,
    degraded,
    explain,
    healthy,
    progressing,
)
from reconciler.model import Manifest


def crd_health(obj: Manifest) -> HealthResult:
    """CRD: a names conflict never resolves itself; otherwise wait for Established."""
    names = condition(obj, "NamesAccepted")
    if names is not None and names.get("status") == "False":
        return degraded("CRD names were not accepted: " + explain(names, "names conflict"))
    if condition_is(obj, "Established", "True"):
        return healthy("CRD is established: its resources can be created")
    return progressing(
        "Waiting for the CRD to be established: "
        + explain(condition(obj, "Established"), "the API server has not reported it yet")
    )


def apiservice_health(obj: Manifest) -> HealthResult:
    """APIService: Available, or Progressing with the aggregator's reason (as Argo CD)."""
    available = condition(obj, "Available")
    if available is not None and available.get("status") == "True":
        return healthy("APIService is available")
    return progressing(
        "APIService is not available yet: "
        + explain(available, "the aggregator has not reported on it")
    )
