"""A running process's fleet file: the last valid fleet kept, each breakage reported once.

The state machine (:class:`FleetFile`) on real files; its reports (:class:`FleetWatch`) in
the log and in a real Redis; the worker's main-process watch and what a forked pool
process inherits from it; and the webhook server's ``reconciler_fleet_valid`` gauge.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

import workers.fleet_file
from reconciler.errors import ConfigError
from reconciler.store.fleet_state import FleetState
from reconciler.store.keys import Keys
from workers.fleet_file import (
    FleetFile,
    FleetSource,
    FleetWatch,
    inherited_fleet,
    start_worker_watch,
    stop_worker_watch,
)
from workers.webhook_server import WebhookSecrets, make_app

VALID = """\
clusters: [{name: prod}, {name: staging}]
applications:
  - {name: web, source: {repo: /srv/git/apps}}
  - {name: api, source: {repo: /srv/git/apps}}
"""
GROWN = VALID + "  - {name: jobs, source: {repo: /srv/git/apps}}\n"
BAD_YAML = "clusters: [\n  {name: prod\n"
BAD_SCHEMA = """\
clusters: [{name: prod}]
applications:
  - {name: Web_App, source: {repo: /srv/git/apps}}
  - {name: api, source: {repo: /srv/git/apps}, sync: {interval: soon}}
"""


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    """Replace the file atomically, as editors and deploy tools do."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    fleet = tmp_path / "fleet.yaml"
    write(fleet, VALID)
    return fleet


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def fleet_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "reconciler.fleet"]


# --------------------------------------------------------------------------------------
# FleetFile: the state machine
# --------------------------------------------------------------------------------------


def test_an_invalid_file_leaves_the_last_valid_fleet_in_force(path: Path) -> None:
    clock = Clock()
    fleet_file = FleetFile(str(path), clock=clock)
    first = fleet_file.get()
    assert [a.name for a in first.applications] == ["web", "api"]
    assert fleet_file.check().valid

    clock.now += 10
    write(path, BAD_YAML)
    view = fleet_file.check()
    assert not view.valid
    assert view.fleet == first
    assert fleet_file.get() == first
    assert view.first_error == f"{path}:3: did not find expected ',' or '}}'"
    assert view.since == clock.now

    clock.now += 10
    again = fleet_file.check()
    assert (again.since, again.checked) == (view.since, clock.now)
    assert again.error is view.error


def test_a_schema_error_names_its_first_problem_and_counts_the_rest(path: Path) -> None:
    fleet_file = FleetFile(str(path))
    fleet_file.get()
    write(path, BAD_SCHEMA)
    view = fleet_file.check()
    assert len(view.problems) == 2
    assert view.first_error.startswith(f"{path}: applications[0] (Web_App): name:")
    assert "sync.interval" in view.problems[1]


def test_a_removed_file_is_an_error_and_the_fleet_stays(path: Path) -> None:
    fleet_file = FleetFile(str(path))
    first = fleet_file.get()
    path.unlink()
    view = fleet_file.check()
    assert view.first_error == f"{path}: cannot read the fleet file: No such file or directory"
    assert fleet_file.get() == first


def test_a_fixed_file_is_read_and_valid_again(path: Path) -> None:
    clock = Clock()
    fleet_file = FleetFile(str(path), clock=clock)
    fleet_file.get()
    write(path, BAD_YAML)
    broken = fleet_file.check()
    clock.now += 60
    write(path, GROWN)
    view = fleet_file.check()
    assert view.valid and view.error is None
    assert [a.name for a in fleet_file.get().applications] == ["web", "api", "jobs"]
    assert view.fingerprint != broken.fingerprint
    assert view.since == clock.now


def test_without_any_valid_fleet_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    write(path, BAD_YAML)
    fleet_file = FleetFile(str(path))
    with pytest.raises(ConfigError, match=f"{path}:3"):
        fleet_file.get()
    assert fleet_file.check().fleet is None


def test_a_given_last_valid_fleet_stands_in_until_the_file_is_valid(
    path: Path, tmp_path: Path
) -> None:
    parent = FleetFile(str(path)).get()
    write(path, BAD_YAML)
    child = FleetFile(str(path), last_valid=parent)
    assert child.get() == parent
    assert not child.check().valid


# --------------------------------------------------------------------------------------
# FleetWatch: one line per transition, and the installation's record
# --------------------------------------------------------------------------------------


