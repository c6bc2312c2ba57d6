"""Notifications in a running stack, against a local HTTP receiver: one message for a
target that fails interval after interval, a 5xx retried, Slack's shape, drift healed,
and the credentials kept out of task results and logs."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Stack, free_port

pytestmark = pytest.mark.e2e

TOKEN = "Bearer notify-" + uuid.uuid4().hex


class Receiver:
    """Records every POST; answers 503 to the first one on /flaky."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.port = free_port()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    first = not any(r["path"] == self.path for r in receiver.requests)
                    status = 503 if self.path == "/flaky" and first else 200
                    receiver.requests.append({"path": self.path, "status": status,
                                              "headers": dict(self.headers),
                                              "body": json.loads(body)})  # fmt: skip
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def seen(self, path: str, status: int | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path
                    and (status is None or r["status"] == status)]  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.close()


def failed_runs(stack: Stack, app: str) -> int:
    return sum(1 for h in stack.history(app, "sim-1") if h["sync"] == "Failed")


def test_a_failing_target_is_told_once_over_several_intervals(
    stack: Stack, receiver: Receiver
) -> None:
    broken, steady = f"broken-{uuid.uuid4().hex[:6]}", f"steady-{uuid.uuid4().hex[:6]}"
    stack.write_app(broken)
    stack.repo.write(f"{broken}/bad.yaml", "kind: ConfigMap\nmetadata: {name: [unclosed\n")
    stack.write_app(steady)
    stack.repo.commit("two applications, one broken")
    base = f"http://127.0.0.1:{receiver.port}"
    fleet_apps = [stack.app(broken, clusters={"names": ["sim-1"]}, interval="5s"),
                  stack.app(steady, clusters={"names": ["sim-1"]}, interval="5s")]  # fmt: skip
    stack.write_fleet(*fleet_apps)
    text = stack.fleet_path.read_text()
    notifications = [
        {"name": "ops", "url": f"{base}/flaky", "events": ["sync-failed"],
         "applications": ["broken-*"], "headersFromEnv": {"Authorization": "NOTIFY_TOKEN"}},
        {"name": "chat", "urlFromEnv": "CHAT_URL", "format": "slack",
         "events": ["sync-failed", "drift-healed"]},
    ]  # fmt: skip
    stack.fleet_path.write_text(text + "notifications: " + json.dumps(notifications) + "\n")
    env = {"NOTIFY_TOKEN": TOKEN, "CHAT_URL": f"{base}/slack"}
    worker = stack.worker(concurrency=2, env=env)
    procs = [worker, stack.beat()]

    # Several intervals of failure; the 503 is retried; one message in all, per endpoint.
    stack.wait_until(lambda: failed_runs(stack, broken) >= 3, timeout=90,
                     what="three failed runs", procs=procs)  # fmt: skip
    stack.wait_until(lambda: receiver.seen("/flaky", 200), timeout=60,
                     what="the retried message", procs=procs)  # fmt: skip
    assert len(receiver.seen("/flaky", 503)) == 1 and len(receiver.seen("/flaky", 200)) == 1
    [told] = receiver.seen("/flaky", 200)
    assert told["headers"]["Authorization"] == TOKEN
    body = told["body"]
    assert body["event"] == "sync-failed" and body["application"] == broken
    assert body["cluster"] == "sim-1" and "bad.yaml" in body["message"]
    failures = [r for r in receiver.seen("/slack") if r["body"]["text"].startswith("Sync failed")]
    assert len(failures) == 1
    attachment = failures[0]["body"]["attachments"][0]
    assert attachment["color"] == "danger" and f"{broken} on sim-1" in attachment["title"]
    assert "Authorization" not in failures[0]["headers"]  # only ops' endpoint has it

    # Drift on the steady application is healed at the next poll, and told.
    failed_before = failed_runs(stack, broken)
    stack.wait_synced([(steady, "sim-1")], commit=stack.repo.git("rev-parse", "HEAD"),
                      timeout=60, health=None)  # fmt: skip
    stack.kubectl("sim-1", "-n", steady, "scale", "deployment", "web", "--replicas=3")
    healed = stack.wait_until(
        lambda: [r for r in receiver.seen("/slack") if "Drift healed" in r["body"]["text"]],
        timeout=60, what="the heal told", procs=procs)  # fmt: skip
    assert f"{steady} on sim-1" in healed[0]["body"]["text"]
    # Still failing, interval after interval: still the one message.
    stack.wait_until(lambda: failed_runs(stack, broken) > failed_before, timeout=60,
                     what="another failed run", procs=procs)  # fmt: skip
    assert len(receiver.seen("/flaky", 200)) == 1

    # The credentials are nowhere in task results or logs.
    with redis.Redis.from_url(stack.redis_url) as client:
        for key in client.scan_iter(match=f"{stack.prefix}*", count=500):
            if client.type(key) == b"string":
                value = client.get(key) or b""
                assert TOKEN.encode() not in value and b"/slack" not in value, key
    assert TOKEN not in (worker.log.read_text() if worker.log else "")


def test_the_watcher_tells_of_a_target_turned_degraded_without_waiting_for_a_run(
    stack: Stack, receiver: Receiver
) -> None:
    app = f"sick-{uuid.uuid4().hex[:6]}"
    stack.write_app(app)
    commit = stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-3"]}, interval="1h"))
    text = stack.fleet_path.read_text()
    endpoint = [{"name": "ops", "url": f"http://127.0.0.1:{receiver.port}/ops",
                 "events": ["health-degraded"]}]  # fmt: skip
    stack.fleet_path.write_text(text + "notifications: " + json.dumps(endpoint) + "\n")
    worker = stack.worker(concurrency=2)
    watcher = stack.start("watcher", "watcher", env={"RECONCILER_WATCH_LEASE_TTL": "3"})
    procs = [worker, watcher]
    done = stack.cli("sync", app, "--timeout", "90", "--health")
    assert done.returncode == 0, done.stdout + done.stderr
    stack.wait_synced([(app, "sim-3")], commit=commit, timeout=60)
    # Suspended: nothing runs on the target any more, so only the watch can tell.
    assert stack.cli("suspend", app).returncode == 0
    runs = len(stack.history(app, "sim-3"))
    stack.sim.set_faults("sim-3", rollout="fail")
    stack.kubectl("sim-3", "-n", app, "patch", "deployment", "web", "--type=merge", "-p",
                  '{"spec": {"template": {"metadata": {"annotations": {"release": "2"}}}}}')
    told = stack.wait_until(lambda: receiver.seen("/ops") or None, timeout=60,
                            what="the Degraded target told", procs=procs)  # fmt: skip
    body = told[0]["body"]
    assert body["event"] == "health-degraded" and body["cluster"] == "sim-3"
    assert body["message"] == "health is Degraded (seen by the watcher)"
    assert len(stack.history(app, "sim-3")) == runs  # no run told it
    assert stack.status(app)[(app, "sim-3")]["health"] == "Degraded"
