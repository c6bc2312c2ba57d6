"""Hooks: objects that run at a moment of a sync instead of being kept in sync.

A migration Job that must finish before the new Deployment rolls out, a smoke test after
it, a notification when a sync fails: repositories written for Argo CD or Helm say so with
annotations, and teams moving to us keep those repositories as they are.  So the three
dialects are read here, most specific first:

* ours, ``reconciler.dev/hook`` (and ``reconciler.dev/hook-delete-policy``);
* Argo CD's, ``argocd.argoproj.io/hook: PreSync|Sync|PostSync|SyncFail|Skip``;
* Helm's, ``helm.sh/hook``: ``pre-install``/``pre-upgrade`` run before the sync,
  ``post-install``/``post-upgrade`` after it; ``helm.sh/hook-weight`` orders them.  Test,
  delete and rollback hooks have no moment in a GitOps sync and are skipped, saying so.

A hook is not desired state: it is never in the inventory, never drift, never pruned; its
delete policy removes it.  Pure: annotations in, a ``Hook`` (or a reason to skip) out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from reconciler.errors import RenderError
from reconciler.model import SYNC_WAVE_ANNOTATIONS, Manifest, ObjectKey, annotations_of
from reconciler.order import kind_rank, sync_wave

#: Hook annotations, in precedence order: a repository may carry several dialects.
HOOK_ANNOTATION = "reconciler.dev/hook"
ARGO_HOOK_ANNOTATION = "argocd.argoproj.io/hook"
HELM_HOOK_ANNOTATION = "helm.sh/hook"
HOOK_ANNOTATIONS = (HOOK_ANNOTATION, ARGO_HOOK_ANNOTATION, HELM_HOOK_ANNOTATION)
DELETE_POLICY_ANNOTATIONS = (
    "reconciler.dev/hook-delete-policy",
    "argocd.argoproj.io/hook-delete-policy",
    "helm.sh/hook-delete-policy",
)
HELM_WEIGHT_ANNOTATION = "helm.sh/hook-weight"

_INTEGER = re.compile(r"[+-]?[0-9]+")


class Phase(StrEnum):
    """When a hook runs (Argo CD's names)."""

    PRE_SYNC = "PreSync"
    SYNC = "Sync"
    POST_SYNC = "PostSync"
    SYNC_FAIL = "SyncFail"


class DeletePolicy(StrEnum):
    """When a hook object is deleted; ``BeforeHookCreation`` is the default, as in Argo CD."""

    BEFORE_HOOK_CREATION = "BeforeHookCreation"
    HOOK_SUCCEEDED = "HookSucceeded"
    HOOK_FAILED = "HookFailed"


class HookResult(StrEnum):
    """What became of one hook in one run."""

    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    RUNNING = "Running"
    SKIPPED = "Skipped"


_HELM_PHASES = {
    "pre-install": Phase.PRE_SYNC,
    "pre-upgrade": Phase.PRE_SYNC,
    "post-install": Phase.POST_SYNC,
    "post-upgrade": Phase.POST_SYNC,
}
_HELM_POLICIES = {
    "before-hook-creation": DeletePolicy.BEFORE_HOOK_CREATION,
    "hook-succeeded": DeletePolicy.HOOK_SUCCEEDED,
    "hook-failed": DeletePolicy.HOOK_FAILED,
}


@dataclass(frozen=True)
class Hook:
    """An object that runs in one or more phases of a sync."""

    manifest: Manifest
    phases: tuple[Phase, ...]
    delete_policies: frozenset[DeletePolicy]
    #: Order within the phase: its sync wave, else Helm's hook weight.
    wave: int

    @property
    def key(self) -> ObjectKey:
        """Identity; the name is empty for a hook named by ``generateName``."""
        return ObjectKey.of(self.manifest)

    @property
    def generated(self) -> bool:
        """Named by the server from ``generateName``: every run creates a new object."""
        return not (self.manifest.get("metadata") or {}).get("name")

    @property
    def shown(self) -> str:
        """How messages name the hook: ``Job.batch/ns/migrate`` or ``.../migrate-*``."""
        return shown(self.manifest)

    def order_key(self) -> tuple[int, int, str, str, str]:
        """Within a phase: wave, then the kind order objects are applied in, then name."""
        key = self.key
        meta = self.manifest.get("metadata") or {}
        return (self.wave, kind_rank(self.manifest), key.kind, key.namespace,
                key.name or str(meta.get("generateName", "")))  # fmt: skip


@dataclass(frozen=True)
class SkippedHook:
    """A hook the platform does not run, and why (shown in the outcome)."""

    object: str
    phase: str
    reason: str


def shown(obj: Manifest) -> str:
    """``Kind.group/ns/name``, with ``generateName*`` for an object that has no name yet."""
    key = ObjectKey.of(obj)
    if key.name:
        return str(key)
    meta = obj.get("metadata") or {}
    return f"{ObjectKey(key.group, key.kind, key.namespace, '')}{meta.get('generateName', '')}*"


def is_hook(obj: Manifest) -> bool:
    """Whether ``obj`` carries a hook annotation of any dialect (Skip included)."""
    annotations = annotations_of(obj)
    return any(name in annotations for name in HOOK_ANNOTATIONS)


def classify(obj: Manifest) -> Hook | SkippedHook | None:
    """The hook ``obj`` is, a reason it is skipped, or None for an ordinary object.

    Raises ``RenderError`` for a value no dialect defines in our or Argo CD's annotation
    (a typo there would otherwise silently apply a migration as a plain object).
    """
    annotations = annotations_of(obj)
    name = next((n for n in HOOK_ANNOTATIONS if n in annotations), None)
    if name is None:
        return None
    value = annotations[name]
    words = [w.strip() for w in str(value).split(",") if w.strip()]
    if name == HELM_HOOK_ANNOTATION:
        phases = tuple(dict.fromkeys(_HELM_PHASES[w] for w in words if w in _HELM_PHASES))
        if not phases:
            reason = f"Helm hook {value!r} has no place in a sync; not applied"
            return SkippedHook(shown(obj), str(value), reason)
    else:
        if "Skip" in words:
            return SkippedHook(shown(obj), "Skip", f"{name}: Skip; not applied")
        known = {p.value: p for p in Phase}
        unknown = [w for w in words if w not in known]
        if unknown or not words:
            raise RenderError(
                f"{shown(obj)}: annotation {name}: unknown phase {', '.join(unknown) or '(empty)'}"
                " (use PreSync, Sync, PostSync, SyncFail or Skip)"
            )
        phases = tuple(dict.fromkeys(known[w] for w in words))
    return Hook(obj, phases, _delete_policies(obj, annotations), _wave(obj, annotations))


def _delete_policies(obj: Manifest, annotations: dict[str, str]) -> frozenset[DeletePolicy]:
    for name in DELETE_POLICY_ANNOTATIONS:
        if name not in annotations:
            continue
        found: set[DeletePolicy] = set()
        for word in (w.strip() for w in str(annotations[name]).split(",")):
            if not word:
                continue
            policy = _HELM_POLICIES.get(word) or _policy(word)
            if policy is None:
                raise RenderError(
                    f"{shown(obj)}: annotation {name}: unknown delete policy {word!r} (use "
                    "BeforeHookCreation, HookSucceeded or HookFailed, or Helm's spelling)"
                )
            found.add(policy)
        if found:
            return frozenset(found)
    return frozenset({DeletePolicy.BEFORE_HOOK_CREATION})


def _policy(word: str) -> DeletePolicy | None:
    try:
        return DeletePolicy(word)
    except ValueError:
        return None


def _wave(obj: Manifest, annotations: dict[str, str]) -> int:
    if any(name in annotations for name in SYNC_WAVE_ANNOTATIONS):
        return sync_wave(obj)
    weight = annotations.get(HELM_WEIGHT_ANNOTATION)
    if weight is None:
        return 0
    if isinstance(weight, str) and _INTEGER.fullmatch(weight.strip()):
        return int(weight)
    raise RenderError(
        f"{shown(obj)}: annotation {HELM_WEIGHT_ANNOTATION} must be an integer string, "
        f"got {weight!r}"
    )

