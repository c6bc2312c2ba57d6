"""Beat keeps one RedBeat entry per application, in step with the fleet file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery
from redbeat import RedBeatSchedulerEntry
from redbeat.schedulers import ensure_conf, get_redis

from beat.scheduler import entry_name, forget_departed_targets, jitter_fraction, sync_schedule
from reconciler.fleet import Fleet, parse_fleet
from reconciler.outcome import Outcome
from reconciler.store.keys import Keys
from reconciler.store.records import Records
from workers.app import settings


@pytest.fixture
def celery_app(redis_url: str, redis_prefix: str) -> Iterator[Celery]:
    app = Celery("test-beat")
    app.conf.update(settings(redis_url, Keys(redis_prefix)))
    ensure_conf(app)
    yield app
    app.close()


def fleet(tmp_path: Path, apps: dict[str, str]) -> Fleet:
    text = "clusters: [{name: c1}]\napplications:\n"
    for name, interval in apps.items():
        text += f"  - {{name: {name}, source: {{repo: /r}}, sync: {{interval: {interval}}}}}\n"
    return parse_fleet(text, source="fleet.yaml", base_dir=str(tmp_path))


def entries(app: Celery) -> dict[str, RedBeatSchedulerEntry]:
    keys = get_redis(app).zrange(app.redbeat_conf.schedule_key, 0, -1)
    found = {}
    for key in keys:
        entry = RedBeatSchedulerEntry.from_key(key.decode() if isinstance(key, bytes) else key,
                                               app=app)  # fmt: skip
        found[entry.name] = entry
    return found


def test_entries_follow_the_fleet(celery_app: Celery, tmp_path: Path) -> None:
    counts = sync_schedule(celery_app, fleet(tmp_path, {"a": "30s", "b": "1m"}))
    assert counts == {"created": 2, "updated": 0, "removed": 0}
    found = entries(celery_app)
    assert set(found) == {entry_name("a"), entry_name("b")}
    assert found[entry_name("a")].schedule.run_every == timedelta(seconds=30)
    assert found[entry_name("a")].task == "reconciler.reconcile_app"
    assert found[entry_name("a")].args == ["a", "schedule"]
    # Unchanged fleet: nothing to do.
    assert sync_schedule(celery_app, fleet(tmp_path, {"a": "30s", "b": "1m"})) == {
        "created": 0, "updated": 0, "removed": 0}  # fmt: skip
    # Interval changed, one app removed, one added.
    counts = sync_schedule(celery_app, fleet(tmp_path, {"a": "10s", "c": "5m"}))
    assert counts == {"created": 1, "updated": 1, "removed": 1}
    found = entries(celery_app)
    assert set(found) == {entry_name("a"), entry_name("c")}
    assert found[entry_name("a")].schedule.run_every == timedelta(seconds=10)


def test_first_runs_are_spread_over_the_interval(celery_app: Celery, tmp_path: Path) -> None:
    names = {f"app{i}": "60s" for i in range(40)}
    now = datetime.now(UTC)
    sync_schedule(celery_app, fleet(tmp_path, names), now=now)
    # When each first fires: celery's is_due() counts from last_run_at (RedBeat's due_at is
    # only a candidate score).
    due = sorted(e.last_run_at + e.schedule.run_every for e in entries(celery_app).values())
    spread = (due[-1] - due[0]).total_seconds()
    assert spread > 30  # not all in the same second
    assert all(now - timedelta(seconds=1) <= d <= now + timedelta(seconds=61) for d in due)
    fractions = [jitter_fraction(n) for n in names]
    assert len({round(f, 6) for f in fractions}) == len(fractions)
    assert jitter_fraction("app1") == jitter_fraction("app1")


def test_targets_that_left_the_fleet_are_forgotten(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = Keys(redis_prefix)
    records = Records(client, keys)
    for app in ("a", "gone"):
        records.record(Outcome.from_dict({"application": app, "cluster": "c1", "sync": "Synced",
                                          "health": "Healthy", "started": "2026-01-01T00:00:00Z",
                                          "duration": 0.1}))  # fmt: skip
    assert forget_departed_targets(client, keys, fleet(tmp_path, {"a": "30s"})) == 1
    assert [e.application for e in records.status()] == ["a"]
    assert records.history("gone", "c1") == []
    client.close()
