"""Which objects an application may write and prune: ownership and project rules, pure.

Every object the platform applies carries two labels (DESIGN.md, "Contracts"); they are
the one record of ownership that every application, worker and command line reads alike.
Without a rule over them, two applications declaring one object overwrite each other in
turn, both reporting Synced, and one of them prunes the other's object when its copy
leaves Git.  So, as Argo CD warns of a shared resource but refusing by default:

* a live object labelled as another application's is never applied over, adopted or
  pruned: the target fails before anything is written, naming the object and its owner;
* a live object with no owner is adopted, and the adoption is recorded;
* pruning touches only objects whose *live* labels name this application (an inventory
  may be stale), and never a Namespace that holds another application's objects.

Projects (Argo CD's AppProject) bound where and what a group of applications writes;
an object outside them fails the target before anything is applied.  The engine reads
the cluster; every decision is here, data in and data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler.inventory import Inventory
from reconciler.model import APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Manifest, ObjectKey
from reconciler.outcome import Reason


class Rules(Protocol):
    """The part of a project a plan reads (``reconciler.fleet.Project``)."""

    @property
    def name(self) -> str: ...
    def refusal(self, key: ObjectKey) -> str: ...


@dataclass(frozen=True)
class Refusal:
    """An object this run must not write, and why; the target fails with ``reason``."""

    key: ObjectKey
    reason: Reason
    message: str


def owner_of(obj: Manifest | None) -> str | None:
    """The application a live object belongs to, by its labels; None when nobody's.

    Both labels count: ``reconciler.dev/app`` alone may have been copied by hand or by a
    chart, and is not our mark.
    """
    meta = (obj or {}).get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, dict) or labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
        return None
    owner = labels.get(APP_LABEL)
    return str(owner) if owner else None


def owned_by(obj: Manifest, app: str) -> bool:
    """Whether the live labels of ``obj`` say ``app`` owns it (the only licence to prune)."""
    return owner_of(obj) == app


def claims(
    pairs: Iterable[tuple[Manifest, Manifest | None]], *, app: str
) -> tuple[tuple[Refusal, ...], tuple[ObjectKey, ...]]:
    """Desired objects whose live copy another application owns, and those adopted.

    ``pairs`` are (desired, live copy or None).  A live copy without an owner is adopted:
    the apply gives it this application's labels.
    """
    refused: list[Refusal] = []
    adopted: list[ObjectKey] = []
    for want, got in pairs:
        if got is None:
            continue
        key = ObjectKey.of(want)
        owner = owner_of(got)
        if owner is None:
            adopted.append(key)
        elif owner != app:
            refused.append(Refusal(key, Reason.OWNED_ELSEWHERE, (
                f"{key}: owned by application {owner!r} (label {APP_LABEL}={owner}); "
                f"application {app!r} does not write, adopt or prune it: remove it from "
                "one of the two, or delete the live object's label to hand it over")))  # fmt: skip
    return tuple(refused), tuple(adopted)


def permissions(objects: Iterable[Manifest], rules: Rules | None) -> tuple[Refusal, ...]:
    """Objects outside the project's allow-lists (none without a project), in order."""
    if rules is None:
        return ()
    refused = []
    for obj in objects:
        key = ObjectKey.of(obj)
        why = rules.refusal(key)
        if why:
            refused.append(Refusal(key, Reason.NOT_PERMITTED, f"{key}: not permitted: {why}"))
    return tuple(refused)


def namespaces_to_prune(
    desired: Sequence[Manifest], live: Sequence[Manifest], *, app: str
) -> tuple[str, ...]:
    """Namespaces this run may prune: owned, live, no longer desired.

    Only these make the engine read the other applications' inventories, so a run that
    prunes no Namespace pays no request for it.
    """
    wanted = {ObjectKey.of(o) for o in desired}
    return tuple(sorted(
        ObjectKey.of(o).name for o in live
        if o.get("kind") == "Namespace" and ObjectKey.of(o) not in wanted and owned_by(o, app)
    ))  # fmt: skip


def neighbours(inventories: Mapping[str, Inventory], *, app: str) -> dict[str, frozenset[str]]:
    """Namespace -> the other applications whose inventories hold objects in it."""
    found: dict[str, set[str]] = {}
    for other, inventory in inventories.items():
        if other == app:
            continue
        for entry in inventory.entries:
            if entry.key.namespace:
                found.setdefault(entry.key.namespace, set()).add(other)
    return {namespace: frozenset(apps) for namespace, apps in found.items()}


def namespace_in_use(obj: Manifest, used: Mapping[str, frozenset[str]]) -> str:
    """Why a Namespace must not be pruned (other applications' objects in it), or ""."""
    if obj.get("kind") != "Namespace" or ObjectKey.of(obj).group:
        return ""
    others = used.get(ObjectKey.of(obj).name)
    if not others:
        return ""
    return f"holds objects of application(s) {', '.join(sorted(others))}"


__all__ = [
    "Refusal",
    "Rules",
    "claims",
    "namespace_in_use",
    "namespaces_to_prune",
    "neighbours",
    "owned_by",
    "owner_of",
    "permissions",
]
