"""Whether the fleet file is valid, as the running installation last saw it.

Workers, beat and the webhook server re-read the fleet file while they run.  When an edit
makes it invalid they keep running the last valid fleet, so nothing in the clusters shows
that the file is broken: targets stay Synced, at the old fleet's settings.  Each process
says so once in its own log, but an operator asks the installation, not five log files.
So the processes record the file's state here, in one small hash under the installation's
prefix, and ``reconciler status`` prints it as a fleet-level line.

Several processes on several hosts write it, each when its own view changes (a
transition, never per task), so one record must make sense of them all.  One Lua script
decides, atomically:

* an observation of the state already recorded writes nothing, so the first process to see
  a state keeps its ``since``, however many others see it after;
* an observation made *before* the recorded one is dropped: a process that read the file a
  moment before another process saw it change cannot overwrite the newer view;
* otherwise the observation replaces the record, keeping the earlier ``since`` when only
  the error changed, not whether the file is valid.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.commands.core import Script

from reconciler.store.keys import Keys

__all__ = ["FleetHealth", "FleetState"]

# KEYS[1]: the fleet state hash.
# ARGV: valid ('1' or '0'), path, error, problems, fingerprint, applications, since (Unix
# seconds), observed (Unix seconds), reporter.
# Returns 0 when the same state (valid, path, error, fingerprint) is recorded already,
# -1 when the recorded state was observed later than this one (kept), 1 when written.
_RECORD = """
local cur = redis.call('HMGET', KEYS[1], 'valid', 'path', 'error', 'fingerprint', 'observed',
                       'since')
if cur[1] == ARGV[1] and cur[2] == ARGV[2] and cur[3] == ARGV[3] and cur[4] == ARGV[5] then
    return 0
end
local recorded = cur[5] and tonumber(cur[5])
if recorded and recorded > tonumber(ARGV[8]) then
    return -1
end
local since = ARGV[7]
local earlier = cur[6] and tonumber(cur[6])
if cur[1] == ARGV[1] and cur[2] == ARGV[2] and earlier and earlier < tonumber(since) then
    since = cur[6]
end
redis.call('HSET', KEYS[1], 'valid', ARGV[1], 'path', ARGV[2], 'error', ARGV[3],
           'problems', ARGV[4], 'fingerprint', ARGV[5], 'applications', ARGV[6],
           'since', since, 'observed', ARGV[8], 'reporter', ARGV[9])
return 1
"""

_script: Script | None = None
_script_lock = threading.Lock()


def _record_script(client: redis.Redis) -> Script:
    """The record script, registered once per process (it loads itself on NOSCRIPT)."""
    global _script  # noqa: PLW0603 - a lazily built, immutable, per-process registration
    with _script_lock:
        if _script is None:
            _script = client.register_script(_RECORD)
        return _script


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _moment(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _shown(moment: datetime) -> str:
    """A moment as the command line shows it: UTC to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FleetHealth:
    """The fleet file's state: valid or not, since when, and the fleet actually running.

    ``error`` is the file's first problem (each problem is one ``file:line`` sentence) and
    ``problems`` how many there are.  ``fingerprint`` and ``applications`` describe the
    fleet in force: the file's own while it is valid, the last valid one while it is not;
    ``fingerprint`` is empty when no valid fleet was ever loaded.  ``reporter`` names the
    process (``beat@host:pid``) whose observation this is.
    """

    valid: bool
    path: str
    since: datetime
    observed: datetime
    error: str = ""
    problems: int = 0
    fingerprint: str = ""
    applications: int = 0
    reporter: str = ""

    def describe(self) -> str:
        """One line for an operator; the command line prints it above a listing.

        ``fleet file /etc/fleet.yaml is invalid since 2026-11-26T04:30:10Z: <error>;
        running the last valid fleet (3 applications)``.
        """
        if self.valid:
            return (
                f"fleet file {self.path} is valid since {_shown(self.since)} "
                f"({_applications(self.applications)})"
            )
        more = self.problems - 1
        error = self.error + (f" (and {more} more problem{'s' if more > 1 else ''})"
                              if more > 0 else "")  # fmt: skip
        running = (
            f"running the last valid fleet ({_applications(self.applications)})"
            if self.fingerprint
            else "no valid fleet was ever loaded, nothing is reconciled"
        )
        return f"fleet file {self.path} is invalid since {_shown(self.since)}: {error}; {running}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``-o json``), times in RFC 3339 UTC."""
        return {
            "valid": self.valid,
            "path": self.path,
            "since": _shown(self.since),
            "observed": _shown(self.observed),
            "error": self.error,
            "problems": self.problems,
            "fingerprint": self.fingerprint,
            "applications": self.applications,
            "reporter": self.reporter,
        }


def _applications(count: int) -> str:
    return f"{count} application{'' if count == 1 else 's'}"


class FleetState:
    """Reads and records the installation's :class:`FleetHealth` (one hash)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.key = keys.fleet()

    def record(self, health: FleetHealth) -> bool:
        """Record one process's observation; True when the stored state changed.

        See the module docstring for how observations of several processes combine.
        """
        result = _record_script(self.client)(
            keys=[self.key],
            args=[
                "1" if health.valid else "0",
                health.path,
                health.error,
                health.problems,
                health.fingerprint,
                health.applications,
                repr(health.since.timestamp()),
                repr(health.observed.timestamp()),
                health.reporter,
            ],
            client=self.client,
        )
        return int(result) == 1

    def read(self) -> FleetHealth | None:
        """The recorded state, or None when no process has recorded one yet."""
        raw = {_text(k): _text(v) for k, v in self.client.hgetall(self.key).items()}
        if not raw.get("path") or raw.get("valid") not in {"0", "1"}:
            return None
        try:
            since, observed = float(raw["since"]), float(raw["observed"])
            problems, applications = (
                int(raw.get("problems") or 0),
                int(raw.get("applications") or 0),
            )
        except (KeyError, ValueError):
            return None  # not written by ``record``: as good as absent
        return FleetHealth(
            valid=raw["valid"] == "1",
            path=raw["path"],
            since=_moment(since),
            observed=_moment(observed),
            error=raw.get("error", ""),
            problems=problems,
            fingerprint=raw.get("fingerprint", ""),
            applications=applications,
            reporter=raw.get("reporter", ""),
        )
