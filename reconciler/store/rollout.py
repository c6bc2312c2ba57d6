"""Where each application's progressive rollout stands, kept in Redis between decisions.

A rollout outlives every process: the worker that decided a step, beat that ticks it,
the command line that pauses or promotes it.  Its state (``reconciler.rollout``) is one
JSON string per application under the installation's prefix.  Two deciders may look at
once (a target finishing as beat ticks, an operator's ``promote``): each change runs
under ``WATCH``, so the second one decides again from what the first wrote instead of
overwriting it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

import redis

from reconciler.rollout import RolloutState
from reconciler.store.keys import Keys

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A decision: from the stored state (None: none yet), the state to store (None: leave
#: it as it is) and what to tell the caller.
Decide = Callable[[RolloutState | None], tuple[RolloutState | None, T]]


def _state(raw: bytes | str | None, *, key: str) -> RolloutState | None:
    if raw is None:
        return None
    try:
        return RolloutState.from_dict(json.loads(raw))
    except (TypeError, ValueError, KeyError):
        log.warning("%s: unreadable rollout state; taken as none", key)
        return None


class Rollouts:
    """The rollouts of one installation."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def read(self, app: str) -> RolloutState | None:
        key = self.keys.rollout(app)
        return _state(self.client.get(key), key=key)

    def read_many(self, apps: Iterable[str]) -> dict[str, RolloutState]:
        """The rollouts of ``apps`` that have one, in one round trip."""
        names = list(apps)
        if not names:
            return {}
        keys = [self.keys.rollout(app) for app in names]
        found = {}
        for app, key, raw in zip(names, keys, self.client.mget(keys), strict=True):
            state = _state(raw, key=key)
            if state is not None:
                found[app] = state
        return found

    def change(self, app: str, decide: Decide[T]) -> T:
        """Run ``decide`` on the stored state and store what it returns, atomically: when
        another writer changed the state meanwhile, ``decide`` runs again on theirs (so it
        must do nothing but decide)."""
        key = self.keys.rollout(app)
        told: list[T] = []

        def attempt(pipe: redis.client.Pipeline) -> None:
            told.clear()
            new, said = decide(_state(pipe.get(key), key=key))
            pipe.multi()
            if new is not None:
                pipe.set(key, json.dumps(new.to_dict(), separators=(",", ":")))
            told.append(said)

        self.client.transaction(attempt, key)
        return told[0]

    def forget(self, app: str) -> None:
        """Drop ``app``'s rollout (it left the fleet, or no longer rolls out)."""
        self.client.delete(self.keys.rollout(app), self.keys.rollout_queued(app))

    def queue(self, app: str, *, ttl: float) -> bool:
        """Claim the right to queue a decision on ``app``'s rollout: False while one waits.

        The decision's task gives the claim back when it starts (``started``), so a
        target that finishes while it runs queues the next; ``ttl`` bounds a lost one.
        """
        return bool(self.client.set(self.keys.rollout_queued(app), "1", nx=True,
                                    px=max(1, int(ttl * 1000))))  # fmt: skip

    def started(self, app: str) -> None:
        self.client.delete(self.keys.rollout_queued(app))
