"""``reconciler rollback`` in a running stack: an earlier revision applied, kept through
the next polls until ``resume``, and shown as rolled back by ``status``."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

TARGETS = ("sim-1", "sim-2")


def skipped_polls(stack: Stack, app: str) -> int:
    """Fan-outs of ``app`` (its scheduled polls) that left a target alone as rolled back."""
    found = 0
    with redis.Redis.from_url(stack.redis_url) as client:
        for key in client.scan_iter(match=f"{stack.prefix}celery:celery-task-meta-*", count=500):
            raw = client.get(key)
            meta: dict[str, Any] = json.loads(raw) if raw else {}
            result = meta.get("result")
            if not isinstance(result, dict) or result.get("application") != app:
                continue
            if result.get("trigger") == "schedule" and any(
                "rolled back" in str(t.get("skipped", "")) for t in result.get("targets", [])
            ):
                found += 1
    return found


def test_a_rollback_survives_the_next_polls_until_resume(stack: Stack) -> None:
    app = f"back-{uuid.uuid4().hex[:6]}"
    stack.write_app(app, "1")
    first = stack.repo.commit("release 1")
    stack.write_fleet(stack.app(app, clusters={"names": list(TARGETS)}, interval="5s"))
    worker = stack.worker(concurrency=2)
    procs = [worker, stack.beat()]
    targets = [(app, c) for c in TARGETS]
    stack.wait_synced(targets, commit=first, timeout=60)
    stack.write_app(app, "2")
    second = stack.repo.commit("release 2")
    stack.wait_synced(targets, commit=second, timeout=60)

    # Not that much history: bad input, nothing done.
    refused = stack.cli("rollback", app, "--steps", "5")
    assert refused.returncode == 2 and "earlier revision" in refused.stderr, refused.stderr

    done = stack.cli("rollback", app, "--steps", "1", "--reason", "release 2 is broken")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {stack.configmap(c, app)["key"] for c in TARGETS} == {"1"}  # type: ignore[index]
    rows = stack.status(app)
    for cluster in TARGETS:
        row = rows[(app, cluster)]
        assert row["revision"] == first and row["sync"] == "Synced"
        assert row["rolled_back"]["revision"] == first
        assert row["rolled_back"]["wanted"] == second
        assert row["rolled_back"]["reason"] == "release 2 is broken"
    table = stack.cli("status", app, "-o", "wide")
    assert "Synced (rolled back)" in table.stdout and second[:12] in table.stdout
    # The history says why the run happened and who asked.
    cause = stack.history(app, "sim-1")[0]["cause"]
    assert cause["rollback"] == {"to": first} and cause["reason"] == "release 2 is broken"
    assert cause["by"].count("@") == 1
    why = stack.cli("history", app, "--cluster", "sim-1", "-o", "wide")
    assert f"rollback to {first[:12]}; by {cause['by']}: release 2 is broken" in why.stdout

    # The next poll comes and leaves it alone: still on the first release.
    stack.wait_until(lambda: skipped_polls(stack, app) >= 1, timeout=60,
                     what="a poll after the rollback", procs=procs)  # fmt: skip
    assert {stack.configmap(c, app)["key"] for c in TARGETS} == {"1"}  # type: ignore[index]
    assert all(r["revision"] == first for r in stack.status(app).values())

    # Resume: the next poll applies Git's revision again.
    resumed = stack.cli("resume", app)
    assert resumed.returncode == 0 and "rollback released" in resumed.stdout, resumed.stdout
    stack.wait_synced(targets, commit=second, timeout=60)
    assert {stack.configmap(c, app)["key"] for c in TARGETS} == {"2"}  # type: ignore[index]
    assert all("rolled_back" not in r for r in stack.status(app).values())
