"""The record of one reconcile of one target, as users, scripts and Flower see it.

One ``Outcome`` per run, plain data serialisable to JSON: the CLI prints it, the workers
store it in the result backend, the status index and the history.  It never holds a
credential or a manifest body beyond the drift's unified diff (which shows only fields we
declare, so Secret data is masked before it gets here).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from reconciler.model import Action, Health, SyncStatus


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds (``2026-11-26T04:30:10.123Z``), as outcomes carry.

    Milliseconds matter: a pass that starts and ends within one second must still be
    ordered against the runs before and after it.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Reason(StrEnum):
    """Why a run did not end Synced: the stage that stopped it, named once.

    As kustomize-controller's condition reasons do, these let a script or a dashboard
    tell a bad commit (``RenderFailed``) from a bad cluster (``ApplyFailed`` + retryable)
    without parsing messages.
    """

    CONFIG_INVALID = "ConfigInvalid"
    SOURCE_FAILED = "SourceFailed"
    RENDER_FAILED = "RenderFailed"
    LIVE_STATE_FAILED = "LiveStateFailed"
    #: A desired object's live copy belongs to another application; nothing was written.
    OWNED_ELSEWHERE = "OwnedElsewhere"
    #: A desired object is outside its project's allow-lists; nothing was written.
    NOT_PERMITTED = "NotPermitted"
    NAMESPACE_MISSING = "NamespaceMissing"
    DRY_RUN_REJECTED = "DryRunRejected"
    APPLY_FAILED = "ApplyFailed"
    HOOK_FAILED = "HookFailed"
    WAVE_TIMEOUT = "WaveTimeout"
    WAVE_FAILED = "WaveFailed"
    PRUNE_REFUSED = "PruneRefused"
    PRUNE_FAILED = "PruneFailed"
    INVENTORY_FAILED = "InventoryFailed"


class Trigger(StrEnum):
    """Why a run happened; forced triggers apply even when ``automated`` is off."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    WEBHOOK = "webhook"
    CLI = "cli"
    #: The watcher saw a managed object change: compare now (heal it under selfHeal).
    WATCH = "watch"
    #: A progressive rollout reached the target's cluster (or sent it back on abort).
    ROLLOUT = "rollout"

    @property
    def automatic(self) -> bool:
        """Runs nobody asked for by hand: suspension stops them."""
        return self in {Trigger.SCHEDULE, Trigger.WEBHOOK, Trigger.WATCH, Trigger.ROLLOUT}

    @property
    def forced(self) -> bool:
        """Admin syncs and the one-shot CLI apply whatever the sync policy says."""
        return self in {Trigger.MANUAL, Trigger.CLI}


@dataclass(frozen=True)
class Change:
    """What the run did to one object (a change-set entry)."""

    object: str
    action: Action
    reason: str = ""


@dataclass(frozen=True)
class Drift:
    """An object that differs from Git: ``missing`` (to create), ``changed`` or ``extra``."""

    object: str
    kind: str
    paths: tuple[str, ...] = ()
    diff: str = ""


@dataclass(frozen=True)
class HookRun:
    """One hook of one run: ``result`` is Succeeded, Failed, Running or Skipped."""

    object: str
    phase: str
    result: str
    message: str = ""


@dataclass(frozen=True)
class Problem:
    """An error of the run, with the object it concerns when there is one."""

    message: str
    retryable: bool
    object: str | None = None


