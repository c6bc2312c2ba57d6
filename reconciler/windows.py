"""Sync windows: whether a target may sync now, and when it next may, decided purely.

As Argo CD's: a window is open from each time its cron ``schedule`` fires, for its
``duration``, read in its ``timeZone``.  A target with allow windows syncs automatically
only while one of them is open; an open deny window stops automatic syncs whatever the
allow windows say.  An admin sync (``reconciler sync``) runs when every window that
stops it says ``manualSync``.  Scheduled, push, heal and rollout runs that a window stops
are deferred: the workers record why and run them when the window lets them.

No clock here: the caller passes ``now`` (aware).  croniter does the cron arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from reconciler.fleet.model import SyncWindow, format_duration

#: How far ahead ``next_allowed`` looks for a moment a target may sync.
HORIZON = timedelta(days=366)


def _start(window: SyncWindow, now: datetime) -> datetime:
    """The latest time at or before ``now`` the window's schedule fired."""
    local = now.astimezone(ZoneInfo(window.time_zone))
    # A fire at exactly ``now`` counts; one later in this second does not yet.
    start: datetime = croniter(window.schedule, local + timedelta(seconds=1)).get_prev(datetime)
    if start > local:
        start = croniter(window.schedule, start).get_prev(datetime)
    return start


def is_open(window: SyncWindow, now: datetime) -> bool:
    """Whether ``window`` is open at ``now``."""
    return now < _start(window, now) + timedelta(seconds=window.duration)


def closes_at(window: SyncWindow, now: datetime) -> datetime:
    """When the window open at ``now`` closes (a later firing may keep it open longer)."""
    return _start(window, now) + timedelta(seconds=window.duration)


def opens_at(window: SyncWindow, now: datetime) -> datetime:
    """The next time after ``now`` the window opens (``now`` when it is open)."""
    if is_open(window, now):
        return now
    local = now.astimezone(ZoneInfo(window.time_zone))
    return croniter(window.schedule, local).get_next(datetime)


def describe(window: SyncWindow) -> str:
    """``deny 0 22 * * * for 2h (Europe/Berlin)``: how messages name a window."""
    return (f"{window.kind} '{window.schedule}' for {format_duration(window.duration)} "
            f"({window.time_zone})")  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """Whether a run may go now; when not, why, and when it next may (None: not within
    a year, or never)."""

    allowed: bool
    why: str = ""
    next_allowed: datetime | None = None
    #: The windows open now, allow or deny (for ``status``).
    open: tuple[SyncWindow, ...] = ()


def verdict(windows: Sequence[SyncWindow], now: datetime, *, manual: bool) -> Verdict:
    """May a run go at ``now``? ``manual``: an admin sync, which ``manualSync`` lets by."""
    if not windows:
        return Verdict(True)
    active = tuple(w for w in windows if is_open(w, now))
    if allowed_at(windows, now, manual=manual):
        return Verdict(True, open=active)
    denying = [w for w in active if w.kind == "deny"]
    if denying:
        why = f"sync window: {describe(denying[0])} is open"
    else:
        first = next(w for w in windows if w.kind == "allow")
        why = f"sync window: outside every allow window ({describe(first)})"
    return Verdict(False, why, next_allowed(windows, now, manual=manual), active)


def next_allowed(windows: Sequence[SyncWindow], now: datetime, *, manual: bool) -> datetime | None:
    """The first moment after ``now`` a run may go: tried at each time a window opens or
    closes, in order, within ``HORIZON``."""
    moment = now
    limit = now + HORIZON
    for _ in range(10_000):
        candidates = [opens_at(w, moment) for w in windows if not is_open(w, moment)]
        candidates += [closes_at(w, moment) for w in windows if is_open(w, moment)]
        later = [c for c in candidates if c > moment]
        if not later:
            return None
        moment = min(later)
        if moment > limit:
            return None
        if allowed_at(windows, moment, manual=manual):
            return moment
    return None


def allowed_at(windows: Sequence[SyncWindow], moment: datetime, *, manual: bool) -> bool:
    """Whether a run may go at ``moment``: no open deny window stops it (unless manual and
    every such window says ``manualSync``), and, when there are allow windows, one is
    open (or it is manual and one of them says ``manualSync``)."""
    active = [w for w in windows if is_open(w, moment)]
    denying = [w for w in active if w.kind == "deny"]
    if denying:
        return manual and all(w.manual_sync for w in denying)
    allows = [w for w in windows if w.kind == "allow"]
    if allows and not any(w.kind == "allow" for w in active):
        return manual and any(w.manual_sync for w in allows)
    return True
