"""A lease in Redis: a key holding its holder's token, renewed by that holder alone.

Beat's leadership and the watcher's clusters are both leases.  Taking and renewing must
never touch someone else's lease (RedBeat's own extension does not check: redbeat#127),
so both go through one compare-and-set script, and giving up is compare-and-delete.
"""

from __future__ import annotations

from typing import Any

#: KEYS[1] the lease; ARGV[1] the holder's token; ARGV[2] the lease in milliseconds.
#: Returns 1 when the caller holds the lease afterwards (renewed its own, or took a free
#: one); someone else's is never touched (0).
HOLD = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
#: KEYS[1] the lease; ARGV[1] the token.  Deletes it only if it is still the caller's.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def ms(seconds: float) -> int:
    """A lease in whole milliseconds, never 0 (Redis refuses a zero expiry)."""
    return max(1, round(seconds * 1000))


def hold(client: Any, key: str, token: str, ttl: float) -> bool:
    """Renew ``token``'s lease on ``key`` or take it when free; whether it holds it now."""
    return int(client.eval(HOLD, 1, key, token, ms(ttl))) == 1


def release(client: Any, key: str, token: str) -> None:
    """Give the lease up, only if it is still ``token``'s."""
    client.eval(RELEASE, 1, key, token)
