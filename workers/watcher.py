"""The watcher: every change to a managed object seen at once, healed or reported.

Polling finds drift at the next interval; a watch finds it as it happens.  Each watcher
replica takes a share of the fleet's clusters (a Redis lease per cluster, renewed every
third of its life; a dead replica's clusters are taken over within one lease), and for
each cluster it holds:

* watches the inventory ConfigMaps (``reconciler-system``), which say which kinds our
  applications have there, and one watch per kind in use, with a label selector on our
  ownership label: a list first, then a watch from its resourceVersion, with bookmarks,
  resumed from the last resourceVersion when the stream is cut, and listed again on
  ``410 Gone`` (the list is compared with what was seen, so nothing in the gap is lost);
* keeps in memory, per object, a hash of everything but its status and the fields the
  server keeps (resourceVersion, managedFields...), and its health;
* records in Redis, per target, the resourceVersion of the last change it saw (status
  updates excluded), and the target's live health in the status index;
* queues a reconcile of a changed target on the forced queue (trigger ``watch``) unless
  the last outcome already observed that change or a run holds the target: the run
  heals it under ``selfHeal`` and reports it otherwise, as a scheduled run would;
* tells workers since when it has missed nothing (``WatchStreams``), which lets a
  scheduled run whose target did not change record "unchanged" without a request.

One asyncio loop serves every watch of the replica: a thousand clusters cost sockets,
not threads, and one HTTP session whose connector pools the connections of every
cluster (kubesim's clusters are paths of one server; clusters with the same CA and
credentials share one SSL context).  What a cluster costs beyond its open watches is what
was seen of its objects: a watch keeps no list and no event once it is read, and the
cluster's client is asked of the factory when a watch starts (the factory may drop it
in between, and rebuilds it without a request).  Redis is written from a thread
(redis-py is blocking), in one batch every ``FLUSH_EVERY`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from reconciler import inventory as inv
from reconciler.errors import ReconcilerError
from reconciler.fleet import Fleet
from reconciler.health import aggregate, health_of
from reconciler.health.base import HealthResult
from reconciler.kube import ClientFactory
from reconciler.kube.client import Kind, KubeClient, StreamSettings
from reconciler.model import (
    APP_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Health,
    ObjectKey,
    resource_version,
)
from reconciler.notify import HEALTH_DEGRADED, Event
from reconciler.outcome import Trigger, timestamp
from reconciler.settings import load as load_settings
from reconciler.source import default_cache_dir
from reconciler.store import connect
from reconciler.store.fleet_state import FleetState
from reconciler.store.keys import Keys
from reconciler.store.live import (
    ClusterLeases,
    LiveChanges,
    WatcherMembers,
    WatchStreams,
    gates,
)
from reconciler.store.pending import WatchQueue
from reconciler.store.records import Records
from reconciler.store.suspension import Suspensions
from workers.app import app as celery_app
from workers.app import queue_for, redis_url, route_label
from workers.fleet_file import FleetFile, FleetWatch, fleet_path
from workers.logs import configure_logging
from workers.notifications import dispatch
from workers.rollouts import queue_decision

log = logging.getLogger("reconciler.watcher")

#: Seconds the server keeps one watch request open before we open the next.
WATCH_TIMEOUT = 240
#: Seconds between two batches of Redis writes (changes, health, queued checks).
FLUSH_EVERY = 0.1
#: Seconds a queued check stays marked, if its run never starts (a safety net).
QUEUED_MARK_TTL = 60.0
#: Seconds to wait after a failed list or watch, doubling up to the cap.
RETRY_BASE, RETRY_CAP = 0.5, 15.0
_MANAGED = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
#: The key of the inventories' watch among a cluster's watches.
_INVENTORY = ("", "inventory")
#: Metadata the server keeps: a change there is not a change to the object.
_SERVER_FIELDS = ("resourceVersion", "managedFields", "generation", "uid", "selfLink",
                  "creationTimestamp")  # fmt: skip


def spec_hash(obj: dict[str, Any]) -> str:
    """A hash of what a person or a controller set on ``obj``: not its status, not the
    fields the server keeps.  Equal hashes: nothing our reconcile compares has changed."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_FIELDS}
    rest = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    text = json.dumps([meta, rest], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


@dataclass
class _Seen:
    app: str
    spec: str
    health: HealthResult


@dataclass
class Sink:
    """What the watches found since the last flush, for one batch of Redis writes."""

    changes: dict[tuple[str, str], int] = field(default_factory=dict)
    healths: dict[tuple[str, str], str] = field(default_factory=dict)

    def changed(self, app: str, cluster: str, rv: int) -> None:
        key = (app, cluster)
        self.changes[key] = max(rv, self.changes.get(key, 0))

    def health(self, app: str, cluster: str, health: str) -> None:
        self.healths[(app, cluster)] = health

    def take(self) -> Sink:
        taken = Sink(self.changes, self.healths)
        self.changes, self.healths = {}, {}
        return taken


class ClusterWatch:
    """Every watch of one cluster, and what they have seen."""

    def __init__(self, name: str, kube: Callable[[], KubeClient],
                 session: aiohttp.ClientSession, sink: Sink) -> None:  # fmt: skip
        self.name = name
        #: The cluster's client, from the factory each time: not held between watches.
        self.kube = kube
        self.session = session
        self.sink = sink
        self.objects: dict[ObjectKey, _Seen] = {}
        #: The same objects by application, so a target's health is its objects' alone.
        self.by_app: dict[str, dict[ObjectKey, _Seen]] = {}
        self.kinds_of: dict[str, set[tuple[str, str]]] = {}
        self.watches: dict[tuple[str, str], asyncio.Task[None]] = {}
        #: When each watch started its first list: it has missed nothing since.
        self.listed_at: dict[tuple[str, str], float] = {}
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def since(self) -> float | None:
        """Since when every watch of this cluster has missed nothing (None: not yet).

        A kind that comes into use later starts its watch later: the cluster's
        continuity starts again then, and runs that read it before must read it again.
        """
        if _INVENTORY not in self.listed_at or any(k not in self.listed_at for k in self.watches):
            return None
        return max(self.listed_at.values())

    def start(self) -> None:
        self.tasks.append(asyncio.create_task(self._inventories(), name=f"{self.name}/inv"))

    async def stop(self) -> None:
        for task in [*self.tasks, *self.watches.values()]:
            task.cancel()
        for task in [*self.tasks, *self.watches.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- the inventories say which kinds to watch ----------------------------------------

    async def _inventories(self) -> None:
        kind = await asyncio.to_thread(lambda: self.kube().require_kind("", "ConfigMap"))
        path = kind.path(inv.NAMESPACE)
        await self._watch(_INVENTORY, kind, path, inv.INVENTORY_LABEL,
                          self._inventory_listed, self._inventory_event)  # fmt: skip

    def _inventory_listed(self, items: list[dict[str, Any]], _rv: int) -> None:
        self.kinds_of = {}
        for item in items:
            self._inventory_event("ADDED", item)

    def _inventory_event(self, kind: str, obj: dict[str, Any]) -> None:
        owner = str(((obj.get("metadata") or {}).get("labels") or {}).get(inv.INVENTORY_LABEL, ""))
        if kind == "DELETED":
            self.kinds_of.pop(owner, None)
            return
        try:
            entries = inv.from_configmap(obj).entries
        except ReconcilerError as exc:
            log.warning("%s: inventory of %s unreadable: %s", self.name, owner, exc)
            return
        self.kinds_of[owner] = {(e.key.group, e.key.kind) for e in entries}
        for group_kind in set().union(*self.kinds_of.values()):
            if group_kind not in self.watches:
                self.watches[group_kind] = asyncio.create_task(
                    self._objects(*group_kind), name=f"{self.name}/{group_kind[1]}"
                )

    # -- the managed objects -------------------------------------------------------------

    async def _objects(self, group: str, kind_name: str) -> None:
        kind: Kind | None = await asyncio.to_thread(lambda: self.kube().kind(group, kind_name))
        if kind is None:  # not served (a CRD gone): nothing of it can drift
            self.listed_at[(group, kind_name)] = 0.0
            return
        key = (group, kind_name)
        await self._watch(key, kind, kind.path(""), _MANAGED,
                          lambda items, rv: self._listed(key, items, rv), self._event)  # fmt: skip

    def _listed(self, group_kind: tuple[str, str], items: list[dict[str, Any]], rv: int) -> None:
        """A (re-)list: compare with what was seen, so a change in a gap is not lost."""
        first = group_kind not in self.listed_at
        present: set[ObjectKey] = set()
        for item in items:
            present.add(self._seen(item, report=not first))
        for key in [k for k in self.objects if (k.group, k.kind) == group_kind]:
            gone = self._forget(key) if key not in present else None
            if gone is not None:
                self.sink.changed(gone.app, self.name, rv)
                self._health_of(gone.app)

    def _event(self, kind: str, obj: dict[str, Any]) -> None:
        rv = resource_version(obj) or 0
        if kind == "DELETED":
            gone = self._forget(ObjectKey.of(obj))
            if gone is not None:
                self.sink.changed(gone.app, self.name, rv)
                self._health_of(gone.app)
            return
        self._seen(obj, report=True)

    def _seen(self, obj: dict[str, Any], *, report: bool) -> ObjectKey:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        key = ObjectKey.of(obj)
        app = labels.get(APP_LABEL)
        if not app or inv.INVENTORY_LABEL in labels:
            return key
        seen = _Seen(str(app), spec_hash(obj), health_of(obj))
        previous = self.objects.get(key)
        if previous is not None and previous.app != seen.app:
            self._forget(key)  # relabelled to another application
            self._health_of(previous.app)
        self.objects[key] = seen
        self.by_app.setdefault(seen.app, {})[key] = seen
        if report and (previous is None or previous.spec != seen.spec):
            self.sink.changed(seen.app, self.name, resource_version(obj) or 0)
        if previous is None or previous.health != seen.health:
            self._health_of(seen.app)
        return key

    def _forget(self, key: ObjectKey) -> _Seen | None:
        gone = self.objects.pop(key, None)
        if gone is not None:
            mine = self.by_app.get(gone.app, {})
            mine.pop(key, None)
            if not mine:
                self.by_app.pop(gone.app, None)
        return gone

    def _health_of(self, app: str) -> None:
        mine = [s.health for s in self.by_app.get(app, {}).values()]
        self.sink.health(app, self.name, aggregate(mine).value)

    # -- one watch: list, then watch from its resourceVersion, for ever -------------------

    async def _watch(
        self,
        key: tuple[str, str],
        kind: Kind,
        path: str,
        selector: str,
        listed: Callable[[list[dict[str, Any]], int], None],
        event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        settings = await asyncio.to_thread(lambda: self.kube().stream_settings())
        url = settings.base + path
        rv: str | None = None
        failures = 0
        while True:
            try:
                if rv is None:
                    started = time.time()
                    items, rv = await self._list(url, settings, selector, kind)
                    listed(items, int(rv) if rv.isdigit() else 0)
                    # Only the hashes and health are kept: not the list, for the life
                    # of the watch (whole objects, per cluster).
                    del items
                    self.listed_at.setdefault(key, started)
                params = {"watch": "1", "resourceVersion": rv, "labelSelector": selector,
                          "allowWatchBookmarks": "true",
                          "timeoutSeconds": str(WATCH_TIMEOUT)}  # fmt: skip
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=10,
                                                sock_read=WATCH_TIMEOUT + 30)  # fmt: skip
                async with self.session.get(url, params=params, headers=settings.headers,
                                            ssl=settings.ssl or False,
                                            timeout=timeout) as response:  # fmt: skip
                    if response.status == 410:
                        rv = None
                        continue
                    response.raise_for_status()
                    failures = 0
                    async for line in response.content:
                        # Read in a call of its own, and the line let go: no event stays
                        # referenced by this frame while the watch waits for the next.
                        rv = _on_line(line, kind, event, rv)
                        del line
                        if rv is None:  # too old: list again
                            break
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError, ReconcilerError) as exc:
                failures += 1
                delay = min(RETRY_CAP, RETRY_BASE * 2 ** (failures - 1))
                log.warning("%s: watch of %s cut (%s); again in %.1fs from %s", self.name,
                            key[1], type(exc).__name__, delay, rv or "a new list")  # fmt: skip
                await asyncio.sleep(delay)

    async def _list(
        self, url: str, settings: StreamSettings, selector: str, kind: Kind
    ) -> tuple[list[dict[str, Any]], str]:
        """Every page of a list; its items with the kind and apiVersion lists leave off.

        A call of its own: a loop over the items in the watch's frame would keep the last
        of them referenced for the life of the watch."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            params = {"labelSelector": selector, "limit": "500"}
            if token:
                params["continue"] = token
            async with self.session.get(url, params=params, headers=settings.headers,
                                        ssl=settings.ssl or False) as response:  # fmt: skip
                response.raise_for_status()
                page = await response.json()
            for item in page.get("items") or []:
                item.setdefault("apiVersion", kind.api_version)
                item.setdefault("kind", kind.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                return items, str(meta.get("resourceVersion") or "0")


def _on_line(line: bytes, kind: Kind, event: Callable[[str, dict[str, Any]], None],
             rv: str | None) -> str | None:  # fmt: skip
    """One line of a watch, told to ``event``; the resourceVersion to resume from, None
    when the server says it is too old (list again)."""
    if not line.strip():
        return rv
    message = json.loads(line)
    verb, obj = message.get("type"), message.get("object") or {}
    if verb == "ERROR":
        if obj.get("code") == 410:
            return None
        raise aiohttp.ClientError(str(obj.get("message", obj)))
    new_rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
    if verb != "BOOKMARK":
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        event(str(verb), obj)
    return new_rv


class Watcher:
    """One replica: its share of the clusters, their watches, and the batches to Redis."""

    def __init__(self, fleet: FleetWatch, keys: Keys, *, lease_ttl: float,
                 holder: str | None = None) -> None:  # fmt: skip
        self.fleet = fleet
        self.keys = keys
        self.client = connect.client(redis_url(), socket_timeout=10)
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_ttl = lease_ttl
        self.leases = ClusterLeases(self.client, keys, ttl=lease_ttl)
        self.members = WatcherMembers(self.client, keys, ttl=lease_ttl)
        self.streams = WatchStreams(self.client, keys, ttl=lease_ttl)
        self.changes = LiveChanges(self.client, keys)
        self.records = Records(self.client, keys)
        self.queued = WatchQueue(self.client, keys)
        self.clients = ClientFactory(cache_dir=default_cache_dir())
        self.sink = Sink()
        self.watching: dict[str, ClusterWatch] = {}
        self.pending: dict[tuple[str, str], int] = {}
        self._session: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector, read_bufsize=2**20) as session:
            self._session = session
            flusher = asyncio.create_task(self._flush_loop(stop))
            try:
                while not stop.is_set():
                    try:
                        await self._share()
                    except Exception as exc:  # Redis or the fleet: try again next round
                        log.warning("watcher: cannot take or renew leases: %s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.lease_ttl / 3)
            finally:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
                for name in list(self.watching):
                    await self._drop(name)
                await asyncio.to_thread(self.members.leave, self.holder)

    # -- leases --------------------------------------------------------------------------

    async def _share(self) -> None:
        fleet: Fleet = await asyncio.to_thread(self.fleet.get)
        clusters = sorted(c.name for c in fleet.clusters)
        alive = await asyncio.to_thread(self.members.beat, self.holder)
        share = math.ceil(len(clusters) / max(1, alive))
        for name in [n for n in self.watching if n not in clusters]:
            await self._drop(name)
        # Every lease this replica holds, renewed in one round trip.
        held = await asyncio.to_thread(self.leases.hold_many, list(self.watching), self.holder)
        for name, kept in held.items():
            if not kept:
                log.warning("watcher: lost the lease of %s", name)
                await self._drop(name, release=False)
        while len(self.watching) > share:  # a replica joined: give some back
            await self._drop(sorted(self.watching)[-1])
        if len(self.watching) < share:
            holders = await asyncio.to_thread(self.leases.holders, clusters)
            free = [n for n in clusters if holders.get(n) is None and n not in self.watching]
            wanted = free[: share - len(self.watching)]
            taken = await asyncio.to_thread(self.leases.hold_many, wanted, self.holder)
            for name in wanted:
                if taken[name]:
                    self._take(fleet, name)
        since = {name: w.since for name, w in self.watching.items() if w.since is not None}
        if since:
            await asyncio.to_thread(self.streams.live_many, since, holder=self.holder)

    def _take(self, fleet: Fleet, name: str) -> None:
        cluster = fleet.cluster(name)
        # A context the kubeconfig lacks fails here, before a watch starts.
        self.clients.for_cluster(name=name, context=cluster.context,
                                 kubeconfig=cluster.kubeconfig)  # fmt: skip

        def kube() -> KubeClient:
            return self.clients.for_cluster(name=name, context=cluster.context,
                                            kubeconfig=cluster.kubeconfig)  # fmt: skip

        assert self._session is not None
        watch = ClusterWatch(name, kube, self._session, self.sink)
        watch.start()
        self.watching[name] = watch
        log.info("watcher %s: watching %s", self.holder, name)

    async def _drop(self, name: str, *, release: bool = True) -> None:
        watch = self.watching.pop(name, None)
        if watch is not None:
            await watch.stop()
        await asyncio.to_thread(self.streams.gone, name)
        if release:
            await asyncio.to_thread(self.leases.release, name, self.holder)

    # -- batches to Redis ----------------------------------------------------------------

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batch = self.sink.take()
            try:
                await asyncio.to_thread(self._flush, batch)
            except Exception as exc:  # Redis away: keep the batch for later
                log.warning("watcher: cannot write to Redis: %s", exc)
                for key, rv in batch.changes.items():
                    self.sink.changed(*key, rv)
                self.sink.healths = {**batch.healths, **self.sink.healths}
                await asyncio.sleep(1.0)
            await asyncio.sleep(FLUSH_EVERY)

    def _flush(self, batch: Sink) -> None:
        self.changes.changed(batch.changes)
        now = timestamp(datetime.now(UTC))
        turned = self.records.set_health(batch.healths, at=now)
        if turned:
            self._notify_health(turned, now)
            self._nudge_rollouts({app for app, _cluster in turned})
        for key, rv in batch.changes.items():
            self.pending[key] = max(rv, self.pending.get(key, 0))
        if self.pending:
            self._queue_checks()

    def _nudge_rollouts(self, apps: set[str]) -> None:
        """A health change may open a rollout step's gate: have it judged now."""
        fleet = self.fleet.get()
        for name in apps:
            try:
                rolls_out = fleet.application(name).rollout is not None
            except ReconcilerError:
                continue
            if rolls_out:
                queue_decision(self.client, self.keys, name)

    def _notify_health(self, turned: dict[tuple[str, str], str], now: str) -> None:
        """Tell the endpoints that want it of a target turned Degraded (and clear the fold
        of one turned Healthy) as soon as the watch sees it, not at its next run."""
        fleet = self.fleet.get()
        if not fleet.notifications:
            return
        for (app, cluster), health in turned.items():
            if health == Health.DEGRADED.value:
                event = Event(HEALTH_DEGRADED, app, cluster, None,
                              "health is Degraded (seen by the watcher)", now,
                              {"trigger": Trigger.WATCH.value})  # fmt: skip
                dispatch(self.client, self.keys, fleet, [event], app_name=app,
                         cluster_name=cluster)  # fmt: skip
            elif health == Health.HEALTHY.value:
                dispatch(self.client, self.keys, fleet, [], [HEALTH_DEGRADED], app_name=app,
                         cluster_name=cluster)  # fmt: skip

    def _queue_checks(self) -> None:
        """Queue a check of each changed target, unless it is already known or running."""
        found = gates(self.client, self.keys, list(self.pending))
        fleet = self.fleet.get()
        suspended = Suspensions(self.client, self.keys)
        label = route_label()
        for (app, cluster), gate in found.items():
            if gate.running:
                continue  # a run is on it: look again once it has recorded what it saw
            rv = self.pending.pop((app, cluster))
            if gate.observed_rv is not None and gate.observed_rv >= rv:
                continue  # the last outcome already saw this change (our own apply)
            try:
                application = fleet.application(app)
                member = fleet.cluster(cluster)
            except ReconcilerError:
                continue  # left the fleet
            if application.sync.suspended or suspended.is_suspended(app):
                continue
            task_id = str(uuid.uuid4())
            if not self.queued.claim(app, cluster, task_id=task_id, ttl=QUEUED_MARK_TTL):
                continue  # a check of it already waits
            route = member.labels.get(label, "") if label else ""
            celery_app.send_task("reconciler.reconcile_target",
                                 args=(app, cluster, Trigger.WATCH.value),
                                 queue=queue_for(forced=True, route=route),
                                 task_id=task_id)  # fmt: skip
            log.info("watcher: %s/%s changed at resourceVersion %d; check queued", app,
                     cluster, rv)  # fmt: skip


def run() -> None:
    """Serve in the foreground until SIGINT or SIGTERM (configuration from the environment)."""
    configure_logging("watcher")
    env = load_settings()
    keys = Keys()
    client = connect.client(redis_url(), socket_timeout=10)
    fleet = FleetWatch(FleetFile(fleet_path()), component="watcher",
                       state=FleetState(client, keys))  # fmt: skip
    watcher = Watcher(fleet, keys, lease_ttl=env.watch_lease_ttl)
    log.info("watcher %s: lease %.0fs", watcher.holder, env.watch_lease_ttl)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await watcher.run(stop)

    try:
        asyncio.run(main())
    finally:
        watcher.clients.close()
        watcher.client.close()
        client.close()


__all__ = ["ClusterWatch", "Watcher", "run", "spec_hash"]
