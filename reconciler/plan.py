"""What one sync of one target will do, decided before anything is written.

gitops-engine separates ``Reconcile`` (pair desired and live) from the sync that acts on
it; this is our half in between: given the rendered objects, the live ones, the inventory,
the sync policy and the project's rules, ``plan`` says what drifted, what this run must
refuse to touch (objects of other applications, objects outside the project), whether it
syncs at all, what to write and in which stage (Namespaces and CRDs first, then the waves),
what to prune and what to keep, and which hooks run in which phase.  The engine then only
executes it, so every rule that decides *what* happens is here (ownership and project rules
in ``reconciler.ownership``), pure, and tested by tables of YAML cases (``tests/data/plan/``);
the engine decides only *how* (requests, waits, retries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from types import MappingProxyType
from typing import Protocol

from reconciler.diff import IgnoreRuleLike, ObjectDiff, diff, pair
from reconciler.hooks import Hook, Phase, SkippedHook, classify, is_hook
from reconciler.inventory import Inventory
from reconciler.masking import masked
from reconciler.model import (
    PRUNE_ANNOTATION,
    Manifest,
    ObjectKey,
    annotations_of,
    group_of,
)
from reconciler.order import apply_order_key, sort_for_apply, sort_for_prune, sync_wave
from reconciler.outcome import Drift, Trigger
from reconciler.ownership import Refusal, Rules, claims, namespace_in_use, owned_by, permissions

#: ``reconciler.dev/replace: "true"``: delete and recreate when the server refuses a change.
REPLACE_ANNOTATION = "reconciler.dev/replace"
#: Argo CD's per-object sync options (``Replace=true``, ``Prune=false``), honoured as ours.
ARGO_SYNC_OPTIONS = "argocd.argoproj.io/sync-options"

#: Kinds applied before everything else, hooks included: the scaffolding other objects
#: (and hooks) need to exist in, as fluxcd/pkg ``ssa`` ``ApplyAllStaged`` does.
_SCAFFOLDING = frozenset({("", "Namespace"), ("apiextensions.k8s.io", "CustomResourceDefinition")})


class Policy(Protocol):
    """The part of an application's sync policy a plan reads."""

    @property
    def automated(self) -> bool: ...
    @property
    def prune(self) -> bool: ...
    @property
    def self_heal(self) -> bool: ...
    @property
    def allow_empty(self) -> bool: ...
    @property
    def suspended(self) -> bool: ...


@dataclass(frozen=True)
class Wave:
    """One sync wave: every resource in it, those to write, and its Sync-phase hooks."""

    number: int
    objects: tuple[Manifest, ...]
    writes: tuple[Manifest, ...]
    hooks: tuple[Hook, ...] = ()


@dataclass(frozen=True)
class Kept:
    """An object that left Git but is not pruned, and why."""

    object: Manifest
    reason: str
    #: True when only the policy keeps it (``sync.prune: false``): the target is OutOfSync.
    by_policy: bool


@dataclass(frozen=True)
class Plan:
    """Everything one run will do to a target, in order; built by :func:`plan`."""

    revision: str
    #: Desired objects that are kept in sync (hooks excluded), in apply order.
    resources: tuple[Manifest, ...]
    diffs: Mapping[ObjectKey, ObjectDiff]
    drift: tuple[Drift, ...]
    #: Whether the policy says to sync now (a forced run, or automated and drifted).
    sync: bool
    #: Namespaces and CRDs to write before anything else (stage one).
    scaffolding: tuple[Manifest, ...]
    #: Everything else, wave by wave (stage two).
    waves: tuple[Wave, ...]
    prune: tuple[Manifest, ...]
    kept: tuple[Kept, ...]
    #: PreSync, PostSync and SyncFail hooks by phase, in run order (Sync hooks are in waves).
    hooks: Mapping[Phase, tuple[Hook, ...]]
    skipped_hooks: tuple[SkippedHook, ...]
    #: Hook objects found live (a named hook's previous run), by key.
    live_hooks: Mapping[ObjectKey, Manifest]
    #: The inventory records another revision than the one planned.
    new_revision: bool = False
    #: The render came out empty, there are objects to prune, and ``allowEmpty`` is off.
    refuse_empty_prune: bool = False
    #: Objects whose replacement (delete and create) the repository allows.
    replaceable: frozenset[ObjectKey] = field(default_factory=frozenset)
    #: Objects this run must not write: outside the project first, then other
    #: applications' objects.  Any of them fails the target before anything is written.
    refused: tuple[Refusal, ...] = ()
    #: Desired objects whose live copy has no owner: the apply adopts them.
    adopted: frozenset[ObjectKey] = field(default_factory=frozenset)

    @property
    def writes(self) -> tuple[Manifest, ...]:
        """Every object this run writes, in apply order."""
        return self.scaffolding + tuple(o for wave in self.waves for o in wave.writes)

    @property
    def changes_anything(self) -> bool:
        """A write, a prune or a new revision: only then do hooks run."""
        return bool(self.writes or self.prune) or self.new_revision

    @property
    def gated(self) -> bool:
        """Whether waves wait for health: more than one wave, or hooks to run."""
        return len(self.waves) > 1 or any(self.hooks.values()) or any(
            w.hooks for w in self.waves
        )

    @property
    def unchanged(self) -> tuple[ObjectKey, ...]:
        """Resources whose declared fields already match the cluster."""
        return tuple(
            ObjectKey.of(o) for o in self.resources if not self.diffs[ObjectKey.of(o)].changed
        )


