"""Faults end to end: a dead worker host, duplicate deliveries, failing clusters.

Real worker processes, real Redis, kubesim over HTTP.  Limits are small (env below) so
each recovery happens within seconds; every wait polls with a deadline.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import datetime
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Stack
from tests.e2e.test_runtime import _slow_app, _started_on_sim1

pytestmark = pytest.mark.e2e

LOCK_TTL = 5.0
HEARTBEAT_TTL = 1.5
#: The visibility timeout stays long (about 25 s): recovery must not come from it.
FAULT_ENV = {
    "RECONCILER_VISIBILITY_TIMEOUT": "20",
    "RECONCILER_TASK_SOFT_LIMIT": "6",
    "RECONCILER_LOCK_TTL": str(LOCK_TTL),
    "RECONCILER_WORKER_HEARTBEAT_TTL": str(HEARTBEAT_TTL),
}


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def _redis(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.redis_url)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _lock_value(stack: Stack, app: str, cluster: str) -> str | None:
    client = _redis(stack)
    try:
        raw = client.get(f"{stack.prefix}lock:{app}:{cluster}")
    finally:
        client.close()
    return raw.decode() if raw else None


def test_whole_worker_killed_mid_forced_sync_converges_within_two_lock_ttls(
    stack: Stack,
) -> None:
    app = unique("host")
    _slow_app(stack, app)
    commit = stack.repo.commit("a slow application")
    survivor = stack.worker(concurrency=1, env=FAULT_ENV)
    doomed = stack.worker(concurrency=1, env=FAULT_ENV)
    # Either worker may take the target: the one whose pool holds its lock is killed.
    waiter = stack.cli_async("sync", app, "--wait", "--timeout", "60", "-o", "json")
    stack.wait_until(lambda: _started_on_sim1(stack, app), timeout=30,
                     what="the reconcile to start on sim-1")  # fmt: skip
    held = stack.wait_until(lambda: _lock_value(stack, app, "sim-1"), timeout=10,
                            what="the target lock")  # fmt: skip
    victim = doomed if f'"w":"{doomed.name}@' in held else survivor
    other = survivor if victim is doomed else doomed
    stack.stop(victim, signal.SIGKILL)  # the whole group: main process and pool
    killed = time.monotonic()
    stack.sim.set_faults("sim-1", latency=0.02)
    assert stack.history(app, "sim-1") == [], "the reconcile finished before the kill"

    out, err = waiter.communicate(timeout=90)
    elapsed = time.monotonic() - killed
    assert waiter.returncode == 0, (out, err, stack.logs())
    outcomes = json.loads(out)
    assert [o["sync"] for o in outcomes] == ["Synced"], outcomes
    assert outcomes[0]["revision"] == commit
    assert elapsed < 2 * LOCK_TTL, f"converged {elapsed:.1f}s after the kill"
    assert other.alive()
    client = _redis(stack)
    try:
        assert client.hlen(f"{stack.prefix}celery:unacked") == 0
    finally:
        client.close()


def test_lock_of_a_dead_holder_is_released_before_its_ttl(stack: Stack) -> None:
    app = unique("dead")
    stack.write_app(app, deployment=False)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="1h"))
    # A lock left by a holder that is gone: a worker whose heartbeat no longer exists.
    holder = json.dumps({"w": "gone@nowhere.0000", "h": "elsewhere", "p": 1, "s": "1"},
                        separators=(",", ":"))  # fmt: skip
    client = _redis(stack)
    try:
        client.set(f"{stack.prefix}lock:{app}:sim-1", f"deadbeef {holder}", px=600_000)
    finally:
        client.close()
    stack.worker(concurrency=1, env=FAULT_ENV)
    begun = time.monotonic()
    outcomes = stack.cli_json("sync", app, "--wait", "--timeout", "30")
    assert [o["sync"] for o in outcomes] == ["Synced"], outcomes
    assert time.monotonic() - begun < 15  # the lock had ten minutes to live
    assert "holder is dead" in "\n".join(p.log.read_text() for p in stack.procs if p.log)


def test_a_delivery_received_twice_applies_once(stack: Stack) -> None:
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from workers.app import FORCED_QUEUE, create_app, settings  # noqa: PLC0415

    app = unique("twice")
    stack.write_app(app, deployment=False)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="1h"))
    sender = create_app()
    sender.conf.update(settings(stack.redis_url, Keys(stack.prefix)))
    task_id = str(uuid.uuid4())
    for _ in range(2):  # the same message twice, as a redelivery would hand it out
        sender.send_task("reconciler.reconcile_target", args=(app, "sim-1", "manual"),
                         task_id=task_id, queue=FORCED_QUEUE)  # fmt: skip
    worker = stack.worker(concurrency=2, env=FAULT_ENV)
    assert worker.log is not None
    log = worker.log

    def both_done() -> bool:
        text = log.read_text(errors="replace")
        return text.count(f"[{task_id}] succeeded") == 2

    stack.wait_until(both_done, timeout=40, what="both deliveries to finish")
    runs = [h for h in stack.history(app, "sim-1") if h.get("task_id") == task_id]
    assert len(runs) == 1, runs
    assert runs[0]["sync"] == "Synced", runs[0]
    assert "already applied" in log.read_text(errors="replace")
    sender.close()


BREAKER_ENV = {
    **FAULT_ENV,
    "RECONCILER_BREAKER_FAILURES": "2",
    "RECONCILER_BREAKER_COOLDOWN": "3",
}


def test_circuit_breaker_opens_on_a_down_cluster_and_closes_when_it_answers(
    stack: Stack,
) -> None:
    app = unique("breaker")
    stack.write_app(app, deployment=False)
    commit = stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-2"]}, interval="1h"))
    stack.sim.set_faults("sim-2", down=True)
    stack.worker(concurrency=2, env=BREAKER_ENV)
    queued = stack.cli_json("sync", app, "--async")
    (task_id,) = [t["task_id"] for t in queued["targets"]]

    def row() -> dict[str, Any]:
        return stack.status(app).get((app, "sim-2")) or {}

    opened = stack.wait_until(lambda: (r := row()).get("circuit") == "open" and r, timeout=30,
                              what="sim-2's breaker to open")  # fmt: skip
    assert opened["circuit_failures"] >= 2, opened
    assert opened["next_retry"], opened
    wide = stack.cli("status", app, "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    assert "CIRCUIT" in wide.stdout and "open" in wide.stdout, wide.stdout
    last = stack.history(app, "sim-2")[0]
    assert last["circuit"]["state"] == "open", last
    assert last["circuit"]["next_retry"], last
    # While open, the cluster's target is deferred: no request reaches sim-2 from the
    # run that opened the breaker until its next probe (which may come any time after).
    deferred = stack.wait_until(
        lambda: "circuit open" in "\n".join(p.log.read_text() for p in stack.procs if p.log),
        timeout=20, what="the target to be deferred by the open breaker")  # fmt: skip
    assert deferred
    opening = [h for h in stack.history(app, "sim-2") if h["circuit"]["state"] == "open"][-1]
    # Outcome times have millisecond resolution: the run may have begun up to 1 ms after
    # its recorded start, so its last request may end that much after start + duration.
    closed_from = _epoch(opening["started"]) + float(opening.get("duration") or 0.0) + 0.005
    probe_from = _epoch(opening["circuit"]["next_retry"])
    during = [r for r in stack.sim.request_log("sim-2")
              if closed_from < float(r["start"]) < probe_from]  # fmt: skip
    assert during == [], (opening, during)

    stack.sim.set_faults("sim-2", down=False)
    rows = stack.wait_synced([(app, "sim-2")], commit=commit, timeout=40, health=None)
    assert rows[(app, "sim-2")].get("circuit") is None, rows  # closed again
    runs = [h for h in stack.history(app, "sim-2") if h.get("task_id") == task_id]
    assert runs[0]["sync"] == "Synced" and runs[0]["circuit"]["state"] == "closed", runs[0]


def test_a_cluster_failing_half_its_requests_opens_its_breaker_and_spares_the_others(
    stack: Stack,
) -> None:
    apps = [unique("flaky") for _ in range(4)]
    for app in apps:
        stack.write_app(app, deployment=False)
    commit = stack.repo.commit("four applications")
    stack.write_fleet(*(stack.app(a, interval="1h") for a in apps))
    stack.sim.set_faults("sim-2", errorRate=0.5, errorCode=503)
    # Ten consecutive failures would be rare on this cluster: the failing share opens it.
    env = {**BREAKER_ENV, "RECONCILER_BREAKER_FAILURES": "10", "RECONCILER_BREAKER_WINDOW": "6",
           "RECONCILER_BREAKER_MIN_RUNS": "4", "RECONCILER_CLUSTER_CONCURRENCY": "1"}  # fmt: skip
    stack.worker(concurrency=2, env=env)
    for app in apps:
        stack.cli_json("sync", app, "--async")
    healthy = [(a, c) for a in apps for c in ("sim-1", "sim-3")]
    rows = stack.wait_synced(healthy, commit=commit, timeout=30, health=None)
    for app, cluster in healthy:
        assert rows[(app, cluster)].get("circuit") is None, rows[(app, cluster)]

    def flaky_open() -> dict[str, Any] | None:
        row = stack.status(apps[0]).get((apps[0], "sim-2")) or {}
        return row if row.get("circuit") == "open" else None

    opened = stack.wait_until(flaky_open, timeout=30, what="sim-2's breaker to open")
    assert opened["next_retry"], opened
    # Runs did get through in between: it was the share, not a run of failures, that opened it.
    runs = [h for a in apps for h in stack.history(a, "sim-2")]
    failed = [r for r in runs if r["sync"] == "Failed"]
    assert failed and all("503" in str(r["errors"]) for r in failed), failed
    worst = max(int(r["circuit"]["failures"]) for r in runs if r.get("circuit"))
    assert worst < 10, runs

    stack.sim.set_faults("sim-2", errorRate=0.0)
    outcomes = stack.cli_json("sync", apps[0], "--cluster", "sim-2", "--wait", "--timeout", "40")
    assert [o["sync"] for o in outcomes] == ["Synced"], outcomes
    assert outcomes[0]["circuit"]["state"] == "closed", outcomes[0]


def test_a_slow_cluster_does_not_hold_every_worker_slot(stack: Stack) -> None:
    slow_a, slow_b, healthy = unique("slowa"), unique("slowb"), unique("fast")
    for app in (slow_a, slow_b, healthy):
        stack.write_app(app)
    commit = stack.repo.commit("three applications")
    stack.write_fleet(*(stack.app(a, interval="1h") for a in (slow_a, slow_b, healthy)))
    stack.worker(concurrency=2, env={**FAULT_ENV, "RECONCILER_TASK_SOFT_LIMIT": "60",
                                     "RECONCILER_CLUSTER_CONCURRENCY": "1"})  # fmt: skip
    stack.sim.set_faults("sim-1", latency=1.0)
    stack.sim.reset_requests("sim-1")
    for app in (slow_a, slow_b):  # two slow targets: without a limit, both slots
        stack.cli_json("sync", app, "--cluster", "sim-1", "--async")
    stack.wait_until(lambda: any(slow_a in str(r["path"]) or slow_b in str(r["path"])
                                 for r in stack.sim.request_log("sim-1")),
                     timeout=30, what="a slow target to start")  # fmt: skip
    begun = time.monotonic()
    outcomes = stack.cli_json("sync", healthy, "--cluster", "sim-2", "--cluster", "sim-3",
                              "--wait", "--timeout", "30")  # fmt: skip
    assert {o["cluster"]: o["sync"] for o in outcomes} == {"sim-2": "Synced", "sim-3": "Synced"}
    assert {o["revision"] for o in outcomes} == {commit}
    assert time.monotonic() - begun < 10
    # At most one reconcile of sim-1 at a time: the two slow targets never overlapped.
    log = stack.sim.request_log("sim-1")
    spans = {}
    for app in (slow_a, slow_b):
        mine = [r for r in log if app in str(r["path"])]
        if mine:
            spans[app] = (min(float(r["start"]) for r in mine), max(float(r["end"]) for r in mine))
    if len(spans) == 2:
        (a0, a1), (b0, b1) = spans.values()
        assert a1 <= b0 or b1 <= a0, spans


def _started(stack: Stack) -> list[dict[str, Any]]:
    client = _redis(stack)
    try:
        found = []
        for key in client.scan_iter(match=f"{stack.prefix}celery:celery-task-meta-*"):
            meta = json.loads(client.get(key) or "{}")
            if meta.get("status") == "STARTED":
                found.append(meta)
        return found
    finally:
        client.close()
