"""``GET /metrics`` after real events: deliveries, Git fetches, build info, its own port.

The webhook application is served over real HTTP (as in ``test_webhook_server``), the
Git fetches are a worker runtime's against a real repository on disk and one that does
not exist, and the separate metrics listener is tested both in process and in a
``run()`` subprocess, the way ``reconciler webhook`` serves it.
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import celery
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from reconciler.errors import ReconcilerError
from reconciler.fleet import Source
from reconciler.store.keys import Keys
from reconciler.store.metrics import ReconcileMetrics
from reconciler.webhook import MAX_BODY_BYTES
from tests.gitrepo import GitRepo
from tests.test_logs import free_port, process
from tests.test_webhook_server import (
    DATA,
    FLEET,
    GITHUB_SECRET,
    PING,
    PUSH,
    Recorder,
    Reply,
    Server,
    get,
    github,
    samples,
    send,
)
from workers.fleet_file import FleetFile
from workers.runtime import build_runtime, reset_runtime
from workers.webhook_server import WebhookSecrets

ROOT = Path(__file__).parent.parent
DELIVERIES = "reconciler_webhook_deliveries_total"


@pytest.fixture
def server(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[Server]:
    """The webhook application's parts, as ``test_webhook_server`` builds them."""
    fleet_path = tmp_path / "fleet.yaml"
    fleet_path.write_text(FLEET)
    with redis.Redis.from_url(redis_url) as client:
        secrets = WebhookSecrets(github_secret=GITHUB_SECRET)
        yield Server(client=client, keys=Keys(redis_prefix), fleet_path=fleet_path,
                     recorder=Recorder(), secrets=secrets)  # fmt: skip


def deliveries(reply: Reply) -> dict[tuple[str, str], float]:
    got = samples(reply.text)
    return {
        (dict(labels)["provider"], dict(labels)["result"]): value
        for (name, labels), value in got.items()
        if name == DELIVERIES
    }


def test_every_delivery_is_counted_by_provider_and_result(server: Server) -> None:
    tag = (DATA / "github-tag-push.json").read_bytes()
    gitlab = (DATA / "gitlab-push.json").read_bytes()
    bad = b'{"ref": "refs/heads/main", "repository": '
    replies = send(
        server.app(),
        ("POST", "/hooks/git", github(PUSH), PUSH),
        ("POST", "/hooks/git", github(PUSH), PUSH),
        ("POST", "/hooks/git", github(tag, delivery="tag-1"), tag),
        ("POST", "/hooks/git", github(PING, event="ping", delivery="ping-1"), PING),
        ("POST", "/hooks/git", github(PUSH, secret="wrong", delivery="w-1"), PUSH),
        ("POST", "/hooks/git", {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "t"}, gitlab),
        ("POST", "/hooks/git", {"Content-Type": "application/json"}, PUSH),
        ("POST", "/hooks/git", github(bad, delivery="bad-1"), bad),
        ("POST", "/hooks/git", github(b"{}"), b" " * (MAX_BODY_BYTES + 1)),
        ("GET", "/metrics", {}, b""),
    )
    assert [r.status for r in replies[:-1]] == [202, 200, 200, 200, 401, 401, 401, 400, 413]
    assert deliveries(replies[-1]) == {
        ("github", "accepted"): 2,  # one push queued, one that concerns no application
        ("github", "duplicate"): 1,
        ("github", "ignored"): 1,
        ("github", "unauthorized"): 1,
        ("gitlab", "unauthorized"): 1,
        ("unknown", "unauthorized"): 1,
        ("github", "bad_request"): 1,
        ("github", "too_large"): 1,
    }


def test_a_delivery_with_no_fleet_is_counted_unavailable(server: Server, tmp_path: Path) -> None:
    app = server.app(fleet=FleetFile(str(tmp_path / "missing.yaml")))
    hook, metrics = send(app, ("POST", "/hooks/git", github(PUSH), PUSH),
                         ("GET", "/metrics", {}, b""))  # fmt: skip
    assert hook.status == 503
    assert deliveries(metrics) == {("github", "unavailable"): 1}


def test_build_info_names_the_versions(server: Server) -> None:
    got = samples(get(server.app(), "/metrics").text)
    [(labels, value)] = [
        (dict(lb), v) for (n, lb), v in got.items() if n == "reconciler_build_info"
    ]
    assert value == 1
    assert labels == {
        "version": metadata.version("reconciler"),
        "python": platform.python_version(),
        "celery": celery.__version__,
    }


