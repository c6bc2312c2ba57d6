"""Sync windows in a running stack: a deny window defers scheduled syncs and lets a forced
one through; a run an allow window stopped is applied when the window opens."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from reconciler.store.deferred import Deferrals
from reconciler.store.keys import Keys
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

#: Open at every minute for two: always open.
ALWAYS_DENY = {"kind": "deny", "schedule": "* * * * *", "duration": "2m", "manualSync": True}
#: Open for the first 20 seconds of every minute.
EARLY_IN_THE_MINUTE = {"kind": "allow", "schedule": "* * * * *", "duration": "20s"}


def window_skips(stack: Stack, app: str) -> list[dict[str, Any]]:
    """Results of the application's target runs a sync window stopped."""
    found = []
    with redis.Redis.from_url(stack.redis_url) as client:
        for key in client.scan_iter(match=f"{stack.prefix}celery:celery-task-meta-*", count=500):
            raw = client.get(key)
            result = (json.loads(raw) if raw else {}).get("result")
            if (isinstance(result, dict) and result.get("application") == app
                    and "sync window" in str(result.get("skipped", ""))):  # fmt: skip
                found.append(result)
    return found


def deferred(stack: Stack) -> dict[tuple[str, str], Any]:
    with redis.Redis.from_url(stack.redis_url) as client:
        return Deferrals(client, Keys(stack.prefix)).all()


def started_at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["started"].replace("Z", "+00:00"))


def test_a_deny_window_defers_scheduled_syncs_and_lets_a_forced_one_through(stack: Stack) -> None:
    app = f"win-{uuid.uuid4().hex[:6]}"
    stack.write_app(app, "1")
    first = stack.repo.commit("release 1")
    entry = {**stack.app(app, clusters={"names": ["sim-1"]}, interval="5s"),
             "windows": [ALWAYS_DENY]}  # fmt: skip
    stack.write_fleet(entry)
    procs = [stack.worker(concurrency=2), stack.beat()]

    # Scheduled runs are stopped: nothing is applied.
    skips = stack.wait_until(lambda: window_skips(stack, app) or None, timeout=60,
                             what="a scheduled run stopped by the window", procs=procs)  # fmt: skip
    assert skips[0]["trigger"] == "schedule" and "deny '* * * * *'" in skips[0]["skipped"]
    assert stack.configmap("sim-1", app) is None
    row = stack.status().get((app, "sim-1"))
    assert row is None  # no run recorded

    # A forced sync goes through: the window says manualSync.
    forced = stack.cli("sync", app, "--timeout", "90")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert stack.configmap("sim-1", app) == {"key": "1"}
    status = stack.status(app)[(app, "sim-1")]
    assert status["revision"] == first and status["window"]["allowed"] is False
    assert status["window"]["next"] is None  # this window never closes
    wide = stack.cli("status", app, "-o", "wide")
    assert "closed until never" in wide.stdout, wide.stdout

    # A new commit waits for the window: polls keep being stopped.
    stack.write_app(app, "2")
    stack.repo.commit("release 2")
    seen = len(window_skips(stack, app))
    stack.wait_until(lambda: len(window_skips(stack, app)) >= seen + 2, timeout=60,
                     what="more polls stopped by the window", procs=procs)  # fmt: skip
    assert stack.configmap("sim-1", app) == {"key": "1"}

    # Without manualSync, a forced sync is stopped too, and says why (polled: the workers
    # take the new fleet file within a second or two).
    stack.write_fleet({**entry, "windows": [{**ALWAYS_DENY, "manualSync": False}]})
    def refused_sync() -> Any:
        answer = stack.cli("sync", app, "--timeout", "60")
        return answer if answer.returncode == 1 else None

    refused = stack.wait_until(refused_sync, timeout=60,
                               what="a forced sync refused by the window", procs=procs)  # fmt: skip
    assert "sync window" in refused.stderr, refused.stderr
    assert stack.configmap("sim-1", app) == {"key": "1"}


def test_a_run_stopped_outside_an_allow_window_is_applied_when_it_opens(stack: Stack) -> None:
    app = f"open-{uuid.uuid4().hex[:6]}"
    stack.write_app(app, "1")
    stack.repo.commit("release 1")
    stack.write_fleet({**stack.app(app, clusters={"names": ["sim-2"]}, interval="5s"),
                       "windows": [EARLY_IN_THE_MINUTE]})  # fmt: skip
    # Start outside the window (seconds 25 to 50 of a minute), so the first run is stopped.
    stack.wait_until(lambda: 25 <= datetime.now(UTC).second < 50, timeout=70,
                     what="a moment outside the window")  # fmt: skip
    procs = [stack.worker(concurrency=2), stack.beat()]
    held = stack.wait_until(lambda: deferred(stack).get((app, "sim-2")), timeout=60,
                            what="the stopped run deferred", procs=procs)  # fmt: skip
    opens = datetime.fromtimestamp(held.at, UTC)
    assert opens.second == 0 and opens > datetime.now(UTC)
    assert stack.configmap("sim-2", app) is None
    applied = stack.wait_until(lambda: stack.history(app, "sim-2") or None, timeout=90,
                               what="the run applied when the window opened", procs=procs)
    first_run = applied[-1]
    assert first_run["sync"] == "Synced"
    assert started_at(first_run) >= opens  # not before the window opened
    assert (started_at(first_run) - opens).total_seconds() < 20  # and while it was open
    assert stack.configmap("sim-2", app) == {"key": "1"}
