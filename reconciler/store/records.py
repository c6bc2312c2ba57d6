"""The record of outcomes: what every target looks like now, and what happened to it.

``reconciler status`` must answer for a whole fleet in one round trip, and ``reconciler
history`` must show why a target changed, long after the worker that ran it is gone.  So
each finished reconcile writes, in one MULTI/EXEC transaction (a reader never sees one
without the other):

* a summary into the status index, a hash with one field per target (``app/cluster``);
* the whole outcome, as JSON, at the head of the target's history list, capped.

Only what the engine's outcome contains is stored; it never holds credentials.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis

from reconciler.model import Action
from reconciler.outcome import Outcome, TargetStatus
from reconciler.store.keys import Keys

log = logging.getLogger(__name__)

#: Outcomes kept per target: enough to see a pattern, bounded so Redis does not grow.
DEFAULT_HISTORY_LIMIT = 100


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _loads(values: Iterable[bytes | str], *, where: str) -> list[dict[str, Any]]:
    """JSON objects from ``values``; an unreadable one is logged and skipped, not fatal."""
    out: list[dict[str, Any]] = []
    for value in values:
        try:
            entry = json.loads(_text(value))
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            out.append(entry)
        else:
            log.warning("%s: an entry is not a JSON object; skipped", where)
    return out


def _statuses(values: Iterable[bytes | str], *, where: str) -> list[TargetStatus]:
    """Status entries from ``values``; one without a target's names is logged, skipped."""
    out: list[TargetStatus] = []
    for entry in _loads(values, where=where):
        try:
            out.append(TargetStatus.from_dict(entry))
        except (KeyError, TypeError, ValueError):
            log.warning("%s: an entry is not a target's status; skipped", where)
    return out


def _dumps(value: Any) -> str:
    # ``default=str`` turns datetimes and the like into text instead of failing a record.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


# One outcome, atomically: the status entry, then the history head.  A quiet outcome (a
# run that found nothing to do) right after another quiet one at the same revision takes
# its place when both knew the live state the same way (read from the cluster, or from
# the watch), counting the runs (``repeats``) since the first (``first_started``): a
# steady fleet's history stays a record of what happened, not of a hundred identical
# checks.  The new outcome's JSON is extended as text, never re-encoded (Redis's cjson
# would turn its empty lists into objects).
# KEYS: status index, history.  ARGV: field, summary, outcome, limit, quiet, revision,
# checked.
_RECORD = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] == '1' then
  local head = redis.call('LINDEX', KEYS[2], 0)
  if head then
    local ok, entry = pcall(cjson.decode, head)
    if ok and type(entry) == 'table' and entry['quiet'] == true
        and tostring(entry['revision']) == ARGV[6] and entry['checked'] == ARGV[7] then
      local repeats = (tonumber(entry['repeats']) or 1) + 1
      local first = entry['first_started'] or entry['started'] or ''
      local merged = string.sub(ARGV[3], 1, -2) .. ',"repeats":' .. repeats ..
        ',"first_started":' .. cjson.encode(first) .. '}'
      redis.call('LSET', KEYS[2], 0, merged)
      return repeats
    end
  end
end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return 1
"""


def _quiet(outcome: Mapping[str, Any]) -> bool:
    """A run that found nothing to do: Synced, nothing written, drifted, failed or run."""
    changes = outcome.get("changes") or []
    return (
        outcome.get("sync") == "Synced"
        and not outcome.get("dry_run")
        and not outcome.get("drift")
        and not outcome.get("errors")
        and not outcome.get("hooks")
        and all(c.get("action") == Action.UNCHANGED.value for c in changes)
    )


# Change one entry's health in place (cjson is part of Redis's Lua).
_SET_HEALTH = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local entry = cjson.decode(raw)
if entry['health'] == ARGV[2] then return 0 end
entry['health'] = ARGV[2]
entry['health_at'] = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
return 1
"""


class Records:
    """Writes and reads the status index and per-target histories."""

    def __init__(
        self, client: redis.Redis, keys: Keys, *, history_limit: int = DEFAULT_HISTORY_LIMIT
    ) -> None:
        if history_limit < 1:
            raise ValueError(f"history_limit must be at least 1, not {history_limit!r}")
        self.client = client
        self.keys = keys
        self.history_limit = history_limit
        self._record = client.register_script(_RECORD)
        self._set_health = client.register_script(_SET_HEALTH)

    def record(self, run: Outcome) -> dict[str, Any]:
        """Store one finished reconcile: status entry and history head, atomically.

        Returns the outcome as it was stored (the history entry's JSON form).
        """
        outcome = run.to_dict()
        app, cluster = run.application, run.cluster
        quiet = _quiet(outcome)
        if quiet:
            outcome["quiet"] = True
        repeats = self._record(
            keys=[self.keys.status_index(), self.keys.history(app, cluster)],
            args=[self.keys.target_field(app, cluster), _dumps(TargetStatus.of(outcome).to_dict()),
                  _dumps(outcome), self.history_limit, "1" if quiet else "0",
                  str(outcome.get("revision") or ""), str(outcome.get("checked") or "")],
        )  # fmt: skip
        if int(repeats) > 1:
            outcome["repeats"] = int(repeats)
        return outcome


    def entry(self, app: str, cluster: str) -> TargetStatus | None:
        """The status entry of one target (None when it has none)."""
        index = self.keys.status_index()
        value = self.client.hget(index, self.keys.target_field(app, cluster))
        found = _statuses([value], where=index) if value is not None else []
        return found[0] if found else None

    def set_health(
        self, healths: Mapping[tuple[str, str], str], *, at: str
    ) -> dict[tuple[str, str], str]:
        """The live health of targets, as the watcher sees it, into their status entries.

        Only entries that exist change (a target gets one from its first reconcile), and
        only their health: the outcome they summarise stays what it was.  Returns the
        targets whose health this changed, with their new health.
        """
        if not healths:
            return {}
        pipe = self.client.pipeline(transaction=False)
        wanted = list(healths.items())
        for (app, cluster), health in wanted:
            self._set_health(keys=[self.keys.status_index()],
                             args=[self.keys.target_field(app, cluster), health, at],
                             client=pipe)  # fmt: skip
        changed = pipe.execute()
        return {target: health for (target, health), did in zip(wanted, changed, strict=True)
                if did}  # fmt: skip


    def status(self, app: str | None = None) -> list[TargetStatus]:
        """Status entries of every target, or of ``app``'s, sorted by application, cluster."""
        index = self.keys.status_index()
        if app is None:
            raw = list(self.client.hgetall(index).items())
        else:
            raw = list(self.client.hscan_iter(index, match=self.keys.app_fields(app)))
        entries = _statuses((value for _field, value in raw), where=index)
        entries.sort(key=lambda entry: (entry.application, entry.cluster))
        return entries

    def history(self, app: str, cluster: str, *, n: int = 20) -> list[dict[str, Any]]:
        """The last ``n`` outcomes of a target, newest first."""
        if n <= 0:
            return []
        key = self.keys.history(app, cluster)
        return _loads(self.client.lrange(key, 0, n - 1), where=key)

    def forget(self, app: str, cluster: str) -> None:
        """Drop a target's status entry and history (it left the fleet)."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.status_index(), self.keys.target_field(app, cluster))
        pipe.delete(self.keys.history(app, cluster))
        pipe.execute()
