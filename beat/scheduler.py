"""Beat: one RedBeat entry per application, kept in step with the fleet file.

RedBeat keeps schedules in Redis and lets two beat processes run: only the one holding
its lock schedules, and the other takes over when the first dies.  This scheduler adds
what a fleet needs on top: every few seconds the lock holder compares the fleet file with
the entries in Redis and creates, changes or removes entries, so editing the fleet needs
no restart.  While the file is invalid the schedule keeps following the last valid fleet,
and the breakage is logged once and recorded for ``reconciler status``.

Spread: each application runs on a grid of its own, ``phase + k * interval`` seconds after
the epoch, with ``phase`` a stable fraction of its interval (a hash of its name).  Every
run, the first after a start, and the first after another beat took over, lands on that
grid, so a thousand applications with the same interval never fire in the same second,
whichever beat scheduled them last.  A slot missed while no beat was scheduling (a
failover, Redis away) is not caught up in a burst: the application runs at its next slot.

Redis faults: RedBeat's own loop dies on the first Redis error (and its lock extension
raises once the lock is gone, so a Redis that restarted empty kills it too).  Here a
Redis error in a tick is logged once, retried with backoff (capped at one loop interval,
so a Redis that comes back is used within seconds), and the leadership lock is taken
again or renewed with one Lua script that checks the token, so a beat whose lock passed to
another while it was cut off learns so and stands by instead of firing beside it.  A beat
schedules only while its lease, counted from its last successful renewal, is still valid.
A Redis without the installation's ``initialised`` marker restarted empty (or is new):
the leader restores suspensions from their durable copies in the clusters, then rebuilds
every entry from the fleet file, then sets the marker.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import Celery
from celery.schedules import schedule
from kombu.exceptions import OperationalError
from redbeat import RedBeatScheduler, RedBeatSchedulerEntry
from redbeat.schedulers import get_redis

from beat.durable import SuspensionCopies
from reconciler.fleet import Application, Fleet
from reconciler.outcome import Trigger
from reconciler.settings import load as load_settings
from reconciler.store import lease
from reconciler.store.fleet_state import FleetState
from reconciler.store.keys import Keys
from reconciler.store.records import Records
from reconciler.store.suspension import Suspensions
from workers.app import queue_for
from workers.fleet_file import FleetFile, FleetWatch, fleet_path

log = logging.getLogger("reconciler.beat")

ENTRY_PREFIX = "app:"
TASK = "reconciler.reconcile_app"
#: The entry that moves progressive rollouts on (a soak ends with nothing finishing).
ROLLOUT_ENTRY = "rollouts"
ROLLOUT_TASK = "reconciler.advance_rollouts"
#: Seconds between two looks at the rollouts in progress: how late a soak may end.
ROLLOUT_TICK = 5.0
#: The entry that sends the runs sync windows stopped, once the windows let them.
WINDOW_ENTRY = "sync-windows"
WINDOW_TASK = "reconciler.release_deferred"
#: Seconds between two comparisons of the fleet file with the schedule.
SYNC_EVERY = load_settings().beat_sync
#: Errors that mean "Redis (or the broker on it) is away for now", never "beat is broken".
REDIS_DOWN: tuple[type[BaseException], ...] = (redis.RedisError, OSError, OperationalError)
#: First retry delay after a Redis error, in seconds; doubled up to one loop interval.
FIRST_RETRY = 0.5


def entry_name(app_name: str) -> str:
    """RedBeat entry name of an application."""
    return ENTRY_PREFIX + app_name


def jitter_fraction(app_name: str) -> float:
    """A stable number in [0, 1) from the application's name."""
    digest = hashlib.sha256(app_name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def grid_slot(app_name: str, interval: timedelta, now: datetime) -> datetime:
    """The application's latest slot at or before ``now``: ``phase + k * interval``."""
    period = interval.total_seconds()
    if period <= 0:
        return now
    phase = jitter_fraction(app_name) * period
    k = math.floor((now.timestamp() - phase) / period)
    return datetime.fromtimestamp(phase + k * period, UTC)


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
        # First run at the application's next slot on its grid (within one interval).
        RedBeatSchedulerEntry(
            name=name,
            task=TASK,
            schedule=schedule(run_every=interval),
            args=[application.name, Trigger.SCHEDULE.value],
            kwargs={},
            options={"queue": queue_for(forced=False), "expires": interval.total_seconds()},
            app=celery_app,
            last_run_at=grid_slot(application.name, interval, now),
        ).save()
    for key in existing - {conf.key_prefix + name for name in wanted}:
        RedBeatSchedulerEntry.from_key(key, app=celery_app).delete()
        counts["removed"] += 1
    rolls_out = any(app.rollout is not None for app in fleet.applications)
    windowed = bool(fleet.windows) or any(app.windows for app in fleet.applications)
    _sync_tick(celery_app, client, ROLLOUT_ENTRY, ROLLOUT_TASK, wanted=rolls_out)
    _sync_tick(celery_app, client, WINDOW_ENTRY, WINDOW_TASK, wanted=windowed)
    return counts


def _sync_tick(celery_app: Celery, client: Any, name: str, task: str, *, wanted: bool) -> None:
    """An entry sending ``task`` every ``ROLLOUT_TICK`` while the fleet needs it (rollouts in
    it, sync windows in it), none otherwise."""
    conf = celery_app.redbeat_conf
    key = conf.key_prefix + name
    present = client.zscore(conf.schedule_key, key) is not None
    if wanted and not present:
        RedBeatSchedulerEntry(
            name=name, task=task, schedule=schedule(run_every=ROLLOUT_TICK),
            args=[], kwargs={}, app=celery_app,
            options={"queue": queue_for(forced=True), "expires": ROLLOUT_TICK},
        ).save()  # fmt: skip
    elif present and not wanted:
        RedBeatSchedulerEntry.from_key(key, app=celery_app).delete()


def forget_departed_targets(client: redis.Redis, keys: Keys, fleet: Fleet) -> int:
    """Drop status and history of targets no longer in the fleet; returns how many.

    Their objects stay in the clusters: leaving the fleet file is not a request to delete
    an application's workloads (delete its manifests from Git for that).
    """
    records = Records(client, keys)
    current = {(app.name, cluster.name) for app in fleet.applications
               for cluster in fleet.targets(app)}  # fmt: skip
    departed = [
        (entry.application, entry.cluster)
        for entry in records.status()
        if (entry.application, entry.cluster) not in current
    ]
    for app, cluster in departed:
        records.forget(app, cluster)
    return len(departed)


class Leadership:
    """This beat's hold on the schedule: a Redis lock with a token, and its lease.

    The lease is counted from the moment the last successful renewal was *sent*, less a
    tenth for clock drift, so a beat stops scheduling before the lock can have expired in
    Redis, even while it cannot reach Redis to find out.
    """

    def __init__(self, key: str, ttl: float) -> None:
        self.key = key
        self.ttl = ttl
        self.token = secrets.token_hex(16)
        self.held = False
        self.valid_until = 0.0

    def hold(self, client: Any) -> bool:
        """Renew this beat's lock or take a free one; whether this beat holds it now."""
        sent = time.monotonic()
        self.held = lease.hold(client, self.key, self.token, self.ttl)
        self.valid_until = sent + self.ttl * 0.9 if self.held else 0.0
        return self.held

    def valid(self) -> bool:
        """Whether this beat may schedule now."""
        return self.held and time.monotonic() < self.valid_until

    def release(self, client: Any) -> None:
        """Give the lock up (only if it is still this beat's)."""
        if self.held:
            lease.release(client, self.key, self.token)
        self.held = False
        self.valid_until = 0.0


class FleetScheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat, plus the fleet file, the grid, Redis faults and a token-checked lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Leadership is ours: with no lock_key, RedBeat's beat_init handler (which blocks
        # in acquire and dies on a Redis error) and its unchecked extension stand aside.
        lock_key: str = self.app.redbeat_conf.lock_key
        self.leadership = Leadership(lock_key, float(self.lock_timeout))
        self.lock_key = None
        self.keys = Keys()
        self.fleet_watch = FleetWatch(
            FleetFile(fleet_path()),
            component="beat",
            state=FleetState(get_redis(self.app), self.keys),
        )
        self.copies = SuspensionCopies()
        self._last_fleet_sync = -math.inf
        self._last_fingerprint = ""
        self._saw_marker = False
        self._standby_said = False
        self._down_since: float | None = None
        self._retry = FIRST_RETRY

    def setup_schedule(self) -> None:
        """RedBeat's static entries (none here); a Redis away at start is not fatal."""
        try:
            super().setup_schedule()
        except REDIS_DOWN as exc:
            log.warning("Redis unavailable as beat starts (%s): retrying in the loop", exc)

    # -- the loop -----------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """One beat; a Redis error is retried with backoff, never raised."""
        try:
            delay = self._tick(*args, **kwargs)
        except REDIS_DOWN as exc:
            return self._redis_failed(exc)
        if self._down_since is not None:
            log.info(
                "Redis answers again after %.1fs; beat %s",
                time.monotonic() - self._down_since,
                "schedules" if self.leadership.held else "stands by",
            )
            self._down_since = None
        return delay

    def _redis_failed(self, exc: BaseException) -> float:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._retry = FIRST_RETRY
            log.warning(
                "Redis unavailable (%s: %s): beat retries with backoff and schedules "
                "nothing until it holds the lock again",
                type(exc).__name__,
                exc,
            )
        else:
            self._retry = min(self._retry * 2, float(self.max_interval))
        return self._retry

    def _tick(self, *args: Any, **kwargs: Any) -> float:
        client = get_redis(self.app)
        was_leader = self.leadership.held
        if not self.leadership.hold(client):
            if was_leader or not self._standby_said:
                log.info("standing by: another beat holds %s", self.leadership.key)
                self._standby_said = True
            return float(self.max_interval)
        if not was_leader:
            log.info("Acquired lock %s: this beat schedules", self.leadership.key)
            self._standby_said = False
            self._last_fleet_sync = -math.inf
        suspensions = Suspensions(client, self.keys)
        if not suspensions.initialised():
            self.rebuild(suspensions)
        elif time.monotonic() - self._last_fleet_sync >= SYNC_EVERY:
            self._last_fleet_sync = time.monotonic()
            self.sync_fleet()
            self._saw_marker = True
        if not self.leadership.valid():
            return 0.0  # the fleet sync outlasted the lease: renew before sending anything
        interval: float = super().tick(*args, **kwargs)
        return max(0.0, min(interval, SYNC_EVERY, self.leadership.ttl / 3))

    def maybe_due(self, entry: RedBeatSchedulerEntry, **kwargs: Any) -> float:
        """Send ``entry`` if due, as RedBeat does, but only under a valid lease, and move an
        application that missed a slot to its next slot instead of firing late."""
        if not self.leadership.valid():
            return float(self.max_interval)
        app_name = _application_of(entry)
        if app_name is not None and entry.last_run_at is not None:
            interval = entry.schedule.run_every
            now = datetime.now(UTC)
            late = now - (_aware(entry.last_run_at) + interval)
            if late.total_seconds() > self.catch_up_window:
                slot = grid_slot(app_name, interval, now)
                entry.reschedule(last_run_at=slot)
                log.info(
                    "%s missed its slot by %.0fs (no beat was scheduling): next run at its slot %s",
                    app_name,
                    late.total_seconds(),
                    slot + interval,
                )
                wait: float = (slot + interval - now).total_seconds()
                return max(0.0, wait)
        return float(super().maybe_due(entry, **kwargs))

    @property
    def catch_up_window(self) -> float:
        """Seconds late past which a slot counts as missed: two loop intervals."""
        return 2.0 * float(self.max_interval) + 1.0

    def reserve(self, entry: RedBeatSchedulerEntry) -> RedBeatSchedulerEntry:
        """Record a run at the application's current grid slot, so the next stays on it."""
        app_name = _application_of(entry)
        if app_name is None:
            return super().reserve(entry)
        slot = grid_slot(app_name, entry.schedule.run_every, datetime.now(UTC))
        return entry._next_instance(last_run_at=slot)  # RedBeat's own hook

    # -- state ----------------------------------------------------------------------------

    def rebuild(self, suspensions: Suspensions) -> None:
        """Redis has no state of this installation: restore it from durable sources.

        Suspensions first (from their copies in the clusters), then the marker, then the
        schedule from the fleet file.  Without a valid fleet nothing can be rebuilt, and
        nothing is marked: the next tick tries again.
        """
        fleet = self.fleet_watch.check().fleet
        if fleet is None:
            return
        if self._saw_marker:
            log.warning(
                "Redis has lost this installation's state (it restarted empty, or "
                "failed over to a replica without it): restoring suspensions from "
                "the clusters and the schedule from %s",
                fleet.path,
            )
        else:
            log.info(
                "no installation state in Redis yet: reading suspensions from the "
                "clusters, building the schedule from %s",
                fleet.path,
            )
        found, unreachable = self.copies.read(fleet)
        suspensions.restore(found | suspensions.all())
        log.info(
            "suspensions restored: %s%s",
            sorted(found) or "none",
            f" (not yet read from {', '.join(unreachable)})" if unreachable else "",
        )
        self._saw_marker = True
        self._last_fleet_sync = time.monotonic()
        self.sync_fleet()

    def sync_fleet(self) -> None:
        """Bring the schedule and the suspensions' copies in line with the fleet in force.

        While the file is invalid that is the last valid fleet, so the schedule stays as
        it was; the watch has said so, once.  Without any valid fleet nothing is touched.
        """
        fleet = self.fleet_watch.check().fleet
        if fleet is None:
            return
        client = get_redis(self.app)
        fingerprint = fleet.fingerprint()
        counts = sync_schedule(self.app, fleet)
        counts["forgotten"] = forget_departed_targets(client, self.keys, fleet)
        suspensions = Suspensions(client, self.keys)
        late = self.copies.merge_pending(fleet)
        if late:
            suspensions.restore(late | suspensions.all())
        counts["copied"] = self.copies.write(fleet, suspensions.all())
        if fingerprint != self._last_fingerprint or any(counts.values()):
            log.info("schedule in step with %s (%s applications): %s", fleet.path,
                     len(fleet.applications), counts)  # fmt: skip
            self._last_fingerprint = fingerprint

    def close(self) -> None:
        """Give the lock up so a standby takes over at its next loop, not after the TTL."""
        with contextlib.suppress(*REDIS_DOWN):
            self.leadership.release(get_redis(self.app))
        self.copies.close()
        super().close()

    @property
    def info(self) -> str:
        return (
            f"       . redis -> {self.app.redbeat_conf.redis_url.split('@')[-1]}\n"
            f"       . lock -> `{self.leadership.key}` ({self.leadership.ttl:.0f}s, "
            "token-checked)"
        )


def _application_of(entry: RedBeatSchedulerEntry) -> str | None:
    name = str(entry.name)
    return name[len(ENTRY_PREFIX) :] if name.startswith(ENTRY_PREFIX) else None


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
