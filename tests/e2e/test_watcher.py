"""The watcher in a running stack: drift healed at once, watches that break, hand-over.

Real worker, watcher (and beat where the schedule matters) processes against kubesim.
Applications' intervals are an hour where the watcher is under test, so only a watch can
explain a heal; nothing here measures how fast (``bench/`` does).
"""

from __future__ import annotations

import json
import signal
import uuid
from typing import Any

import pytest
import redis

from reconciler.store.keys import Keys
from reconciler.store.live import ClusterLeases, WatchStreams
from tests.e2e.conftest import CLUSTERS, Proc, Stack

pytestmark = pytest.mark.e2e

LEASE = "3"


def replicas(stack: Stack, cluster: str, namespace: str) -> int:
    out = stack.kubectl(cluster, "-n", namespace, "get", "deployment", "web", "-o", "json")
    return int(json.loads(out)["spec"]["replicas"])


def streams_live(stack: Stack, clusters: tuple[str, ...] = CLUSTERS) -> dict[str, str] | None:
    """The holder of each cluster's watch, once every one of them is live."""
    with redis.Redis.from_url(stack.redis_url) as client:
        streams = WatchStreams(client, Keys(stack.prefix), ttl=1)
        found = {name: streams.get(name) for name in clusters}
    if any(stream is None for stream in found.values()):
        return None
    return {name: stream.holder for name, stream in found.items() if stream is not None}


def lease_holders(stack: Stack) -> dict[str, str | None]:
    with redis.Redis.from_url(stack.redis_url) as client:
        return ClusterLeases(client, Keys(stack.prefix), ttl=1).holders(CLUSTERS)


def synced_once(stack: Stack, app: str) -> None:
    done = stack.cli("sync", app, "--timeout", "90")
    assert done.returncode == 0, done.stdout + done.stderr


def scale_and_wait_healed(stack: Stack, app: str, cluster: str, procs: list[Proc]) -> None:
    stack.kubectl(cluster, "-n", app, "scale", "deployment", "web", "--replicas=4")
    stack.wait_until(lambda: replicas(stack, cluster, app) == 1, timeout=30,
                     what=f"the watcher to heal {app} on {cluster}", procs=procs)  # fmt: skip


def watch_runs(stack: Stack, app: str, cluster: str) -> list[dict[str, Any]]:
    return [h for h in stack.history(app, cluster) if h.get("trigger") == "watch"]


def test_drift_is_healed_at_once_and_watches_survive_a_cut_and_410(stack: Stack) -> None:
    app = f"heal-{uuid.uuid4().hex[:6]}"
    stack.write_app(app)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="1h"))
    worker = stack.worker(concurrency=2)
    watcher = stack.start("watcher", "watcher", env={"RECONCILER_WATCH_LEASE_TTL": LEASE})
    procs = [worker, watcher]
    synced_once(stack, app)
    stack.wait_until(lambda: streams_live(stack, ("sim-1",)), timeout=30,
                     what="the watch of sim-1", procs=procs)  # fmt: skip

    scale_and_wait_healed(stack, app, "sim-1", procs)
    healed = watch_runs(stack, app, "sim-1")
    assert healed, stack.history(app, "sim-1")
    assert healed[0]["sync"] == "Synced"
    assert any(c["action"] == "configured" for c in healed[0]["changes"])
    # Why it ran: the objects that had drifted.
    assert healed[0]["cause"]["objects"] == [f"Deployment.apps/{app}/web"]

    # Every open watch ends, as when the API server restarts: resumed from its version.
    assert stack.sim.call(lambda: stack.sim.cluster("sim-1").cut_watches()) >= 2
    scale_and_wait_healed(stack, app, "sim-1", procs)
    # Again, with the history compacted: the resume gets 410 Gone and lists again.
    stack.sim.call(lambda: stack.sim.cluster("sim-1").cut_watches(compact=True))
    scale_and_wait_healed(stack, app, "sim-1", procs)
    # A deleted object comes back too.
    stack.kubectl("sim-1", "-n", app, "delete", "configmap", "cfg")
    stack.wait_until(lambda: stack.configmap("sim-1", app) is not None, timeout=30,
                     what="the deleted ConfigMap back", procs=procs)  # fmt: skip
    assert len(watch_runs(stack, app, "sim-1")) >= 4
    assert "Traceback" not in (watcher.log.read_text() if watcher.log else "")


