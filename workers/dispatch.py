"""Enqueueing reconciles from outside a worker: admin syncs, webhooks, suspend and resume.

The CLI and the webhook server call these; they only need Redis (the broker), never a
cluster or Git.  Forced work goes to the forced queue, which workers drain before any
scheduled backlog.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from celery.result import AsyncResult

from reconciler.errors import TransientError
from reconciler.outcome import Trigger
from reconciler.store import connect
from reconciler.store.keys import Keys
from reconciler.store.records import Records
from workers.app import app, queue_for, redis_url
from workers.flower import ReconcileFailed


@dataclass(frozen=True)
class Queued:
    """A target's forced sync: its task id, and whether this call queued it or joined one."""

    cluster: str
    task_id: str
    queued: bool


def enqueue_app(
    app_name: str,
    *,
    trigger: Trigger,
    clusters: Sequence[str] | None = None,
    fresh: bool = False,
    revision: str | None = None,
    prune: bool | None = None,
    dry_run: bool = False,
    settle: str | None = None,
    cause: dict[str, Any] | None = None,
) -> AsyncResult:
    """Send ``reconcile_app``; forced and webhook triggers go to the forced queue.

    ``revision``, ``prune`` and ``dry_run`` are an admin sync's options (a ref, two
    flags): identifiers, like every task argument, never credentials or manifests.
    ``cause`` says why, for the outcomes: who asked and why, or which push.
    """
    forced = trigger in {Trigger.MANUAL, Trigger.WEBHOOK}
    kwargs: dict[str, Any] = {"clusters": list(clusters) if clusters else None, "fresh": fresh}
    if revision:
        kwargs["revision"] = revision
    if prune is not None:
        kwargs["prune"] = prune
    if dry_run:
        kwargs["dry_run"] = True
    if settle:
        kwargs["settle"] = settle
    if cause:
        kwargs["cause"] = cause
    return app.send_task(
        "reconciler.reconcile_app",
        args=(app_name, trigger.value),
        kwargs=kwargs,
        queue=queue_for(forced=forced),
    )


def fan_out_result(result: AsyncResult, *, timeout: float) -> tuple[str | None, list[Queued]]:
    """Wait for ``reconcile_app`` to fan out: the revision and each target's task."""
    data: dict[str, Any] = result.get(timeout=timeout, propagate=True, disable_sync_subtasks=False)
    if data.get("skipped"):
        # The workers' view of the fleet disagrees with the caller's (or it is suspended).
        app_name = data.get("application")
        raise TransientError(f"{app_name}: skipped by the workers: {data['skipped']}")
    targets = [Queued(t["cluster"], t["task_id"], bool(t["queued"])) for t in data["targets"]]
    return data.get("revision"), targets


def wait_for_targets(
    targets: Sequence[Queued], *, timeout: float, poll: float = 0.2
) -> dict[str, dict[str, Any] | None]:
    """Each target's final outcome (None when it did not finish within ``timeout``).

    A target task that is being retried is not final: its last state is RETRY, and the
    retried task keeps the same id, so waiting on the id follows it to the end.  The
    caller can show the last recorded attempt of a target still retrying at the deadline.

    The outcome is read from the target's history, where the task recorded it with its
    id: the task's own result is only a summary, and a Failed run ends FAILURE.
    """
    deadline = time.monotonic() + timeout
    results: dict[str, dict[str, Any] | None] = {t.cluster: None for t in targets}
    pending = {t.cluster: AsyncResult(t.task_id, app=app) for t in targets}
    client = connect.client(redis_url(), socket_timeout=30)
    try:
        records = Records(client, Keys())
        while pending and time.monotonic() < deadline:
            for cluster, result in list(pending.items()):
                if result.state in {"SUCCESS", "FAILURE"}:
                    results[cluster] = _final_outcome(records, result, cluster)
                    del pending[cluster]
            if pending:
                time.sleep(poll)
    finally:
        client.close()
    return results


#: Recorded outcomes of a target searched for a task's own (its retries come first).
_HISTORY_SEARCHED = 20


def _final_outcome(records: Records, result: AsyncResult, cluster: str) -> dict[str, Any]:
    """The outcome a finished target task recorded; its result when it recorded none."""
    value = result.result
    summary: dict[str, Any] = {}
    if isinstance(value, dict):
        summary = value
    elif isinstance(value, ReconcileFailed):
        summary = value.summary
    args = result.args or ()
    app_name = str(summary.get("application") or (args[0] if args else ""))
    if app_name:
        for entry in records.history(app_name, cluster, n=_HISTORY_SEARCHED):
            if entry.get("task_id") == result.id:
                return entry
    if summary and result.state == "SUCCESS":
        return summary  # skipped: nothing was recorded
    return {"application": app_name, "cluster": cluster, "sync": "Failed",
            "errors": [{"message": str(value), "retryable": False}]}  # fmt: skip


def enqueue_rollout_decision(app_name: str, *, sync: Sequence[str] = ()) -> AsyncResult:
    """Send ``advance_rollout``: move the application's rollout on now, and run ``sync``
    (clusters an operator's promote or abort reassigned) at their assigned revision."""
    return app.send_task(
        "reconciler.advance_rollout",
        args=(app_name,),
        kwargs={"sync": list(sync)},
        queue=queue_for(forced=True),
    )


def enqueue_notifications(app_name: str, events: Sequence[dict[str, Any]]) -> None:
    """Send ``notify_events``: the workers tell the endpoints that want them."""
    if events:
        app.send_task("reconciler.notify_events", args=(app_name, list(events)),
                      queue=queue_for(forced=True))  # fmt: skip
