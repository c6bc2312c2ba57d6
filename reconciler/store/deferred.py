"""Runs a sync window stopped, kept until the window lets them go.

A scheduled run (or a push, a heal, a rollout step) that finds its target inside a deny
window, or outside every allow window, is not lost: the target is recorded here with the
moment the windows next let it run, and beat's tick sends it then, instead of leaving it
to the next poll, which may be an hour after the window opened.  One hash per
installation; a target is recorded once (the earliest moment wins, the newest trigger).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from reconciler.store.keys import Keys

# Take the targets due at ``now``: read and delete in one step, so two ticks (a beat that
# took over) never send one twice.  KEYS: the hash.  ARGV: now.
_TAKE_DUE = """
local due = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local ok, entry = pcall(cjson.decode, entries[i + 1])
  if not ok or type(entry) ~= 'table' or (tonumber(entry['at']) or 0) <= tonumber(ARGV[1]) then
    redis.call('HDEL', KEYS[1], entries[i])
    table.insert(due, entries[i])
    table.insert(due, entries[i + 1])
  end
end
return due
"""


@dataclass(frozen=True)
class Deferred:
    """A target's stopped run: when it may go (epoch seconds) and what had triggered it."""

    app: str
    cluster: str
    at: float
    trigger: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse(field: bytes | str, raw: bytes | str) -> Deferred | None:
    app, _, cluster = _text(field).partition("/")
    try:
        data = json.loads(raw)
        return Deferred(app, cluster, float(data["at"]), str(data.get("trigger") or "schedule"))
    except (TypeError, ValueError, KeyError):
        return None


class Deferrals:
    """The deferred runs of one installation."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._take = client.register_script(_TAKE_DUE)

    def defer(self, app: str, cluster: str, *, at: float, trigger: str) -> None:
        """Record the target's run for ``at`` (an earlier moment already recorded stays)."""
        field = self.keys.target_field(app, cluster)
        known = self.client.hget(self.keys.deferred(), field)
        found = _parse(field, known) if known is not None else None
        when = min(at, found.at) if found is not None else at
        self.client.hset(self.keys.deferred(), field,
                         json.dumps({"at": when, "trigger": trigger}))  # fmt: skip

    def all(self) -> dict[tuple[str, str], Deferred]:
        found = {}
        for field, raw in self.client.hgetall(self.keys.deferred()).items():
            entry = _parse(field, raw)
            if entry is not None:
                found[(entry.app, entry.cluster)] = entry
        return found

    def take_due(self, now: float | None = None) -> list[Deferred]:
        """The runs due at ``now``, removed (unreadable entries are removed and dropped)."""
        flat = self._take(keys=[self.keys.deferred()], args=[time.time() if now is None else now])
        entries = [_parse(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return [e for e in entries if e is not None]

    def forget(self, targets: Iterable[tuple[str, str]]) -> None:
        fields = [self.keys.target_field(app, cluster) for app, cluster in targets]
        if fields:
            self.client.hdel(self.keys.deferred(), *fields)
