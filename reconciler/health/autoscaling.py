"""Health of HorizontalPodAutoscalers, judged from their status conditions.

An HPA that cannot read metrics or the scale subresource silently stops scaling; that is
exactly what a fleet operator wants surfaced as Degraded.
"""

from __future__ import annotations

from reconciler.health.base import (
    HealthResult,
    condition_is,
    degraded,
    entries,
    explain,
    healthy,
    integer,
    progressing,
    suspended,
    text,
)
from reconciler.model import Manifest

#: Condition types whose ``False`` status means the autoscaler cannot do its job.
_FAILING_TYPES = ("AbleToScale", "ScalingActive")


def hpa_health(obj: Manifest) -> HealthResult:
    """HPA: failing conditions are Degraded; ScalingDisabled (target at zero) is Suspended."""
    for entry in entries(obj, "status", "conditions"):
        if entry.get("type") not in _FAILING_TYPES or entry.get("status") != "False":
            continue
        reason = text(entry, "reason")
        if reason == "ScalingDisabled":
            return suspended("Autoscaling is disabled: " + explain(entry, "target scaled to zero"))
        if reason.startswith("Failed") or reason == "InvalidSelector":
            return degraded("Autoscaler cannot scale: " + explain(entry, reason))
    if condition_is(obj, "AbleToScale", "True") or condition_is(obj, "ScalingActive", "True"):
        current = integer(obj, "status", "currentReplicas")
        desired = integer(obj, "status", "desiredReplicas")
        return healthy(f"Autoscaler is active: {current} current, {desired} desired replicas")
    return progressing("Waiting for the autoscaler to report its first metrics")
