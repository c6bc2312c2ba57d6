"""Progressive rollout of a revision across an application's clusters, decided purely.

A platform team does not send a change to fifty clusters at once: it goes to the dev
clusters, waits until they are Synced and Healthy for a while, then to staging a few at
a time, then to production.  An application's ``rollout.steps`` says so (selectors,
``maxUnavailable``, ``soak``); this module decides, from the rollout's state, the fleet's
clusters and the targets' status entries, which clusters take the new revision now,
when a step's gate has passed, and when a failing step stops the rollout.  It holds no
clock and does no I/O: the caller passes ``now`` and stores the state it returns
(``reconciler.store.rollout``), the workers apply the revision each cluster is assigned.

Every cluster is *assigned* a revision: the rollout's for the clusters it has reached,
the one they ran before for the others, so a cluster not yet reached keeps running (and
healing to) its previous revision.  Abort assigns every cluster its previous revision.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.fleet.model import Application, Cluster, RolloutStep
from reconciler.model import Health, SyncStatus

#: The step of clusters no written step selects: all at once, no soak, after the others.
REST = RolloutStep(max_unavailable="100%", soak=0.0)


class Phase(StrEnum):
    """Where a rollout is: moving, stopped by a failing step, done, or taken back."""

    PROGRESSING = "Progressing"
    #: A target of the current step Failed or turned Degraded: nothing more is assigned
    #: until ``promote`` (go on regardless) or ``resume`` (go on once it is fixed).
    HALTED = "Halted"
    COMPLETED = "Completed"
    #: Every cluster was sent back to its previous revision; a new revision starts anew.
    ABORTED = "Aborted"


@dataclass(frozen=True)
class Step:
    """A written step (or the rest) with the application's clusters that fall into it."""

    index: int
    rule: RolloutStep
    clusters: tuple[str, ...]
    #: True for the implicit last step of the clusters no written step selects.
    rest: bool = False

    @property
    def label(self) -> str:
        """How listings name the step: its number from 1, or ``rest``."""
        return "rest" if self.rest else str(self.index + 1)

    @property
    def batch(self) -> int:
        """Clusters of the step that may be updating at once."""
        return self.rule.batch(len(self.clusters))


def steps_of(app: Application, clusters: Sequence[Cluster]) -> list[Step]:
    """``app``'s clusters split into its rollout's steps, in order, each cluster in the
    first step that selects it; the clusters no step selects form a last step."""
    if app.rollout is None:
        return [Step(0, REST, tuple(c.name for c in clusters), rest=True)]
    left = list(clusters)
    steps: list[Step] = []
    for index, rule in enumerate(app.rollout.steps):
        mine = [cluster for cluster in left if rule.clusters.matches(cluster)]
        steps.append(Step(index, rule, tuple(c.name for c in mine)))
        left = [cluster for cluster in left if cluster not in mine]
    if left:
        steps.append(Step(len(steps), REST, tuple(c.name for c in left), rest=True))
    return steps


@dataclass(frozen=True)
class TargetView:
    """What the rollout needs of a target's status entry."""

    revision: str | None
    sync: str
    health: str
    error: str = ""

    def good(self, revision: str) -> bool:
        """Runs ``revision``, Synced and Healthy (Suspended counts: paused on purpose)."""
        return (
            self.revision == revision
            and self.sync == SyncStatus.SYNCED.value
            and self.health in {Health.HEALTHY.value, Health.SUSPENDED.value}
        )

    def bad(self, revision: str) -> bool:
        """Ran ``revision`` and Failed, or runs it Degraded."""
        return self.revision == revision and (
            self.sync == SyncStatus.FAILED.value or self.health == Health.DEGRADED.value
        )


