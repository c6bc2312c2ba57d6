"""The fleet file of a running process: re-read when it changes, the last valid fleet kept.

Workers, beat and the webhook server read the fleet file while they run, so editing it
needs no restart.  An edit can also break it (a YAML slip, a field the schema refuses, a
file removed by a deploy script).  Stopping every reconcile then would turn a typo into
an outage, and failing every task would bury the one message that matters under a
traceback per task.  So a process keeps running the last valid fleet, remembers the
current error, and says so once:

* :class:`FleetFile` is the state machine: a stat per call, a re-read when the file
  changed, the last valid :class:`Fleet` kept while the file is invalid.  It raises
  ``ConfigError`` only when no valid fleet was ever read: a process must not run on
  nothing.
* :class:`FleetWatch` reports a :class:`FleetFile`'s transitions: one log line when the
  file becomes invalid (ERROR, naming the file and its first problem, no traceback), one
  when the error changes, one INFO line when it is valid again; and the installation's
  :class:`FleetState` in Redis, so ``reconciler status`` can say the fleet is invalid.

A Celery worker runs one watch in its main process (:func:`start_worker_watch`), so it
logs once however many pool processes it has; the pool processes, forked from it, start
from the fleet it last saw valid (:func:`inherited_fleet`) and read the file quietly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import redis

from reconciler.errors import ConfigError
from reconciler.fleet import Fleet, load_fleet
from reconciler.settings import load as load_settings
from reconciler.store import connect
from reconciler.store.fleet_state import FleetHealth, FleetState
from reconciler.store.keys import Keys

__all__ = [
    "CHECK_EVERY",
    "FleetFile",
    "FleetSource",
    "FleetView",
    "FleetWatch",
    "inherited_fleet",
    "start_worker_watch",
    "stop_worker_watch",
]

log = logging.getLogger("reconciler.fleet")

#: Seconds between a worker's looks at the fleet file when it runs no task.
CHECK_EVERY = 5.0
#: Seconds after which a watch records its view again even without a transition, so a
#: state recorded by a process that has since stopped is corrected.
REASSERT_EVERY = 30.0


@dataclass(frozen=True)
class FleetView:
    """What a process knows of its fleet file at one moment.

    ``fleet`` is the fleet in force: the file's own while it is valid, the last valid one
    while it is not (None if there never was one), and ``fingerprint`` its fingerprint
    ("" without one).  ``error`` is the file's current problem, None while it is valid.
    ``since`` is when the file became valid or invalid (Unix seconds), ``checked`` when it
    was last looked at.
    """

    path: str
    fleet: Fleet | None
    fingerprint: str
    error: ConfigError | None
    since: float
    checked: float

    @property
    def valid(self) -> bool:
        """Whether the file itself is valid now."""
        return self.error is None

    @property
    def problems(self) -> list[str]:
        """The file's problems, one ``file:line`` sentence each (empty while valid)."""
        if self.error is None:
            return []
        return [line for line in str(self.error).splitlines() if line.strip()] or [str(self.error)]

    @property
    def first_error(self) -> str:
        """The first problem, or "" while the file is valid."""
        problems = self.problems
        return problems[0] if problems else ""

    def state(self) -> tuple[bool, str, str]:
        """What a transition changes: validity, the error, the fleet in force."""
        return (self.valid, str(self.error or ""), self.fingerprint)

    def health(self, reporter: str) -> FleetHealth:
        """This view as the installation records it."""
        return FleetHealth(
            valid=self.valid,
            path=self.path,
            since=datetime.fromtimestamp(self.since, UTC),
            observed=datetime.fromtimestamp(self.checked, UTC),
            error=self.first_error,
            problems=len(self.problems),
            fingerprint=self.fingerprint,
            applications=len(self.fleet.applications) if self.fleet else 0,
            reporter=reporter,
        )


class FleetSource(Protocol):
    """Anything that hands out the fleet in force: a :class:`FleetFile` or a watch on one."""

    def get(self) -> Fleet: ...

    def check(self) -> FleetView: ...


