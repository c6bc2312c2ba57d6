"""The webhook, metrics and health endpoints over real HTTP, against a real Redis.

Each test builds the aiohttp application with ``make_app``, serves it on a loopback port
with aiohttp's TestServer inside ``asyncio.run`` and sends real requests.  Queueing is
injected (a recorder) so a test can count exactly what was queued without a worker; one
test keeps the default and reads the Celery message Redis received.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

import workers.app
from reconciler.outcome import Outcome
from reconciler.store.keys import Keys, default_prefix
from reconciler.store.metrics import ReconcileMetrics
from reconciler.store.records import Records
from reconciler.webhook import MAX_BODY_BYTES
from workers.app import FORCED_QUEUE, SCHEDULED_QUEUE, reconfigure
from workers.fleet_file import FleetFile
from workers.webhook_server import WebhookSecrets, make_app

DATA = Path(__file__).parent / "data" / "webhook"
PUSH = (DATA / "github-push.json").read_bytes()  # Acme/Platform-Apps, refs/heads/main
PING = (DATA / "github-ping.json").read_bytes()
GITHUB_SECRET = "gh-webhook-s3cret-4f1d"
GITLAB_TOKEN = "gl-webhook-t0ken-77aa"
DELIVERY = "72d3162e-cc78-11e3-81ab-4c9367dc0958"

FLEET = """\
clusters:
  - name: prod
  - name: staging
applications:
  - name: web
    source: {repo: "https://github.com/Acme/Platform-Apps.git", revision: main}
  - name: other
    source: {repo: "https://github.com/Acme/Something-Else.git", revision: main}
  - name: api
    source: {repo: "git@github.com:acme/platform-apps", revision: refs/heads/main}
  - name: feature
    source: {repo: "https://github.com/Acme/Platform-Apps.git", revision: feature}
  - name: head
    source: {repo: "https://github.com/Acme/Platform-Apps", revision: HEAD}