@dataclass
class RolloutState:
    """One application's rollout of one revision, as stored between decisions."""

    revision: str
    #: Cluster -> the revision it ran when this rollout began (None: it ran nothing).
    previous: dict[str, str | None]
    #: Cluster -> the revision it must run now (absent: nothing yet).
    assigned: dict[str, str]
    step: int = 0
    phase: Phase = Phase.PROGRESSING
    #: Set by ``pause``; nothing more is assigned until ``resume``.
    paused: bool = False
    started: float = 0.0
    #: When the current step began, and when all its targets were first seen good.
    step_started: float = 0.0
    gate_since: float | None = None
    #: Why it halted, paused or was aborted; empty while it progresses.
    reason: str = ""
    finished: float | None = None
    #: What happened, oldest first: ``{"at": ..., "event": ..., "step": ..., ...}``.
    events: list[dict[str, Any]] = field(default_factory=list)

    #: Events kept (the newest): enough to tell a rollout's story, bounded.
    EVENT_LIMIT = 50

    @property
    def shown_phase(self) -> str:
        """``Paused`` when paused by hand, else the phase."""
        return "Paused" if self.paused and self.phase is Phase.PROGRESSING else self.phase.value

    def note(self, now: float, event: str, **details: Any) -> None:
        self.events.append({"at": now, "event": event, "step": self.step, **details})
        del self.events[: -self.EVENT_LIMIT]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["phase"] = self.phase.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutState:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["phase"] = Phase(values.get("phase", Phase.PROGRESSING.value))
        return cls(**values)


@dataclass(frozen=True)
class Decision:
    """What one decision changed: the new state, the clusters whose assignment changed
    (to be reconciled now), and the events it noted (for notifications)."""

    state: RolloutState
    sync: tuple[str, ...] = ()
    events: tuple[dict[str, Any], ...] = ()


def begin(
    old: RolloutState | None,
    revision: str,
    running: Mapping[str, str | None],
    now: float,
) -> RolloutState | None:
    """The rollout of ``revision``, or None when ``old`` already is its rollout.

    ``running``: the revision each of the application's clusters ran last (its status
    entry).  A cluster keeps what the previous rollout assigned it, else what it runs.
    An aborted rollout of this same revision stays aborted: only a new revision (or
    ``resume``) starts again.
    """
    if old is not None and old.revision == revision:
        return None
    assigned: dict[str, str] = {}
    for cluster, ran in running.items():
        before = old.assigned.get(cluster) if old is not None else None
        if before or ran:
            assigned[cluster] = str(before or ran)
    state = RolloutState(revision=revision, previous={c: assigned.get(c) for c in running},
                         assigned=assigned, started=now, step_started=now)  # fmt: skip
    state.note(now, "started", revision=revision)
    return state


def advance(
    state: RolloutState,
    steps: Sequence[Step],
    targets: Mapping[str, TargetView],
    now: float,
) -> Decision:
    """Move ``state`` as far as the targets' status allows at ``now``.

    In the current step: a target of it that ran the revision and Failed (or runs it
    Degraded) halts the rollout; otherwise clusters not yet on the revision are assigned
    it, at most the step's batch updating at once; once every cluster of the step runs it
    Synced and Healthy, the gate waits ``soak`` from that moment, then the next step
    begins.  After the last step the rollout is Completed.
    """
    state = _copy(state)
    if state.phase is not Phase.PROGRESSING or state.paused:
        return Decision(state)
    mark = len(state.events)
    assign: list[str] = []
    missing = TargetView(None, "", "")
    while state.step < len(steps):
        step = steps[state.step]
        if not step.clusters:  # nothing to wait for (``validate`` warns of such a step)
            _next_step(state, now, "passed")
            continue
        reached = [c for c in step.clusters if state.assigned.get(c) == state.revision]
        failed = [c for c in reached if targets.get(c, missing).bad(state.revision)]
        if failed:
            view = targets[failed[0]]
            state.phase = Phase.HALTED
            state.reason = (f"{failed[0]}: {view.sync} {view.health}"
                            + (f": {view.error}" if view.error else ""))  # fmt: skip
            state.note(now, "halted", clusters=failed, reason=state.reason)
            break
        updating = [c for c in reached if not targets.get(c, missing).good(state.revision)]
        waiting = [c for c in step.clusters if c not in reached]
        room = max(0, step.batch - len(updating))
        for cluster in waiting[:room]:
            state.assigned[cluster] = state.revision
            assign.append(cluster)
        if waiting or updating:
            state.gate_since = None
            break
        if state.gate_since is None:
            state.gate_since = now
        if now - state.gate_since < step.rule.soak:
            break
        _next_step(state, now, "passed")
    else:
        state.phase = Phase.COMPLETED
        state.finished = now
        state.note(now, "completed", revision=state.revision)
    return Decision(state, tuple(assign), tuple(state.events[mark:]))