def test_each_transition_is_logged_once_without_a_traceback(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.fleet")
    watch = FleetWatch(FleetFile(str(path)), component="test")
    watch.check()
    assert fleet_lines(caplog) == []  # a valid file at the first look says nothing

    write(path, BAD_SCHEMA)
    for _ in range(5):
        assert [a.name for a in watch.get().applications] == ["web", "api"]
    [broken] = fleet_lines(caplog)
    assert broken.levelno == logging.ERROR
    assert broken.exc_info is None
    message = broken.getMessage()
    assert message.startswith(f"fleet file {path} is invalid; running the last valid fleet "
                              "(2 applications) until it is fixed: ")  # fmt: skip
    assert message.endswith("(and 1 more)")
    assert "Web_App" in message and "\n" not in message

    write(path, BAD_YAML)
    watch.check()
    watch.check()
    still = fleet_lines(caplog)[1:]
    assert [r.getMessage() for r in still] == [
        f"fleet file {path} is still invalid: {path}:3: did not find expected ',' or '}}'"
    ]

    write(path, VALID)
    watch.check()
    watch.check()
    fixed = fleet_lines(caplog)[2:]
    assert [(r.levelno, r.getMessage()) for r in fixed] == [
        (logging.INFO, f"fleet file {path} is valid again: running it (2 applications)")
    ]


def test_a_file_never_valid_is_logged_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fleet.yaml"
    write(path, BAD_YAML)
    watch = FleetWatch(FleetFile(str(path)), component="test")
    with pytest.raises(ConfigError):
        watch.get()
    [line] = fleet_lines(caplog)
    assert "is invalid and no valid fleet was loaded" in line.getMessage()


def test_the_watch_records_transitions_in_redis(
    path: Path, client: redis.Redis, redis_prefix: str
) -> None:
    state = FleetState(client, Keys(redis_prefix))
    watch = FleetWatch(FleetFile(str(path)), component="beat", state=state)
    watch.check()
    found = state.read()
    assert found is not None
    assert (found.valid, found.path, found.applications) == (True, str(path), 2)
    assert found.reporter.startswith("beat@") and found.reporter.endswith(f":{os.getpid()}")
    fingerprint = found.fingerprint

    write(path, BAD_YAML)
    watch.check()
    broken = state.read()
    assert broken is not None
    assert not broken.valid
    assert broken.error == f"{path}:3: did not find expected ',' or '}}'"
    assert (broken.fingerprint, broken.applications) == (fingerprint, 2)
    assert broken.describe().endswith("; running the last valid fleet (2 applications)")

    write(path, GROWN)
    watch.check()
    fixed = state.read()
    assert fixed is not None
    assert (fixed.valid, fixed.error, fixed.applications) == (True, "", 3)


def test_a_state_left_by_a_stopped_process_is_corrected(
    path: Path, client: redis.Redis, redis_prefix: str
) -> None:
    state = FleetState(client, Keys(redis_prefix))
    gone = FleetWatch(FleetFile(str(path)), component="gone", state=state)
    gone.check()
    write(path, BAD_YAML)
    gone.check()  # records the breakage, then its process stops
    write(path, VALID)
    beat = FleetWatch(FleetFile(str(path)), component="beat", state=state, reassert_every=0)
    beat.check()  # beat's first look records what it sees, however the record says
    found = state.read()
    assert found is not None and found.valid


def test_redis_down_costs_a_warning_not_the_fleet(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.Redis(port=_unused_port(), socket_connect_timeout=0.5,
                     retry=Retry(NoBackoff(), 0)) as dead:  # fmt: skip
        watch = FleetWatch(FleetFile(str(path)), component="test",
                           state=FleetState(dead, Keys("test:")))  # fmt: skip
        assert len(watch.get().applications) == 2
    [warning] = fleet_lines(caplog)
    assert warning.levelno == logging.WARNING
    assert "cannot record the fleet file's state" in warning.getMessage()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --------------------------------------------------------------------------------------
# The worker's watch, in its main process
# --------------------------------------------------------------------------------------


def test_the_worker_watch_reports_from_its_thread_and_pool_processes_inherit(
    path: Path,
    redis_url: str,
    redis_prefix: str,
    client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(workers.fleet_file, "CHECK_EVERY", 0.05)
    state = FleetState(client, Keys(redis_prefix))
    watch = start_worker_watch(str(path), redis_url=redis_url, keys=Keys(redis_prefix))
    try:
        inherited = inherited_fleet()
        assert inherited is not None and len(inherited.applications) == 2
        write(path, BAD_YAML)
        _until(lambda: (s := state.read()) is not None and not s.valid, what="invalid")
        # A pool process forked now starts from the parent's last valid fleet.
        assert FleetFile(str(path), last_valid=inherited_fleet()).get() == inherited
        assert len([r for r in fleet_lines(caplog) if r.levelno == logging.ERROR]) == 1
    finally:
        stop_worker_watch()
    assert watch.last_valid == inherited


def _until(check: Callable[[], bool], *, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling interval under a deadline, not synchronisation


# --------------------------------------------------------------------------------------
# The webhook server: /metrics and pushes while the file is invalid
# --------------------------------------------------------------------------------------


def fleet_valid_gauge(fleet: FleetSource, client: redis.Redis, keys: Keys) -> float:
    app = make_app(fleet=fleet, client=client, keys=keys, secrets=WebhookSecrets(),
                   enqueue=lambda name, _settle, _cause: f"task-{name}")  # fmt: skip

    async def scrape() -> str:
        async with TestClient(TestServer(app)) as http, http.get("/metrics") as response:
            assert response.status == 200
            return await response.text()

    for family in text_string_to_metric_families(asyncio.run(scrape())):
        for sample in family.samples:
            if sample.name == "reconciler_fleet_valid":
                return float(sample.value)
    raise AssertionError("no reconciler_fleet_valid sample")


def test_metrics_say_whether_the_fleet_file_is_valid(
    path: Path, client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    state = FleetState(client, keys)
    watch = FleetWatch(FleetFile(str(path)), component="webhook", state=state)
    assert fleet_valid_gauge(watch, client, keys) == 1
    write(path, BAD_YAML)
    assert fleet_valid_gauge(watch, client, keys) == 0
    recorded = state.read()
    assert recorded is not None and not recorded.valid  # the scrape's look reported it
    write(path, VALID)
    assert fleet_valid_gauge(watch, client, keys) == 1
