"""A circuit breaker per cluster: a cluster that keeps failing is left alone for a while.

Retries with backoff are per target; a cluster that is down fails every target on it,
and each of those keeps trying, each attempt costing a worker slot and a connect
timeout.  The breaker judges each cluster by its recent runs' transient failures
(refused, timed out, 5xx, 429: what ``cluster_reachable`` calls unreachable).  It opens
on either of two counts:

* ``failures`` consecutive failures: a cluster that is down opens it within a few runs;
* a failing share of at least ``failure_rate`` among the last ``window`` runs, judged
  once ``min_runs`` of them are known: a cluster that answers 503 to half its requests
  fails most runs (each makes several requests), but the runs that get through would
  reset a consecutive count again and again, and its targets would keep retrying,
  spending worker slots, connections and Redis round trips the healthy clusters need.

Open, the cluster's targets are deferred until ``cooldown`` has passed.  Then one target
is let through as a probe (half-open): its success closes the breaker with a clean
record, its failure opens it again for a cooldown twice as long (capped).  The others
come back after at most one cooldown while the probe runs, not when the probe's lease
ends (a whole task time limit).

State lives in one hash per cluster (``Keys.breaker``), changed in Lua so workers on
many hosts agree; times are Redis's clock, in seconds.  The hash of a closed breaker
keeps only the recent runs, and expires after a day without runs.  ``reconciler status
-o wide`` and each outcome show the state, the consecutive failures and when the next
probe goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis

from reconciler.store.keys import Keys


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class Circuit:
    """One cluster's breaker as read: state, consecutive failures, next probe (epoch s).

    ``recent_failures`` of the ``recent_runs`` last runs failed (the sliding window).
    """

    cluster: str
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    next_retry: float = 0.0
    recent_failures: int = 0
    recent_runs: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"state": self.state.value, "failures": self.failures,
                "next_retry": self.next_retry or None,
                "recent_failures": self.recent_failures,
                "recent_runs": self.recent_runs}  # fmt: skip


@dataclass(frozen=True)
class Admission:
    """Whether a target may run now; if not, when to come back (epoch s)."""

    run: bool
    probe: bool = False
    retry_at: float = 0.0


_NOW = """
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
"""

#: Seconds a breaker's hash outlives its last run (its record of recent runs goes stale).
_IDLE_TTL = 24 * 3600

# KEYS[1]: the breaker hash.  ARGV[1]: the caller's token, ARGV[2]: probe TTL (s),
# ARGV[3]: cooldown (s), the longest a target refused during a probe waits.
# Returns {run (0/1), probe (0/1), retry_at (string seconds)}.
_ADMIT = (
    _NOW
    + """
