"""Which applications an operator suspended: their scheduled and webhook runs are skipped.

One Redis set per installation.  Beat, the workers (at fan-out and again when a target
task starts, since either may outlive a ``suspend``), the webhook server and the command
line all ask here, so "suspended" means one thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from reconciler.store.keys import Keys


class Suspensions:
    """The suspended applications of one installation."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def suspend(self, app: str) -> None:
        self.client.sadd(self.keys.suspended(), app)

    def resume(self, app: str) -> None:
        self.client.srem(self.keys.suspended(), app)

    def is_suspended(self, app: str) -> bool:
        return bool(self.client.sismember(self.keys.suspended(), app))

    def which(self, apps: Sequence[str]) -> set[str]:
        """The suspended ones among ``apps``, in one round trip."""
        if not apps:
            return set()
        flags = self.client.smismember(self.keys.suspended(), list(apps))
        return {app for app, flag in zip(apps, flags, strict=True) if flag}

    def all(self) -> set[str]:
        return {m.decode() if isinstance(m, bytes) else str(m)
                for m in self.client.smembers(self.keys.suspended())}  # fmt: skip
