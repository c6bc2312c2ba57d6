"""``reconciler sync --wait --health`` end to end: a real worker, health read from the clusters.

A forced run ends the moment its objects are applied, so a Deployment it just changed is
Progressing in its outcome; the command must go on until the rollout is done (exit 0), or
say which target failed its rollout (exit 1).  kubesim's controllers write the rollout's
status after ``controllerDelay``, and fail it (``ProgressDeadlineExceeded``) or never
finish it when the Deployment carries ``kubesim.dev/rollout: fail|hang``.  Nothing here
sleeps to synchronise: the command under test polls with its own deadline, and so does
the harness.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime

import pytest

from tests.e2e.conftest import DEPLOYMENT, Stack

pytestmark = pytest.mark.e2e

#: Seconds sim-1's controllers wait before a rollout's status appears: long enough that the
#: forced run has finished, so only a later read of the cluster can see the rollout done.
SLOW_CONTROLLERS = 3.0


def unique(stem: str) -> str:
    """An application name (and namespace) no other test uses."""
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def deployment(rollout: str = "", image: str = "nginx:1.27") -> str:
    """The harness's Deployment ``web``, optionally with kubesim's rollout annotation."""
    text = DEPLOYMENT.replace("image: nginx:1.27", f"image: {image}")
    if rollout:
        text = text.replace(
            "metadata: {name: web}",
            f"metadata: {{name: web, annotations: {{kubesim.dev/rollout: {rollout}}}}}",
        )
    return text


def rows_of(stdout: str) -> dict[str, dict[str, str]]:
    """The table's rows by CLUSTER, cut at the header's column starts (cells hold spaces)."""
    lines = stdout.splitlines()
    header = lines[0]
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    names = header.split()
    rows = {}
    for line in lines[1:]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        row = dict(zip(names, cells, strict=True))
        rows[row["CLUSTER"]] = row
    return rows


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def test_sync_health_waits_for_the_rollout_and_exits_0(stack: Stack) -> None:
    app = unique("rollout")
    stack.write_app(app)
    commit = stack.repo.commit("a web server")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1", "sim-2"]}, interval="1h"))
    stack.sim.set_faults("sim-1", controllerDelay=SLOW_CONTROLLERS)
    stack.worker(concurrency=2)

    done = stack.cli("sync", app, "--wait", "--health", "--timeout", "60", "-o", "json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    outcomes = {o["cluster"]: o for o in json.loads(done.stdout)}
    assert set(outcomes) == {"sim-1", "sim-2"}
    for outcome in outcomes.values():
        assert (outcome["sync"], outcome["revision"]) == ("Synced", commit), outcome
        assert outcome["live_health"]["status"] == "Healthy", outcome
    slow = outcomes["sim-1"]
    # The run itself saw the rollout under way; the command read the cluster until it was
    # done, which sim-1's controllers only reported seconds after the run had finished.
    assert slow["health"] == "Progressing", slow
    assert slow["live_health"]["source"] == "cluster", slow
    waited = seconds_between(slow["started"], slow["live_health"]["checked"])
    assert waited >= SLOW_CONTROLLERS - 0.5, slow
    # Reading health wrote nothing: one forced run per target, nothing else recorded.
    assert [h["trigger"] for h in stack.history(app, "sim-1")] == ["manual"]

    # As a person reads it: a new image, the table, both targets Healthy.
    stack.repo.write(f"{app}/web.yaml", deployment(image="nginx:1.28"))
    stack.repo.commit("new image")
    table = stack.cli("sync", app, "--wait", "--health", "--timeout", "60")
    assert table.returncode == 0, (table.stdout, table.stderr)
    rows = rows_of(table.stdout)
    assert {c: (r["SYNC"], r["HEALTH"]) for c, r in rows.items()} == {
        "sim-1": ("Synced", "Healthy"), "sim-2": ("Synced", "Healthy"),
    }  # fmt: skip
    assert rows["sim-1"]["CHANGES"] == "configured=1 unchanged=1", rows
    assert table.stderr == ""


def test_sync_health_exits_1_naming_the_target_whose_rollout_fails(stack: Stack) -> None:
    app = unique("degraded")
    # One overlay per cluster: sim-2's Deployment fails its rollout, sim-1's does not.
    stack.repo.write(f"{app}/sim-1/web.yaml", deployment())
    stack.repo.write(f"{app}/sim-2/web.yaml", deployment(rollout="fail"))
    stack.repo.commit("a web server whose sim-2 rollout fails")
    stack.write_fleet(stack.app(app, path=f"{app}/{{{{ cluster.name }}}}",
                                clusters={"names": ["sim-1", "sim-2"]}, interval="1h"))  # fmt: skip
    stack.worker(concurrency=2)

    done = stack.cli("sync", app, "--wait", "--health", "--timeout", "60")
    assert done.returncode == 1, (done.stdout, done.stderr)
    rows = rows_of(done.stdout)
    assert (rows["sim-1"]["SYNC"], rows["sim-1"]["HEALTH"]) == ("Synced", "Healthy"), rows
    assert (rows["sim-2"]["SYNC"], rows["sim-2"]["HEALTH"]) == ("Synced", "Degraded"), rows
    assert rows["sim-2"]["ERROR"].startswith(f"Deployment.apps/{app}/web: Deployment exceeded")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {app} on sim-2: Degraded: Deployment.apps/{app}/web: Deployment exceeded its "
        "progress deadline: ProgressDeadlineExceeded: ReplicaSet has timed out progressing."
    ], done.stderr


def test_sync_health_exits_1_when_the_timeout_passes_first(stack: Stack) -> None:
    app = unique("hang")
    stack.repo.write(f"{app}/web.yaml", deployment(rollout="hang"))
    stack.repo.commit("a rollout that never finishes")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-3"]}, interval="1h"))
    stack.worker(concurrency=1)
    # The worker is ready; the first sync of a fresh worker also pays for its Git clone.
    started = time.monotonic()
    done = stack.cli("sync", app, "--wait", "--health", "--timeout", "8", "-o", "json")
    elapsed = time.monotonic() - started
    assert done.returncode == 1, (done.stdout, done.stderr)
    (outcome,) = json.loads(done.stdout)
    assert outcome["sync"] == "Synced", outcome
    assert outcome["live_health"]["status"] == "Progressing", outcome
    assert f"error: {app} on sim-3: still Progressing after 8s: Deployment.apps/{app}/web" in (
        done.stderr
    )
    assert elapsed < 8 + 10, elapsed  # bounded by --timeout (plus start-up), not by the rollout
