"""Beat: one RedBeat entry per application, kept in step with the fleet file.

RedBeat keeps schedules in Redis and lets two beat processes run: only the one holding
its lock schedules, and the other takes over when the first dies.  This scheduler adds
what a fleet needs on top: every few seconds the lock holder compares the fleet file with
the entries in Redis and creates, changes or removes entries, so editing the fleet needs
no restart.  While the file is invalid the schedule keeps following the last valid fleet,
and the breakage is logged once and recorded for ``reconciler status``.  Each
application's first run is offset by a stable fraction of its interval (a hash of its
name), so a thousand applications with the same interval do not all fire in the same
second, and the spread survives beat restarts.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import Celery
from celery.schedules import schedule
from redbeat import RedBeatScheduler, RedBeatSchedulerEntry
from redbeat.schedulers import get_redis

from reconciler.fleet import Application, Fleet
from reconciler.outcome import Trigger
from reconciler.settings import load as load_settings
from reconciler.store.fleet_state import FleetState
from reconciler.store.keys import Keys
from reconciler.store.records import Records
from workers.app import queue_for
from workers.fleet_file import FleetFile, FleetWatch
from workers.runtime import fleet_path

log = logging.getLogger("reconciler.beat")

ENTRY_PREFIX = "app:"
TASK = "reconciler.reconcile_app"
#: Seconds between two comparisons of the fleet file with the schedule.
SYNC_EVERY = load_settings().beat_sync


def entry_name(app_name: str) -> str:
    """RedBeat entry name of an application."""
    return ENTRY_PREFIX + app_name


def jitter_fraction(app_name: str) -> float:
    """A stable number in [0, 1) from the application's name."""
    digest = hashlib.sha256(app_name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def desired_entries(fleet: Fleet) -> dict[str, Application]:
    """Entry name -> application, for every application that beat should schedule."""
    return {entry_name(app.name): app for app in fleet.applications}


def sync_schedule(
    celery_app: Celery, fleet: Fleet, *, now: datetime | None = None
) -> dict[str, int]:
    """Make the RedBeat entries match ``fleet``; returns counts of created/updated/removed."""
    now = now or datetime.now(UTC)
    client = get_redis(celery_app)
    conf = celery_app.redbeat_conf
    prefix = conf.key_prefix + ENTRY_PREFIX
    existing = {
        key.decode() if isinstance(key, bytes) else str(key)
        for key in client.zrange(conf.schedule_key, 0, -1)
    }
    existing = {key for key in existing if key.startswith(prefix)}
    wanted = desired_entries(fleet)
    counts = {"created": 0, "updated": 0, "removed": 0}
    for name, application in wanted.items():
        interval = timedelta(seconds=application.sync.interval_seconds)
        key = conf.key_prefix + name
        if key in existing:
            entry = RedBeatSchedulerEntry.from_key(key, app=celery_app)
            if entry.schedule.run_every == interval:
                continue
            counts["updated"] += 1
        else:
            counts["created"] += 1
        # First run spread over one interval: as if it last ran "fraction" ago.
        offset = interval * jitter_fraction(application.name)
        RedBeatSchedulerEntry(
            name=name,
            task=TASK,
            schedule=schedule(run_every=interval),
            args=[application.name, Trigger.SCHEDULE.value],
            kwargs={},
            options={"queue": queue_for(forced=False), "expires": interval.total_seconds()},
            app=celery_app,
            last_run_at=now - interval + offset,
        ).save()
    for key in existing - {conf.key_prefix + name for name in wanted}:
        RedBeatSchedulerEntry.from_key(key, app=celery_app).delete()
        counts["removed"] += 1
    return counts


def forget_departed_targets(client: redis.Redis, keys: Keys, fleet: Fleet) -> int:
    """Drop status and history of targets no longer in the fleet; returns how many.

    Their objects stay in the clusters: leaving the fleet file is not a request to delete
    an application's workloads (delete its manifests from Git for that).
    """
    records = Records(client, keys)
    current = {(app.name, cluster.name) for app in fleet.applications
               for cluster in fleet.targets(app)}  # fmt: skip
    departed = [
        (str(entry.get("application")), str(entry.get("cluster")))
        for entry in records.status()
        if (entry.get("application"), entry.get("cluster")) not in current
    ]
    for app, cluster in departed:
        records.forget(app, cluster)
    return len(departed)


class FleetScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat, plus keeping the entries in step with the fleet file while holding the lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fleet_watch = FleetWatch(
            FleetFile(fleet_path()),
            component="beat",
            state=FleetState(get_redis(self.app), Keys()),
        )
        self._last_sync = 0.0
        self._last_fingerprint = ""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One beat: extend the lock (RedBeat), sync entries if due, send due tasks."""
        if time.monotonic() - self._last_sync >= SYNC_EVERY and (
            not self.lock_key or self.lock is not None
        ):
            self._last_sync = time.monotonic()
            self.sync_fleet()
        interval: float = super().tick(*args, **kwargs)
        return min(interval, SYNC_EVERY)

    def sync_fleet(self) -> None:
        """Bring the schedule in line with the fleet in force.

        While the file is invalid that is the last valid fleet, so the schedule stays as
        it was; the watch has said so, once.  Without any valid fleet nothing is touched.
        """
        fleet = self.fleet_watch.check().fleet
        if fleet is None:
            return
        fingerprint = fleet.fingerprint()
        counts = sync_schedule(self.app, fleet)
        counts["forgotten"] = forget_departed_targets(get_redis(self.app), Keys(), fleet)
        if fingerprint != self._last_fingerprint or any(counts.values()):
            log.info("schedule in step with %s (%s applications): %s", fleet.path,
                     len(fleet.applications), counts)  # fmt: skip
            self._last_fingerprint = fingerprint
