"""Which applications an operator suspended: their scheduled and webhook runs are skipped.

One Redis set per installation.  Beat, the workers (at fan-out and again when a target
task starts, since either may outlive a ``suspend``), the webhook server and the command
line all ask here, so "suspended" means one thing everywhere.

Redis may restart empty (no persistence, or a replica promoted before it had the set).
Forgetting a suspension would deploy what an operator deliberately stopped, so the set
has a durable copy in every cluster of the fleet: a ConfigMap ``reconciler-suspensions``
in the ``reconciler-system`` namespace, next to the inventories that already survive the
loss of Redis.  Beat's leader keeps the copies in step with the set (it talks to every
cluster anyway, and the command line keeps working with Redis alone), and when it finds
a Redis without the installation's ``initialised`` marker it first restores the set from
the union of the copies it can read, then rebuilds the schedule, then sets the marker.
The union errs towards "suspended": a ``resume`` that reached only some clusters before
Redis was lost comes back suspended, which an operator undoes with one more ``resume``;
the opposite error would deploy.  This module only shapes the copies (pure data); the
Kubernetes I/O belongs to beat.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from reconciler.inventory import NAMESPACE
from reconciler.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from reconciler.store.keys import Keys

#: Name of the durable copy of the set, in every cluster's ``reconciler-system``.
CONFIGMAP_NAME = "reconciler-suspensions"
_DATA_KEY = "applications"


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

    # -- surviving a Redis that restarted empty ---------------------------------------------

    def initialised(self) -> bool:
        """Whether this Redis holds the installation's state (the marker beat sets)."""
        return bool(self.client.exists(self.keys.initialised()))

    def restore(self, apps: Iterable[str]) -> None:
        """Add ``apps`` from the durable copies and mark the installation initialised.

        Added, not replaced: a ``suspend`` made while beat read the copies stays.  One
        MULTI, so no reader sees the marker without the suspensions it vouches for.
        """
        names = sorted(set(apps))
        with self.client.pipeline(transaction=True) as pipe:
            if names:
                pipe.sadd(self.keys.suspended(), *names)
            pipe.set(self.keys.initialised(), "1")
            pipe.execute()


def durable_copy(apps: Iterable[str]) -> dict[str, Any]:
    """The ConfigMap that keeps the suspended applications in a cluster."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": NAMESPACE,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        },
        "data": {_DATA_KEY: json.dumps(sorted(set(apps)))},
    }


def from_durable_copy(configmap: Mapping[str, Any] | None) -> set[str]:
    """The suspended applications a ConfigMap keeps (none when it is absent or garbled)."""
    if not configmap:
        return set()
    data = configmap.get("data") or {}
    try:
        names = json.loads(data.get(_DATA_KEY) or "[]")
    except (TypeError, ValueError):
        return set()
    return {str(name) for name in names} if isinstance(names, list) else set()
