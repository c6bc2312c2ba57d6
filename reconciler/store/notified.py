"""What each notification endpoint was told, so a storm of one event is one message.

A target that fails every interval for a night would page a team a hundred times.  An
event is sent to an endpoint once per target and kind (``SET NX`` with the endpoint's
fold as expiry); the key goes when the event clears (the target syncs again, turns
Healthy), so the next failure is told at once, and when the fold expires, as a reminder.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from reconciler.store.keys import Keys


class Notified:
    """The folds of one installation's notifications."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def claim(self, endpoint: str, app: str, cluster: str | None, event: str, *,
              fold: float) -> bool:  # fmt: skip
        """True when ``endpoint`` is to be told (it was not within the fold)."""
        key = self.keys.notified(endpoint, app, cluster, event)
        return bool(self.client.set(key, "1", nx=True, px=max(1, int(fold * 1000))))

    def clear(self, endpoints: Iterable[str], app: str, cluster: str | None,
              events: Iterable[str]) -> None:  # fmt: skip
        """The events cleared on the target: the next one is told at once."""
        keys = [self.keys.notified(e, app, cluster, kind) for e in endpoints for kind in events]
        if keys:
            self.client.delete(*keys)