def plan(
    desired: Sequence[Manifest],
    live: Sequence[Manifest],
    inventory: Inventory,
    policy: Policy,
    trigger: Trigger,
    commit: str,
    *,
    app: str,
    ignore: Iterable[IgnoreRuleLike] = (),
    rules: Rules | None = None,
    neighbours: Mapping[str, frozenset[str]] = MappingProxyType({}),
) -> Plan:
    """The plan for syncing ``desired`` (rendered and finalized) onto ``live`` at ``commit``.

    ``live`` holds the objects listed as owned by ``app`` plus the live copy of any desired
    object, whoever owns it; ``inventory`` is what the last run applied.  ``rules`` is the
    application's project (None: unrestricted); ``neighbours`` maps a namespace to the
    other applications with objects in it, for the Namespaces this run might prune.
    Raises ``RenderError`` for a malformed hook or wave annotation (the object is named).
    """
    resources: list[Manifest] = []
    hooks: list[Hook] = []
    skipped: list[SkippedHook] = []
    for obj in desired:
        found = classify(obj)
        if found is None:
            resources.append(obj)
        elif isinstance(found, Hook):
            hooks.append(found)
        else:
            skipped.append(found)
    live_hooks = {ObjectKey.of(o): o for o in live if is_hook(o)}
    live_objects = [o for o in live if not is_hook(o)]

    resources = sort_for_apply(resources)
    pairing = pair(resources, live_objects)
    ignore = tuple(ignore)
    diffs: dict[ObjectKey, ObjectDiff] = {}
    drift: list[Drift] = []
    for want, got in pairing.pairs:
        result = diff(_masked(want), masked(got), ignore=ignore)
        diffs[result.key] = result
        if result.changed:
            kind = "missing" if got is None else "changed"
            drift.append(Drift(str(result.key), kind, result.changed_paths, result.diff))
    wanted = set(diffs)
    orphans = [o for o in pairing.orphans if ObjectKey.of(o) not in wanted and owned_by(o, app)]
    foreign, adopted = claims(pairing.pairs, app=app)
    refused = permissions([*resources, *(h.manifest for h in hooks)], rules) + foreign
    drift.extend(Drift(str(ObjectKey.of(o)), "extra") for o in orphans)

    new_revision = inventory.revision != commit
    sync = _should_sync(policy, trigger, drifted=bool(drift), new_revision=new_revision)
    writes = {ObjectKey.of(o) for o in resources if diffs[ObjectKey.of(o)].changed}
    scaffolding = tuple(o for o in resources if _is_scaffolding(o) and ObjectKey.of(o) in writes)
    waves = _waves(
        [o for o in resources if not _is_scaffolding(o)],
        writes,
        [h for h in hooks if Phase.SYNC in h.phases],
    )

    prune: list[Manifest] = []
    kept: list[Kept] = []
    refuse = bool(orphans) and not resources and not policy.allow_empty
    for obj in sort_for_prune(orphans):
        protected = prune_protection(obj) or namespace_in_use(obj, neighbours)
        if protected:
            kept.append(Kept(obj, protected, by_policy=False))
        elif not policy.prune:
            kept.append(Kept(obj, "sync.prune is false", by_policy=True))
        elif not refuse:
            prune.append(obj)

    by_phase = {
        phase: tuple(sorted((h for h in hooks if phase in h.phases), key=Hook.order_key))
        for phase in (Phase.PRE_SYNC, Phase.POST_SYNC, Phase.SYNC_FAIL)
    }
    return Plan(
        revision=commit,
        resources=tuple(resources),
        diffs=MappingProxyType(diffs),
        drift=tuple(drift),
        sync=sync,
        scaffolding=scaffolding,
        waves=waves,
        prune=tuple(prune),
        kept=tuple(kept),
        hooks=MappingProxyType(by_phase),
        skipped_hooks=tuple(skipped),
        live_hooks=MappingProxyType(live_hooks),
        refuse_empty_prune=refuse,
        replaceable=frozenset(ObjectKey.of(o) for o in resources if replace_allowed(o)),
        new_revision=new_revision,
        refused=refused,
        adopted=frozenset(adopted),
    )


