"""Beat fail-over, live fleet changes, suspend/resume, forced-sync dedupe, and `up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import CLUSTERS, Stack, free_port, tail

pytestmark = pytest.mark.e2e


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def scheduled_runs(stack: Stack, app: str, cluster: str = "sim-1") -> list[dict[str, object]]:
    return [h for h in stack.history(app, cluster) if h.get("trigger") == "schedule"]


def test_standby_beat_takes_over_when_the_first_dies(stack: Stack) -> None:
    app = unique("beat")
    stack.write_app(app, deployment=False)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="5s"))
    fast_lock = {"RECONCILER_BEAT_LOCK_TIMEOUT": "3"}
    first = stack.start("beat", "beat", env=fast_lock)
    assert first.log is not None
    stack.wait_until(lambda: "Acquired lock" in tail(first.log, 200), timeout=30,
                     what="the first beat to take the lock", procs=[first])  # fmt: skip
    second = stack.start("beat", "beat", env=fast_lock)
    assert second.log is not None
    stack.worker(concurrency=1)
    stack.wait_until(lambda: len(scheduled_runs(stack, app)) >= 1, timeout=30,
                     what="a scheduled run")  # fmt: skip
    # Only one beat schedules: the standby is still waiting for the lock.
    assert "Acquired lock" not in tail(second.log, 200)
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = time.time()
    stack.wait_until(lambda: "Acquired lock" in tail(second.log, 200), timeout=30,
                     what="the standby beat to take over", procs=[second])  # fmt: skip

    def ran_after_kill() -> bool:
        return any(
            _epoch(str(h.get("started"))) > killed_at + 0.5 for h in scheduled_runs(stack, app)
        )

    stack.wait_until(ran_after_kill, timeout=30, what="a scheduled run after the fail-over")


def test_fleet_changes_reach_the_schedule_without_restart(stack: Stack) -> None:
    first, added = unique("keep"), unique("added")
    for app in (first, added):
        stack.write_app(app, deployment=False)
    commit = stack.repo.commit("two applications")
    one = {"names": ["sim-1"]}
    stack.write_fleet(stack.app(first, clusters=one, interval="5s"))
    stack.beat()
    stack.worker(concurrency=2)
    stack.wait_synced([(first, "sim-1")], commit=commit, timeout=30, health=None)
    # A new application in the fleet file gets its schedule from the running beat.
    stack.write_fleet(stack.app(first, clusters=one, interval="5s"),
                      stack.app(added, clusters=one, interval="5s"))  # fmt: skip
    rows = stack.wait_synced([(added, "sim-1")], commit=commit, timeout=30, health=None)
    assert rows[(added, "sim-1")]["trigger"] == "schedule"
    # A removed one stops being scheduled, and its status and history are forgotten.
    stack.write_fleet(stack.app(added, clusters=one, interval="5s"))
    stack.wait_until(lambda: (first, "sim-1") not in stack.status(), timeout=30,
                     what=f"{first} to leave the status")  # fmt: skip
    gone_at = time.time()
    stack.wait_until(lambda: time.time() > gone_at + 11, timeout=15, what="two intervals")
    assert scheduled_runs(stack, first) == []  # no run recorded since
    assert (added, "sim-1") in stack.status()


def test_suspend_stops_scheduled_runs_and_resume_restarts_them(stack: Stack) -> None:
    app = unique("pause")
    stack.write_app(app, deployment=False)
    commit = stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="5s"))
    stack.beat()
    stack.worker(concurrency=1)
    stack.wait_synced([(app, "sim-1")], commit=commit, timeout=30, health=None)
    done = stack.cli("suspend", app)
    assert done.returncode == 0, done.stderr
    suspended_at = time.time()
    row = stack.status(app)[(app, "sim-1")]
    assert row["suspended"] is True
    stack.wait_until(lambda: time.time() > suspended_at + 11, timeout=15, what="two intervals")
    late = [r for r in scheduled_runs(stack, app) if _epoch(str(r["started"])) > suspended_at + 1]
    assert late == [], late
    # A forced sync still runs while suspended.
    forced = stack.cli("sync", app, "--wait", "--timeout", "30", "-o", "json")
    assert forced.returncode == 0, forced.stderr
    assert stack.cli("resume", app).returncode == 0
    resumed_at = time.time()
    stack.wait_until(
        lambda: any(_epoch(str(r["started"])) > resumed_at for r in scheduled_runs(stack, app)),
        timeout=20, what="scheduled runs after resume",
    )  # fmt: skip
    assert stack.status(app)[(app, "sim-1")]["suspended"] is False


def test_a_waiting_forced_sync_is_joined_not_queued_twice(stack: Stack) -> None:
    """Targets are routed by their ``env`` label; while no worker serves ``prod`` yet, the
    forced sync of sim-1 waits in its queue, and asking again joins it."""
    app = unique("dedupe")
    stack.write_app(app, deployment=False)
    commit = stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="1h"))
    routed = {"RECONCILER_ROUTE_LABEL": "env"}
    stack.worker(concurrency=1, env=routed)  # shared queues only: fans out, never reconciles
    first = stack.cli_json("sync", app, "--async")
    second = stack.cli_json("sync", app, "--async")
    assert first["targets"][0]["queued"] is True
    assert second["targets"][0]["queued"] is False
    assert second["targets"][0]["task_id"] == first["targets"][0]["task_id"]
    assert stack.history(app, "sim-1") == []  # nothing ran: it waits for a prod worker
    # A worker near the prod clusters takes it: exactly one forced run.
    stack.start("prod-worker", "worker", "--route", "prod", "--concurrency", "1",
                env=routed)  # fmt: skip
    stack.wait_synced([(app, "sim-1")], commit=commit, timeout=40, health=None)
    manual = [h for h in stack.history(app, "sim-1") if h.get("trigger") == "manual"]
    assert len(manual) == 1, manual


def test_flower_refuses_to_start_without_credentials(stack: Stack) -> None:
    done = stack.cli("flower", "--port", str(free_port()), timeout=30)
    assert done.returncode == 2
    assert "FLOWER_BASIC_AUTH" in done.stderr


def test_up_demo_runs_the_whole_stack_until_synced(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.env, "RECONCILER_CONFIG": ""}
    env.pop("KUBECONFIG", None)
    workdir = tmp_path / "up"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "up", "--demo", "--dir", str(workdir),
         "--until-synced", "150", "--no-flower", "--webhook-port", str(free_port())],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=200)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output + _logs(workdir)
    assert "every target is Synced" in output
    assert "redis" in output and "webhook" in output
    apps = ("guestbook", "podinfo", "platform")
    lines = [line.split() for line in output.splitlines() if line.startswith(apps)]
    assert {(row[0], row[1]) for row in lines} >= {(a, c) for a in ("guestbook", "podinfo")
                                                    for c in CLUSTERS}  # fmt: skip
    # Every child is gone: nothing of the stack outlives `up`.
    assert _processes_of(workdir) == []


def _processes_of(workdir: Path) -> list[str]:
    """Live processes started for the stack in ``workdir`` (by their fleet file)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            environ = process.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if environ.get("RECONCILER_CONFIG", "").startswith(str(workdir)):
            found.append(" ".join(process.info["cmdline"] or []))
    return found


def _logs(workdir: Path) -> str:
    logs = workdir / "logs"
    if not logs.exists():
        return ""
    return "".join(f"\n--- {p.name}\n{tail(p, 30)}" for p in sorted(logs.glob("*.log")))


def _epoch(value: str) -> float:
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0


def test_up_stops_every_child_on_sigterm(stack: Stack, tmp_path: Path) -> None:
    env = {**stack.env, "RECONCILER_CONFIG": ""}
    env.pop("KUBECONFIG", None)
    workdir = tmp_path / "up"
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", "--demo", "--dir", str(workdir),
             "--no-flower", "--webhook-port", str(free_port())],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
    try:
        stack.wait_until(lambda: "every target" in log.read_text() or "Ctrl-C" in log.read_text(),
                         timeout=60, what="the stack to start")  # fmt: skip
        stack.wait_until(lambda: len(_processes_of(workdir)) >= 4, timeout=30,
                         what="the children to run")  # fmt: skip
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _processes_of(workdir) == [], log.read_text()
