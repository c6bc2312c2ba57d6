"""What the watcher knows of the clusters' live state, shared with the workers.

The watcher keeps a watch on the objects we manage on each cluster; the workers must be
able to trust it before they skip a cluster read.  Four things live in Redis:

* a **lease** per cluster (``Keys.watch_lease``): the watcher replica watching it, so
  replicas share the clusters and a dead one's are taken over within one lease;
* the **members**: a sorted set of live replicas scored by expiry, so each takes its share;
* the cluster's **stream** (``Keys.watch_stream``): who watches it and since when it has
  missed nothing (``since``), expiring with the lease, so a dead watcher is distrusted
  within a lease period;
* per target, the resourceVersion of the **last change** seen to one of its objects
  (``Keys.live_changed``; status-only updates excluded).

A scheduled run may record "unchanged" without reading the cluster only when the stream
has been continuous since before the run that last read it, and no change has been seen
since what that run observed (``Unchanged``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import redis

from reconciler.outcome import TargetStatus
from reconciler.store.keys import Keys
from reconciler.store.lease import HOLD, RELEASE
from reconciler.store.lease import ms as _ms

# Keep the highest resourceVersion of each target: events of one target may be written
# by two replicas around a hand-over, in any order.
_RAISE = """
for i = 1, #ARGV, 2 do
  local old = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if tonumber(ARGV[i + 1]) > old then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""


class ClusterLeases:
    """Which watcher replica watches which cluster."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl
        self._hold = client.register_script(HOLD)
        self._release = client.register_script(RELEASE)

    def hold(self, cluster: str, holder: str) -> bool:
        """Take or renew the cluster's lease for ``holder``; False when another holds it."""
        return bool(self._hold(keys=[self.keys.watch_lease(cluster)],
                               args=[holder, _ms(self.ttl)]))  # fmt: skip

    def hold_many(self, clusters: Iterable[str], holder: str) -> dict[str, bool]:
        """``hold`` of each cluster, in one round trip (a replica renews all it holds)."""
        names = list(clusters)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            self._hold(keys=[self.keys.watch_lease(name)], args=[holder, _ms(self.ttl)],
                       client=pipe)  # fmt: skip
        return {name: bool(held) for name, held in zip(names, pipe.execute(), strict=True)}

    def release(self, cluster: str, holder: str) -> None:
        """Give the lease up (only if it is still ``holder``'s)."""
        self._release(keys=[self.keys.watch_lease(cluster)], args=[holder])

    def holders(self, clusters: Iterable[str]) -> dict[str, str | None]:
        """The holder of each cluster's lease (None: nobody watches it)."""
        names = list(clusters)
        if not names:
            return {}
        values = self.client.mget([self.keys.watch_lease(c) for c in names])
        return {
            name: (value.decode() if isinstance(value, bytes) else value)
            for name, value in zip(names, values, strict=True)
        }


class WatcherMembers:
    """The live watcher replicas, so each takes its share of the clusters."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl: float) -> None:
        self.client = client
        self.key = f"{keys.prefix}watchers"
        self.ttl = ttl

    def beat(self, holder: str) -> int:
        """Say ``holder`` is alive; how many replicas are alive (itself included)."""
        now = time.time()
        pipe = self.client.pipeline(transaction=True)
        pipe.zadd(self.key, {holder: now + self.ttl})
        pipe.zremrangebyscore(self.key, "-inf", now)
        pipe.zcard(self.key)
        return int(pipe.execute()[-1])

    def leave(self, holder: str) -> None:
        self.client.zrem(self.key, holder)


@dataclass(frozen=True)
class Stream:
    """One cluster's watch as the workers see it."""

    holder: str
    #: Epoch seconds since which this watch has missed no event of the kinds in use.
    since: float


