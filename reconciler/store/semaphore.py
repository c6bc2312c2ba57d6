"""Reconcile slots per cluster: a slow cluster may hold only a few worker slots.

Every worker slot that waits on a slow cluster's API server is a slot the healthy
clusters lose: three clusters with one answering in 2 s cut the others' throughput by
more than ten times when nothing bounded it.  A fleet-wide semaphore per cluster
(``Keys.cluster_slots``) bounds how many reconciles of one cluster run at once; a target
that finds its cluster full is deferred by the caller (retried later), so it does not
hold a worker slot while it waits.

The semaphore is a sorted set of holders scored by expiry (milliseconds, Redis's own
clock), taken and freed in Lua so no two workers can both see the last free slot.  A
holder's entry outlives it at most until its expiry (the task's hard time limit), or
until a taker finds the holder dead (``is_dead``: its worker's heartbeat gone).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from reconciler.store.keys import Keys

log = logging.getLogger(__name__)

# KEYS[1]: the cluster's slots.  ARGV[1]: holder, ARGV[2]: limit, ARGV[3]: TTL in ms.
# Drops expired holders, then takes a slot if one is free (or the holder has one).
# Returns 1 if the holder has a slot now, else 0.
_ACQUIRE = """
local now = redis.call('time')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('zremrangebyscore', KEYS[1], '-inf', now_ms)
if redis.call('zscore', KEYS[1], ARGV[1]) or
   redis.call('zcard', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('zadd', KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[1])
    redis.call('pexpire', KEYS[1], ARGV[3])
    return 1
end
return 0
"""


# KEYS[1]: the cluster's slots.  ARGV[1]: TTL in ms (what every holder's score adds).
# Returns the milliseconds the longest-running holder has held its slot (0: none).
_HELD_FOR = """
local now = redis.call('time')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local oldest = redis.call('zrange', KEYS[1], 0, 0, 'withscores')
if #oldest == 0 then return 0 end
return math.max(0, now_ms - (tonumber(oldest[2]) - tonumber(ARGV[1])))
"""


class ClusterSlots:
    """The semaphore of one cluster; ``limit`` 0 means no limit (always granted)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        cluster: str,
        *,
        limit: int,
        ttl: float,
        is_dead: Callable[[str], bool] | None = None,
    ) -> None:
        self.client = client
        self.key = keys.cluster_slots(cluster)
        self.limit = limit
        self.ttl = ttl
        self.is_dead = is_dead
        self._acquire = client.register_script(_ACQUIRE)
        self._held_for = client.register_script(_HELD_FOR)

    def acquire(self, holder: str) -> bool:
        """Take a slot for ``holder``; False when the cluster is full (defer the target)."""
        if self.limit <= 0:
            return True
        args: list[str | int | float] = [holder, self.limit, max(1, round(self.ttl * 1000))]
        if self._acquire(keys=[self.key], args=args):
            return True
        if self._free_dead_holders():
            return bool(self._acquire(keys=[self.key], args=args))
        return False

    def release(self, holder: str) -> None:
        if self.limit > 0:
            self.client.zrem(self.key, holder)

    def held_for(self) -> float:
        """Seconds the longest-running holder has held its slot so far (0 when none).

        How soon a slot frees is unknown; how long the cluster's current runs have
        taken is a fair guess of its scale: milliseconds on a healthy cluster, seconds
        on a slow one.  The caller defers a target by about that long, so the targets of
        a quick cluster come back soon and those of a slow one do not keep asking.
        """
        if self.limit <= 0:
            return 0.0
        held = self._held_for(keys=[self.key], args=[max(1, round(self.ttl * 1000))])
        return float(held) / 1000.0

    def holders(self) -> list[str]:
        found = self.client.zrange(self.key, 0, -1)
        return [h.decode() if isinstance(h, bytes) else str(h) for h in found]

    def _free_dead_holders(self) -> bool:
        if self.is_dead is None:
            return False
        dead = [h for h in self.holders() if self.is_dead(h)]
        if dead:
            self.client.zrem(self.key, *dead)
            log.warning("%s: freed %d slot(s) of dead holders", self.key, len(dead))
        return bool(dead)
