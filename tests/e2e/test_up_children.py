"""`reconciler up` keeps its children running, and takes them with it when it dies.

A component that exits is started again after a back-off; when ``up`` itself is killed
with SIGKILL, no process it started (workers and their pool processes, beat, the webhook
server, Flower, the simulator) is left consuming from Redis.  Real processes throughout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from cli.supervisor import Child, RestartPolicy, describe_exit, tend
from tests.e2e.conftest import CLUSTERS, Stack, free_port, tail

#: (pid, create time): a pid alone may be reused by the time it is checked.
Identity = tuple[int, float]


def _identity(process: psutil.Process) -> Identity:
    return (process.pid, process.create_time())


def _running(identity: Identity) -> bool:
    """Whether the process ``identity`` names still runs (a zombie has stopped)."""
    pid, created = identity
    try:
        process = psutil.Process(pid)
        return process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill(identities: set[Identity]) -> None:
    for pid, created in identities:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process = psutil.Process(pid)
            if process.create_time() == created:
                process.kill()


@dataclass
class Up:
    """A running ``reconciler up --demo`` and every process seen in its tree."""

    popen: subprocess.Popen[bytes]
    workdir: Path
    log: Path
    seen: set[Identity]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tree(self) -> list[psutil.Process]:
        """``up``'s descendants now (remembered, so teardown can kill them all)."""
        try:
            found = psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for process in found:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.seen.add(_identity(process))
        return found

    def component(self, name: str) -> list[psutil.Process]:
        """Direct children running ``reconciler <name>``."""
        found = []
        for process in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                cmdline = process.cmdline()
                if process.ppid() == self.popen.pid and cmdline[2:4] == ["cli", name]:
                    found.append(process)
        return found

    def diagnostics(self) -> str:
        logs = self.workdir / "logs"
        parts = [f"--- up\n{tail(self.log, 60)}"]
        parts += [f"--- {p.name}\n{tail(p, 30)}" for p in sorted(logs.glob("*.log"))]
        return "\n".join(parts)


@contextlib.contextmanager
def running_up(stack: Stack, tmp_path: Path, *extra: str) -> Iterator[Up]:
    """``up --demo`` on the stack's Redis and prefix; every process it started is killed
    afterwards, whatever the test did."""
    # A killed beat's schedule lock expires in 3 s, not 30, so its successor starts soon.
    env = {**stack.env, "RECONCILER_CONFIG": "", "RECONCILER_BEAT_LOCK_TIMEOUT": "3"}
    env.pop("KUBECONFIG", None)
    with up_process(tmp_path, env, "--concurrency", "2", *extra) as run:
        yield run


@contextlib.contextmanager
def up_process(tmp_path: Path, env: dict[str, str], *extra: str) -> Iterator[Up]:
    """``reconciler up --demo`` in ``env``; every process it started is killed afterwards."""
    workdir = tmp_path / "up"
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", "--demo", "--dir", str(workdir),
             "--webhook-port", str(free_port()), *extra],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    run = Up(popen, workdir, log, set())
    try:
        yield run
    except BaseException:
        print(run.diagnostics())
        raise
    finally:
        run.tree()
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=30)
        _kill(run.seen)


def _started(stack: Stack, run: Up) -> None:
    stack.wait_until(lambda: "Ctrl-C stops everything" in run.output() or run.popen.poll(),
                     timeout=90, what="up to start")  # fmt: skip
    assert run.popen.poll() is None, run.output()


def _schedule_runs_after(stack: Stack, run: Up, since: float) -> bool:
    """Whether every demo target has a scheduled reconcile that started after ``since``."""
    env = {"RECONCILER_CONFIG": str(run.workdir / "fleet.yaml")}
    for cluster in CLUSTERS:
        done = stack.cli("history", "guestbook", "--cluster", cluster, "-o", "json", env=env,
                         timeout=30)  # fmt: skip
        assert done.returncode == 0, done.stderr
        items = json.loads(done.stdout)
        if not any(h.get("trigger") == "schedule" and _epoch(h.get("started")) > since
                   for h in items):  # fmt: skip
            return False
    return True


def _epoch(value: object) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