@dataclass
class Outcome:
    """Everything one reconcile of one (application, cluster) target found and did."""

    application: str
    cluster: str
    trigger: str
    started: str
    revision: str | None = None
    duration: float = 0.0
    sync: SyncStatus = SyncStatus.FAILED
    health: Health = Health.UNKNOWN
    dry_run: bool = False
    #: The stage that stopped the run (a ``Reason`` value); empty when it did not stop.
    reason: str = ""
    changes: list[Change] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    hooks: list[HookRun] = field(default_factory=list)
    #: The newest resourceVersion among the live objects the run read or wrote: what a
    #: watch must not have seen a change after for a later run to skip the cluster read.
    #: None when the run did not see the whole live state (it failed before or during).
    observed_rv: int | None = None
    #: How the live state was known: ``cluster`` (read from it) or ``watch`` (the watcher
    #: had seen no change since the last read, so nothing was read).
    checked: str = "cluster"
    #: What a later run compares to know nothing changed on Git's side: the render's
    #: cache key and a digest of the target's fleet entry ("" when not known).
    render_key: str = ""
    app_digest: str = ""
    #: Runs in a row recorded "unchanged" without a cluster read (0 after a read).
    unchanged_runs: int = 0
    #: Of the run as a task: its attempt (1 for the first), its task id (``sync --wait``
    #: finds the outcome by it) and the cluster's circuit breaker as the run left it.
    attempt: int = 1
    task_id: str | None = None
    circuit: dict[str, Any] | None = None
    #: Why it ran and who asked, beyond the trigger: for an admin sync ``by`` (user@host)
    #: and ``reason``; for a push its ``delivery``, ``commit``, ``author`` and ``message``;
    #: for a heal the drifted ``objects``; for a rollout its ``step``.
    cause: dict[str, Any] = field(default_factory=dict)

    @property
    def retryable(self) -> bool:
        """Failed only for passing reasons: trying again later may succeed."""
        return bool(self.errors) and all(p.retryable for p in self.errors)

    @property
    def failed(self) -> bool:
        """True when the run ended in error."""
        return self.sync is SyncStatus.FAILED

    def counts(self) -> dict[str, int]:
        """Number of objects per change-set action, for summaries."""
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.action.value] = counts.get(change.action.value, 0) + 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (enums as their values)."""
        data = asdict(self)
        data["sync"] = self.sync.value
        data["health"] = self.health.value
        data["changes"] = [
            {"object": c.object, "action": c.action.value, "reason": c.reason} for c in self.changes
        ]
        data["drift"] = [
            {"object": d.object, "kind": d.kind, "paths": list(d.paths), "diff": d.diff}
            for d in self.drift
        ]
        data["retryable"] = self.retryable
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        """Inverse of ``to_dict`` (for outcomes read back from Redis)."""
        return cls(
            application=str(data["application"]),
            cluster=str(data["cluster"]),
            trigger=str(data.get("trigger", "")),
            started=str(data.get("started", "")),
            revision=data.get("revision"),
            duration=float(data.get("duration", 0.0)),
            sync=SyncStatus(data.get("sync", SyncStatus.FAILED.value)),
            health=Health(data.get("health", Health.UNKNOWN.value)),
            dry_run=bool(data.get("dry_run", False)),
            reason=str(data.get("reason", "")),
            changes=[
                Change(str(c["object"]), Action(c["action"]), str(c.get("reason", "")))
                for c in data.get("changes", [])
            ],
            drift=[
                Drift(
                    str(d["object"]),
                    str(d.get("kind", "changed")),
                    tuple(d.get("paths", ())),
                    str(d.get("diff", "")),
                )
                for d in data.get("drift", [])
            ],
            errors=[
                Problem(str(p["message"]), bool(p.get("retryable")), p.get("object"))
                for p in data.get("errors", [])
            ],
            hooks=[
                HookRun(str(h["object"]), str(h.get("phase", "")), str(h.get("result", "")),
                        str(h.get("message", "")))
                for h in data.get("hooks", [])
            ],
            observed_rv=data.get("observed_rv"),
            checked=str(data.get("checked", "cluster")),
            render_key=str(data.get("render_key") or ""),
            app_digest=str(data.get("app_digest") or ""),
            unchanged_runs=int(data.get("unchanged_runs") or 0),
            attempt=int(data.get("attempt") or 1),
            task_id=data.get("task_id"),
            circuit=data.get("circuit"),
            cause=dict(data.get("cause") or {}),
        )


def describe_cause(cause: Mapping[str, Any]) -> str:
    """Why a run happened, in a line: who asked and why, the push (commit, author,
    message), the objects a heal corrected, the rollout step, a sync window opening.

    ``history`` and the fleet page show it; ``Outcome.cause`` holds the data.
    """
    parts = []
    rollback = cause.get("rollback")
    if isinstance(rollback, Mapping):
        parts.append(f"rollback to {str(rollback.get('to', ''))[:12]}")
    if cause.get("by"):
        parts.append(f"by {cause['by']}")
    if cause.get("commit"):
        parts.append(f"push {str(cause['commit'])[:12]}"
                     + (f" by {cause['author']}" if cause.get("author") else ""))  # fmt: skip
    if cause.get("delivery") and not cause.get("commit"):
        parts.append(f"push {cause['delivery']}")
    objects = cause.get("objects")
    if isinstance(objects, list) and objects:
        parts.append("healed " + ", ".join(str(o) for o in objects[:3])
                     + (f" and {len(objects) - 3} more" if len(objects) > 3 else ""))  # fmt: skip
    if cause.get("step"):
        parts.append(f"rollout step {cause['step']}")
    if cause.get("window"):
        parts.append("its sync window opened")
    text = "; ".join(parts)
    for extra in ("reason", "message"):
        if cause.get(extra):
            return f"{text}: {cause[extra]}" if text else str(cause[extra])
    return text


def _finished(started: object, duration: float) -> str:
    """RFC 3339 end of a run: ``started + duration``; now when ``started`` is unusable."""
    try:
        begin = datetime.fromisoformat(str(started))
    except ValueError:
        return timestamp(datetime.now(UTC))
    if begin.tzinfo is None:
        begin = begin.replace(tzinfo=UTC)
    return timestamp(begin + timedelta(seconds=duration))


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class TargetStatus:
    """A target as the fleet sees it now: its last outcome in the few fields a listing
    shows, plus what the watcher learnt since (live health).

    One entry per target in the status index; ``status``, ``/metrics``, ``up``, beat and
    the fleet page read these, and the workers read one to decide whether a run may skip
    the cluster read, so they all share one vocabulary instead of each picking keys out
    of JSON.  Everything here is a summary: diffs, change lists and hook messages stay in
    the target's history.
    """

    application: str
    cluster: str
    revision: str | None = None
    sync: str = ""
    health: str = ""
    #: Drift left after the run: what a Synced run found, it also corrected.
    drift_count: int = 0
    #: Objects per change-set action (every ``Action`` value, 0 when none).
    actions: Mapping[str, int] = field(default_factory=dict)
    started: str = ""
    finished: str = ""
    duration: float = 0.0
    #: The run's first error ("" when none).
    error: str = ""
    reason: str = ""
    #: Hooks of the run by result (``{"Succeeded": 2, "Failed": 1}``).
    hooks: Mapping[str, int] = field(default_factory=dict)
    retryable: bool = False
    trigger: str = ""
    #: What a later run needs to know nothing changed without reading the cluster (see
    #: ``Outcome``): the newest resourceVersion seen, how the live state was known, the
    #: render's key, the fleet entry's digest and the cluster reads skipped in a row.
    observed_rv: int | None = None
    checked: str = "cluster"
    render_key: str = ""
    app_digest: str = ""
    unchanged_runs: int = 0
    #: Quiet runs in a row the last history entry stands for, and when the first began.
    repeats: int = 1
    first_started: str = ""
    #: When the watcher last changed ``health`` ("" when it is the run's own).
    health_at: str = ""

    @classmethod
    def of(cls, outcome: Mapping[str, Any]) -> TargetStatus:
        """The entry of a whole outcome (``Outcome.to_dict()`` or a history entry)."""
        changes = outcome.get("changes") or []
        counts = Counter(str(change.get("action", "")) for change in changes)
        errors = outcome.get("errors") or []
        duration = float(outcome.get("duration") or 0.0)
        sync = str(outcome.get("sync", ""))
        return cls(
            application=str(outcome["application"]),
            cluster=str(outcome["cluster"]),
            revision=outcome.get("revision"),
            sync=sync,
            health=str(outcome.get("health", "")),
            drift_count=0 if sync == SyncStatus.SYNCED.value else len(outcome.get("drift") or []),
            actions={action.value: counts.get(action.value, 0) for action in Action},
            started=str(outcome.get("started", "")),
            finished=_finished(outcome.get("started"), duration),
            duration=duration,
            error=str(errors[0].get("message", "")) if errors else "",
            reason=str(outcome.get("reason", "")),
            hooks=dict(Counter(str(hook.get("result", "")) for hook in outcome.get("hooks") or [])),
            retryable=bool(outcome.get("retryable", False)),
            trigger=str(outcome.get("trigger", "")),
            observed_rv=_int_or_none(outcome.get("observed_rv")),
            checked=str(outcome.get("checked") or "cluster"),
            render_key=str(outcome.get("render_key") or ""),
            app_digest=str(outcome.get("app_digest") or ""),
            unchanged_runs=int(outcome.get("unchanged_runs") or 0),
            repeats=int(outcome.get("repeats") or 1),
            first_started=str(outcome.get("first_started") or outcome.get("started", "")),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetStatus:
        """An entry read back from the index; unknown keys (older or newer writers) are
        ignored and missing ones take their defaults, so a rolling upgrade reads both."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["application"] = str(data["application"])
        values["cluster"] = str(data["cluster"])
        values["observed_rv"] = _int_or_none(data.get("observed_rv"))
        for name in ("actions", "hooks"):
            if not isinstance(values.get(name), Mapping):
                values.pop(name, None)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as the index stores it and ``status -o json`` prints it."""
        data = asdict(self)
        data["actions"] = dict(self.actions)
        data["hooks"] = dict(self.hooks)
        if not self.health_at:
            del data["health_at"]
        return data
