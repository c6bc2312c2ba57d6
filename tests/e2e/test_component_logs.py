"""A whole installation's logs and metrics, as an operator reads and scrapes them.

Worker, beat, the webhook server (with ``/metrics`` on a port of its own) and Flower are
started by the ``reconciler`` command with ``RECONCILER_LOG_FORMAT=json``; a push, a
cluster that refuses connections and a repository that does not exist make the events
the metrics count.  Every line every component wrote must then be one JSON record naming
that component, and no line may hold the Git token the processes were given.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import FAKE_GIT_TOKEN, Proc, Stack, free_port, tail

pytestmark = pytest.mark.e2e

#: Celery's worker writes these straight to the terminal from its signal handlers.
SIGNAL_NOTICES = ("worker: Warm shutdown", "worker: Hitting Ctrl+C again")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET url``, keyed by name and sorted labels ({} while it fails)."""
    try:
        reply = requests.get(url, timeout=5)
    except requests.RequestException:
        return {}
    if reply.status_code != 200:
        return {}
    out = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def records(proc: Proc) -> list[dict[str, Any]]:
    """Every record of a component's log; fails on a line that is not one."""
    assert proc.log is not None
    found = []
    for line in proc.log.read_text(errors="replace").splitlines():
        if not line.strip() or line.startswith(SIGNAL_NOTICES):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{proc.name}: not a JSON record: {line!r}\n{tail(proc.log, 80)}")
        assert {"ts", "level", "component", "logger", "message"} <= set(entry), line
        found.append(entry)
    return found


def test_every_component_logs_json_and_the_metrics_follow_real_events(stack: Stack) -> None:
    good, broken = f"logs-{uuid.uuid4().hex[:6]}", f"nogit-{uuid.uuid4().hex[:6]}"
    stack.write_app(good, deployment=False)
    stack.repo.commit("one application")
    missing = str(stack.tmp / "no-such-repository")
    broken_app = stack.app(broken, clusters={"names": ["sim-1"]}, interval="1h")
    broken_app["source"]["repo"] = missing
    stack.write_fleet(
        stack.app(good, clusters={"names": ["sim-1", "sim-2"]}, interval="1h"), broken_app
    )
    stack.sim.set_faults("sim-2", down=True)
    stack.env["RECONCILER_LOG_FORMAT"] = "json"
    token = "hook-token-" + uuid.uuid4().hex
    port, metrics_port, flower_port = free_port(), free_port(), free_port()
    webhook = stack.start("webhook", "webhook", "--port", str(port),
                          env={"RECONCILER_WEBHOOK_TOKEN": token,
                               "RECONCILER_METRICS_PORT": str(metrics_port)})  # fmt: skip
    flower = stack.start("flower", "flower", "--port", str(flower_port),
                         env={"FLOWER_BASIC_AUTH": "admin:" + uuid.uuid4().hex})  # fmt: skip
    beat = stack.beat()
    worker = stack.worker(concurrency=2)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    stack.wait_until(lambda: scrape(metrics_url), timeout=30, what="/metrics", procs=[webhook])

    # A push deploys the good application; a sync asks for the broken one.
    body = json.dumps({"repo": str(stack.repo.path), "ref": "refs/heads/main"})
    pushed = requests.post(f"http://127.0.0.1:{port}/hooks/git", data=body, timeout=10,
                           headers={"Content-Type": "application/json",
                                    "X-Reconciler-Token": token})  # fmt: skip
    assert pushed.status_code == 202, pushed.text
    done = stack.cli("sync", broken, "--async")
    assert done.returncode == 0, (done.stdout, done.stderr)

    target = (("application", good), ("cluster", "sim-1"))
    delivered = (
        "reconciler_webhook_deliveries_total",
        (("provider", "plain"), ("result", "accepted")),
    )

    def counted() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        got = scrape(metrics_url)
        wanted = [
            ("reconciler_reconciles_total", (*target, ("result", "Synced"))),
            ("reconciler_reconcile_duration_seconds_count", target),
            ("reconciler_cluster_reachable", (("cluster", "sim-1"),)),
            ("reconciler_cluster_reachable", (("cluster", "sim-2"),)),
            ("reconciler_git_fetch_failures_total", (("repository", missing),)),
            delivered,
        ]
        return got if all(key in got for key in wanted) else None

    got = stack.wait_until(counted, timeout=60, what="the metrics of the runs")
    assert got is not None
    assert got[("reconciler_reconciles_total", (*target, ("result", "Synced")))] >= 1
    assert got[("reconciler_cluster_reachable", (("cluster", "sim-1"),))] == 1
    assert got[("reconciler_cluster_reachable", (("cluster", "sim-2"),))] == 0
    failed_sim2 = ("reconciler_reconciles_total", ((*target[:1], ("cluster", "sim-2"),
                                                   ("result", "Failed"))))  # fmt: skip
    assert got[failed_sim2] >= 1
    assert got[("reconciler_git_fetch_failures_total", (("repository", missing),))] >= 1
    assert got[delivered] == 1
    assert any(name == "reconciler_build_info" for name, _ in got)
    # The internet-facing port does not serve the metrics.
    assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 404
    stack.wait_until(
        lambda: flower.log is not None and "Visit me at" in flower.log.read_text(),
        timeout=30, what="Flower", procs=[flower],
    )  # fmt: skip

    for proc, component in ((worker, "worker"), (beat, "beat"), (webhook, "webhook"),
                            (flower, "flower")):  # fmt: skip
        found = records(proc)
        assert found, proc.name
        assert {entry["component"] for entry in found} == {component}, proc.name
        assert proc.log is not None
        assert FAKE_GIT_TOKEN not in proc.log.read_text(errors="replace")
    [accepted] = [e for e in records(webhook) if e.get("queued")]
    assert (accepted["provider"], accepted["ref"]) == ("plain", "refs/heads/main")
    assert accepted["repository"] == str(stack.repo.path) and accepted["queued"] == [good]
    # Lines written inside a task name it.
    in_tasks = [e for e in records(worker) if e.get("task_id")]
    assert {e["task_name"] for e in in_tasks} >= {"reconciler.reconcile_target"}