"""
MATCHING = ["web", "api", "head"]


def sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(
    body: bytes, *, event: str = "push", delivery: str = DELIVERY, secret: str = GITHUB_SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(body, secret),
        "Content-Type": "application/json",
    }


@dataclass
class Recorder:
    """Stands in for Celery: remembers each application queued, answers a fake task id."""

    calls: list[str] = field(default_factory=list)
    error: Exception | None = None
    #: The claim each call carried for its fan-out to settle (None: the push named a commit).
    settles: list[str | None] = field(default_factory=list)
    #: Why each call's runs happened, as the outcomes will record it.
    causes: list[dict[str, Any] | None] = field(default_factory=list)

    def __call__(self, app_name: str, settle: str | None = None,
                 cause: dict[str, Any] | None = None) -> str:  # fmt: skip
        if self.error is not None:
            raise self.error
        self.calls.append(app_name)
        self.settles.append(settle)
        self.causes.append(cause)
        return f"task-{app_name}-{len(self.calls)}"


@dataclass
class Reply:
    status: int
    text: str
    content_type: str

    def json(self) -> Any:
        return json.loads(self.text)


Request = tuple[str, str, dict[str, str], bytes]


def send(app: web.Application, *requests: Request) -> list[Reply]:
    """Serve ``app`` on a loopback port and send ``requests`` in order."""

    async def main() -> list[Reply]:
        replies = []
        async with TestClient(TestServer(app)) as client:
            for method, path, headers, body in requests:
                async with client.request(method, path, headers=headers, data=body) as response:
                    text = await response.text()
                    replies.append(Reply(response.status, text, response.content_type))
        return replies

    return asyncio.run(main())


def post(app: web.Application, headers: dict[str, str], body: bytes) -> Reply:
    [reply] = send(app, ("POST", "/hooks/git", headers, body))
    return reply


def get(app: web.Application, path: str) -> Reply:
    [reply] = send(app, ("GET", path, {}, b""))
    return reply


@dataclass
class Server:
    """What a test needs to build the app and look behind it."""

    client: redis.Redis
    keys: Keys
    fleet_path: Path
    recorder: Recorder
    secrets: WebhookSecrets

    def app(self, **overrides: Any) -> web.Application:
        options: dict[str, Any] = {
            "fleet": FleetFile(str(self.fleet_path)),
            "client": self.client,
            "keys": self.keys,
            "secrets": self.secrets,
            "enqueue": self.recorder,
        }
        options.update(overrides)
        return make_app(**options)


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def server(client: redis.Redis, redis_prefix: str, tmp_path: Path) -> Server:
    fleet_path = tmp_path / "fleet.yaml"
    fleet_path.write_text(FLEET)
    return Server(
        client=client,
        keys=Keys(redis_prefix),
        fleet_path=fleet_path,
        recorder=Recorder(),
        secrets=WebhookSecrets(github_secret=GITHUB_SECRET),
    )


# --------------------------------------------------------------------------------------
# POST /hooks/git
# --------------------------------------------------------------------------------------


def test_push_queues_exactly_the_matching_applications_in_fleet_order(server: Server) -> None:
    reply = post(server.app(), github(PUSH), PUSH)
    assert reply.status == 202, reply.text
    assert reply.json() == {
        "applications": MATCHING,
        "tasks": {"web": "task-web-1", "api": "task-api-2", "head": "task-head-3"},
    }
    assert server.recorder.calls == MATCHING
    ttl = server.client.ttl(server.keys.webhook_seen(DELIVERY))
    assert 0 < ttl <= 86400


def test_bad_signature_is_refused_and_queues_nothing(server: Server) -> None:
    reply = post(server.app(), github(PUSH, secret="not-the-secret"), PUSH)
    assert reply.status == 401
    assert "does not match" in reply.json()["error"]
    assert server.recorder.calls == []
    assert not server.client.exists(server.keys.webhook_seen(DELIVERY))


def test_a_body_changed_after_signing_is_refused(server: Server) -> None:
    tampered = PUSH.replace(b"refs/heads/main", b"refs/heads/evil")
    assert post(server.app(), github(PUSH), tampered).status == 401
    assert server.recorder.calls == []


def test_provider_without_a_configured_secret_is_refused(server: Server) -> None:
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "anything"}
    reply = post(server.app(), headers, (DATA / "gitlab-push.json").read_bytes())
    assert reply.status == 401
    assert "GitLab webhooks are not enabled" in reply.json()["error"]
    unsigned = post(server.app(), {"Content-Type": "application/json"}, PUSH)
    assert unsigned.status == 401
    assert server.recorder.calls == []


def test_malformed_push_is_a_bad_request(server: Server) -> None:
    body = b'{"ref": "refs/heads/main", "repository": '
    reply = post(server.app(), github(body), body)
    assert reply.status == 400
    assert "not valid JSON" in reply.json()["error"]
    assert server.recorder.calls == []


def test_oversized_body_is_refused_before_anything_else(server: Server) -> None:
    body = b" " * (MAX_BODY_BYTES + 1)
    reply = post(server.app(), github(b"{}"), body)
    assert reply.status == 413
    assert server.recorder.calls == []


def test_redelivery_is_answered_without_queueing_twice(server: Server) -> None:
    first, second = send(
        server.app(),
        ("POST", "/hooks/git", github(PUSH), PUSH),
        ("POST", "/hooks/git", github(PUSH), PUSH),
    )
    assert first.status == 202
    assert second.status == 200
    assert second.json() == {"duplicate": True}
    assert server.recorder.calls == MATCHING
    # The signature covers the body only: the same push under a fresh delivery id is
    # a replay, answered as a duplicate.
    replay = post(server.app(), github(PUSH, delivery="another-delivery"), PUSH)
    assert (replay.status, replay.json()) == (200, {"duplicate": True})
    assert server.recorder.calls == MATCHING
    # Another commit of the same branch is another push.
    moved = PUSH.replace(b"9a3f1c2b7d8e4f5a6b0c1d2e3f4a5b6c7d8e9f01", b"1" * 40)
    assert moved != PUSH
    assert post(server.app(), github(moved, delivery="third"), moved).status == 202
    assert server.recorder.calls == MATCHING * 2


def test_ping_is_acknowledged_and_queues_nothing(server: Server) -> None:
    reply = post(server.app(), github(PING, event="ping"), PING)
    assert reply.status == 200
    assert reply.json() == {"ignored": "ping"}
    assert server.recorder.calls == []


def test_push_that_concerns_no_application(server: Server) -> None:
    body = (DATA / "github-tag-push.json").read_bytes()
    reply = post(server.app(), github(body), body)
    assert reply.status == 200
    assert reply.json() == {"applications": []}
    assert server.recorder.calls == []


def test_suspended_applications_are_not_queued(server: Server) -> None:
    server.fleet_path.write_text(
        FLEET.replace(
            "revision: refs/heads/main}", "revision: refs/heads/main}\n    sync: {suspended: true}"
        )
    )
    server.client.sadd(server.keys.suspended(), "head")
    reply = post(server.app(), github(PUSH), PUSH)
    assert reply.status == 202
    assert reply.json() == {
        "applications": ["web"],
        "suspended": ["api", "head"],
        "tasks": {"web": "task-web-1"},
    }
    assert server.recorder.calls == ["web"]


def test_invalid_fleet_file_answers_503_and_a_redelivery_works_once_fixed(
    server: Server,
) -> None:
    server.fleet_path.write_text(FLEET.replace("name: web", "name: Not_A_Label"))
    app_fleet = FleetFile(str(server.fleet_path))
    broken = post(server.app(fleet=app_fleet), github(PUSH), PUSH)
    assert broken.status == 503
    assert str(server.fleet_path) in broken.json()["error"]
    assert server.recorder.calls == []
    server.fleet_path.write_text(FLEET)
    fixed = post(server.app(fleet=app_fleet), github(PUSH), PUSH)
    assert fixed.status == 202
    assert server.recorder.calls == MATCHING


def test_missing_fleet_file_answers_503(server: Server, tmp_path: Path) -> None:
    reply = post(server.app(fleet=FleetFile(str(tmp_path / "nope.yaml"))), github(PUSH), PUSH)
    assert reply.status == 503
    assert "cannot read the fleet file" in reply.json()["error"]


def test_broker_failure_answers_503_and_forgets_the_delivery(server: Server) -> None:
    server.recorder.error = redis.ConnectionError("broker down")
    reply = post(server.app(), github(PUSH), PUSH)
    assert reply.status == 503
    assert not server.client.exists(server.keys.webhook_seen(DELIVERY))
    server.recorder.error = None
    assert post(server.app(), github(PUSH), PUSH).status == 202
    assert server.recorder.calls == MATCHING


def test_one_log_line_per_delivery_without_secrets_or_body(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = PUSH.replace(
        b'"clone_url": "https://github.com/Acme/Platform-Apps.git"',
        b'"clone_url": "https://x-token:ghp_leakedtoken123@github.com/Acme/Platform-Apps.git"',
    )
    assert body != PUSH
    assert post(server.app(), github(body), body).status == 202
    assert post(server.app(), github(PUSH, secret="wrong"), PUSH).status == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "reconciler.webhook"]
    assert len(lines) == 2, lines
    assert "github" in lines[0]
    assert "refs/heads/main" in lines[0]
    assert "web, api, head" in lines[0]
    assert DELIVERY in lines[0]
    for secret in (GITHUB_SECRET, "ghp_leakedtoken123", "Design for failure", "octocat"):
        assert secret not in caplog.text


def test_secrets_come_from_the_environment_and_never_show() -> None:
    secrets = WebhookSecrets.from_env(
        {
            "RECONCILER_WEBHOOK_GITHUB_SECRET": "gh-value",
            "RECONCILER_WEBHOOK_GITLAB_TOKEN": "",
            "RECONCILER_WEBHOOK_TOKEN": "plain-value",
        }
    )
    assert secrets == WebhookSecrets(github_secret="gh-value", plain_token="plain-value")
    assert secrets.providers() == ["github", "plain"]
    assert "gh-value" not in repr(secrets)
    assert "plain-value" not in repr(secrets)


# --------------------------------------------------------------------------------------
# The default enqueue: a real Celery message in Redis
# --------------------------------------------------------------------------------------


def _drop_pools(celery_app: Any) -> None:
    """Forget broker connections, as Celery does after a fork, so new settings apply."""
    pool = celery_app._pool
    if pool is not None:
        pool.force_close_all()
    celery_app._after_fork()


@pytest.fixture
def celery_on_test_redis(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Point the process's Celery app at the test Redis and prefix, and back afterwards."""
    before_url = workers.app.redis_url()
    before_prefix = default_prefix()
    # Record the environment so monkeypatch restores it after reconfigure() changed it.
    monkeypatch.setenv("REDIS_URL", before_url)
    monkeypatch.setenv("RECONCILER_REDIS_PREFIX", before_prefix)
    _drop_pools(workers.app.app)
    reconfigure(workers.app.app, url=redis_url, prefix=redis_prefix)
    yield
    _drop_pools(workers.app.app)
    reconfigure(workers.app.app, url=before_url, prefix=before_prefix)


