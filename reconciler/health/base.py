"""The result type and the defensive field readers every health rule shares.

Health is computed from live objects, whose status blocks are written by controllers we do
not own (and, for custom resources, by anyone).  A malformed status must give a health
answer, never an exception that aborts a whole reconcile, so rules read fields only through
these helpers: each walks the object and falls back to a default when a value is absent or
of the wrong type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.model import Health


@dataclass(frozen=True)
class HealthResult:
    """Health of one object and a sentence that tells a user why."""

    status: Health
    message: str


def healthy(message: str) -> HealthResult:
    """Shorthand so rules read as a list of outcomes."""
    return HealthResult(Health.HEALTHY, message)


def progressing(message: str) -> HealthResult:
    """Shorthand for a rollout or provisioning that is still under way."""
    return HealthResult(Health.PROGRESSING, message)


def degraded(message: str) -> HealthResult:
    """Shorthand for a failure that needs a human (or a new commit) to fix."""
    return HealthResult(Health.DEGRADED, message)


def suspended(message: str) -> HealthResult:
    """Shorthand for an object a user deliberately paused."""
    return HealthResult(Health.SUSPENDED, message)


def field(obj: Any, *path: str) -> Any:
    """The value at ``path`` inside nested mappings, or None if any step is missing."""
    value = obj
    for step in path:
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def integer(obj: Any, *path: str, default: int = 0) -> int:
    """An integer field; booleans and other types count as absent (JSON has no int/bool)."""
    value = field(obj, *path)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return default


def text(obj: Any, *path: str, default: str = "") -> str:
    """A string field, or ``default`` when absent or not a string."""
    value = field(obj, *path)
    return value if isinstance(value, str) else default


def flag(obj: Any, *path: str) -> bool:
    """A boolean field that is true only when literally ``true``."""
    return field(obj, *path) is True


def entries(obj: Any, *path: str) -> list[dict[str, Any]]:
    """The mapping items of a list field; anything else in the list is skipped."""
    value = field(obj, *path)
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def condition(obj: Any, kind: str) -> dict[str, Any] | None:
    """The first ``status.conditions`` entry of type ``kind``, or None."""
    for entry in entries(obj, "status", "conditions"):
        if entry.get("type") == kind:
            return entry
    return None


def condition_is(obj: Any, kind: str, status: str) -> bool:
    """Whether condition ``kind`` exists with ``status`` (``"True"``, ``"False"``...)."""
    found = condition(obj, kind)
    return found is not None and found.get("status") == status


def explain(cond: dict[str, Any] | None, fallback: str) -> str:
    """A condition's message, else its reason, else ``fallback``: the words users need."""
    if cond is None:
        return fallback
    message = text(cond, "message")
    reason = text(cond, "reason")
    if message and reason:
        return f"{reason}: {message}"
    return message or reason or fallback


def generation_pending(obj: Any) -> bool:
    """Whether the controller has not yet seen the latest spec (so status is stale)."""
    return integer(obj, "metadata", "generation") > integer(obj, "status", "observedGeneration")
