"""The fleet's own tasks, beside the reconciles: rollout decisions, beat's ticks for
rollouts and sync windows, and notifications raised outside a worker.

They send target runs by name (``reconciler.reconcile_target``): this module sits beside
``workers.tasks``, not above it.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from reconciler.errors import ConfigError, ReconcilerError
from reconciler.notify import Event
from reconciler.outcome import Trigger
from reconciler.store.deferred import Deferrals
from reconciler.store.rollout import Rollouts
from workers.app import app, queue_for, route_label
from workers.notifications import dispatch
from workers.rollouts import DECISION_TASK, active, notify_decision, progress, queue_decision
from workers.runtime import Runtime, runtime

log = logging.getLogger("reconciler.workers")

TARGET_TASK = "reconciler.reconcile_target"


def send_rollout_runs(rt: Runtime, app_name: str, runs: dict[str, str],
                      cause: dict[str, Any] | None = None) -> list[str]:  # fmt: skip
    """Queue a run of each cluster of ``runs`` (cluster -> revision) on the forced queue."""
    fleet = rt.fleet()
    label = route_label()
    task_ids = []
    for cluster_name, commit in runs.items():
        try:
            cluster = fleet.cluster(cluster_name)
        except ConfigError:
            continue  # left the fleet since it was assigned
        route = cluster.labels.get(label, "") if label else ""
        task_id = str(uuid.uuid4())
        app.send_task(TARGET_TASK, args=(app_name, cluster_name, Trigger.ROLLOUT.value),
                      kwargs={"revision": commit, "cause": cause},
                      queue=queue_for(forced=True, route=route), task_id=task_id)  # fmt: skip
        task_ids.append(task_id)
    return task_ids


@app.task(name=DECISION_TASK, ignore_result=True)
def advance_rollout(app_name: str, sync: list[str] | None = None) -> dict[str, Any]:
    """Move the application's rollout as far as its targets' status allows, and queue a
    run of each cluster it assigned a revision (and of ``sync``: clusters an operator's
    ``promote`` or ``abort`` reassigned)."""
    rt = runtime()
    rollouts = Rollouts(rt.client, rt.keys)
    rollouts.started(app_name)
    fleet = rt.fleet()
    try:
        application = fleet.application(app_name)
    except ConfigError:
        rollouts.forget(app_name)
        return {"application": app_name, "skipped": "not in the fleet"}
    if application.rollout is None:
        return {"application": app_name, "skipped": "no rollout"}
    if application.sync.suspended or rt.suspended(app_name):
        return {"application": app_name, "skipped": "suspended"}
    try:
        head: str | None = rt.resolve(application.source, fresh=False)
    except ReconcilerError as exc:
        log.warning("rollout of %s: source: %s", app_name, exc)
        head = None
    decision = progress(rollouts, rt.records, fleet, application, head)
    if decision is None:
        return {"application": app_name, "skipped": "no rollout yet"}
    notify_decision(rt.client, rt.keys, fleet, app_name, decision)
    state = decision.state
    wanted = {c: state.assigned[c] for c in (*decision.sync, *(sync or ())) if c in state.assigned}
    send_rollout_runs(rt, app_name, wanted, {"step": state.step + 1, "phase": state.shown_phase})
    return {"application": app_name, "revision": state.revision, "phase": state.shown_phase,
            "step": state.step, "sent": sorted(wanted)}  # fmt: skip


@app.task(name="reconciler.advance_rollouts", ignore_result=True)
def advance_rollouts() -> dict[str, Any]:
    """Beat's tick: queue a decision on every rollout that may move (a soak that ends
    moves nothing by itself, and a decision a lost message never made is made here)."""
    rt = runtime()
    fleet = rt.fleet()
    names = [a.name for a in fleet.applications if a.rollout is not None]
    states = Rollouts(rt.client, rt.keys).read_many(names)
    moving = [name for name in names if active(states.get(name))]
    for name in moving:
        queue_decision(rt.client, rt.keys, name)
    return {"rollouts": moving}


@app.task(name="reconciler.notify_events", ignore_result=True)
def notify_events(app_name: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """Queue the messages of events raised outside a worker (an operator's rollout pause)."""
    rt = runtime()
    found = [Event.from_dict(e) for e in events]
    queued = dispatch(rt.client, rt.keys, rt.fleet(), found, app_name=app_name,
                      cluster_name=None)  # fmt: skip
    return {"queued": queued}


@app.task(name="reconciler.release_deferred", ignore_result=True)
def release_deferred() -> dict[str, Any]:
    """Beat's tick: send the runs sync windows stopped whose moment has come."""
    rt = runtime()
    due = Deferrals(rt.client, rt.keys).take_due()
    label = route_label()
    fleet = rt.fleet()
    sent = []
    for run in due:
        try:
            cluster = fleet.cluster(run.cluster)
            fleet.application(run.app)
        except ConfigError:
            continue  # left the fleet meanwhile
        route = cluster.labels.get(label, "") if label else ""
        forced = run.trigger in {Trigger.WEBHOOK.value, Trigger.ROLLOUT.value, Trigger.WATCH.value}
        app.send_task(TARGET_TASK, args=(run.app, run.cluster, run.trigger),
                      kwargs={"cause": {"window": "opened"}},
                      queue=queue_for(forced=forced, route=route))  # fmt: skip
        sent.append(f"{run.app}/{run.cluster}")
    if sent:
        log.info("sync windows let %d deferred run(s) go: %s", len(sent), ", ".join(sent[:10]))
    return {"sent": sent}
