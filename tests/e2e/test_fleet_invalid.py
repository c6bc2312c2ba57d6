"""An invalid fleet file in a running stack: reported once, the last valid fleet runs on.

Real worker, beat and webhook processes reconcile a valid fleet; then the fleet file is
overwritten with broken YAML.  Each process must say so in exactly one log line (no
traceback), the installation's record in Redis must say the fleet is invalid and why,
``/metrics`` must drop ``reconciler_fleet_valid`` to 0, and scheduled reconciles must go on
with the last valid fleet.  Fixing the file brings everything back to valid.
"""

from __future__ import annotations

import urllib.request
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from reconciler.store.fleet_state import FleetHealth, FleetState
from reconciler.store.keys import Keys
from reconciler.store.records import Records
from tests.e2e.conftest import Proc, Stack, free_port

pytestmark = pytest.mark.e2e

BROKEN = "clusters: [\n  {name: sim-1\n"


def log_text(proc: Proc) -> str:
    assert proc.log is not None
    return proc.log.read_text(errors="replace")


def lines_with(proc: Proc, *needles: str) -> list[str]:
    return [line for line in log_text(proc).splitlines() if all(n in line for n in needles)]


def fleet_valid(url: str) -> float | None:
    """``reconciler_fleet_valid`` from the webhook server's /metrics, None if unreachable."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "reconciler_fleet_valid":
                return float(sample.value)
    return None


def _runs(history: list[dict[str, object]]) -> int:
    """Runs a history stands for: each entry, times the quiet runs it counts."""
    return sum(int(str(h.get("repeats") or 1)) for h in history)


def _epoch(stamp: object) -> float:
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def test_an_invalid_fleet_file_is_reported_once_and_the_last_valid_fleet_runs(
    stack: Stack,
) -> None:
    app = f"keep-{uuid.uuid4().hex[:6]}"
    stack.write_app(app, deployment=False)
    commit = stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="5s"))
    path = str(stack.fleet_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    webhook = stack.start("webhook", "webhook", "--port", str(port))
    beat = stack.beat()
    worker = stack.worker(concurrency=2)
    components = [worker, beat]
    stack.wait_synced([(app, "sim-1")], commit=commit, timeout=60, health=None)
    stack.wait_until(lambda: fleet_valid(url) == 1, timeout=30, what="/metrics to say valid",
                     procs=[webhook])  # fmt: skip

    client = redis.Redis.from_url(stack.redis_url)
    try:
        keys = Keys(stack.prefix)
        state, records = FleetState(client, keys), Records(client, keys)

        def recorded(valid: bool) -> FleetHealth | None:
            found = state.read()
            return found if found is not None and found.valid == valid else None

        valid_before = stack.wait_until(lambda: recorded(True), timeout=30,
                                        what="the fleet recorded valid")  # fmt: skip
        assert valid_before.applications == 1

        # -- break the file ------------------------------------------------------------
        tmp = Path(path).with_suffix(".broken")
        tmp.write_text(BROKEN)
        tmp.replace(path)
        broken_at = datetime.now().timestamp()
        runs_before = _runs(records.history(app, "sim-1", n=50))
        error = f"{path}:3: did not find expected ',' or '}}'"
        said = f"fleet file {path} is invalid; running the last valid fleet (1 application)"
        for proc in components:
            stack.wait_until(lambda p=proc: lines_with(p, said, error), timeout=30,
                             what=f"{proc.name} to report the invalid file")  # fmt: skip

        invalid = stack.wait_until(lambda: recorded(False), timeout=30,
                                   what="the fleet recorded invalid")  # fmt: skip
        assert (invalid.path, invalid.error) == (path, error)
        assert invalid.fingerprint == valid_before.fingerprint
        assert invalid.describe().endswith("; running the last valid fleet (1 application)")
        stack.wait_until(lambda: fleet_valid(url) == 0, timeout=30, what="/metrics to say 0",
                         procs=[webhook])  # fmt: skip
        # The command line lists the targets still, and says the fleet is invalid, once.
        shown = stack.cli("status", app)
        assert shown.returncode == 0, shown.stderr
        assert shown.stderr.count(f"error: fleet file {path} is invalid since") == 1
        assert "running the last valid fleet (1 application)" in shown.stderr
        assert shown.stdout.splitlines()[1].split()[:2] == [app, "sim-1"]
        got = stack.cli_json("get", app)
        assert got["fleet"]["valid"] is False and got["fleet"]["error"] == error

        # Scheduled reconciles go on with the last valid fleet, several of them (quiet
        # runs in a row are one history entry that counts them).
        def runs_since_breakage() -> list[dict[str, object]]:
            history = records.history(app, "sim-1", n=50)
            runs = [
                h for h in history
                if h.get("trigger") == "schedule" and _epoch(h["started"]) > broken_at
            ]  # fmt: skip
            return runs if runs and _runs(history) >= runs_before + 2 else []

        runs = stack.wait_until(runs_since_breakage, timeout=45,
                                what="scheduled runs after the breakage")  # fmt: skip
        assert {run["sync"] for run in runs} == {"Synced"}, runs

        # -- fix it --------------------------------------------------------------------
        stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="5s"))
        again = f"fleet file {path} is valid again"
        for proc in components:
            stack.wait_until(lambda p=proc: lines_with(p, again), timeout=30,
                             what=f"{proc.name} to report the file valid again")  # fmt: skip
        fixed = stack.wait_until(lambda: recorded(True), timeout=30,
                                 what="the fleet recorded valid again")  # fmt: skip
        assert fixed.error == ""
        stack.wait_until(lambda: fleet_valid(url) == 1, timeout=30,
                         what="/metrics to say valid again", procs=[webhook])  # fmt: skip
    finally:
        client.close()

    # Exactly one line each for the breakage, and never a traceback.
    for proc in components:
        assert len(lines_with(proc, f"fleet file {path} is invalid")) == 1, stack.logs([proc])
        assert len(lines_with(proc, again)) == 1, stack.logs([proc])
    for proc in [*components, webhook]:
        assert "Traceback" not in log_text(proc), stack.logs([proc], lines=200)
