"""Plain data shared by every stage: object identity, ownership marks, statuses.

Kept free of I/O so the pure core (render, pair, diff, order, health) and the adapters
agree on one vocabulary without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: Ownership labels on every object the platform applies (DESIGN.md, "Contracts").
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "reconciler"
APP_LABEL = "reconciler.dev/app"
#: Server-side apply field manager of every write we make.
FIELD_MANAGER = "reconciler"
#: ``reconciler.dev/prune: "false"`` keeps an object when it leaves Git.
PRUNE_ANNOTATION = "reconciler.dev/prune"
#: Sync waves; ours first, Argo CD's honoured so migrated repositories keep their order.
SYNC_WAVE_ANNOTATIONS = ("reconciler.dev/sync-wave", "argocd.argoproj.io/sync-wave")

Manifest = dict[str, Any]


def type_name(value: object, *, json_terms: bool = False) -> str:
    """What a value is, for messages about wrong input: "a map", "a list", "a number"…

    ``json_terms`` says "an object" and "an array", for JSON payloads (webhooks).
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array" if json_terms else "a list"
    if isinstance(value, dict):
        return "an object" if json_terms else "a map"
    return type(value).__name__


def annotations_of(obj: Manifest) -> dict[str, Any]:
    """An object's annotations, ``{}`` when absent or malformed (rendered input is untrusted)."""
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def group_of(api_version: str) -> str:
    """``apps/v1`` -> ``apps``; ``v1`` -> ``""`` (the core group)."""
    return api_version.rpartition("/")[0]


@dataclass(frozen=True, order=True)
class ObjectKey:
    """Identity of a Kubernetes object, independent of the API version it is served at.

    Two manifests with equal keys are the same object to the API server, which is why
    pairing and duplicate detection use this and not ``apiVersion``.
    """

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, obj: Manifest) -> ObjectKey:
        """Key of a manifest or live object (``metadata.namespace`` may be absent)."""
        meta = obj.get("metadata") or {}
        return cls(
            group=group_of(str(obj.get("apiVersion", ""))),
            kind=str(obj.get("kind", "")),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name", "")),
        )

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        if self.namespace:
            return f"{kind}/{self.namespace}/{self.name}"
        return f"{kind}/{self.name}"


class SyncStatus(StrEnum):
    """Whether a target matches Git after a run."""

    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    FAILED = "Failed"


class Health(StrEnum):
    """Health of an object or a target, as in gitops-engine's ``pkg/health``."""

    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    SUSPENDED = "Suspended"
    MISSING = "Missing"
    UNKNOWN = "Unknown"


#: From best to worst: a target's health is the worst of its objects'.
HEALTH_ORDER: tuple[Health, ...] = (
    Health.HEALTHY,
    Health.SUSPENDED,
    Health.PROGRESSING,
    Health.MISSING,
    Health.DEGRADED,
    Health.UNKNOWN,
)


def worst_health(values: list[Health]) -> Health:
    """The worst of ``values`` by ``HEALTH_ORDER``; Healthy for an empty list."""
    if not values:
        return Health.HEALTHY
    return max(values, key=HEALTH_ORDER.index)


class Action(StrEnum):
    """What a run did to one object (fluxcd/pkg ``ssa`` change-set actions)."""

    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"
    PRUNED = "pruned"
    #: Deleted and created again: the server refused the change and the object allows it.
    REPLACED = "replaced"
    SKIPPED = "skipped"
    FAILED = "failed"


def resource_version(obj: Mapping[str, Any]) -> int | None:
    """An object's resourceVersion as a number (None when it is not one).

    The API server says resourceVersions are opaque; every server in use (etcd's revision,
    kubesim's counter) makes them increasing integers, which is what the comparison needs.
    A server that does not simply never gets a no-read run.
    """
    meta = obj.get("metadata")
    value = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None