def promote(state: RolloutState, steps: Sequence[Step], now: float) -> Decision:
    """Skip the current step's gate: its clusters all take the revision now (a halted
    rollout goes on regardless of the failure) and the next step begins."""
    state = _copy(state)
    if state.phase in {Phase.COMPLETED, Phase.ABORTED} or state.step >= len(steps):
        return Decision(state)
    mark = len(state.events)
    assign = [c for c in steps[state.step].clusters if state.assigned.get(c) != state.revision]
    for cluster in assign:
        state.assigned[cluster] = state.revision
    state.phase, state.reason, state.paused = Phase.PROGRESSING, "", False
    _next_step(state, now, "promoted")
    return Decision(state, tuple(assign), tuple(state.events[mark:]))


def pause(state: RolloutState, now: float, reason: str = "") -> RolloutState:
    """Assign nothing more until ``resume``; clusters already on the revision keep it."""
    state = _copy(state)
    if not state.paused and state.phase in {Phase.PROGRESSING, Phase.HALTED}:
        state.paused = True
        state.reason = reason or "paused by hand"
        state.note(now, "paused", reason=state.reason)
    return state


def resume(state: RolloutState, now: float) -> RolloutState:
    """Go on: after ``pause``, and after a halt (which halts again while the step still
    fails).  An aborted rollout starts again from its first step."""
    state = _copy(state)
    if state.phase is Phase.COMPLETED or (state.phase is Phase.PROGRESSING and not state.paused):
        return state
    if state.phase is Phase.ABORTED:
        state.step, state.step_started = 0, now
    state.phase, state.paused, state.reason, state.gate_since = (
        Phase.PROGRESSING, False, "", None)  # fmt: skip
    state.note(now, "resumed")
    return state


def abort(state: RolloutState, now: float) -> Decision:
    """Every cluster back to the revision it ran before this rollout began.

    A cluster that ran nothing before keeps the rollout's revision: there is nothing to
    go back to, and taking its workloads away is not what an abort asks.
    """
    state = _copy(state)
    if state.phase is Phase.ABORTED:
        return Decision(state)
    mark = len(state.events)
    back: list[str] = []
    for cluster, revision in state.assigned.items():
        before = state.previous.get(cluster)
        if before and before != revision:
            state.assigned[cluster] = before
            back.append(cluster)
    state.phase, state.paused, state.gate_since = Phase.ABORTED, False, None
    state.reason = "aborted: every cluster back to its previous revision"
    state.finished = now
    state.note(now, "aborted", clusters=back)
    return Decision(state, tuple(back), tuple(state.events[mark:]))


def step_of(steps: Iterable[Step], cluster: str) -> Step | None:
    """The step ``cluster`` belongs to (None: not one of the application's)."""
    return next((step for step in steps if cluster in step.clusters), None)


def _next_step(state: RolloutState, now: float, how: str) -> None:
    state.note(now, f"step {how}", waited=round(now - state.step_started, 3))
    state.step += 1
    state.step_started, state.gate_since = now, None


def _copy(state: RolloutState) -> RolloutState:
    return RolloutState.from_dict(state.to_dict())