class WatchStreams:
    """Per cluster: whether a watch runs, and since when it has missed nothing."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl

    def live(self, cluster: str, *, holder: str, since: float) -> None:
        """The watch of ``cluster`` by ``holder`` is continuous since ``since``; renews it."""
        key = self.keys.watch_stream(cluster)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={"holder": holder, "since": repr(since)})
        pipe.pexpire(key, _ms(self.ttl))
        pipe.execute()

    def live_many(self, since: Mapping[str, float], *, holder: str) -> None:
        """``live`` for each cluster (name -> since), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for cluster, when in since.items():
            key = self.keys.watch_stream(cluster)
            pipe.hset(key, mapping={"holder": holder, "since": repr(when)})
            pipe.pexpire(key, _ms(self.ttl))
        pipe.execute()

    def gone(self, cluster: str) -> None:
        """The watch stopped (lease given up): trust nothing until a new one runs."""
        self.client.delete(self.keys.watch_stream(cluster))

    def get(self, cluster: str) -> Stream | None:
        return _stream(self.client.hgetall(self.keys.watch_stream(cluster)))


class LiveChanges:
    """Per target: the resourceVersion of the last change the watcher saw."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._raise = client.register_script(_RAISE)

    def changed(self, changes: Mapping[tuple[str, str], int]) -> None:
        """Record, per (application, cluster), a change at that resourceVersion."""
        if not changes:
            return
        args: list[str | int] = []
        for (app, cluster), rv in changes.items():
            args += [self.keys.target_field(app, cluster), int(rv)]
        self._raise(keys=[self.keys.live_changed()], args=args)

    def last(self, app: str, cluster: str) -> int:
        """The last change's resourceVersion (0 when none was seen)."""
        return _version(
            self.client.hget(self.keys.live_changed(), self.keys.target_field(app, cluster))
        )


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _stream(found: Mapping[bytes | str, bytes | str] | None) -> Stream | None:
    values = {_text(k): _text(v) for k, v in (found or {}).items()}
    try:
        return Stream(holder=values["holder"], since=float(values["since"]))
    except (KeyError, ValueError):
        return None


def _version(value: bytes | str | None) -> int:
    try:
        return int(_text(value)) if value is not None else 0
    except ValueError:
        return 0



@dataclass(frozen=True)
class TargetGate:
    """What decides whether a change the watcher saw needs a check of its target."""

    #: The newest resourceVersion the target's last outcome observed (None: unknown).
    observed_rv: int | None
    #: A run holds the target's lock now.
    running: bool


def gates(client: redis.Redis, keys: Keys, targets: Iterable[tuple[str, str]]
          ) -> dict[tuple[str, str], TargetGate]:  # fmt: skip
    """For each (application, cluster): its last observation and whether a run holds it,
    in one round trip."""
    wanted = list(targets)
    pipe = client.pipeline(transaction=False)
    for app, cluster in wanted:
        pipe.hget(keys.status_index(), keys.target_field(app, cluster))
        pipe.exists(keys.lock(app, cluster))
    answers = pipe.execute()
    found: dict[tuple[str, str], TargetGate] = {}
    for index, target in enumerate(wanted):
        raw, locked = answers[2 * index], answers[2 * index + 1]
        found[target] = TargetGate(_observed(raw), bool(locked))
    return found


def _entry(raw: bytes | str | None) -> TargetStatus | None:
    """A status entry (None when missing or unreadable)."""
    if raw is None:
        return None
    try:
        decoded = json.loads(raw)
        return TargetStatus.from_dict(decoded) if isinstance(decoded, dict) else None
    except (KeyError, TypeError, ValueError):
        return None


def _observed(raw: bytes | str | None) -> int | None:
    entry = _entry(raw)
    return entry.observed_rv if entry is not None else None


@dataclass(frozen=True)
class QuietInputs:
    """What decides whether a scheduled run may skip the cluster read, read at once."""

    #: The target's status entry (None: it has none).
    last: TargetStatus | None
    #: The cluster's watch (None: nobody watches it now).
    stream: Stream | None
    #: The resourceVersion of the last change the watcher saw to the target (0: none).
    last_change: int


def quiet_inputs(client: redis.Redis, keys: Keys, app: str, cluster: str) -> QuietInputs:
    """The status entry, the cluster's watch and the target's last change: one round trip."""
    field = keys.target_field(app, cluster)
    pipe = client.pipeline(transaction=False)
    pipe.hget(keys.status_index(), field)
    pipe.hgetall(keys.watch_stream(cluster))
    pipe.hget(keys.live_changed(), field)
    raw, stream, change = pipe.execute()
    return QuietInputs(_entry(raw), _stream(stream), _version(change))
