"""Progressive rollouts in the workers: decide, store, and say which targets run what.

The decisions are pure (``reconciler.rollout``) and their state lives in Redis
(``reconciler.store.rollout``); this is the glue the tasks share.  A new revision of an
application with ``rollout.steps`` begins a rollout when its fan-out (schedule, webhook,
admin sync) resolves it; the rollout moves on when one of its targets finishes (that
task queues a decision) and on beat's tick (a soak ends with no target finishing); and
every run of a target applies the revision the rollout assigns its cluster, whatever
triggered it, so a heal on a cluster not yet reached restores its previous revision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from reconciler.fleet import Application, Fleet
from reconciler.notify import rollout_events
from reconciler.outcome import TargetStatus, timestamp
from reconciler.rollout import (
    Decision,
    Phase,
    RolloutState,
    Step,
    TargetView,
    advance,
    begin,
    steps_of,
)
from reconciler.store.keys import Keys
from reconciler.store.records import Records
from reconciler.store.rollout import Rollouts
from workers.app import app, queue_for
from workers.notifications import dispatch

log = logging.getLogger("reconciler.rollout")

#: Why a target of a rollout application did not run: its cluster has no revision yet.
WAITING = "waiting for its rollout step"
DECISION_TASK = "reconciler.advance_rollout"
#: Seconds a queued rollout decision keeps others from queuing (it is given back when it
#: starts; this bounds a lost one).
DECISION_MARK_TTL = 30.0


def steps(fleet: Fleet, application: Application) -> list[Step]:
    """The application's clusters in its rollout's steps."""
    return steps_of(application, fleet.targets(application))


def views(entries: Mapping[str, TargetStatus]) -> dict[str, TargetView]:
    """What the rollout reads of each cluster's status entry."""
    return {cluster: TargetView(e.revision, e.sync, e.health, e.error)
            for cluster, e in entries.items()}  # fmt: skip


def entries_of(records: Records, app: str) -> dict[str, TargetStatus]:
    """The application's status entries by cluster (one round trip)."""
    return {entry.cluster: entry for entry in records.status(app)}


def progress(
    rollouts: Rollouts,
    records: Records,
    fleet: Fleet,
    application: Application,
    head: str | None,
    *,
    now: float | None = None,
) -> Decision | None:
    """Begin the rollout of ``head`` when it is new, then move it as far as it goes.

    None when the application has no rollout state and no ``head`` to begin one with.
    The events of a rollout begun here come first in the decision's events.
    """
    moment = time.time() if now is None else now
    plan = steps(fleet, application)
    entries = entries_of(records, application.name)
    seen = views(entries)
    clusters = [c.name for c in fleet.targets(application)]

    def decide(stored: RolloutState | None) -> tuple[RolloutState | None, Decision | None]:
        state = stored
        began = None
        if head is not None:
            running = {c: (entries[c].revision if c in entries else None) for c in clusters}
            began = begin(stored, head, running, moment)
            if began is not None:
                state = began
        if state is None:
            return None, None
        moved = advance(state, plan, seen, moment)
        events = (*(began.events if began is not None else ()), *moved.events)
        decision = Decision(moved.state, moved.sync, events)
        unchanged = stored is not None and moved.state.to_dict() == stored.to_dict()
        return (None if unchanged else moved.state), decision

    decision = rollouts.change(application.name, decide)
    if decision is not None:
        for event in decision.events:
            log.info("rollout of %s at %s: %s %s", application.name,
                     decision.state.revision[:12], event.get("event"),
                     {k: v for k, v in event.items() if k not in {"event", "at"}})  # fmt: skip
    return decision


@dataclass(frozen=True)
class Assignment:
    """The revision a target of a rollout application runs now (None: none yet)."""

    revision: str | None
    state: RolloutState | None


def assigned(rollouts: Rollouts, application: Application, cluster: str) -> Assignment:
    """What a run of ``application`` on ``cluster`` applies: its rollout's assignment."""
    state = rollouts.read(application.name)
    return Assignment(state.assigned.get(cluster) if state else None, state)


def active(state: RolloutState | None) -> bool:
    """A rollout that a tick may move: progressing and not paused by hand."""
    return state is not None and state.phase is Phase.PROGRESSING and not state.paused


def queue_decision(client: redis.Redis, keys: Keys, app_name: str, *,
                   countdown: float = 0.0) -> bool:  # fmt: skip
    """Queue a decision on the application's rollout unless one already waits.

    Finishing targets call it, and the watcher when a target's health changes: a step's
    gate (Synced and Healthy) is judged the moment it can pass, not at beat's next tick.
    """
    if not Rollouts(client, keys).queue(app_name, ttl=DECISION_MARK_TTL + countdown):
        return False
    app.send_task(DECISION_TASK, args=(app_name,), queue=queue_for(forced=True),
                  countdown=countdown or None)  # fmt: skip
    return True


def notify_decision(client: redis.Redis, keys: Keys, fleet: Fleet, app_name: str,
                    decision: Decision | None) -> None:  # fmt: skip
    """Queue the notifications a rollout decision's events raise (paused, finished);
    never fails the decision."""
    if decision is None or not decision.events:
        return
    try:
        events = rollout_events(app_name, decision.state.revision, decision.events,
                                at=timestamp(datetime.now(UTC)))  # fmt: skip
        dispatch(client, keys, fleet, events, app_name=app_name, cluster_name=None)
    except Exception:
        log.exception("notifications of the rollout of %s", app_name)
