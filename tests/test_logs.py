"""One log format for every component: the formatters, and real processes' output.

The formatters are tested on records made here; the format of real output is tested on
a webhook server, a Celery worker and beat started the way the command line starts them
(``run(host=, port=)``, ``app.worker_main([...])``, ``app.start(["beat", ...])``), each a
subprocess whose output is read whole after it stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import workers.logs
from reconciler.errors import ConfigError
from reconciler.settings import load
from reconciler.store.keys import Keys
from workers.app import FORCED_QUEUE, SCHEDULED_QUEUE
from workers.logs import JsonFormatter, TextFormatter, prepare_command, redact, resolve_level

ROOT = Path(__file__).parent.parent
PUSH = (Path(__file__).parent / "data" / "webhook" / "github-push.json").read_bytes()
PUSH_COMMIT = "9a3f1c2b7d8e4f5a6b0c1d2e3f4a5b6c7d8e9f01"
SECRET = "gh-logs-s3cret-" + uuid.uuid4().hex[:8]
FLEET = """\
clusters:
  - name: prod
applications:
  - name: web
    source: {repo: "https://github.com/Acme/Platform-Apps.git", revision: main}
"""
#: ``<ISO 8601 with ms and zone> <LEVEL> <component> <logger>[ <task>[<id>]]: <message>``
LINE = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d) "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<component>[a-z]+) (?P<logger>\S+?)"
    r"(?: (?P<task>\S+)\[(?P<task_id>[^\]]+)\])?: (?P<message>.*)"
)
#: Celery's worker writes these straight to the terminal from its signal handlers, where
#: logging is not safe; they are the only lines that are not records.
SIGNAL_NOTICES = ("worker: Warm shutdown", "worker: Hitting Ctrl+C again")


def record(message: str = "hello %s", *args: Any, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("reconciler.test", logging.WARNING, __file__, 1, message,
                             args or ("world",), None)  # fmt: skip
    for name, value in extra.items():
        setattr(made, name, value)
    return made


# --------------------------------------------------------------------------------------
# The formatters
# --------------------------------------------------------------------------------------


def test_text_line_has_timestamp_level_component_logger_and_message() -> None:
    line = TextFormatter("worker").format(record())
    match = LINE.fullmatch(line)
    assert match, line
    assert match["level"] == "WARNING" and match["component"] == "worker"
    assert match["logger"] == "reconciler.test" and match["message"] == "hello world"
    stamp = datetime.fromisoformat(match["ts"])
    assert stamp.utcoffset() is not None
    assert abs(stamp.timestamp() - time.time()) < 60


def test_text_continues_a_traceback_on_indented_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("it failed")
        failed.exc_info = sys.exc_info()
    lines = TextFormatter("beat").format(failed).splitlines()
    assert LINE.fullmatch(lines[0]), lines[0]
    assert len(lines) > 2
    assert all(line.startswith("  ") for line in lines[1:]), lines
    assert lines[-1].strip() == "ValueError: boom"


def test_json_has_the_fields_and_extras() -> None:
    made = record(delivery="d-1", queued=["web", "api"], commit=None)
    entry = json.loads(JsonFormatter("webhook").format(made))
    assert entry["level"] == "WARNING" and entry["component"] == "webhook"
    assert entry["logger"] == "reconciler.test" and entry["message"] == "hello world"
    assert datetime.fromisoformat(entry["ts"]).utcoffset() is not None
    assert entry["delivery"] == "d-1" and entry["queued"] == ["web", "api"]
    assert entry["commit"] is None
    assert "msg" not in entry and "args" not in entry and "exception" not in entry


def test_inside_a_task_the_line_names_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    class Request:
        id = "9f1c-task"

    class Task:
        name = "reconciler.reconcile_target"
        request = Request()

    monkeypatch.setattr(workers.logs, "get_current_task", lambda: Task())
    made = record()
    assert workers.logs._TaskContext().filter(made)
    match = LINE.fullmatch(TextFormatter("worker").format(made))
    assert match and match["task"] == Task.name and match["task_id"] == "9f1c-task"
    entry = json.loads(JsonFormatter("worker").format(made))
    assert (entry["task_name"], entry["task_id"]) == (Task.name, "9f1c-task")


def test_credentials_in_urls_never_reach_a_line() -> None:
    url = "https://x-token:ghp_leak123@github.com/acme/apps.git"
    made = record("fetching %s failed", url, repository=url, data={"urls": [url]})
    for formatter in (TextFormatter("worker"), JsonFormatter("worker")):
        text = formatter.format(made)
        assert "ghp_leak123" not in text
        assert "https://***@github.com/acme/apps.git" in text
    assert redact("redis://:pw@127.0.0.1:6379/0 and ssh://git@host/x") == (
        "redis://***@127.0.0.1:6379/0 and ssh://git@host/x"
    )


def test_the_variable_wins_over_the_command_line_level() -> None:
    assert resolve_level(load({}), "DEBUG") == logging.DEBUG
    assert resolve_level(load({}), None) == logging.INFO
    assert resolve_level(load({"RECONCILER_LOG_LEVEL": "warning"}), "DEBUG") == logging.WARNING
    assert resolve_level(load({"RECONCILER_LOG_LEVEL": "error"}), logging.INFO) == logging.ERROR
    with pytest.raises(ConfigError, match="RECONCILER_LOG_LEVEL='loud'"):
        resolve_level(load({"RECONCILER_LOG_LEVEL": "loud"}))


def test_an_unknown_format_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="RECONCILER_LOG_FORMAT='xml'"):
        workers.logs.configure_logging("worker", settings=load({"RECONCILER_LOG_FORMAT": "xml"}))


def test_commands_are_prepared_for_their_component(monkeypatch: pytest.MonkeyPatch) -> None:
    configured: list[tuple[str, Any]] = []

    def fake(component: str, *, level: Any = None, settings: Any = None) -> int:
        configured.append((component, level))
        return logging.DEBUG

    monkeypatch.setattr(workers.logs, "configure_logging", fake)
    worker = prepare_command(["worker", "--loglevel", "INFO", "-Q", "a,b", "--concurrency=2"])
    assert worker == ["--quiet", "worker", "--loglevel", "DEBUG", "-Q", "a,b", "--concurrency=2"]
    beat = prepare_command(["beat", "--scheduler", "x:Y", "--loglevel=INFO"])
    assert beat == ["--quiet", "beat", "--loglevel", "DEBUG", "--scheduler", "x:Y"]
    flower = prepare_command(["flower", "--port=5555"])
    assert flower == ["flower", "--port=5555", "--logging=debug"]
    assert prepare_command(["inspect", "ping"]) == ["inspect", "ping"]
    assert configured == [("worker", "INFO"), ("beat", "INFO"), ("flower", None)]


# --------------------------------------------------------------------------------------
# Real processes
# --------------------------------------------------------------------------------------


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def process(code: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -c code`` in a process group of its own, output to ``log``; always killed."""
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield popen
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=30)


