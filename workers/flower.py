"""How reconcile jobs read in Flower: their names, their results and their failures.

Flower shows Celery's view of a task: a name, a state, a result or an exception.  Left
alone, every job is ``reconciler.reconcile_target``, every job is SUCCESS (a reconcile
that failed still *returned* its outcome) and the result column is a Python repr of the
whole outcome, unified diffs and all.  People look for "guestbook on prod-eu-1, did it
fail?", so this module makes the three things Flower shows say that:

* the **name** (Celery's ``shadow``, set on every message, whoever sends the task:
  beat, the CLI, the webhook server, a retry): ``reconcile guestbook → prod-eu-1
  (schedule)``; Flower's search matches names, so an application or a cluster name finds
  its jobs;
* the **state**: a reconcile whose outcome is Failed raises :class:`ReconcileFailed`
  after the outcome is recorded, so it lands under Flower's Failed tab (and sends
  ``task-failed`` events) while a skipped one stays SUCCESS with ``skipped`` in its result;
* the **result**: a short summary (:func:`job_summary`), shown by Flower as JSON
  (:func:`format_task`); the whole outcome stays in the status index and the history,
  where ``reconciler history`` and ``sync --wait`` read it.

Flower also reads this file as its configuration file (``FLOWER_CONF``, see
:func:`apply_flower_defaults`): Flower takes every top-level name that is one of its
options, and the only such name here is ``format_task``.

Everything here comes from task arguments and outcomes, which never hold credentials
(DESIGN.md: arguments are identifiers only; outcomes are masked before they are made).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from reconciler.outcome import TargetStatus

#: Task names (as registered) that get a readable shadow name.
APP_TASK = "reconciler.reconcile_app"
TARGET_TASK = "reconciler.reconcile_target"
#: Characters of the first error kept in a failure's sentence and in a task's result (the
#: records keep it whole); Celery cuts the repr Flower shows of a result at 1024.
SENTENCE_ERROR_CHARS = 200
RESULT_ERROR_CHARS = 400
#: Flower settings this platform wants unless the operator set them (``FLOWER_*``
#: variables are Flower's own configuration): the tasks page shows each job's result and
#: exception next to its name, so a failure's reason is readable without opening it.
#: The configuration file is this module, for :func:`format_task`.
FLOWER_DEFAULTS = {
    "FLOWER_TASKS_COLUMNS": "name,state,result,exception,received,runtime,worker,uuid",
    "FLOWER_CONF": __file__,
}


def apply_flower_defaults(environ: MutableMapping[str, str]) -> None:
    """Put :data:`FLOWER_DEFAULTS` into ``environ`` where the operator set nothing.

    ``reconciler flower`` imports the Celery app before it starts Flower, and Flower reads
    its ``FLOWER_*`` variables when it starts, so setting them here reaches it with no
    option on the command line.
    """
    for name, value in FLOWER_DEFAULTS.items():
        environ.setdefault(name, value)


def format_task(task: Any) -> Any:
    """Flower's ``format_task`` hook: a reconcile's result shown as JSON.

    Flower gets a task's result from the worker's event as Celery's repr of the returned
    dict (``{'sync': 'Synced', ...}``); shown as JSON, it reads like every other JSON the
    platform prints and can be pasted into ``jq``.  Flower passes a copy of its task.
    """
    result = getattr(task, "result", None)
    if not str(getattr(task, "name", "")).startswith("reconcile "):
        return task
    if not (isinstance(result, str) and result.startswith("{")):
        return task
    try:
        value = ast.literal_eval(result)  # literals only: never runs code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return task  # cut short by Celery: left as it came
    if isinstance(value, dict):
        task.result = json.dumps(value, ensure_ascii=False)
    return task


def job_name(task: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """The name Flower shows for a reconcile task, or None for any other task.

    ``reconcile guestbook → prod-eu-1 (schedule)`` for a target, ``reconcile guestbook
    (webhook)`` for an application's fan-out.  Arguments are positional or keyword, as
    the task's signature allows.
    """
    if task == TARGET_TASK:
        names: tuple[str, ...] = ("app_name", "cluster_name", "trigger")
    elif task == APP_TASK:
        names = ("app_name", "trigger")
    else:
        return None
    values = dict(zip(names, args, strict=False))
    for name in names:
        if name in kwargs:
            values[name] = kwargs[name]
    app = values.get("app_name")
    if not isinstance(app, str) or not app:
        return None
    trigger = str(values.get("trigger") or "schedule")
    if task == TARGET_TASK:
        return f"reconcile {app} → {values.get('cluster_name')} ({trigger})"
    return f"reconcile {app} ({trigger})"


def name_task_message(
    headers: MutableMapping[str, Any], body: Any, sent_event: MutableMapping[str, Any] | None
) -> None:
    """Give a reconcile task message its readable name (Celery ``shadow``), as it is made.

    Done where Celery builds every task message (``workers.app.ReconcilerAMQP``) rather
    than in each caller so that every sender names jobs alike: beat's schedule,
    ``send_task`` from the CLI and the webhook server, the fan-out, and retries (which
    keep the name they were sent with).  The ``task-sent`` event gets the name too: Flower
    takes a task's name from whichever event it hears last, and the sender's event can
    arrive after the worker's.
    """
    name = headers.get("shadow")
    if not name:
        task = headers.get("task")
        # Message protocol 2: the body is (args, kwargs, embed).
        if not (isinstance(task, str) and isinstance(body, (list, tuple)) and len(body) >= 2):
            return
        args, kwargs = body[0], body[1]
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
            return
        name = job_name(task, args, kwargs)
        if name is None:
            return
        headers["shadow"] = name
    if sent_event is not None:
        sent_event["name"] = name


def job_summary(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """What a target task returns to the result backend: the outcome in a few fields.

    The status index's summary (sync, health, revision, drift count, change and hook
    counts, first error, reason) plus the attempt, so Flower's result column reads as
    JSON a person can scan.  Diffs, change lists and hook messages stay in the history.
    """
    summary = TargetStatus.of(outcome).to_dict()
    # What later runs compare is bookkeeping, not something a person reads in Flower.
    for name in ("observed_rv", "render_key", "app_digest", "unchanged_runs", "repeats",
                 "first_started"):
        summary.pop(name, None)
    summary["actions"] = {k: v for k, v in summary["actions"].items() if v}
    error = str(summary.get("error") or "")
    if len(error) > RESULT_ERROR_CHARS:
        summary["error"] = error[: RESULT_ERROR_CHARS - 1] + "…"
    summary["attempt"] = int(outcome.get("attempt") or 1)
    return summary


def skipped(app: str, cluster: str, trigger: str, why: str) -> dict[str, Any]:
    """The result of a target task that did not run (busy, suspended, left the fleet)."""
    return {"application": app, "cluster": cluster, "trigger": trigger, "skipped": why}


def failure_sentence(summary: Mapping[str, Any]) -> str:
    """``guestbook on prod-eu-1: Failed (RenderFailed) at 1a2b3c4d5e6f: <first error>``."""
    where = f"{summary.get('application')} on {summary.get('cluster')}"
    stage = f" ({summary['reason']})" if summary.get("reason") else ""
    revision = summary.get("revision")
    at = f" at {str(revision)[:12]}" if revision else ""
    error = " ".join(str(summary.get("error") or "").split())
    if len(error) > SENTENCE_ERROR_CHARS:
        error = error[: SENTENCE_ERROR_CHARS - 1] + "…"
    sentence = f"{where}: {summary.get('sync') or 'Failed'}{stage}{at}"
    return f"{sentence}: {error}" if error else sentence


class ReconcileFailed(Exception):
    """A reconcile ended Failed; raised after its outcome was recorded.

    Celery marks the task FAILURE and Flower lists it under Failed, with this exception's
    repr, a sentence naming the target and why, in its exception column.  The arguments
    are the sentence and the JSON summary (:func:`job_summary`): JSON-able, so the result
    backend stores them and a client that imported this module rebuilds the exception.
    """

    def __init__(self, message: str, summary: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, dict(summary or {}))
        self.message = message
        self.summary: dict[str, Any] = dict(summary or {})

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> ReconcileFailed:
        """The failure of a run, from its summary."""
        return cls(failure_sentence(summary), summary)

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ReconcileFailed({self.message!r})"


__all__ = [
    "APP_TASK",
    "FLOWER_DEFAULTS",
    "TARGET_TASK",
    "ReconcileFailed",
    "apply_flower_defaults",
    "failure_sentence",
    "format_task",
    "job_name",
    "job_summary",
    "name_task_message",
    "skipped",
]
