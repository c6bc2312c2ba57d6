"""The command line finds the installation ``reconciler up`` started, with no environment.

``up --demo`` runs on an embedded Redis (no ``REDIS_URL``), on a port nobody chose; a
second process with none of our variables set must still read its status, get, wait for
and sync its applications, because ``up`` wrote its connection to the context file in
the user's configuration directory.  Real processes throughout.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.installation import write_context
from tests.e2e.conftest import CLUSTERS, free_port, tail
from tests.e2e.test_up_children import up_process

pytestmark = pytest.mark.e2e


def bare_env(config_home: Path) -> dict[str, str]:
    """This machine's environment without any variable of ours: what a new terminal has."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RECONCILER_", "REDIS_", "FLOWER_")) and k != "KUBECONFIG"}
    env["XDG_CONFIG_HOME"] = str(config_home)
    return env  # fmt: skip


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


def until(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    pause = 0.1
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(pause)
        pause = min(pause * 1.5, 1.0)


def test_a_new_terminal_reads_the_installation_up_started(tmp_path: Path) -> None:
    env = bare_env(tmp_path / "config")
    context = tmp_path / "config" / "reconciler" / "context.yaml"
    with up_process(tmp_path, env, "--no-flower", "--concurrency", "2") as run:
        until(lambda: context.exists() or run.popen.poll() is not None, timeout=90,
              what="up to write its context")  # fmt: skip
        assert run.popen.poll() is None, tail(run.log)
        written = yaml.safe_load(context.read_text())
        assert stat.S_IMODE(context.stat().st_mode) == 0o600
        assert written["config"] == str(run.workdir / "fleet.yaml")
        assert written["pid"] == run.popen.pid
        assert not written["redis"].endswith(":6379/0"), "the demo runs its own Redis"
        assert "@" not in written["redis"]

        def synced() -> list[dict[str, Any]] | None:
            done = cli(env, "status", "guestbook", "-o", "json", timeout=30)
            assert done.returncode == 0, done.stderr
            rows: list[dict[str, Any]] = json.loads(done.stdout)
            ok = {r["cluster"] for r in rows if r["sync"] == "Synced"} == set(CLUSTERS)
            return rows if ok else None

        until(synced, timeout=180, what="guestbook Synced on every demo cluster")
        got = cli(env, "get", "guestbook", "-o", "json")
        assert got.returncode in (0, 1), got.stderr
        data = json.loads(got.stdout)
        assert data["application"]["name"] == "guestbook"
        assert data["application"]["fleet"] == str(run.workdir / "fleet.yaml")
        assert sorted(t["cluster"] for t in data["targets"]) == list(CLUSTERS)
        table = cli(env, "get", "guestbook")
        assert "Source:" in table.stdout and "sim-1" in table.stdout, table.stderr

        waited = cli(env, "wait", "guestbook", "--timeout", "60", "-o", "json")
        assert waited.returncode == 0, waited.stderr
        assert {r["sync"] for r in json.loads(waited.stdout)} == {"Synced"}

        forced = cli(env, "sync", "guestbook", "--timeout", "120", "-o", "json")
        assert forced.returncode == 0, forced.stderr
        outcomes = json.loads(forced.stdout)
        assert sorted(o["cluster"] for o in outcomes) == list(CLUSTERS)
        assert {o["trigger"] for o in outcomes} == {"manual"}

        queued = cli(env, "sync", "guestbook", "--async", "-o", "json")
        assert queued.returncode == 0, queued.stderr
        assert sorted(t["cluster"] for t in json.loads(queued.stdout)["targets"]) == list(CLUSTERS)

        run.popen.send_signal(signal.SIGTERM)
        run.popen.wait(timeout=60)
        assert not context.exists(), "up removes the context it wrote when it stops"


def test_a_context_whose_up_died_says_so(tmp_path: Path) -> None:
    env = bare_env(tmp_path / "config")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "config" / "reconciler" / "context.yaml"
    write_context(path, redis=f"redis://127.0.0.1:{free_port()}/0", prefix="gone:",
                  config=str(tmp_path / "fleet.yaml"), pid=dead.pid)  # fmt: skip
    done = cli(env, "status", timeout=30)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"from context {path}" in done.stderr
    assert f"pid {dead.pid}, is not running" in done.stderr
    assert "reconciler up" in done.stderr


def test_the_environment_overrides_the_context(tmp_path: Path, redis_url: str,
                                               redis_prefix: str) -> None:  # fmt: skip
    env = bare_env(tmp_path / "config")
    path = tmp_path / "config" / "reconciler" / "context.yaml"
    write_context(path, redis=f"redis://127.0.0.1:{free_port()}/0", prefix="elsewhere:")
    overridden = {**env, "REDIS_URL": redis_url, "RECONCILER_REDIS_PREFIX": redis_prefix}
    done = cli(overridden, "status", timeout=30)
    assert done.returncode == 0, done.stderr
    assert redis_prefix in done.stderr and "context" not in done.stderr
    explicit = cli(env, "--context", str(tmp_path / "missing.yaml"), "status", timeout=30)
    assert explicit.returncode == 2
    assert "missing.yaml: no such installation context" in explicit.stderr