class FleetFile:
    """The fleet file, re-read when it changes; the last valid fleet kept while it is invalid.

    ``last_valid`` seeds the fleet in force (a forked pool process starts from its
    parent's).  Thread-safe: the webhook server reads it from several threads.
    """

    def __init__(
        self,
        path: str,
        *,
        last_valid: Fleet | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._clock = clock
        self._stamp: tuple[int, int, int] | None = None
        self._view: FleetView | None = None
        self._last_valid = last_valid
        self._fingerprint = last_valid.fingerprint() if last_valid else ""
        self._lock = threading.Lock()

    @property
    def last_valid(self) -> Fleet | None:
        """The fleet in force: the newest valid one read (or given), None if none ever was."""
        return self._last_valid

    def get(self) -> Fleet:
        """The fleet in force; ConfigError (the file's) only when no valid fleet was ever read."""
        view = self.check()
        if view.fleet is None:
            assert view.error is not None  # a view without a fleet always has its reason
            raise view.error
        return view.fleet

    def check(self) -> FleetView:
        """Look at the file (one stat), re-read it if it changed; the view now."""
        with self._lock:
            now = self._clock()
            try:
                stat = os.stat(self.path)
            except OSError as exc:
                error = ConfigError(f"{self.path}: cannot read the fleet file: {exc.strerror}")
                self._stamp = None
                return self._settle(now, None, error)
            stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if self._view is not None and stamp == self._stamp:
                self._view = dataclasses.replace(self._view, checked=now)
                return self._view
            self._stamp = stamp
            try:
                fleet: Fleet | None = load_fleet(self.path)
            except ConfigError as exc:
                return self._settle(now, None, exc)
            return self._settle(now, fleet, None)

    def _settle(self, now: float, fleet: Fleet | None, error: ConfigError | None) -> FleetView:
        """The new view after a read: ``since`` moves only when validity flips."""
        if fleet is not None:
            self._last_valid, self._fingerprint = fleet, fleet.fingerprint()
        before = self._view
        if before is not None and before.valid == (error is None):
            since = before.since
            if error is not None and before.error is not None and str(before.error) == str(error):
                error = before.error  # the same problem: keep the first instance
        else:
            since = now
        self._view = FleetView(self.path, self._last_valid, self._fingerprint, error, since, now)
        return self._view


def fleet_path() -> str:
    """``RECONCILER_CONFIG``: the fleet file every component reads."""
    path = load_settings().config
    if not path:
        raise ConfigError("RECONCILER_CONFIG is not set: workers and beat need the fleet file")
    return path


def reporter_name(component: str) -> str:
    """``component@host:pid``: which process made an observation."""
    return f"{component}@{socket.gethostname()}:{os.getpid()}"


class FleetWatch:
    """A :class:`FleetFile` whose transitions are logged once and recorded in Redis.

    ``state`` is None where no Redis is at hand (tests of the log lines alone).  Logging
    and recording happen in the caller's thread, after the file was read; a Redis that does
    not answer costs one WARNING and is tried again at the next look.
    """

    def __init__(
        self,
        fleet_file: FleetFile,
        *,
        component: str,
        state: FleetState | None = None,
        reassert_every: float = REASSERT_EVERY,
    ) -> None:
        self.fleet_file = fleet_file
        self.path = fleet_file.path
        self.state = state
        self.reporter = reporter_name(component)
        self.reassert_every = reassert_every
        self._reported: tuple[bool, str, str] | None = None
        self._recorded: tuple[bool, str, str] | None = None
        self._recorded_at = 0.0
        self._lock = threading.Lock()

    @property
    def last_valid(self) -> Fleet | None:
        """The fleet in force (see :attr:`FleetFile.last_valid`)."""
        return self.fleet_file.last_valid

    def get(self) -> Fleet:
        """The fleet in force, after reporting any transition; ConfigError if none ever was."""
        view = self.check()
        if view.fleet is None:
            assert view.error is not None
            raise view.error
        return view.fleet

    def check(self) -> FleetView:
        """Look at the file; log and record a transition; the view now."""
        view = self.fleet_file.check()
        with self._lock:
            state = view.state()
            previous, self._reported = self._reported, state
            due = (
                state != self._recorded
                or time.monotonic() - self._recorded_at >= self.reassert_every
            )
        if state != previous:
            _log_transition(view, previous)
        if self.state is not None and due:
            self._record(view, state)
        return view

    def _record(self, view: FleetView, state: tuple[bool, str, str]) -> None:
        assert self.state is not None
        try:
            self.state.record(view.health(self.reporter))
        except (redis.RedisError, OSError) as exc:
            log.warning("cannot record the fleet file's state in Redis: %s", type(exc).__name__)
            return
        with self._lock:
            self._recorded, self._recorded_at = state, time.monotonic()


def _log_transition(view: FleetView, previous: tuple[bool, str, str] | None) -> None:
    """One line per transition; the first look at a valid file says nothing."""
    fleet = view.fleet
    apps = len(fleet.applications) if fleet else 0
    count = f"{apps} application{'' if apps == 1 else 's'}"
    if view.valid:
        if previous is not None and not previous[0]:
            log.info("fleet file %s is valid again: running it (%s)", view.path, count)
        return
    more = len(view.problems) - 1
    extra = f" (and {more} more)" if more > 0 else ""
    if previous is not None and not previous[0]:
        log.error("fleet file %s is still invalid: %s%s", view.path, view.first_error, extra)
    elif fleet is None:
        log.error("fleet file %s is invalid and no valid fleet was loaded: %s%s", view.path,
                  view.first_error, extra)  # fmt: skip
    else:
        log.error("fleet file %s is invalid; running the last valid fleet (%s) until it is "
                  "fixed: %s%s", view.path, count, view.first_error, extra)  # fmt: skip


# --------------------------------------------------------------------------------------
# A worker's watch: one per Celery worker, in its main process
# --------------------------------------------------------------------------------------

_worker_watch: FleetWatch | None = None
_worker_client: redis.Redis | None = None
_worker_stop = threading.Event()
_worker_thread: threading.Thread | None = None


def start_worker_watch(path: str, *, redis_url: str, keys: Keys) -> FleetWatch:
    """Read the fleet file in the worker's main process and look at it every few seconds.

    Called before the pool forks, so every pool process starts from the fleet read here
    (:func:`inherited_fleet`), even one forked after the file broke.  The watch thread logs
    and records transitions; pool processes read the file quietly on their own.
    """
    global _worker_watch, _worker_client, _worker_thread  # noqa: PLW0603 - one per worker
    client = connect.client(redis_url, socket_timeout=10)
    watch = FleetWatch(FleetFile(path), component="worker", state=FleetState(client, keys))
    watch.check()
    _worker_watch, _worker_client = watch, client
    _worker_stop.clear()

    def loop() -> None:
        while not _worker_stop.wait(CHECK_EVERY):
            try:
                watch.check()
            except Exception:  # the watch must outlive any surprise; say what it was
                log.exception("fleet file watch")

    _worker_thread = threading.Thread(target=loop, name="fleet-watch", daemon=True)
    _worker_thread.start()
    return watch


def stop_worker_watch() -> None:
    """Stop the worker's watch thread and close its Redis connection (at worker shutdown)."""
    _worker_stop.set()
    thread = _worker_thread
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join(timeout=CHECK_EVERY)
    if _worker_client is not None:
        _worker_client.close()


def inherited_fleet() -> Fleet | None:
    """The last valid fleet of this worker's main process, if this process was forked from it.

    Read without the watch's lock: a lock held by the watch thread at the moment of the
    fork stays held forever in the child, and a reference read is atomic anyway.
    """
    watch = _worker_watch
    return watch.last_valid if watch is not None else None
