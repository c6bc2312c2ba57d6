"""Health of every kind without a rule of its own, from conventions most APIs follow.

Controllers built with kubebuilder, Flux, Crossplane and cert-manager publish a ``Ready``
(or ``Available``) condition; older APIs publish ``status.phase``.  Objects with neither
(ConfigMaps, Secrets, RBAC) have nothing to wait for and are Healthy once they exist.
"""

from __future__ import annotations

from reconciler.health.base import (
    HealthResult,
    condition,
    degraded,
    explain,
    field,
    generation_pending,
    healthy,
    integer,
    progressing,
    text,
)
from reconciler.model import Manifest

#: Condition types that summarise an object's readiness, in order of preference.
SUMMARY_CONDITIONS = ("Ready", "Available")


def generic_health(obj: Manifest) -> HealthResult:
    """Ready/Available condition, else ``status.phase``, else Healthy.

    A condition written before the controller observed the latest generation describes the
    previous spec (the kstatus convention), so it reads as Progressing, not as a verdict.
    """
    kind = text(obj, "kind", default="Object")
    summary = next(
        (found for name in SUMMARY_CONDITIONS if (found := condition(obj, name)) is not None),
        None,
    )
    if summary is not None:
        observed = field(obj, "status", "observedGeneration")
        if observed is not None and generation_pending(obj):
            return progressing(
                f"Waiting for the controller to observe generation "
                f"{integer(obj, 'metadata', 'generation')}"
            )
        name = text(summary, "type")
        state = summary.get("status")
        if state == "True":
            return healthy(f"{kind} is {name.lower()}" + _detail(summary))
        if state == "False":
            return degraded(f"{kind} is not {name.lower()}: " + explain(summary, "no reason given"))
        return progressing(
            f"Waiting for {kind} to become {name.lower()}: " + explain(summary, "status unknown")
        )
    phase = text(obj, "status", "phase")
    if phase == "Failed":
        reason = text(obj, "status", "message") or text(obj, "status", "reason")
        return degraded(f"{kind} failed: {reason or 'no reason given'}")
    if phase:
        return healthy(f"{kind} is {phase}")
    return healthy(f"{kind} exists")


def _detail(cond: dict[str, object]) -> str:
    """A condition's message as a suffix, for the Healthy case where it is optional."""
    message = cond.get("message")
    return f": {message}" if isinstance(message, str) and message else ""