@pytest.mark.e2e
def test_up_restarts_beat_when_it_dies(stack: Stack, tmp_path: Path) -> None:
    with running_up(stack, tmp_path, "--no-flower") as run:
        _started(stack, run)
        beat_log = run.workdir / "logs" / "beat.log"
        stack.wait_until(lambda: "Acquired lock" in tail(beat_log, 200), timeout=30,
                         what="beat to take the schedule lock")  # fmt: skip
        (first,) = run.component("beat")
        first.kill()

        def new_beat() -> psutil.Process | None:
            return next((p for p in run.component("beat") if p.pid != first.pid), None)

        second = stack.wait_until(new_beat, timeout=30, what="a new beat process")
        assert second is not None
        assert run.popen.poll() is None, run.output()
        assert re.search(r"beat exited \(killed by SIGKILL\) after [\d.]+ s; restarting in 1 s",
                         run.output()), run.output()  # fmt: skip
        assert f"beat restarted (pid {second.pid}, restart 1)" in run.output()

        def since_restart() -> str:
            return beat_log.read_text(errors="replace").partition("restart 1\n")[2]

        # The new beat takes over the schedule (once the killed one's lock expires) ...
        stack.wait_until(lambda: "Acquired lock" in since_restart(), timeout=30,
                         what="the new beat to take the schedule lock")  # fmt: skip
        took_over = time.time()
        stack.wait_until(lambda: re.search(r"Sending due task \S*guestbook", since_restart()),
                         timeout=60, what="the new beat to schedule guestbook")  # fmt: skip
        # ... and every target is reconciled on schedule again.
        stack.wait_until(lambda: _schedule_runs_after(stack, run, took_over), timeout=60,
                         what="scheduled runs after the restart", every=1)  # fmt: skip
        assert second.is_running()


@pytest.mark.e2e
def test_children_of_up_die_with_it_on_sigkill(stack: Stack, tmp_path: Path) -> None:
    with running_up(stack, tmp_path, "--flower-port", str(free_port())) as run:
        _started(stack, run)
        worker_log = run.workdir / "logs" / "worker1.log"
        stack.wait_until(lambda: " ready." in tail(worker_log, 400), timeout=60,
                         what="the worker to be ready")  # fmt: skip

        def whole_tree() -> list[psutil.Process] | None:
            components = {name: run.component(name)
                          for name in ("sim", "worker", "beat", "watcher", "webhook",
                                       "flower")}  # fmt: skip
            if not all(components.values()):
                return None
            # The worker's prefork pool: grandchildren of `up`, with no signal from it.
            if len(components["worker"][0].children()) != 2:
                return None
            return run.tree()

        tree = stack.wait_until(whole_tree, timeout=60, what="every component and the pool")
        assert tree is not None
        identities = {_identity(p) for p in tree}
        run.popen.kill()
        run.popen.wait(timeout=10)

        def survivors() -> list[str]:
            return [" ".join(psutil.Process(pid).cmdline()) for pid, created in identities
                    if _running((pid, created))]  # fmt: skip

        deadline = time.monotonic() + 30
        left = survivors()
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = survivors()
        assert left == [], run.diagnostics()


def test_restart_backoff_doubles_to_the_cap_and_resets_after_a_good_run() -> None:
    policy = RestartPolicy(initial=1, cap=30, reset_after=60)
    waits = []
    previous = None
    for _ in range(8):
        previous = policy.delay(previous, ran_for=0.5)
        waits.append(previous)
    assert waits == [1, 2, 4, 8, 16, 30, 30, 30]
    assert policy.delay(30, ran_for=61) == 1


def test_describe_exit() -> None:
    assert describe_exit(3) == "code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(None) == "still running"


def test_a_child_that_keeps_crashing_is_retried_at_the_capped_pace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "c.log")
    policy = RestartPolicy(initial=0.05, cap=0.2, reset_after=60)
    child.start(dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while child.restarts < 6:
            assert time.monotonic() < deadline, capsys.readouterr().err
            due = tend([child], dict(os.environ), policy, now=time.monotonic())
            time.sleep(0.01 if due is None else max(0.0, due - time.monotonic()))
    finally:
        child.stop()
    err = capsys.readouterr().err
    waits = [float(w) for w in re.findall(r"crasher exited \(code 3\) after [\d.]+ s; "
                                          r"restarting in ([\d.]+) s", err)]  # fmt: skip
    assert waits[:6] == [0.05, 0.1, 0.2, 0.2, 0.2, 0.2], err
    assert "crasher restarted (pid" in err
    assert (tmp_path / "c.log").read_text().count("restarting in") >= 6