def _should_sync(policy: Policy, trigger: Trigger, *, drifted: bool, new_revision: bool) -> bool:
    """Argo CD's automation rules: forced runs always sync; selfHeal governs live drift."""
    if not drifted and not new_revision:
        return False
    if trigger.forced:
        return True
    if not policy.automated or policy.suspended:
        return False
    # Without selfHeal, live drift alone is reported; a new revision is applied.
    return policy.self_heal or new_revision


def _waves(
    objects: Sequence[Manifest], writes: set[ObjectKey], sync_hooks: Sequence[Hook]
) -> tuple[Wave, ...]:
    """Resources and Sync-phase hooks grouped by wave, waves ascending, apply order inside."""
    numbers = sorted({sync_wave(o) for o in objects} | {h.wave for h in sync_hooks})
    by_wave = {
        number: [o for _, o in members]
        for number, members in groupby(
            sorted(((apply_order_key(o), o) for o in objects), key=lambda p: p[0]),
            key=lambda p: p[0][0],
        )
    }
    return tuple(
        Wave(
            number=number,
            objects=tuple(by_wave.get(number, ())),
            writes=tuple(o for o in by_wave.get(number, ()) if ObjectKey.of(o) in writes),
            hooks=tuple(sorted((h for h in sync_hooks if h.wave == number), key=Hook.order_key)),
        )
        for number in numbers
    )


def sync_options(obj: Manifest) -> dict[str, str]:
    """Argo CD's ``sync-options`` annotation as a map (``Replace=true,Prune=false``)."""
    raw = annotations_of(obj).get(ARGO_SYNC_OPTIONS, "")
    options: dict[str, str] = {}
    for part in str(raw).split(","):
        name, _, value = part.strip().partition("=")
        if name:
            options[name] = value.strip().lower()
    return options


def replace_allowed(obj: Manifest) -> bool:
    """``reconciler.dev/replace: "true"`` or Argo CD's ``Replace=true``."""
    if str(annotations_of(obj).get(REPLACE_ANNOTATION, "")).lower() == "true":
        return True
    return sync_options(obj).get("Replace") == "true"


def prune_protection(obj: Manifest) -> str:
    """Why ``obj`` must never be pruned (``reconciler.dev/prune: "false"`` or Argo CD's
    ``Prune=false``), or "" when it may be."""
    if str(annotations_of(obj).get(PRUNE_ANNOTATION, "")).lower() == "false":
        return f'{PRUNE_ANNOTATION}: "false"'
    if sync_options(obj).get("Prune") == "false":
        return f"{ARGO_SYNC_OPTIONS}: Prune=false"
    return ""


def _is_scaffolding(obj: Manifest) -> bool:
    return (group_of(str(obj.get("apiVersion", ""))), str(obj.get("kind", ""))) in _SCAFFOLDING


def _masked(obj: Manifest) -> Manifest:
    result = masked(obj)
    assert result is not None
    return result



__all__ = [
    "Kept",
    "Plan",
    "Policy",
    "Wave",
    "plan",
    "prune_protection",
    "replace_allowed",
    "sync_options",
]
