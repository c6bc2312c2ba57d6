"""Which webhook deliveries and pushes were already queued, across every webhook server.

A provider redelivers a delivery it thinks failed, and anyone who saw a signed push can
send it again under a new delivery id (the signature covers the body only).  Each push
must queue its reconciles once, so a claim records two things in one Lua script (one
round trip, no interleaving between servers):

* the delivery id, remembered for a day: a provider's redelivery is a duplicate;
* the push, by (repository, ref, commit) identity, remembered for the replay window: the
  same push under any other delivery id is a duplicate too.

A claim that could not be acted on (the broker was down) is released, so the provider's
redelivery queues it after all.  A push that names no commit ("the ref moved") says
nothing about which move: its claim lasts only until a fan-out it queued starts (which
resolves the ref afresh), so a second move after that is queued again, not dropped.
"""

from __future__ import annotations

from enum import StrEnum

import redis

from reconciler.store.keys import Keys, digest

#: KEYS[1] the push key; KEYS[2] the delivery key, when the delivery has an id.
#: ARGV[1] milliseconds the push is remembered; ARGV[2] milliseconds the delivery is.
#: Returns 'delivery' or 'push' for a duplicate (what was seen before), 'new' otherwise.
_CLAIM = """
if #KEYS == 2 and redis.call('EXISTS', KEYS[2]) == 1 then
  return 'delivery'
end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return 'push'
end
if #KEYS == 2 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
end
return 'new'
"""


class Seen(StrEnum):
    """What a claim found: nothing (queue it), or what made it a duplicate."""

    NEW = "new"
    DELIVERY = "delivery"
    PUSH = "push"


class WebhookDeliveries:
    """Claims of deliveries and pushes, shared by every webhook server of an installation."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._claim = client.register_script(_CLAIM)

    def _names(self, push: str, delivery: str | None) -> list[str]:
        names = [self.keys.webhook_push(push)]
        if delivery:
            names.append(self.keys.webhook_seen(delivery))
        return names

    def claim(self, push: str, delivery: str | None, *, window: float, seen_ttl: float) -> Seen:
        """Claim ``push`` (its identity text) and ``delivery`` (its id, if any).

        ``Seen.NEW`` means this caller queues it; otherwise it was queued already.
        """
        names = self._names(push, delivery)
        result = self._claim(keys=names, args=[_ms(window), _ms(seen_ttl)])
        text = result.decode() if isinstance(result, bytes) else str(result)
        return Seen(text)

    def release(self, push: str, delivery: str | None) -> None:
        """Forget a claim whose reconciles could not be queued."""
        self.client.delete(*self._names(push, delivery))

    @staticmethod
    def token(push: str) -> str:
        """The claim of ``push`` as a fan-out task may carry it: a hash, nothing readable."""
        return digest(push)

    def settle(self, token: str) -> None:
        """A fan-out a push without a commit queued has started: its fresh resolve sees
        every move of the ref up to now, and a later push must queue another."""
        self.client.delete(self.keys.webhook_push_token(token))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
