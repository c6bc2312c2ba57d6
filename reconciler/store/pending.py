"""At most one queued scheduled run per target.

Beat fans an application out every interval.  When a target's runs cannot keep up (its
cluster is slow, its breaker open, its slots full), each interval would queue one more
run of it, and the backlog grows without end while every copy does the same work.  A
mark per target (``Keys.scheduled_pending``, SET NX with a TTL as a safety net) makes the
fan-out skip a target whose scheduled run still waits; the run clears it as it starts.
"""

from __future__ import annotations

import redis

from reconciler.store.keys import Keys


class ScheduledRuns:
    """The queued-scheduled-run marks of every target."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def claim_many(self, app: str, clusters: list[str], *, task_ids: list[str],
                   ttl: float) -> list[bool]:  # fmt: skip
        """For each of an application's clusters, whether this caller should queue its run
        (False: one already waits); one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for cluster, task_id in zip(clusters, task_ids, strict=True):
            pipe.set(self.keys.scheduled_pending(app, cluster), task_id, nx=True,
                     px=max(1, round(ttl * 1000)))  # fmt: skip
        return [bool(done) for done in pipe.execute()]

    def started(self, app: str, cluster: str) -> None:
        """The waiting scheduled run started (or ended): the next interval may queue one."""
        self.client.delete(self.keys.scheduled_pending(app, cluster))


class WatchQueue:
    """The queued-drift-check marks: one reconcile the watcher queued per target at most.

    A burst of events on one target (a rollout restarts every pod of a Deployment) must
    queue one check, not one per event; the run clears the mark as it starts, so a change
    made while it runs queues the next.
    """

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def claim(self, app: str, cluster: str, *, task_id: str, ttl: float) -> bool:
        """True if the watcher should queue the check; False if one already waits."""
        key = self.keys.watch_pending(app, cluster)
        return bool(self.client.set(key, task_id, nx=True, px=max(1, round(ttl * 1000))))

    def started(self, app: str, cluster: str) -> None:
        self.client.delete(self.keys.watch_pending(app, cluster))
