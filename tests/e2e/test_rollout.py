"""Progressive rollout in a running stack: step by step, halted by a failing cluster,
promoted past it, aborted back to the previous revision.

Six kubesim clusters (two each of dev, staging and prod), a real worker, beat and watcher.  The
revision each cluster runs is read from the cluster itself (the ConfigMap's value) and
from ``reconciler rollout status``.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.conftest import Proc, Stack

pytestmark = pytest.mark.e2e

SIX = {"dev-1": {"env": "dev"}, "dev-2": {"env": "dev"},
       "stg-1": {"env": "staging"}, "stg-2": {"env": "staging"},
       "prod-1": {"env": "prod"}, "prod-2": {"env": "prod"}}  # fmt: skip
STEPS = [
    {"clusters": {"env": "dev"}, "soak": "1s"},
    {"clusters": {"env": "staging"}, "maxUnavailable": 1, "soak": "1s"},
    {"clusters": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]},
     "maxUnavailable": "50%"},
]
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}, annotations: {{release: "{value}"}}}}
    spec:
      containers:
        - {{name: web, image: "nginx:1.27", resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}}}
"""


@pytest.fixture
def cluster_labels() -> dict[str, dict[str, str]]:
    return dict(SIX)


def release(stack: Stack, app: str, value: str) -> str:
    """Commit a new release of the application (its ConfigMap and Deployment change)."""
    stack.write_app(app, value, deployment=False)
    stack.repo.write(f"{app}/web.yaml", DEPLOYMENT.format(value=value))
    return stack.repo.commit(f"release {value}")


def rollout(stack: Stack, app: str) -> dict[str, Any]:
    data: dict[str, Any] = stack.cli_json("rollout", "status", app)
    return data


def values(stack: Stack, app: str) -> dict[str, str | None]:
    """The release each cluster runs, read from the cluster."""
    return {name: (stack.configmap(name, app) or {}).get("key") for name in SIX}


def phase_is(stack: Stack, app: str, phase: str, revision: str) -> dict[str, Any] | None:
    data = rollout(stack, app)
    state = data.get("rollout") or {}
    return data if state.get("phase") == phase and state.get("revision") == revision else None


def scheduled_after(stack: Stack, app: str, cluster: str, moment: float) -> dict[str, Any] | None:
    """The newest scheduled run of the target that began after ``moment``."""
    for entry in stack.history(app, cluster):
        started = datetime.fromisoformat(entry["started"].replace("Z", "+00:00")).timestamp()
        if entry.get("trigger") == "schedule" and started > moment:
            return entry
    return None


def test_a_rollout_goes_step_by_step_halts_on_failure_promotes_and_aborts(stack: Stack) -> None:
    app = f"roll-{uuid.uuid4().hex[:6]}"
    first = release(stack, app, "1")
    stack.write_fleet({**stack.app(app, interval="5s"), "rollout": {"steps": STEPS}})
    worker = stack.worker(concurrency=2)
    # The watcher keeps health live, so a step's gate passes when its targets turn Healthy.
    watcher = stack.start("watcher", "watcher", env={"RECONCILER_WATCH_LEASE_TTL": "3"})
    procs: list[Proc] = [worker, stack.beat(), watcher]

    # The first revision reaches every cluster, one step after another.
    done = stack.wait_until(lambda: phase_is(stack, app, "Completed", first), timeout=120,
                            what="the first rollout to complete", procs=procs)  # fmt: skip
    assert set(values(stack, app).values()) == {"1"}
    passed = [e for e in done["rollout"]["events"] if e["event"] == "step passed"]
    assert [e["step"] for e in passed] == [0, 1, 2]
    assert {row["state"] for row in done["clusters"]} == {"done"}

    # The second halts at staging, where stg-2's rollout fails; prod keeps the first.
    stack.sim.set_faults("stg-2", rollout="fail")
    second = release(stack, app, "2")
    halted = stack.wait_until(lambda: phase_is(stack, app, "Halted", second), timeout=120,
                              what="the rollout to halt on stg-2", procs=procs)  # fmt: skip
    assert halted["rollout"]["reason"].startswith("stg-2: ")
    assert values(stack, app) == {"dev-1": "2", "dev-2": "2", "stg-1": "2", "stg-2": "2",
                                  "prod-1": "1", "prod-2": "1"}  # fmt: skip
    states = {row["cluster"]: row["state"] for row in halted["clusters"]}
    assert states["prod-1"] == states["prod-2"] == "waiting"
    # Scheduled runs on a cluster not reached go on applying (and healing to) the first.
    halt_seen = time.time()
    later = stack.wait_until(lambda: scheduled_after(stack, app, "prod-1", halt_seen),
                             timeout=60, what="a scheduled run of prod-1", procs=procs)
    assert later["revision"] == first and later["sync"] == "Synced"
    assert phase_is(stack, app, "Halted", second) is not None  # nothing moved it

    # Promote skips the halted step's gate: prod takes the second revision.
    promoted = stack.cli("rollout", "promote", app)
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    stack.wait_until(lambda: phase_is(stack, app, "Completed", second), timeout=120,
                     what="the promoted rollout to complete", procs=procs)  # fmt: skip
    stack.wait_until(lambda: set(values(stack, app).values()) == {"2"}, timeout=60,
                     what="every cluster on the second release", procs=procs)  # fmt: skip

    # A third revision halts on stg-2 again; abort sends every cluster back to the second.
    third = release(stack, app, "3")
    stack.wait_until(lambda: phase_is(stack, app, "Halted", third), timeout=120,
                     what="the third rollout to halt", procs=procs)  # fmt: skip
    assert values(stack, app)["prod-1"] == "2"
    aborted = stack.cli("rollout", "abort", app)
    assert aborted.returncode == 0, aborted.stdout + aborted.stderr
    stack.wait_until(lambda: set(values(stack, app).values()) == {"2"}, timeout=60,
                     what="every cluster back on the second release", procs=procs)  # fmt: skip
    after_abort = time.time()
    back = stack.wait_until(lambda: scheduled_after(stack, app, "dev-1", after_abort),
                            timeout=60, what="a scheduled run after the abort", procs=procs)
    assert back["revision"] == second  # the aborted revision is not rolled out again
    assert phase_is(stack, app, "Aborted", third) is not None
    table = stack.cli("rollout", "status", app)
    assert table.returncode == 0 and "Aborted" in table.stdout, table.stdout + table.stderr