local state = redis.call('hget', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {1, 0, '0'} end
local until_ = tonumber(redis.call('hget', KEYS[1], 'until') or '0')
if state == 'open' and now < until_ then return {0, 0, tostring(until_)} end
local probe = redis.call('hget', KEYS[1], 'probe')
local probe_until = tonumber(redis.call('hget', KEYS[1], 'probe_until') or '0')
if state == 'half-open' and probe and probe ~= ARGV[1] and now < probe_until then
    return {0, 0, tostring(math.min(probe_until, now + tonumber(ARGV[3])))}
end
redis.call('hset', KEYS[1], 'state', 'half-open', 'probe', ARGV[1],
           'probe_until', tostring(now + tonumber(ARGV[2])))
return {1, 1, '0'}
"""
)

# KEYS[1]: the breaker hash.  ARGV[1]: token, ARGV[2]: '1' reached / '0' unreachable /
# '' no evidence, ARGV[3]: consecutive failures to open, ARGV[4]: cooldown (s),
# ARGV[5]: cap (s), ARGV[6]: window (runs), ARGV[7]: failing share to open,
# ARGV[8]: fewest runs in the window the share is judged on, ARGV[9]: idle TTL (s).
# The window is a string of the last runs, oldest first: '1' reached, '0' failed.
# Returns {state, consecutive failures, next_retry, failures in window, runs in window}.
_RECORD = (
    _NOW
    + """
local state = redis.call('hget', KEYS[1], 'state') or 'closed'
local probing = redis.call('hget', KEYS[1], 'probe') == ARGV[1]
local window = redis.call('hget', KEYS[1], 'window') or ''
local function failed_in(w)
    local _, n = string.gsub(w, '0', '')
    return n
end
if ARGV[2] == '' then
    if probing then redis.call('hdel', KEYS[1], 'probe', 'probe_until') end
    return {state, tonumber(redis.call('hget', KEYS[1], 'failures') or '0'),
            redis.call('hget', KEYS[1], 'until') or '0', failed_in(window), #window}
end
window = window .. ARGV[2]
if #window > tonumber(ARGV[6]) then window = string.sub(window, -tonumber(ARGV[6])) end
if ARGV[2] == '1' then
    if state ~= 'closed' then
        -- The cluster answered again: a clean record, as after any first start.
        redis.call('del', KEYS[1])
        return {'closed', 0, '0', 0, 0}
    end
    redis.call('hset', KEYS[1], 'failures', 0, 'window', window)
    redis.call('expire', KEYS[1], ARGV[9])
    return {'closed', 0, '0', failed_in(window), #window}
end
local failures = redis.call('hincrby', KEYS[1], 'failures', 1)
redis.call('hset', KEYS[1], 'window', window)
redis.call('expire', KEYS[1], ARGV[9])
local failed = failed_in(window)
local opens = tonumber(redis.call('hget', KEYS[1], 'opens') or '0')
local by_count = failures >= tonumber(ARGV[3])
local by_share = #window >= tonumber(ARGV[8]) and failed >= tonumber(ARGV[7]) * #window
if (state == 'half-open' and probing) or (state == 'closed' and (by_count or by_share)) then
    local cooldown = math.min(tonumber(ARGV[4]) * (2 ^ opens), tonumber(ARGV[5]))
    local until_ = now + cooldown
    redis.call('hset', KEYS[1], 'state', 'open', 'until', tostring(until_), 'opens', opens + 1)
    redis.call('hdel', KEYS[1], 'probe', 'probe_until')
    return {'open', failures, tostring(until_), failed, #window}
end
return {state, failures, redis.call('hget', KEYS[1], 'until') or '0', failed, #window}
"""
)


class Breakers:
    """Every cluster's circuit breaker; ``failures`` 0 turns them off.

    ``failure_rate`` 0 (or above 1) leaves only the consecutive count to open them.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        failures: int,
        cooldown: float,
        probe_ttl: float,
        max_cooldown: float = 600.0,
        window: int = 10,
        failure_rate: float = 0.5,
        min_runs: int = 5,
    ) -> None:
        self.client = client
        self.keys = keys
        self.failures = failures
        self.cooldown = cooldown
        self.probe_ttl = probe_ttl
        self.max_cooldown = max(max_cooldown, cooldown)
        self.window = max(1, window)
        # A share no run can reach turns the window's rule off.
        self.failure_rate = failure_rate if 0 < failure_rate <= 1 else 2.0
        self.min_runs = max(1, min(min_runs, self.window))
        self._admit = client.register_script(_ADMIT)
        self._record = client.register_script(_RECORD)

    @property
    def enabled(self) -> bool:
        return self.failures > 0

    def admit(self, cluster: str, token: str) -> Admission:
        """May a target of ``cluster`` run now?  Half-open lets one probe through."""
        if not self.enabled:
            return Admission(run=True)
        run, probe, retry_at = self._admit(keys=[self.keys.breaker(cluster)],
                                           args=[token, self.probe_ttl,
                                                 self.cooldown])  # fmt: skip
        return Admission(run=bool(run), probe=bool(probe), retry_at=float(_text(retry_at)))

    def record(self, cluster: str, token: str, reachable: bool | None) -> Circuit:
        """A run of ``cluster`` ended: it reached the cluster, did not, or cannot tell."""
        if not self.enabled:
            return Circuit(cluster)
        evidence = "" if reachable is None else ("1" if reachable else "0")
        args: list[str | int | float] = [
            token,
            evidence,
            self.failures,
            self.cooldown,
            self.max_cooldown,
            self.window,
            self.failure_rate,
            self.min_runs,
            _IDLE_TTL,
        ]
        state, failures, until, failed, runs = self._record(
            keys=[self.keys.breaker(cluster)], args=args
        )
        return _circuit(cluster, _text(state), int(failures), float(_text(until)),
                        recent=(int(failed), int(runs)))  # fmt: skip

    def states(self) -> dict[str, Circuit]:
        """Every cluster whose breaker is not plainly closed, by name."""
        found: dict[str, Circuit] = {}
        prefix = self.keys.breaker_pattern()[:-1]
        for key in self.client.scan_iter(match=self.keys.breaker_pattern(), count=500):
            name = _text(key)[len(prefix) :]
            data = {_text(k): _text(v) for k, v in self.client.hgetall(key).items()}
            if data.get("state", "closed") != "closed":
                window = data.get("window", "")
                found[name] = _circuit(name, data["state"], int(data.get("failures", "0")),
                                       float(data.get("until", "0")),
                                       recent=(window.count("0"), len(window)))  # fmt: skip
        return found


def _circuit(
    cluster: str, state: str, failures: int, until: float, *, recent: tuple[int, int] = (0, 0)
) -> Circuit:
    known = {s.value for s in CircuitState}
    parsed = CircuitState(state) if state in known else CircuitState.CLOSED
    next_retry = until if parsed is not CircuitState.CLOSED else 0.0
    return Circuit(cluster, parsed, failures, next_retry, recent[0], recent[1])


def _text(value: bytes | str | int) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
