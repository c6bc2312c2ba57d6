"""How reconcile jobs read in Flower: names, summaries, failures (``workers.flower``)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from workers.app import app
from workers.flower import (
    ReconcileFailed,
    format_task,
    job_name,
    job_summary,
    name_task_message,
)

OUTCOME: dict[str, Any] = {
    "application": "guestbook", "cluster": "prod-eu-1", "trigger": "schedule",
    "started": "2026-11-26T04:30:10.123Z", "revision": "1a2b3c4d5e6f7a8b9c0d", "duration": 1.5,
    "sync": "Failed", "health": "Unknown", "reason": "RenderFailed",
    "changes": [{"object": "ConfigMap/guestbook/cfg", "action": "unchanged", "reason": ""}],
    "drift": [{"object": "ConfigMap/guestbook/cfg", "kind": "changed", "paths": ["data"],
               "diff": "--- live\n+++ git\n-a\n+b\n"}],
    "errors": [{"message": "guestbook/web.yaml:3: did not find expected ','", "retryable": False}],
    "hooks": [{"object": "Job/guestbook/migrate", "phase": "PreSync", "result": "Failed",
               "message": "BackoffLimitExceeded"}],
    "attempt": 2,
}  # fmt: skip


@pytest.mark.parametrize(
    ("task", "args", "kwargs", "name"),
    [
        ("reconciler.reconcile_target", ["guestbook", "prod-eu-1", "schedule"], {},
         "reconcile guestbook → prod-eu-1 (schedule)"),
        ("reconciler.reconcile_target", ["guestbook", "prod-eu-1"], {"revision": "abc"},
         "reconcile guestbook → prod-eu-1 (schedule)"),
        ("reconciler.reconcile_app", ["guestbook", "webhook"], {}, "reconcile guestbook (webhook)"),
        ("reconciler.reconcile_app", ["guestbook"], {"trigger": "manual"},
         "reconcile guestbook (manual)"),
        ("reconciler.something_else", ["guestbook"], {}, None),
        ("reconciler.reconcile_app", [], {}, None),
    ],
)  # fmt: skip
def test_job_names(task: str, args: list[Any], kwargs: dict[str, Any], name: str | None) -> None:
    assert job_name(task, args, kwargs) == name


def test_every_message_is_named_and_its_sent_event_too() -> None:
    headers: dict[str, Any] = {"task": "reconciler.reconcile_target", "shadow": None}
    sent: dict[str, Any] = {"name": "reconciler.reconcile_target"}
    name_task_message(headers, (["web", "prod", "manual"], {}, {}), sent)
    assert headers["shadow"] == sent["name"] == "reconcile web → prod (manual)"
    # A retry keeps the name it was sent with.
    kept: dict[str, Any] = {"task": "reconciler.reconcile_target", "shadow": "given"}
    name_task_message(kept, (["other", "x"], {}, {}), None)
    assert kept["shadow"] == "given"


def test_messages_the_app_builds_carry_the_name() -> None:
    message = app.amqp.as_task_v2("id-1", "reconciler.reconcile_target",
                                  args=("web", "prod", "webhook"), kwargs={},
                                  create_sent_event=True)  # fmt: skip
    assert message.headers["shadow"] == "reconcile web → prod (webhook)"
    assert message.sent_event["name"] == "reconcile web → prod (webhook)"


def test_the_summary_is_small_json_without_diffs() -> None:
    summary = job_summary(OUTCOME)
    assert json.loads(json.dumps(summary)) == summary
    assert summary["sync"] == "Failed" and summary["reason"] == "RenderFailed"
    assert summary["drift_count"] == 1 and summary["hooks"] == {"Failed": 1}
    assert summary["actions"] == {"unchanged": 1}
    assert summary["attempt"] == 2
    assert "diff" not in json.dumps(summary) and "BackoffLimitExceeded" not in json.dumps(summary)


def test_a_failure_reads_as_a_sentence_and_survives_the_result_backend() -> None:
    failure = ReconcileFailed.of(job_summary(OUTCOME))
    assert str(failure) == ("guestbook on prod-eu-1: Failed (RenderFailed) at 1a2b3c4d5e6f: "
                            "guestbook/web.yaml:3: did not find expected ','")  # fmt: skip
    assert repr(failure) == f"ReconcileFailed({str(failure)!r})"
    backend = app.backend
    stored = json.loads(json.dumps(backend.prepare_exception(failure, "json")))
    again = backend.exception_to_python(stored)
    assert isinstance(again, ReconcileFailed)
    assert str(again) == str(failure) and again.summary == failure.summary


def test_flower_shows_a_reconcile_result_as_json() -> None:
    task = SimpleNamespace(name="reconcile web → prod (manual)", result="{'sync': 'Synced'}")
    assert format_task(task).result == '{"sync": "Synced"}'
    cut = SimpleNamespace(name="reconcile web → prod (manual)", result="{'sync': 'Syn...")
    assert format_task(cut).result == "{'sync': 'Syn..."
    other = SimpleNamespace(name="celery.backend_cleanup", result="{'a': 1}")
    assert format_task(other).result == "{'a': 1}"
