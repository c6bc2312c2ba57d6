"""The distributed runtime end to end: real worker, beat, webhook and Flower processes.

Every test builds its own installation (:class:`Stack`): three simulated clusters, a Git
repository, a fleet file and a Redis key prefix of its own, and starts the components as
subprocesses of the ``reconciler`` command.  Nothing here calls the engine directly:
everything the tests see went through Redis, Celery and the clusters' HTTP API.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import datetime

import pytest
import redis

from tests.e2e.conftest import CLUSTERS, FAKE_GIT_TOKEN, Stack, free_port

pytestmark = pytest.mark.e2e


def unique(stem: str) -> str:
    """An application name (and namespace) no other test uses."""
    return f"{stem}-{uuid.uuid4().hex[:6]}"


# -- 1. the schedule converges the fleet ----------------------------------------------------


def test_schedule_converges_every_targeted_cluster(stack: Stack) -> None:
    everywhere, prod = unique("all"), unique("prod")
    stack.write_app(everywhere)
    stack.write_app(prod)
    commit = stack.repo.commit("two applications")
    stack.write_fleet(
        stack.app(everywhere),
        stack.app(prod, clusters={"env": "prod"}),
    )
    started = time.monotonic()
    stack.beat()
    stack.worker(concurrency=2)
    wanted = [(everywhere, c) for c in CLUSTERS] + [(prod, "sim-1"), (prod, "sim-3")]
    rows = stack.wait_synced(wanted, commit=commit, timeout=40)
    elapsed = time.monotonic() - started

    # Only the schedule ran them: nobody forced a sync.
    assert {rows[t]["trigger"] for t in wanted} == {"schedule"}
    # The prod-only application never touched the dev cluster, nor is it listed there.
    assert (prod, "sim-2") not in rows
    assert stack.configmap("sim-2", prod) is None
    for app, cluster in wanted:
        assert stack.configmap(cluster, app) == {"key": "1"}, (app, cluster)
        assert rows[(app, cluster)]["drift_count"] == 0
        assert rows[(app, cluster)]["error"] == ""
    # Converged within the first interval's spread plus start-up, not by luck much later.
    assert elapsed < 40


# -- 2. drift: healed with selfHeal, reported without ---------------------------------------


def test_drift_is_healed_or_reported_by_the_schedule(stack: Stack) -> None:
    healed, reported = unique("heal"), unique("report")
    stack.write_app(healed, deployment=False)
    stack.write_app(reported, deployment=False)
    commit = stack.repo.commit("two applications")
    on_sim1 = {"names": ["sim-1"]}
    stack.write_fleet(
        stack.app(healed, clusters=on_sim1, selfHeal=True),
        stack.app(reported, clusters=on_sim1, selfHeal=False),
    )
    stack.beat()
    stack.worker(concurrency=2)
    stack.wait_synced([(healed, "sim-1"), (reported, "sim-1")], commit=commit, timeout=40)

    patch = json.dumps({"data": {"key": "drifted"}})
    for app in (healed, reported):
        stack.kubectl("sim-1", "-n", app, "patch", "configmap", "cfg", "--type=merge", "-p", patch)
        assert stack.configmap("sim-1", app) == {"key": "drifted"}
    drifted_at = time.monotonic()

    # selfHeal: the next scheduled run (at most one 5s interval away) puts Git back.
    stack.wait_until(
        lambda: stack.configmap("sim-1", healed) == {"key": "1"},
        timeout=12,
        what=f"{healed}'s drift to be healed by the schedule",
        every=0.2,
    )
    assert time.monotonic() - drifted_at < 12
    latest = stack.history(healed, "sim-1")[0]
    assert latest["trigger"] == "schedule"
    assert {(c["object"], c["action"]) for c in latest["changes"]} >= {
        (f"ConfigMap/{healed}/cfg", "configured")
    }, latest["changes"]

    # selfHeal false: reported OutOfSync with the drift, and the cluster is left alone.
    def reported_out_of_sync() -> dict[str, object] | None:
        row = stack.status(reported)[(reported, "sim-1")]
        return row if row["sync"] == "OutOfSync" and row["drift_count"] >= 1 else None

    first = stack.wait_until(
        reported_out_of_sync, timeout=12, what=f"{reported} to be reported OutOfSync"
    )
    # One more scheduled run later, still reported and still not changed.
    stack.wait_until(
        lambda: (row := reported_out_of_sync()) and row["finished"] != first["finished"],
        timeout=12,
        what=f"a second scheduled run of {reported}",
    )
    assert stack.configmap("sim-1", reported) == {"key": "drifted"}
    history = stack.history(reported, "sim-1")
    assert history[0]["sync"] == "OutOfSync"
    assert all(c["action"] != "configured" for c in history[0]["changes"]), history[0]
    assert any(d["object"] == f"ConfigMap/{reported}/cfg" for d in history[0]["drift"]), history[0]


# -- 3. sync --wait reports each target's outcome -------------------------------------------


def test_sync_wait_reports_each_target_and_fails_on_a_down_cluster(stack: Stack) -> None:
    app = unique("sync")
    stack.write_app(app)
    commit = stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, interval="1h"))
    stack.worker(concurrency=2)

    done = stack.cli("sync", app, "--wait", "--timeout", "60", "-o", "json")
    assert done.returncode == 0, done.stderr
    outcomes = {o["cluster"]: o for o in json.loads(done.stdout)}
    assert set(outcomes) == set(CLUSTERS)
    for cluster, outcome in outcomes.items():
        assert outcome["sync"] == "Synced", outcome
        assert outcome["revision"] == commit
        assert outcome["trigger"] == "manual"
        assert stack.configmap(cluster, app) == {"key": "1"}

    stack.write_app(app, value="2")
    second = stack.repo.commit("change the config")
    stack.sim.set_faults("sim-2", down=True)
    stack.sim.reset_requests("sim-2")
    started = time.monotonic()
    done = stack.cli("sync", app, "--wait", "--timeout", "10", "-o", "json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    outcomes = {o["cluster"]: o for o in json.loads(done.stdout)}
    assert set(outcomes) == set(CLUSTERS)
    for cluster in ("sim-1", "sim-3"):
        assert outcomes[cluster]["sync"] == "Synced", outcomes[cluster]
        assert outcomes[cluster]["revision"] == second
        assert stack.configmap(cluster, app) == {"key": "2"}
    # Still being retried when --timeout ends: reported as not synced.
    assert outcomes["sim-2"]["sync"] == "Failed", outcomes["sim-2"]
    assert time.monotonic() - started < 30
    # The down cluster's attempts are recorded as retryable failures...
    row = stack.status(app)[(app, "sim-2")]
    assert row["sync"] == "Failed" and row["retryable"] is True, row
    assert row["revision"] == second and row["trigger"] == "manual", row
    assert row["error"], row
    # ... and every one of them was refused: nothing reached sim-2.
    attempts = stack.sim.request_log("sim-2")
    assert attempts and {r["status"] for r in attempts} == {0}, attempts

    # No credential in what the CLI prints or Redis records.
    history = stack.cli("history", app, "--cluster", "sim-2", "-o", "json")
    for text in (done.stdout, done.stderr, history.stdout):
        assert FAKE_GIT_TOKEN not in text


def test_sync_wait_names_the_error_of_a_target_still_retrying(stack: Stack) -> None:
    app = unique("retry")
    stack.write_app(app, deployment=False)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1", "sim-2"]}, interval="1h"))
    stack.sim.set_faults("sim-2", down=True)
    stack.worker(concurrency=2)
    done = stack.cli("sync", app, "--wait", "--timeout", "6", "-o", "json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    outcome = {o["cluster"]: o for o in json.loads(done.stdout)}["sim-2"]
    # What the operator needs: that it failed, that it is being retried, and why.
    assert outcome["sync"] == "Failed", outcome
    assert outcome.get("retryable") is True, outcome
    assert "cannot reach the API server" in json.dumps(outcome), outcome


# -- 4. a webhook push is applied without waiting for the interval --------------------------


def test_webhook_push_is_applied_at_once(stack: Stack) -> None:
    pytest.importorskip("workers.webhook_server")
    import requests  # noqa: PLC0415

    app = unique("hook")
    stack.write_app(app, deployment=False)
    stack.repo.commit("one application")
    # A one-hour interval and no beat at all: only the webhook can explain a change.
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1", "sim-3"]}, interval="1h"))
    token = "hook-token-" + uuid.uuid4().hex
    port = free_port()
    hook = stack.start("webhook", "webhook", "--port", str(port),
                       env={"RECONCILER_WEBHOOK_TOKEN": token})  # fmt: skip
    stack.worker(concurrency=2)
    first = stack.cli_json("sync", app, "--wait", "--timeout", "60")
    assert {o["sync"] for o in first} == {"Synced"}, first
    url = f"http://127.0.0.1:{port}"
    stack.wait_until(
        lambda: _get_ok(f"{url}/healthz"), timeout=30, what="the webhook server", procs=[hook]
    )

    stack.write_app(app, value="pushed", deployment=False)
    pushed = stack.repo.commit("push")
    body = json.dumps({"repo": str(stack.repo.path), "ref": "refs/heads/main"})
    headers = {"Content-Type": "application/json"}

    # A wrong token is refused and queues nothing.
    refused = requests.post(f"{url}/hooks/git", data=body, timeout=10,
                            headers={**headers, "X-Reconciler-Token": "wrong"})  # fmt: skip
    assert refused.status_code == 401, refused.text
    assert token not in refused.text

    posted = time.monotonic()
    answer = requests.post(f"{url}/hooks/git", data=body, timeout=10,
                           headers={**headers, "X-Reconciler-Token": token})  # fmt: skip
    assert answer.status_code == 202, answer.text
    assert answer.json()["applications"] == [app]
    for cluster in ("sim-1", "sim-3"):
        stack.wait_until(
            lambda c=cluster: stack.configmap(c, app) == {"key": "pushed"},
            timeout=20,
            what=f"the pushed change on {cluster}",
            every=0.2,
        )
    assert time.monotonic() - posted < 20  # an interval is an hour
    rows = stack.wait_synced([(app, "sim-1"), (app, "sim-3")], commit=pushed, timeout=20,
                             health=None)  # fmt: skip
    assert {rows[(app, c)]["trigger"] for c in ("sim-1", "sim-3")} == {"webhook"}
    assert stack.configmap("sim-2", app) is None

    # The ref moves again at once: a push without a commit is not a replay of the last
    # one once that one's fan-out has started, and the newest commit is what lands.
    stack.write_app(app, value="again", deployment=False)
    again = stack.repo.commit("push again")
    answer = requests.post(f"{url}/hooks/git", data=body, timeout=10,
                           headers={**headers, "X-Reconciler-Token": token})  # fmt: skip
    assert answer.status_code == 202, answer.text
    stack.wait_synced([(app, "sim-1"), (app, "sim-3")], commit=again, timeout=20, health=None)
    assert stack.configmap("sim-1", app) == {"key": "again"}
    assert token not in tail_all(stack)


def _get_ok(url: str) -> bool:
    import requests  # noqa: PLC0415

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def tail_all(stack: Stack) -> str:
    """Every log of the stack, whole."""
    return "\n".join(p.log.read_text(errors="replace") for p in stack.procs if p.log)


# -- slow reconciles, for tests 5 and 6 ------------------------------------------------------

#: Short limits so a lost task comes back within the test.  A task whose worker died is
#: visible again once unacknowledged for the visibility timeout, raised by the app to the
#: hard limit (6*1.2+10 = 17.2s) plus 5; a dead worker's target lock expires after 5s.
KILL_ENV = {
    "RECONCILER_VISIBILITY_TIMEOUT": "20",
    "RECONCILER_TASK_SOFT_LIMIT": "6",
    "RECONCILER_LOCK_TTL": "5",
}
VISIBILITY = int(max(20.0, 6 * 1.2 + 10 + 5))
#: Seconds per request on the slow cluster: a first reconcile of the slow application
#: (discovery, reads, dry-runs, applies: about 31 requests) takes about 8s.
SLOW = 0.25


def _slow_app(stack: Stack, app: str) -> None:
    """An application of several objects on sim-1, whose cluster answers slowly."""
    stack.write_app(app)
    for i in range(4):
        stack.repo.write(f"{app}/extra-{i}.yaml",
                         f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: extra-{i}}}\n"
                         f"data: {{n: '{i}'}}\n")  # fmt: skip
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="1h"))
    stack.sim.set_faults("sim-1", latency=SLOW)
    stack.sim.reset_requests("sim-1")


def _started_on_sim1(stack: Stack, app: str) -> bool:
    return any(app in str(r["path"]) for r in stack.sim.request_log("sim-1"))


# -- 5. two forced syncs of one target never apply at the same time -------------------------


def _epoch(stamp: object) -> float:
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def _started_targets(stack: Stack) -> set[str]:
    """Ids of the target tasks a worker is running now (STARTED in the result backend)."""
    client = redis.Redis.from_url(stack.redis_url)
    try:
        found = set()
        for key in client.scan_iter(match=f"{stack.prefix}celery:celery-task-meta-*"):
            meta = json.loads(client.get(key) or "{}")
            if (
                meta.get("status") == "STARTED"
                and meta.get("name") == "reconciler.reconcile_target"
            ):
                found.add(str(meta["task_id"]))
        return found
    finally:
        client.close()


def test_forced_syncs_of_one_target_never_overlap(stack: Stack) -> None:
    app = unique("lock")
    _slow_app(stack, app)  # about 31 requests for a first reconcile
    stack.repo.commit("one application")
    stack.worker(concurrency=2)
    stack.worker(concurrency=1)
    stack.sim.set_faults("sim-1", latency=0.3)

    def touching() -> list[dict[str, object]]:
        # The namespace, the inventory ConfigMap and the owned-object listings (their
        # label selector) all name the application.
        return [r for r in stack.sim.request_log("sim-1") if app in str(r["path"])]

    first = stack.cli_async("sync", app, "--wait", "--timeout", "90", "-o", "json")
    stack.wait_until(lambda: touching(), timeout=40, what="the first sync to start")
    # The first run holds the target now: the second sync is a separate forced run (not
    # joined to a waiting one), which another worker process starts at once.
    second = stack.cli_async("sync", app, "--wait", "--timeout", "90", "-o", "json")
    # Both target tasks are running at the same moment: the second one waits for the lock.
    stack.wait_until(lambda: len(_started_targets(stack)) == 2, timeout=20,
                     what="both target tasks to be running at once", every=0.1)  # fmt: skip
    assert stack.history(app, "sim-1") == [], "the first run ended before the second began"
    outs = []
    for popen in (first, second):
        out, err = popen.communicate(timeout=120)
        assert popen.returncode == 0, (out, err, stack.logs())
        outs.append(json.loads(out))
    assert [[o["sync"] for o in out] for out in outs] == [["Synced"], ["Synced"]], outs

    log = sorted(touching(), key=lambda r: float(r["start"]))  # type: ignore[arg-type]
    manual = [h for h in stack.history(app, "sim-1") if h["trigger"] == "manual"]
    assert len(manual) == 2, "two separate forced runs were expected"
    assert len(log) >= 15, log
    # Each run, from its start to its end as the engine measured them (the requests of
    # one run may overlap each other: a step's dry-runs go out at once).
    spans = sorted((_epoch(h["started"]), _epoch(h["started"]) + float(h["duration"]))
                   for h in manual)  # fmt: skip
    (_, first_end), (second_start, _) = spans
    assert second_start >= first_end, f"two reconciles of {app}/sim-1 overlapped: {spans}"
    # And every request of the target was made inside one of the two runs.
    slack = 0.05
    for request in log:
        inside = [a - slack <= float(request["start"]) and float(request["end"]) <= b + slack  # type: ignore[arg-type]
                  for a, b in spans]  # fmt: skip
        assert any(inside), (request, spans)


# -- 6. a worker killed in the middle of a reconcile loses nothing --------------------------


def _converged(stack: Stack, app: str, commit: str, task_id: str) -> None:
    # Health is not awaited: the Deployment was just created and no later run looks again.
    rows = stack.wait_synced([(app, "sim-1")], commit=commit, timeout=45, health=None)
    assert rows[(app, "sim-1")]["trigger"] == "manual"
    assert stack.configmap("sim-1", app) == {"key": "1"}
    names = {cm.metadata.name for cm in stack.core("sim-1").list_namespaced_config_map(app).items}
    assert {"cfg", "extra-0", "extra-1", "extra-2", "extra-3"} <= names, names
    assert stack.kubectl("sim-1", "-n", app, "get", "deployment", "web", "-o", "name").strip() == (
        "deployment.apps/web"
    )
    # The very task that was lost is the one that finished, on the surviving workers (the
    # log names it as Flower does, "reconcile APP → CLUSTER (trigger)", then its id).
    assert any(
        f"[{task_id}] succeeded" in (p.log.read_text() if p.log else "")
        for p in stack.procs
    ), stack.logs()


def _unacked_since(stack: Stack) -> float | None:
    """When the broker handed out the oldest unacknowledged task (epoch seconds)."""
    client = redis.Redis.from_url(stack.redis_url)
    try:
        oldest = client.zrange(f"{stack.prefix}celery:unacked_index", 0, 0, withscores=True)
    finally:
        client.close()
    return float(oldest[0][1]) if oldest else None


def _kill_worker_mid_reconcile(stack: Stack, app: str) -> tuple[str, float]:
    """Start a forced sync on a worker, SIGKILL the whole worker once it is at work.

    Returns the lost task's id and when the broker handed it out.
    """
    doomed = stack.worker(concurrency=1, env=KILL_ENV)
    queued = stack.cli_json("sync", app, "--async")
    (task_id,) = [t["task_id"] for t in queued["targets"]]
    stack.wait_until(lambda: _started_on_sim1(stack, app), timeout=30,
                     what="the reconcile to start on sim-1")  # fmt: skip
    stack.stop(doomed, signal.SIGKILL)  # the whole group: main process and pool
    assert stack.history(app, "sim-1") == [], "the reconcile finished before the kill"
    applied = stack.core("sim-1").list_namespaced_config_map(app).items
    assert len(applied) < 5, "the reconcile finished before the kill"
    stack.sim.set_faults("sim-1", latency=0.02)
    delivered = _unacked_since(stack)
    assert delivered is not None, "the lost task is not waiting unacknowledged in the broker"
    return task_id, delivered


def test_worker_killed_mid_reconcile_loses_nothing(stack: Stack) -> None:
    app = unique("kill")
    _slow_app(stack, app)
    commit = stack.repo.commit("a slow application")
    task_id, delivered = _kill_worker_mid_reconcile(stack, app)
    # The replacement comes up once the lost task is visible again (as a restarted pod
    # would): a worker sweeps the broker's unacknowledged tasks when it starts.  See
    # test_lost_task_is_redelivered_to_a_running_worker for a worker that is already up.
    stack.wait_until(lambda: time.time() > delivered + VISIBILITY + 0.5, timeout=40,
                     what="the visibility timeout to pass")  # fmt: skip
    stack.worker(concurrency=1, env=KILL_ENV)
    _converged(stack, app, commit, task_id)
    assert _unacked_since(stack) is None


def test_lost_task_is_redelivered_to_a_running_worker(stack: Stack) -> None:
    app = unique("lost")
    _slow_app(stack, app)
    commit = stack.repo.commit("a slow application")
    task_id, delivered = _kill_worker_mid_reconcile(stack, app)
    stack.worker(concurrency=1, env=KILL_ENV)  # up before the task is visible again
    # Visible again at delivered + 20s; one restore sweep (10s) and the run (~1s) later
    # the target must be Synced.
    deadline = delivered + VISIBILITY + 10 + 6
    rows = stack.wait_synced(
        [(app, "sim-1")], commit=commit, timeout=deadline - time.time(), health=None
    )
    assert rows[(app, "sim-1")]["trigger"] == "manual"
    assert _unacked_since(stack) is None, task_id


def test_pool_process_killed_mid_reconcile_is_requeued_at_once(stack: Stack) -> None:
    import psutil  # noqa: PLC0415

    app = unique("child")
    _slow_app(stack, app)
    commit = stack.repo.commit("a slow application")
    worker = stack.worker(concurrency=2, env=KILL_ENV)
    queued = stack.cli_json("sync", app, "--async")
    (task_id,) = [t["task_id"] for t in queued["targets"]]
    stack.wait_until(lambda: _started_on_sim1(stack, app), timeout=30,
                     what="the reconcile to start on sim-1")  # fmt: skip

    def busy_child() -> psutil.Process | None:
        """The pool process running the target task, as its STARTED state records it.

        Celery stores the pool pid with the STARTED state; a socket to the cluster would
        not tell, since the process that fanned out keeps one open too.
        """
        client = redis.Redis.from_url(stack.redis_url)
        try:
            raw = client.get(f"{stack.prefix}celery:celery-task-meta-{task_id}")
        finally:
            client.close()
        meta = json.loads(raw or "{}")
        pid = (meta.get("result") or {}).get("pid") if meta.get("status") == "STARTED" else None
        return psutil.Process(int(pid)) if pid else None

    child = stack.wait_until(busy_child, timeout=10, what="the pool process running the target")
    child.kill()
    killed = time.monotonic()
    child.wait(timeout=10)
    stack.sim.set_faults("sim-1", latency=0.02)
    assert stack.history(app, "sim-1") == [], "the reconcile finished before the kill"

    _converged(stack, app, commit, task_id)
    # Requeued by the worker itself (reject_on_worker_lost), long before a visibility
    # timeout (24.6s here) could have redelivered it; the worker survived.
    assert time.monotonic() - killed < 20
    assert worker.alive()
    assert worker.log is not None
    text = worker.log.read_text(errors="replace")
    assert "WorkerLostError" in text
    assert text.count(f"[{task_id}] received") >= 2, "not requeued"


# -- 7. a cluster that is down does not hold up the others ----------------------------------


def test_a_down_cluster_does_not_slow_the_others(stack: Stack) -> None:
    app = unique("down")
    stack.write_app(app)
    commit = stack.repo.commit("one application")
    stack.write_fleet(stack.app(app))
    stack.sim.set_faults("sim-2", down=True)
    stack.sim.reset_requests("sim-2")
    started = time.monotonic()
    stack.beat()
    stack.worker(concurrency=2)
    # The same bound as a healthy fleet (test 1): start-up plus one interval's spread.
    rows = stack.wait_synced([(app, "sim-1"), (app, "sim-3")], commit=commit, timeout=40)
    assert time.monotonic() - started < 40
    for cluster in ("sim-1", "sim-3"):
        assert rows[(app, cluster)]["duration"] < 3, rows[(app, cluster)]
        assert stack.configmap(cluster, app) == {"key": "1"}

    def down_reported() -> dict[str, object] | None:
        row = stack.status(app).get((app, "sim-2"))
        return row if row and row["retryable"] and row["error"] else None

    row = stack.wait_until(down_reported, timeout=20, what="sim-2's retryable failure")
    assert row["sync"] == "Failed", row
    # While sim-2 is retried with backoff, forced work on the healthy clusters is prompt.
    begun = time.monotonic()
    outcomes = stack.cli_json("sync", app, "--cluster", "sim-1", "--cluster", "sim-3", "--wait",
                              "--timeout", "30")  # fmt: skip
    assert {o["cluster"]: o["sync"] for o in outcomes} == {"sim-1": "Synced", "sim-3": "Synced"}
    assert time.monotonic() - begun < 10
    stack.sim.set_faults("sim-2", down=False)
    assert stack.configmap("sim-2", app) is None


# -- 8. Flower lists the reconcile tasks, behind basic auth, without secrets ---------------


def test_flower_lists_reconcile_tasks_behind_basic_auth(stack: Stack) -> None:
    import requests  # noqa: PLC0415

    password = "secret-pw-" + uuid.uuid4().hex[:8]
    app = unique("flower")
    stack.write_app(app, deployment=False)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1", "sim-2"]}, interval="1h"))
    port = free_port()
    flower = stack.start("flower", "flower", "--port", str(port),
                         env={"FLOWER_BASIC_AUTH": f"test:{password}"})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    auth = ("test", password)

    def answers() -> bool:
        try:
            return requests.get(f"{url}/api/workers", auth=auth, timeout=5).status_code == 200
        except requests.RequestException:
            return False

    stack.wait_until(answers, timeout=30, what="Flower to answer", procs=[flower])
    stack.worker(concurrency=2)
    outcomes = stack.cli_json("sync", app, "--wait", "--timeout", "60")
    assert {o["sync"] for o in outcomes} == {"Synced"}, outcomes

    # Flower names each job after its target (Celery's shadow name).
    names = {f"reconcile {app} → {c} (manual)" for c in ("sim-1", "sim-2")}

    def listed() -> dict[str, dict[str, object]] | None:
        tasks = requests.get(f"{url}/api/tasks", auth=auth, timeout=5).json()
        done = {t.get("name") for t in tasks.values() if t.get("state") == "SUCCESS"}
        return tasks if names <= done else None

    tasks = stack.wait_until(listed, timeout=30, what="Flower to list the target tasks")
    targets = [t for t in tasks.values() if t.get("name") in names]
    assert {c for c in ("sim-1", "sim-2") if any(c in str(t["args"]) for t in targets)} == {
        "sim-1", "sim-2"}, targets  # fmt: skip
    assert all(app in str(t["args"]) for t in targets), targets
    assert any(t.get("name") == f"reconcile {app} (manual)" and app in str(t["args"])
               for t in tasks.values()), tasks  # fmt: skip

    # Without credentials, or with a wrong password, Flower answers 401.
    assert requests.get(f"{url}/api/tasks", timeout=5).status_code == 401
    assert requests.get(f"{url}/api/tasks", auth=("test", "nope"), timeout=5).status_code == 401
    # No secret in any task's arguments or result, nor in the whole listing.
    listing = json.dumps(tasks)
    assert password not in listing
    assert FAKE_GIT_TOKEN not in listing
    for task in tasks.values():
        for key in ("args", "kwargs", "result"):
            assert password not in str(task.get(key)) and FAKE_GIT_TOKEN not in str(task.get(key))