def test_without_self_heal_drift_is_reported_not_undone(stack: Stack) -> None:
    app = f"report-{uuid.uuid4().hex[:6]}"
    stack.write_app(app)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-2"]}, interval="1h",
                                selfHeal=False))  # fmt: skip
    worker = stack.worker(concurrency=2)
    watcher = stack.start("watcher", "watcher", env={"RECONCILER_WATCH_LEASE_TTL": LEASE})
    synced_once(stack, app)
    stack.wait_until(lambda: streams_live(stack, ("sim-2",)), timeout=30,
                     what="the watch of sim-2", procs=[worker, watcher])  # fmt: skip
    stack.kubectl("sim-2", "-n", app, "scale", "deployment", "web", "--replicas=3")
    def reported() -> dict[str, Any] | None:
        row = stack.status(app).get((app, "sim-2"))
        return row if row is not None and row["sync"] == "OutOfSync" else None

    row = stack.wait_until(reported, timeout=30, what="the drift reported",
                           procs=[worker, watcher])  # fmt: skip
    assert row["trigger"] == "watch"
    assert replicas(stack, "sim-2", app) == 3  # reported, left as it is


def test_a_killed_watchers_clusters_are_taken_over(stack: Stack) -> None:
    app = f"handover-{uuid.uuid4().hex[:6]}"
    stack.write_app(app)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, interval="1h"))
    worker = stack.worker(concurrency=2)
    env = {"RECONCILER_WATCH_LEASE_TTL": LEASE}
    first = stack.start("watcher", "watcher", env=env)
    synced_once(stack, app)
    stack.wait_until(lambda: streams_live(stack), timeout=30, what="three watches",
                     procs=[first])  # fmt: skip
    second = stack.start("watcher", "watcher", env=env)
    procs = [worker, first, second]

    def shared() -> dict[str, str | None] | None:
        holders = lease_holders(stack)
        return holders if None not in holders.values() and len(set(holders.values())) == 2 else None

    split = stack.wait_until(shared, timeout=30, what="the clusters shared by two watchers",
                             procs=procs)  # fmt: skip
    stack.stop(first, signal.SIGKILL)
    survivor = {h for h in split.values() if h is not None}
    stack.wait_until(lambda: len(set(lease_holders(stack).values())) == 1
                     and None not in lease_holders(stack).values()
                     and set(lease_holders(stack).values()) < survivor,
                     timeout=30, what="every cluster taken over", procs=procs)  # fmt: skip
    stack.wait_until(lambda: streams_live(stack), timeout=30, what="the watches live again",
                     procs=procs)  # fmt: skip
    for cluster in CLUSTERS:
        scale_and_wait_healed(stack, app, cluster, procs)


def test_an_unchanged_scheduled_run_reads_nothing_and_is_recorded(stack: Stack) -> None:
    app = f"quiet-{uuid.uuid4().hex[:6]}"
    stack.write_app(app)
    commit = stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-3"]}, interval="5s"))
    env = {"RECONCILER_WATCH_LEASE_TTL": LEASE, "RECONCILER_FULL_COMPARE_EVERY": "1000"}
    worker = stack.worker(concurrency=2, env=env)
    watcher = stack.start("watcher", "watcher", env=env)
    beat = stack.beat()
    procs = [worker, watcher, beat]
    stack.wait_synced([(app, "sim-3")], commit=commit, timeout=60)
    stack.wait_until(lambda: streams_live(stack, ("sim-3",)), timeout=30,
                     what="the watch of sim-3", procs=procs)  # fmt: skip

    def quiet_runs() -> list[dict[str, Any]]:
        return [h for h in stack.history(app, "sim-3")
                if h.get("checked") == "watch" and h.get("trigger") == "schedule"]  # fmt: skip

    def runs() -> int:  # quiet runs in a row are one history entry that counts them
        return sum(int(h.get("repeats") or 1) for h in quiet_runs())

    stack.wait_until(quiet_runs, timeout=60, what="an unchanged run", procs=procs)
    stack.sim.reset_requests("sim-3")
    count = runs()
    stack.wait_until(lambda: runs() >= count + 2, timeout=60,
                     what="two more unchanged runs", procs=procs)  # fmt: skip
    assert len(quiet_runs()) == 1  # one entry, however many quiet runs
    quiet = quiet_runs()[0]
    assert quiet["sync"] == "Synced" and quiet["revision"] == commit
    assert quiet["health"] == "Healthy" and quiet["duration"] == 0.0
    made = stack.sim.requests("sim-3")
    # Only watches were open meanwhile: no list, no read, no write.
    assert {verb for verb, _resource in made} <= {"watch"}, made
    # A change to the live state ends the quiet runs: the next one reads and heals.
    scale_and_wait_healed(stack, app, "sim-3", procs)