@pytest.mark.usefixtures("celery_on_test_redis")
def test_default_enqueue_sends_reconcile_app_to_the_forced_queue(server: Server) -> None:
    reply = post(server.app(enqueue=None), github(PUSH), PUSH)
    assert reply.status == 202, reply.text
    answer = reply.json()
    assert answer["applications"] == MATCHING
    queue_key = server.keys.celery() + FORCED_QUEUE
    raw = server.client.lrange(queue_key, 0, -1)
    assert len(raw) == len(MATCHING)
    assert not server.client.exists(server.keys.celery() + SCHEDULED_QUEUE)
    sent: dict[str, str] = {}
    for item in raw:
        text = item.decode() if isinstance(item, bytes) else item
        message = json.loads(text)
        assert message["headers"]["task"] == "reconciler.reconcile_app"
        assert message["properties"]["body_encoding"] == "base64"
        body = base64.b64decode(message["body"]).decode()
        for secret in (GITHUB_SECRET, "Design for failure", "octocat", "Platform-Apps"):
            assert secret not in text  # headers: argsrepr, kwargsrepr...
            assert secret not in body
        args, kwargs, _embed = json.loads(body)
        assert args == [args[0], "webhook"]
        # Why the runs happen, for their outcomes: the push, never its secret.
        assert kwargs == {"clusters": None, "fresh": True, "cause": {
            "delivery": DELIVERY, "commit": "9a3f1c2b7d8e4f5a6b0c1d2e3f4a5b6c7d8e9f01",
            "ref": "refs/heads/main", "author": "Mona Lisa",
            "message": "guestbook: bump web to 1.4.2"}}  # fmt: skip
        sent[args[0]] = message["headers"]["id"]
    assert sent == answer["tasks"]


