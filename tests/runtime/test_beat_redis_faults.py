"""Beat against a Redis that goes away, comes back empty, or hands the lock to another beat.

Each test runs its own redis-server (``EmbeddedRedis`` on a port of its own), so it can
kill and restart it; the machine's Redis is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf, get_redis

from beat.scheduler import FleetScheduler, Leadership, entry_name, grid_slot
from reconciler.fleet import Fleet
from reconciler.store.keys import Keys
from reconciler.store.provision import EmbeddedRedis, free_port
from reconciler.store.suspension import Suspensions
from workers.app import settings

PREFIX = "reconciler-beat-faults:"


class FakeCopies:
    """Durable suspension copies held in memory (the real ones live in clusters)."""

    def __init__(self) -> None:
        self.kept: set[str] = set()

    def read(self, fleet: Fleet) -> tuple[set[str], list[str]]:
        return set(self.kept), []

    def merge_pending(self, fleet: Fleet) -> set[str]:
        return set()

    def write(self, fleet: Fleet, suspended: set[str]) -> int:
        changed = self.kept != suspended
        self.kept = set(suspended)
        return int(changed)

    def close(self) -> None:
        pass


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(port=free_port()) as own:
        yield own


@pytest.fixture
def client(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    found = redis.Redis.from_url(server.url, decode_responses=True)
    yield found
    found.close()


def write_fleet(path: Path, apps: dict[str, str]) -> None:
    text = "clusters: [{name: c1}]\napplications:\n"
    for name, interval in apps.items():
        text += f"  - {{name: {name}, source: {{repo: /r}}, sync: {{interval: {interval}}}}}\n"
    path.write_text(text)


@pytest.fixture
def make_scheduler(
    server: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[FleetScheduler, list[str]]]]:
    fleet_file = tmp_path / "fleet.yaml"
    write_fleet(fleet_file, {"a": "5s", "b": "5s"})
    monkeypatch.setenv("RECONCILER_CONFIG", str(fleet_file))
    monkeypatch.setenv("RECONCILER_REDIS_PREFIX", PREFIX)
    made: list[tuple[Celery, FleetScheduler]] = []

    def make(copies: FakeCopies | None = None) -> tuple[FleetScheduler, list[str]]:
        app = Celery("test-beat-faults")
        app.conf.update(settings(server.url, Keys(PREFIX)))
        app.conf.redbeat_lock_timeout = 6
        app.conf.beat_max_loop_interval = 1
        ensure_conf(app)
        scheduler = FleetScheduler(app=app)
        scheduler.copies = copies or FakeCopies()  # type: ignore[assignment]
        fired: list[str] = []

        def send(entry: RedBeatSchedulerEntry, **_: Any) -> None:
            fired.append(entry.name)
            scheduler.reserve(entry)

        scheduler.apply_async = send
        made.append((app, scheduler))
        return scheduler, fired

    yield make
    for app, scheduler in made:
        scheduler.close()
        app.close()


def until(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def entries(app: Celery) -> dict[str, RedBeatSchedulerEntry]:
    client = get_redis(app)
    found = {}
    for key in client.zrange(app.redbeat_conf.schedule_key, 0, -1):
        entry = RedBeatSchedulerEntry.from_key(key, app=app)
        found[entry.name] = entry
    return found


def test_the_lock_is_token_checked(client: redis.Redis) -> None:
    first, second = Leadership(PREFIX + "lock", 5), Leadership(PREFIX + "lock", 5)
    assert first.hold(client) and first.valid()
    assert not second.hold(client) and not second.valid()
    client.delete(PREFIX + "lock")  # Redis restarted empty, or the lease ran out
    assert second.hold(client)
    # The first beat comes back: its renewal sees another token and never extends it.
    assert not first.hold(client) and not first.valid()
    first.release(client)
    assert client.get(PREFIX + "lock") == second.token
    assert client.pttl(PREFIX + "lock") > 0


def test_beat_survives_redis_restarting_empty(
    server: EmbeddedRedis, client: redis.Redis, make_scheduler: Callable[..., Any]
) -> None:
    copies = FakeCopies()
    scheduler, _fired = make_scheduler(copies)
    scheduler.tick()
    assert scheduler.leadership.held
    assert set(entries(scheduler.app)) == {entry_name("a"), entry_name("b")}
    Suspensions(client, Keys(PREFIX)).suspend("a")
    scheduler._last_fleet_sync = 0.0
    scheduler.tick()
    assert copies.kept == {"a"}

    port = server.port
    server.stop()
    delays = [scheduler.tick() for _ in range(4)]  # no exception: retried with backoff
    assert delays == sorted(delays) and delays[-1] <= scheduler.max_interval
    assert not scheduler.leadership.valid() or scheduler.leadership.held

    server.port = port
    server.start()  # the same port, nothing in it
    started = time.monotonic()
    until(lambda: scheduler.tick() is not None and len(entries(scheduler.app)) == 2,
          timeout=10, what="entries rebuilt")  # fmt: skip
    assert time.monotonic() - started < 10
    assert scheduler.leadership.held
    fresh = Suspensions(client, Keys(PREFIX))
    assert fresh.initialised()
    assert fresh.is_suspended("a") and not fresh.is_suspended("b")


def test_two_beats_never_both_schedule(
    client: redis.Redis, make_scheduler: Callable[..., Any]
) -> None:
    one, fired_one = make_scheduler()
    two, fired_two = make_scheduler()
    one.tick()
    two.tick()
    assert one.leadership.held and not two.leadership.held
    lock = one.leadership.key
    for _ in range(3):
        # A blip: the lock disappears (Redis restarted empty) and the standby wins it.
        client.delete(lock)
        two.tick()
        assert two.leadership.held
        before = len(fired_one)
        one.tick()  # the old leader renews: the token differs, so it stands by
        assert not one.leadership.held and len(fired_one) == before
        assert sum(s.leadership.valid() for s in (one, two)) == 1
        one, two, fired_one, fired_two = two, one, fired_two, fired_one


def test_standby_takes_over_within_two_loop_intervals(make_scheduler: Callable[..., Any]) -> None:
    one, _ = make_scheduler()
    two, _ = make_scheduler()
    one.tick()
    two.tick()
    one.close()  # the leader stops: it gives the lock up
    started = time.monotonic()
    until(lambda: (two.tick() or True) and two.leadership.held, timeout=3, what="takeover")
    assert time.monotonic() - started <= 2 * two.max_interval


def test_a_failover_keeps_each_application_on_its_grid(
    tmp_path: Path, make_scheduler: Callable[..., Any]
) -> None:
    names = {f"app{i}": "60s" for i in range(40)}
    write_fleet(tmp_path / "fleet.yaml", names)
    scheduler, fired = make_scheduler()
    scheduler.tick()
    # Nobody scheduled for two minutes (the old leader died, the lock timed out).
    now = datetime.now(UTC)
    for entry in entries(scheduler.app).values():
        entry.reschedule(last_run_at=now - timedelta(minutes=2))
    scheduler.tick()
    after = datetime.now(UTC)
    assert fired == []  # no burst: missed slots move to each application's next slot
    due = {e.name: e.last_run_at + e.schedule.run_every for e in entries(scheduler.app).values()}
    for name, when in due.items():
        app = name.removeprefix("app:")
        # The next slot after the tick: a slot may have passed while it ran.
        assert when in {grid_slot(app, timedelta(seconds=60), moment) + timedelta(seconds=60)
                        for moment in (now, after)}  # fmt: skip
    spread = (max(due.values()) - min(due.values())).total_seconds()
    assert spread > 30
    # A run recorded at the slot keeps the next one on the grid too.
    entry = next(iter(entries(scheduler.app).values()))
    after = scheduler.reserve(entry)
    app = entry.name.removeprefix("app:")
    assert after.last_run_at == grid_slot(app, timedelta(seconds=60), datetime.now(UTC))
