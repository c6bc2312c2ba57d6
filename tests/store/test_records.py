"""The status index and histories against a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from reconciler.errors import ConfigError
from reconciler.outcome import Outcome
from reconciler.store.keys import Keys
from reconciler.store.records import Records


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def records(client: redis.Redis, redis_prefix: str) -> Records:
    return Records(client, Keys(redis_prefix))


def outcome(app: str = "web", cluster: str = "prod", **fields: Any) -> Outcome:
    """An outcome as the engine produces it, with ``fields`` replaced."""
    base: dict[str, Any] = {
        "application": app,
        "cluster": cluster,
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "trigger": "schedule",
        "started": "2024-05-01T12:00:00Z",
        "duration": 1.5,
        "sync": "Synced",
        "health": "Healthy",
        "changes": [
            {"object": "Deployment.apps/default/web", "action": "configured", "reason": ""},
            {"object": "Service/default/web", "action": "unchanged", "reason": ""},
            {"object": "ConfigMap/default/old", "action": "pruned", "reason": "left Git"},
        ],
        "drift": [
            {"object": "Deployment.apps/default/web", "paths": ["/spec/replicas"], "diff": ""}
        ],
        "errors": [],
        "hooks": [
            {"object": "Job.batch/default/migrate", "phase": "PreSync", "result": "Succeeded"},
            {"object": "Pod/default/test", "phase": "test", "result": "Skipped"},
        ],
        "retryable": False,
    }
    base.update(fields)
    return Outcome.from_dict(base)


def test_drift_left_by_a_run_that_did_not_sync_is_counted(records: Records) -> None:
    records.record(outcome(sync="OutOfSync"))
    [entry] = records.status()
    assert entry.drift_count == 1


def test_status_entry_summarises_the_outcome(records: Records) -> None:
    records.record(outcome())
    [entry] = records.status()
    assert entry.to_dict() == {
        "application": "web",
        "cluster": "prod",
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "sync": "Synced",
        "health": "Healthy",
        "drift_count": 0,  # a Synced run corrected what it found
        "actions": {
            "created": 0, "configured": 1, "unchanged": 1, "pruned": 1, "replaced": 0,
            "skipped": 0, "failed": 0,
        },
        "started": "2024-05-01T12:00:00Z",
        "finished": "2024-05-01T12:00:01.500Z",
        "duration": 1.5,
        "error": "",
        "reason": "",
        "hooks": {"Succeeded": 1, "Skipped": 1},
        "retryable": False,
        "trigger": "schedule",
        # What a later run compares to skip the cluster read (none: it read the cluster).
        "observed_rv": None,
        "checked": "cluster",
        "render_key": "",
        "app_digest": "",
        "unchanged_runs": 0,
        "repeats": 1,
        "first_started": "2024-05-01T12:00:00Z",
    }  # fmt: skip


def test_quiet_runs_in_a_row_are_one_history_entry_counting_them(records: Records) -> None:
    quiet = {"changes": [{"object": "Service/default/web", "action": "unchanged", "reason": ""}],
             "drift": [], "hooks": []}  # fmt: skip
    records.record(outcome(**quiet, started="2024-05-01T12:00:00Z"))
    records.record(outcome(**quiet, started="2024-05-01T12:00:30Z"))
    stored = records.record(outcome(**quiet, started="2024-05-01T12:01:00Z"))
    assert stored["repeats"] == 3
    [head] = records.history("web", "prod")
    assert (head["repeats"], head["first_started"]) == (3, "2024-05-01T12:00:00Z")
    assert head["started"] == "2024-05-01T12:01:00Z" and head["quiet"] is True
    assert head["changes"] == quiet["changes"] and head["drift"] == []  # lists stay lists
    # A run that did something starts a new entry; the quiet ones after it, another.
    records.record(outcome())
    records.record(outcome(**quiet, started="2024-05-01T12:02:00Z"))
    records.record(outcome(**quiet, revision="f" * 40, started="2024-05-01T12:02:30Z"))
    entries = records.history("web", "prod")
    assert [e.get("repeats", 1) for e in entries] == [1, 1, 1, 3]
    [status] = records.status()
    assert status.started == "2024-05-01T12:02:30Z" and status.repeats == 1


def test_the_watchers_health_changes_only_the_entrys_health(records: Records) -> None:
    records.record(outcome(observed_rv=41, render_key="k", app_digest="d"))
    [before] = records.status()
    records.set_health({("web", "prod"): "Degraded", ("web", "absent"): "Healthy"},
                       at="2024-05-01T12:00:05Z")  # fmt: skip
    [after] = records.status()  # a target without an entry gets none
    assert after.health == "Degraded" and after.health_at == "2024-05-01T12:00:05Z"
    assert replace(after, health=before.health, health_at="") == before
    assert records.entry("web", "prod") == after
    assert records.entry("web", "absent") is None


def test_status_is_upserted_per_target(records: Records) -> None:
    records.record(outcome())
    failure = outcome(
        sync="Failed",
        health="Unknown",
        revision=None,
        trigger="webhook",
        changes=[],
        drift=[],
        errors=[
            {
                "message": "Deployment.apps/default/web: timed out",
                "retryable": True,
                "object": None,
            },
            {"message": "second", "retryable": True, "object": None},
        ],
        retryable=True,
    )
    records.record(failure)
    [entry] = records.status()
    assert entry.sync == "Failed" and entry.revision is None
    assert entry.error == "Deployment.apps/default/web: timed out"
    assert entry.drift_count == 0 and entry.retryable and entry.trigger == "webhook"
    assert sum(entry.actions.values()) == 0
    assert [h["sync"] for h in records.history("web", "prod")] == ["Failed", "Synced"]


def test_history_is_capped_and_newest_first(records: Records) -> None:
    for run in range(105):
        records.record(outcome(duration=float(run)))
    everything = records.history("web", "prod", n=1000)
    assert [h["duration"] for h in everything] == [float(run) for run in range(104, 4, -1)]
    assert len(records.history("web", "prod")) == 20
    assert records.history("web", "prod", n=0) == []
    assert everything[0] == outcome(duration=104.0).to_dict()  # the whole outcome, unchanged


def test_history_limit_is_configurable(client: redis.Redis, redis_prefix: str) -> None:
    records = Records(client, Keys(redis_prefix), history_limit=3)
    for run in range(5):
        records.record(outcome(duration=float(run)))
    assert [h["duration"] for h in records.history("web", "prod")] == [4.0, 3.0, 2.0]


def test_status_filtered_by_app_and_sorted(records: Records) -> None:
    for app, cluster in [("web", "prod-2"), ("web-api", "prod-1"), ("web", "prod-1"), ("db", "a")]:
        records.record(outcome(app, cluster))
    assert [(e.application, e.cluster) for e in records.status()] == [
        ("db", "a"),
        ("web", "prod-1"),
        ("web", "prod-2"),
        ("web-api", "prod-1"),
    ]
    assert [e.cluster for e in records.status("web")] == ["prod-1", "prod-2"]
    assert records.status("nothing") == []


def test_forget_removes_only_that_target(records: Records, client: redis.Redis) -> None:
    records.record(outcome("web", "prod"))
    records.record(outcome("web", "staging"))
    records.forget("web", "prod")
    assert [e.cluster for e in records.status()] == ["staging"]
    assert records.history("web", "prod") == []
    assert not client.exists(records.keys.history("web", "prod"))
    assert len(records.history("web", "staging")) == 1


def test_unreadable_entries_are_skipped(records: Records, client: redis.Redis) -> None:
    records.record(outcome())
    client.hset(records.keys.status_index(), "bad/entry", "{not json")
    client.lpush(records.keys.history("web", "prod"), "[1, 2]")
    assert [e.cluster for e in records.status()] == ["prod"]
    assert len(records.history("web", "prod")) == 1


def test_outcomes_must_name_a_valid_target(records: Records) -> None:
    with pytest.raises(ConfigError, match="application name must be a DNS-1123"):
        records.record(outcome(""))
    with pytest.raises(ConfigError, match="DNS-1123"):
        records.record(outcome("Web"))
    assert records.status() == []


def test_a_decoding_client_works_too(redis_url: str, redis_prefix: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        records = Records(client, Keys(redis_prefix))
        records.record(outcome(started="not a time"))
        [entry] = records.status("web")
        assert entry.finished.endswith("Z")
        assert records.history("web", "prod")[0]["started"] == "not a time"