# --------------------------------------------------------------------------------------
# GET /metrics and /healthz
# --------------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _outcome(app: str, cluster: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "application": app, "cluster": cluster, "trigger": "schedule",
        "started": "2024-05-01T12:00:00Z", "duration": 1.5, "sync": "Synced",
        "health": "Healthy", "changes": [], "drift": [], "errors": [],
    }  # fmt: skip
    base.update(fields)
    return base


def test_metrics_expose_targets_counters_and_queue_depths(server: Server) -> None:
    records = Records(server.client, server.keys)
    records.record(Outcome.from_dict(_outcome("web", "prod")))
    drift = [{"object": f"ConfigMap/default/c{i}", "kind": "changed"} for i in range(3)]
    records.record(Outcome.from_dict(_outcome("api", "staging", sync="OutOfSync",
                                              health="Degraded", drift=drift)))  # fmt: skip
    counters = ReconcileMetrics(server.client, server.keys)
    counters.observe(_outcome("web", "prod", duration=0.2))
    counters.observe(_outcome("api", "staging", sync="OutOfSync", duration=7.0))
    counters.observe({"application": "web", "cluster": "prod", "skipped": "busy"})
    prefix = server.keys.celery()
    server.client.rpush(prefix + FORCED_QUEUE, "m1", "m2")
    server.client.rpush(prefix + "reconciler-scheduled.eu", "m1")
    server.client.rpush(prefix + "reconciler-scheduled.eu\x06\x163", "m2", "m3")
    server.client.set(prefix + "reconciler-not-a-queue", "x")

    reply = get(server.app(), "/metrics")
    assert reply.status == 200
    assert reply.content_type == "text/plain"
    got = samples(reply.text)

    web = (("application", "web"), ("cluster", "prod"))
    api = (("application", "api"), ("cluster", "staging"))
    status = "reconciler_target_status"
    assert got[(status, (*web, ("health", "Healthy"), ("sync", "Synced")))] == 1
    assert got[(status, (*api, ("health", "Degraded"), ("sync", "OutOfSync")))] == 1
    assert len([name for name, _ in got if name == status]) == 2
    assert got[("reconciler_target_drift", web)] == 0
    assert got[("reconciler_target_drift", api)] == 3
    assert got[("reconciler_target_synced", web)] == 1
    assert got[("reconciler_target_synced", api)] == 0
    assert got[("reconciler_target_healthy", web)] == 1
    assert got[("reconciler_target_healthy", api)] == 0
    # started 12:00:00Z + 1.5 s
    assert got[("reconciler_target_last_run_timestamp_seconds", web)] == 1714564801.5

    total = "reconciler_reconciles_total"
    assert got[(total, (*web, ("result", "Synced")))] == 1
    assert got[(total, (*api, ("result", "OutOfSync")))] == 1
    assert got[(total, (*web, ("result", "skipped")))] == 1
    bucket = "reconciler_reconcile_duration_seconds_bucket"
    assert got[(bucket, (*web, ("le", "0.25")))] == 1
    assert got[(bucket, (*api, ("le", "5.0")))] == 0
    assert got[(bucket, (*api, ("le", "10.0")))] == 1
    assert got[(bucket, (*web, ("le", "+Inf")))] == 1
    assert got[("reconciler_reconcile_duration_seconds_count", web)] == 1
    assert got[("reconciler_reconcile_duration_seconds_sum", api)] == pytest.approx(7.0)

    assert got[("reconciler_queue_depth", (("queue", FORCED_QUEUE),))] == 2
    assert got[("reconciler_queue_depth", (("queue", SCHEDULED_QUEUE),))] == 0
    assert got[("reconciler_queue_depth", (("queue", "reconciler-scheduled.eu"),))] == 3
    queues = {labels for name, labels in got if name == "reconciler_queue_depth"}
    assert len(queues) == 3