def stop(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group, as an orchestrator stops a component, and wait for the exit."""
    os.killpg(popen.pid, signal.SIGTERM)
    popen.wait(timeout=30)


def wait_for(check: Callable[[], Any], *, what: str, log: Path, timeout: float = 45) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)  # polling interval under a deadline, not synchronisation


def environment(redis_url: str, redis_prefix: str, fleet: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RECONCILER_", "CELERY_", "FLOWER_", "REDIS_URL"))}  # fmt: skip
    env.update(REDIS_URL=redis_url, RECONCILER_REDIS_PREFIX=redis_prefix,
               RECONCILER_CONFIG=str(fleet), PYTHONUNBUFFERED="1", **more)  # fmt: skip
    return env


def text_records(output: str) -> list[re.Match[str]]:
    """Every record of a text log; fails on a line that is neither a record nor its
    continuation (nor one of Celery's signal-handler notices)."""
    found = []
    for line in output.splitlines():
        if line.startswith("  ") or line.startswith(SIGNAL_NOTICES) or not line:
            continue
        match = LINE.fullmatch(line)
        assert match, f"not in the log format: {line!r}\n{output}"
        found.append(match)
    return found


def json_records(output: str) -> list[dict[str, Any]]:
    found = []
    for line in output.splitlines():
        if not line or line.startswith(SIGNAL_NOTICES):
            continue
        entry = json.loads(line)
        assert {"ts", "level", "component", "logger", "message"} <= set(entry), line
        assert datetime.fromisoformat(entry["ts"]).utcoffset() is not None, line
        found.append(entry)
    return found


def post_push(port: int, *, secret: str, delivery: str) -> int:
    signature = "sha256=" + hmac.new(secret.encode(), PUSH, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/git", data=PUSH, method="POST",
        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery,
                 "X-Hub-Signature-256": signature, "Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_webhook_server_logs_each_delivery_in_the_format(
    redis_url: str, redis_prefix: str, tmp_path: Path, log_format: str
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    port = free_port()
    env = environment(redis_url, redis_prefix, fleet, RECONCILER_LOG_FORMAT=log_format,
                      RECONCILER_WEBHOOK_GITHUB_SECRET=SECRET)  # fmt: skip
    # basicConfig first, as a careless embedder would: run() must still log one format.
    code = (
        "import logging; logging.basicConfig(level=logging.DEBUG); "
        f"from workers.webhook_server import run; run(host='127.0.0.1', port={port})"
    )
    log = tmp_path / "webhook.log"
    delivery = str(uuid.uuid4())
    with process(code, env, log) as server:
        wait_for(lambda: healthy(port), what="the webhook server", log=log)
        assert post_push(port, secret=SECRET, delivery=delivery) == 202
        assert post_push(port, secret="not-the-secret", delivery="d-refused") == 401
        stop(server)
    output = log.read_text(errors="replace")
    assert SECRET not in output and "Traceback" not in output
    if log_format == "text":
        lines = [(m["level"], m["component"], m["logger"], m["message"])
                 for m in text_records(output)]  # fmt: skip
        assert {component for _, component, _, _ in lines} == {"webhook"}
        [accepted] = [line for line in lines if delivery in line[3]]
        assert accepted[:3] == ("INFO", "webhook", "reconciler.webhook")
        for part in ("webhook github", "repo=https://github.com/Acme/Platform-Apps.git",
                     "ref=refs/heads/main", f"commit={PUSH_COMMIT}", "queued web"):  # fmt: skip
            assert part in accepted[3], accepted
        [refused] = [line for line in lines if "refused" in line[3]]
        assert refused[0] == "WARNING" and "does not match" in refused[3]
    else:
        entries = json_records(output)
        assert {entry["component"] for entry in entries} == {"webhook"}
        [entry] = [e for e in entries if e.get("delivery") == delivery]
        assert entry["level"] == "INFO" and entry["logger"] == "reconciler.webhook"
        assert entry["provider"] == "github"
        assert entry["repository"] == "https://github.com/Acme/Platform-Apps.git"
        assert (entry["ref"], entry["commit"]) == ("refs/heads/main", PUSH_COMMIT)
        assert entry["queued"] == ["web"] and entry["suspended"] == []
        [refusal] = [e for e in entries if "refused" in e["message"]]
        assert refusal["level"] == "WARNING"


def test_worker_logs_in_json_with_the_task_of_each_line(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    env = environment(redis_url, redis_prefix, fleet, RECONCILER_LOG_FORMAT="json",
                      RECONCILER_CACHE_DIR=str(tmp_path / "cache"))  # fmt: skip
    argv = ["worker", "--loglevel", "INFO", "-Q", f"{FORCED_QUEUE},{SCHEDULED_QUEUE}", "-E",
            "--without-gossip", "--without-mingle", "--concurrency=1",
            f"--hostname=logs-{uuid.uuid4().hex[:6]}@%h"]  # fmt: skip
    code = f"from workers.app import app; app.worker_main({argv!r})"
    log = tmp_path / "worker.log"
    with process(code, env, log) as worker:
        wait_for(lambda: " ready." in log.read_text(errors="replace"), what="ready", log=log)
        task_id = _send_reconcile_app(redis_url, redis_prefix, "gone-from-the-fleet")
        wait_for(lambda: f"{task_id}] succeeded" in log.read_text(errors="replace"),
                 what="the task to finish", log=log)  # fmt: skip
        stop(worker)
    entries = json_records(log.read_text(errors="replace"))
    assert {entry["component"] for entry in entries} == {"worker"}
    starting = [e for e in entries if e["logger"] == "reconciler.logs"]
    assert starting and "starting: Celery" in starting[0]["message"]
    # A line of the platform's own logger, written inside the task, names the task.
    [inside] = [e for e in entries if "gone-from-the-fleet" in e["message"]
                and e["logger"] == "reconciler.workers"]  # fmt: skip
    assert inside["task_id"] == task_id and inside["task_name"] == "reconciler.reconcile_app"
    assert any(e["logger"] == "celery.app.trace" and task_id in e["message"] for e in entries)


def _send_reconcile_app(redis_url: str, prefix: str, app_name: str) -> str:
    """Queue a ``reconcile_app`` as the CLI does, with a Celery app of the test's Redis."""
    from celery import Celery  # noqa: PLC0415

    from workers.app import settings  # noqa: PLC0415

    sender = Celery("logs-test")
    sender.conf.update(settings(redis_url, Keys(prefix)))
    try:
        result = sender.send_task("reconciler.reconcile_app", args=(app_name, "manual"),
                                  queue=FORCED_QUEUE)  # fmt: skip
        return str(result.id)
    finally:
        sender.close()


def test_beat_logs_in_text_format_at_the_level_of_the_variable(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET.replace("  - name: web", "  - name: web\n    sync: {interval: 1h}"))
    env = environment(redis_url, redis_prefix, fleet, RECONCILER_LOG_LEVEL="DEBUG")
    code = ("from workers.app import app; app.start(['beat', '--scheduler', "
            "'beat.scheduler:FleetScheduler', '--loglevel', 'INFO'])")  # fmt: skip
    log = tmp_path / "beat.log"
    with process(code, env, log) as beat:
        wait_for(lambda: "Acquired lock" in log.read_text(errors="replace"), what="the lock",
                 log=log)  # fmt: skip
        stop(beat)
    records = text_records(log.read_text(errors="replace"))
    assert {m["component"] for m in records} == {"beat"}
    assert any(m["logger"] == "reconciler.logs" and "beat starting" in m["message"]
               for m in records)  # fmt: skip
    # RECONCILER_LOG_LEVEL=DEBUG won over the command line's INFO.
    assert any(m["level"] == "DEBUG" for m in records), [m.group(0) for m in records]
