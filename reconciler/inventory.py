"""What a target applied last time, kept in the cluster itself.

Listing only the kinds desired now cannot find the last Service of an application once
its file is deleted from Git, so every target records what it applied in a ConfigMap per
application in the ``reconciler-system`` namespace (as kapp does).  It survives the loss of
Redis, and the one-shot CLI works with no Redis at all.  Prune candidates are "last
inventory minus desired now"; an object whose deletion failed stays in the inventory so
the next run tries again.  Pure: the engine reads and writes the ConfigMap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Manifest, ObjectKey

NAMESPACE = "reconciler-system"
#: Labels the inventory itself: managed by us, but *not* owned by the application (it
#: must never show up among the application's objects, let alone be pruned with them).
INVENTORY_LABEL = "reconciler.dev/inventory-of"
_ENTRIES = "entries"
_REVISION = "revision"


@dataclass(frozen=True)
class Entry:
    """One applied object: its identity and the apiVersion it was applied with."""

    api_version: str
    key: ObjectKey

    def to_dict(self) -> dict[str, str]:
        """Compact JSON form stored in the ConfigMap."""
        return {
            "apiVersion": self.api_version,
            "kind": self.key.kind,
            "namespace": self.key.namespace,
            "name": self.key.name,
        }


@dataclass(frozen=True)
class Inventory:
    """The objects a target owns, and the revision last applied to it."""

    entries: tuple[Entry, ...] = ()
    revision: str = ""
    #: Whether the ConfigMap exists at all (a first run has none).
    exists: bool = False
    resource_version: str = field(default="", compare=False)

    def keys(self) -> set[ObjectKey]:
        """Identities in the inventory."""
        return {entry.key for entry in self.entries}


def name_for(app: str) -> str:
    """Name of an application's inventory ConfigMap."""
    return f"inventory-{app}"


def entries_of(objects: Iterable[Manifest]) -> tuple[Entry, ...]:
    """Inventory entries of manifests, sorted for stable ConfigMap content."""
    found = {Entry(str(obj["apiVersion"]), ObjectKey.of(obj)) for obj in objects}
    return tuple(sorted(found, key=lambda e: (e.key, e.api_version)))


def from_configmap(obj: Manifest | None) -> Inventory:
    """Read an inventory ConfigMap (None: no inventory yet); malformed entries are skipped."""
    if obj is None:
        return Inventory()
    data = obj.get("data") or {}
    entries: list[Entry] = []
    try:
        raw = json.loads(data.get(_ENTRIES) or "[]")
    except ValueError:
        raw = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        api_version = str(item.get("apiVersion", ""))
        key = ObjectKey(
            group=api_version.rpartition("/")[0],
            kind=str(item.get("kind", "")),
            namespace=str(item.get("namespace", "")),
            name=str(item.get("name", "")),
        )
        if api_version and key.kind and key.name:
            entries.append(Entry(api_version, key))
    return Inventory(
        entries=tuple(sorted(set(entries), key=lambda e: (e.key, e.api_version))),
        revision=str(data.get(_REVISION, "")),
        exists=True,
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion", "")),
    )


def to_configmap(app: str, inventory: Inventory) -> Manifest:
    """The ConfigMap manifest holding ``inventory`` for ``app``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name_for(app),
            "namespace": NAMESPACE,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, INVENTORY_LABEL: app},
        },
        "data": {
            _ENTRIES: json.dumps([e.to_dict() for e in inventory.entries], separators=(",", ":")),
            _REVISION: inventory.revision,
        },
    }


def namespace_manifest() -> Manifest:
    """The namespace inventories live in."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
    }