def test_git_fetches_and_their_failures_from_a_worker_runtime(
    server: Server, redis_url: str, redis_prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = GitRepo(tmp_path / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    repo.write("app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    commit = repo.commit("one file")
    for name, value in {"REDIS_URL": redis_url, "RECONCILER_REDIS_PREFIX": redis_prefix,
                        "RECONCILER_CONFIG": str(server.fleet_path),
                        "RECONCILER_CACHE_DIR": str(tmp_path / "cache")}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    reset_runtime()
    rt = build_runtime()
    try:
        assert rt.resolve(Source(repo=str(repo.path), revision="main"), fresh=True) == commit
        missing = str(tmp_path / "no-such-repo")
        for _ in range(2):
            with pytest.raises(ReconcilerError):
                rt.resolve(Source(repo=missing, revision="main"), fresh=True)
    finally:
        rt.client.close()
        reset_runtime()
    got = samples(get(server.app(), "/metrics").text)
    assert got[("reconciler_git_fetches_total", ())] == 3
    failures = {dict(lb)["repository"]: v for (n, lb), v in got.items()
                if n == "reconciler_git_fetch_failures_total"}  # fmt: skip
    assert failures == {missing: 2}


def test_reconciles_by_target_and_cluster_reachability(server: Server) -> None:
    counters = ReconcileMetrics(server.client, server.keys, max_clusters=1)
    ok = {"application": "web", "sync": "Synced", "health": "Healthy", "duration": 0.3}
    counters.observe({**ok, "cluster": "prod"})
    counters.observe({**ok, "cluster": "staging"})
    counters.observe({"application": "web", "cluster": "prod", "sync": "Failed", "duration": 2,
                      "reason": "LiveStateFailed", "errors": [{"retryable": True,
                      "message": "cluster prod: discovery: cannot reach the API server "
                                 "(connection refused)"}]})  # fmt: skip
    got = samples(get(server.app(), "/metrics").text)
    total = "reconciler_reconciles_total"
    prod = (("application", "web"), ("cluster", "prod"))
    assert got[(total, (*prod, ("result", "Synced")))] == 1
    assert got[(total, (*prod, ("result", "Failed")))] == 1
    other = (("application", "web"), ("cluster", "_other"))
    assert got[(total, (*other, ("result", "Synced")))] == 1
    assert got[("reconciler_reconcile_duration_seconds_count", prod)] == 2
    assert got[("reconciler_reconcile_duration_seconds_count", other)] == 1
    assert got[("reconciler_cluster_reachable", (("cluster", "prod"),))] == 0
    assert got[("reconciler_cluster_reachable", (("cluster", "staging"),))] == 1


# --------------------------------------------------------------------------------------
# /metrics on a port of its own
# --------------------------------------------------------------------------------------


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def test_a_metrics_listener_of_its_own_in_process(server: Server) -> None:
    port = free_port()
    app = server.app(metrics_at=("127.0.0.1", port))

    async def main() -> tuple[list[int], dict[str, tuple[int, str]]]:
        async with TestClient(TestServer(app)) as webhook:
            statuses = []
            for path in ("/metrics", "/healthz"):
                async with webhook.get(path) as response:
                    statuses.append(response.status)
            apart = {
                path: await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}{path}")
                for path in ("/metrics", "/healthz")
            }
            return statuses, apart

    statuses, apart = asyncio.run(main())
    assert statuses == [404, 200]
    assert apart["/metrics"][0] == 200 and "reconciler_build_info" in apart["/metrics"][1]
    assert apart["/healthz"] == (200, "ok\n")
    # The listener stopped with the application.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def serve(port: int) -> str:
    """The code of a process that serves the webhook as ``reconciler webhook`` does."""
    return f"from workers.webhook_server import run; run(host='127.0.0.1', port={port})"


def _env(parts: Server, redis_url: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "REDIS_URL"))}
    env.update(REDIS_URL=redis_url, RECONCILER_REDIS_PREFIX=parts.keys.prefix,
               RECONCILER_CONFIG=str(parts.fleet_path),
               RECONCILER_WEBHOOK_GITHUB_SECRET=GITHUB_SECRET, **more)  # fmt: skip
    return env


def test_run_serves_metrics_on_the_metrics_port_only(
    server: Server, redis_url: str, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    env = _env(server, redis_url, RECONCILER_METRICS_PORT=str(metrics_port),
               RECONCILER_METRICS_HOST="127.0.0.1")  # fmt: skip
    log = tmp_path / "webhook.log"
    with process(serve(port), env, log) as server_process:
        deadline = time.monotonic() + 30
        while True:
            assert server_process.poll() is None, log.read_text()
            try:
                if fetch(f"http://127.0.0.1:{metrics_port}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)  # polling interval under a deadline, not synchronisation
        status, text = fetch(f"http://127.0.0.1:{metrics_port}/metrics")
        assert status == 200 and "reconciler_build_info" in text
        assert fetch(f"http://127.0.0.1:{port}/metrics")[0] == 404
        assert fetch(f"http://127.0.0.1:{port}/healthz")[0] == 200
        os.killpg(server_process.pid, signal.SIGTERM)
        assert server_process.wait(timeout=30) == 0, log.read_text()
    assert f"metrics on http://127.0.0.1:{metrics_port}/metrics" in log.read_text()


def test_run_refuses_the_webhook_port_for_metrics(
    server: Server, redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "webhook.log"
    env = _env(server, redis_url, RECONCILER_METRICS_PORT=str(port))
    with process(serve(port), env, log) as server_process:
        assert server_process.wait(timeout=30) != 0
    assert "RECONCILER_METRICS_PORT" in log.read_text()


def test_a_redis_that_cannot_count_does_not_change_the_answer(server: Server) -> None:
    from redis.backoff import NoBackoff  # noqa: PLC0415
    from redis.retry import Retry  # noqa: PLC0415

    no_retry = Retry(NoBackoff(), 0)
    with redis.Redis(port=free_port(), socket_connect_timeout=0.5, retry=no_retry) as dead:
        [refused] = send(server.app(client=dead),
                         ("POST", "/hooks/git", github(PUSH, secret="wrong"), PUSH))  # fmt: skip
    assert refused.status == 401