def test_metrics_of_an_empty_installation(server: Server) -> None:
    got = samples(get(server.app(), "/metrics").text)
    assert got[("reconciler_queue_depth", (("queue", FORCED_QUEUE),))] == 0
    assert got[("reconciler_git_fetches_total", ())] == 0
    assert not any(name.startswith("reconciler_target_") for name, _ in got)
    assert not any(name.startswith("reconciler_reconcile") for name, _ in got)


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_healthz_follows_redis(server: Server) -> None:
    ok = get(server.app(), "/healthz")
    assert (ok.status, ok.text.strip()) == (200, "ok")
    # No retries: redis-py would otherwise back off for seconds before giving up.
    no_retry = Retry(NoBackoff(), 0)
    with redis.Redis(port=_unused_port(), socket_connect_timeout=0.5, retry=no_retry) as dead:
        app = server.app(client=dead)
        down, metrics = send(app, ("GET", "/healthz", {}, b""), ("GET", "/metrics", {}, b""))
        hook = post(server.app(client=dead), github(PUSH), PUSH)
    assert down.status == 503
    assert metrics.status == 503
    assert hook.status == 503
    assert server.recorder.calls == []


# --------------------------------------------------------------------------------------
# run(): a foreground server that stops cleanly on a signal
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_until_a_signal_then_exits_cleanly(
    server: Server, redis_url: str, redis_prefix: str, signum: int
) -> None:
    port = _unused_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "RECONCILER_REDIS_PREFIX": redis_prefix,
        "RECONCILER_CONFIG": str(server.fleet_path),
        "RECONCILER_WEBHOOK_GITHUB_SECRET": GITHUB_SECRET,
    }
    code = (
        "import logging; logging.basicConfig(level=logging.INFO); "
        "from workers.webhook_server import run; "
        f"run(host='127.0.0.1', port={port})"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status = None
        while status != 200:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the server did not answer /healthz in time"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    status = r.status
            except OSError:
                time.sleep(0.05)  # polling interval under a deadline, not synchronisation
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert "providers enabled: github" in output
    assert GITHUB_SECRET not in output


def test_metrics_ask_a_token_on_a_listener_others_can_reach(server: Server) -> None:
    from reconciler.settings import load as load_settings  # noqa: PLC0415
    from workers.readers import ReadAccess  # noqa: PLC0415

    env = load_settings({"RECONCILER_HTTP_TOKEN": "s3cret-reader"})
    public = ReadAccess.for_listener("0.0.0.0", env)
    assert not public.anonymous and ReadAccess.for_listener("127.0.0.1", env).anonymous
    assert ReadAccess.for_listener("::1", env).anonymous
    told = load_settings({"RECONCILER_HTTP_INSECURE": "1"})
    assert ReadAccess.for_listener("0.0.0.0", told).anonymous
    basic = "Basic " + base64.b64encode(b"prometheus:s3cret-reader").decode()
    wrong = "Basic " + base64.b64encode(b"prometheus:guess").decode()
    replies = send(
        server.app(readers=public),
        ("GET", "/metrics", {}, b""),
        ("GET", "/metrics", {"Authorization": "Bearer guess"}, b""),
        ("GET", "/metrics", {"Authorization": wrong}, b""),
        ("GET", "/metrics", {"Authorization": "Bearer s3cret-reader"}, b""),
        ("GET", "/metrics", {"Authorization": basic}, b""),
        ("GET", "/healthz", {}, b""),
    )
    assert [reply.status for reply in replies] == [401, 401, 401, 200, 200, 200]
    assert "RECONCILER_HTTP_TOKEN" in replies[0].text and "s3cret" not in replies[0].text
    assert "reconciler_build_info" in replies[3].text
    # No token configured: nobody may read there, and the answer says how to fix it.
    [closed] = send(server.app(readers=ReadAccess.for_listener("0.0.0.0", load_settings({}))),
                    ("GET", "/metrics", {"Authorization": "Bearer "}, b""))  # fmt: skip
    assert closed.status == 401 and "is not set" in closed.text
