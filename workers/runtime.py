"""Per-process state of a worker: Redis, the fleet file, the engine and its caches.

Built lazily in each (forked) worker process and reused by every task it runs: cluster
clients, Git mirrors and discovery are expensive to build and cheap to keep.  The fleet
file is re-read when it changes on disk (a stat per task), so a changed fleet needs no
restart, and while it is invalid tasks run the last valid fleet (``workers.fleet_file``;
the worker's main process reports the breakage, once).  The engine's source and render
stages go through Redis: the revision of a (repo, revision) is resolved once across all
workers (single-flight), and a commit's render is computed once and shared.  A render
that holds Secrets is shared without their values (``RenderCache``): a process that needs
them renders again and keeps that full render in its own memory (:class:`RenderMemory`),
which never leaves the process.
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from reconciler.engine import Engine, GitRenderer, RenderInput
from reconciler.errors import ReconcilerError
from reconciler.fleet import Fleet, Source, Target
from reconciler.kube import ClientFactory
from reconciler.masking import is_secret
from reconciler.model import Health, SyncStatus
from reconciler.outcome import Outcome, Trigger, timestamp
from reconciler.render import RenderedObject
from reconciler.settings import load as load_settings
from reconciler.source import GitSource, default_cache_dir
from reconciler.store import connect
from reconciler.store.cache import ForcedSyncs, RenderCache, RevisionCache, has_redacted
from reconciler.store.keys import Keys
from reconciler.store.live import quiet_inputs
from reconciler.store.metrics import ReconcileMetrics
from reconciler.store.records import Records
from reconciler.store.suspension import Suspensions
from workers.app import redis_url
from workers.fleet_file import FleetFile, fleet_path, inherited_fleet

#: Seconds a resolved revision is reused before Git is asked again.
REVISION_TTL = load_settings().revision_ttl
#: Full renders (Secrets included) a process keeps in memory: enough for every
#: application with Secrets that one worker process reconciles at a commit.
RENDER_MEMORY_ENTRIES = 64


class RenderMemory:
    """This process's own full renders (Secret values included), least recently used first.

    The shared cache holds Secrets by identity only, so without this a process would
    render an application with Secrets again for every target it runs.  Kept in process
    memory only: never written to Redis, a file or a log, gone when the process ends.
    Callers get copies, so one run's changes cannot reach the next.
    """

    def __init__(self, entries: int = RENDER_MEMORY_ENTRIES) -> None:
        self.entries = entries
        self._renders: OrderedDict[tuple[str, str], list[RenderedObject]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, commit: str, key: str) -> list[RenderedObject] | None:
        with self._lock:
            found = self._renders.get((commit, key))
            if found is None:
                return None
            self._renders.move_to_end((commit, key))
        return copy.deepcopy(found)

    def put(self, commit: str, key: str, objects: list[RenderedObject]) -> None:
        with self._lock:
            self._renders[(commit, key)] = copy.deepcopy(objects)
            self._renders.move_to_end((commit, key))
            while len(self._renders) > self.entries:
                self._renders.popitem(last=False)


class CachedResolver:
    """The source stage through Redis: a (repository, revision) is fetched and resolved
    at most once per TTL across all workers (single-flight), and every fetch is counted."""

    def __init__(self, git: GitSource, revisions: RevisionCache, metrics: ReconcileMetrics) -> None:
        self.git = git
        self.revisions = revisions
        self.metrics = metrics

    def __call__(self, source: Source, fresh: bool) -> str:
        def fetch_and_resolve() -> str:
            # Fetch, then resolve in the mirror: a revision missing from a good fetch is
            # the fleet's mistake, not a failed fetch.
            self.metrics.git_fetched()
            try:
                self.git.fetch(source.repo)
            except ReconcilerError:
                self.metrics.git_fetch_failed(source.repo)
                raise
            return self.git.resolve(source.repo, source.revision)

        return self.revisions.resolve(source.repo, source.revision, fetch_and_resolve, fresh=fresh)


class CachedRenderer:
    """The render stage through Redis: a commit's render is computed once and shared.

    The key covers everything a render depends on (path, Helm values and value files,
    Jsonnet arguments, the cluster version a chart sees), so targets share a render
    exactly when it would come out the same.  The shared cache holds Secrets by identity
    only; a render with Secrets comes from this process's memory, else from Git again
    (the commit is fixed, so the render is the same, unless a chart makes up random
    values, which differ between renders whatever caches them).
    """

    def __init__(self, inner: GitRenderer, renders: RenderCache,
                 memory: RenderMemory | None = None) -> None:  # fmt: skip
        self.inner = inner
        self.renders = renders
        self.memory = memory or RenderMemory()

    def __call__(self, spec: RenderInput, commit: str) -> list[RenderedObject]:
        key = spec.key()
        full = self.memory.get(commit, key)
        if full is not None:
            return full
        cached = self.renders.get(commit, key)
        if cached is not None and not has_redacted(cached):
            return [_rendered_object(item) for item in cached]
        objects = self.inner(spec, commit)
        if any(is_secret(obj.manifest) for obj in objects):
            self.memory.put(commit, key, objects)
        if cached is None:
            self.renders.put(commit, key, [_rendered_dict(obj) for obj in objects])
        return objects


@dataclass
class Runtime:
    """Everything a task needs, built once per process."""

    client: redis.Redis
    keys: Keys
    fleet_file: FleetFile
    engine: Engine
    records: Records
    revisions: RevisionCache
    renders: RenderCache
    forced: ForcedSyncs
    metrics: ReconcileMetrics

    def fleet(self) -> Fleet:
        """The fleet in force now: the last valid one while the file is invalid.

        ConfigError only when this process never saw a valid fleet file.
        """
        return self.fleet_file.get()

    def suspended(self, app: str) -> bool:
        """Suspended by ``reconciler suspend`` (the fleet's ``sync.suspended`` is separate)."""
        return Suspensions(self.client, self.keys).is_suspended(app)

    def resolve(self, source: Source, *, fresh: bool) -> str:
        """The commit of ``source``: fetched at most once per TTL across all workers."""
        return self.engine.resolve(source, fresh)

    def render(self, spec: RenderInput, commit: str) -> list[RenderedObject]:
        """Rendered objects of ``spec`` at ``commit``, from the shared cache when there."""
        return self.engine.objects(spec, commit)

    def fingerprint(self, target: Target) -> tuple[str, str]:
        """(render key, target digest): what a run's desired state depends on, besides
        the commit.  No request: the cluster's capabilities are kept per client."""
        spec = self.engine.render_input(target, self.engine.client(target))
        digest = hashlib.sha256(repr(target).encode("utf-8")).hexdigest()[:32]
        return spec.key(), digest

    def unchanged(self, target: Target, commit: str, trigger: Trigger) -> Outcome | None:
        """The outcome of a run that needs no cluster read, or None when it needs one.

        Nothing can have changed when the target's last outcome was Synced at this same
        commit, render and fleet entry, the watcher's stream of its cluster has missed
        nothing since before that outcome started (so before it read the cluster), and
        has seen no change to the target's objects after what that outcome observed.  Every
        ``full_compare_every``-th run reads the cluster anyway.  The health recorded is
        the watcher's (it keeps the status entry's health live).
        """
        app, cluster = target.app.name, target.cluster.name
        found = quiet_inputs(self.client, self.keys, app, cluster)
        last = found.last
        if last is None or last.sync != SyncStatus.SYNCED.value:
            return None
        observed = last.observed_rv
        if observed is None or last.revision != commit:
            return None
        runs = last.unchanged_runs
        if runs + 1 >= load_settings().full_compare_every:
            return None
        if found.stream is None or found.stream.since > _epoch(last.started):
            return None
        if found.last_change > observed:
            return None
        if (last.render_key, last.app_digest) != self.fingerprint(target):
            return None
        known = last.health in {h.value for h in Health}
        return Outcome(application=app, cluster=cluster, trigger=trigger.value,
                       started=timestamp(datetime.now(UTC)), revision=commit,
                       sync=SyncStatus.SYNCED,
                       health=Health(last.health) if known else Health.UNKNOWN,
                       observed_rv=observed, checked="watch",
                       render_key=last.render_key, app_digest=last.app_digest,
                       unchanged_runs=runs + 1)  # fmt: skip

def _epoch(value: object) -> float:
    """Epoch seconds of an RFC 3339 time; 0 when unreadable (so nothing is trusted)."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _rendered_dict(obj: RenderedObject) -> dict[str, Any]:
    return {"manifest": obj.manifest, "source": obj.source, "line": obj.line,
            "index": obj.index, "item": obj.item}  # fmt: skip


def _rendered_object(item: dict[str, Any]) -> RenderedObject:
    return RenderedObject(manifest=item["manifest"], source=item["source"], line=item["line"],
                          index=item["index"], item=item.get("item"))  # fmt: skip


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime, built on first use."""
    global _runtime  # noqa: PLW0603 - one runtime per process, by design
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime()
        return _runtime


def reset_runtime() -> None:
    """Forget this process's runtime (after a fork: sockets must not be shared)."""
    global _runtime  # noqa: PLW0603
    with _runtime_lock:
        _runtime = None


def build_runtime() -> Runtime:
    """A runtime from the environment (REDIS_URL, RECONCILER_CONFIG, cache dir)."""
    client = connect.client(redis_url(), socket_timeout=30)
    keys = Keys()
    cache_dir = Path(default_cache_dir())
    git = GitSource(cache_dir)
    revisions = RevisionCache(client, keys, ttl=REVISION_TTL)
    renders = RenderCache(client, keys)
    metrics = ReconcileMetrics(client, keys)
    engine = Engine(
        source=git,
        clients=ClientFactory(cache_dir=cache_dir),
        resolver=CachedResolver(git, revisions, metrics),
        renderer=CachedRenderer(GitRenderer(git), renders),
    )
    return Runtime(
        client=client,
        keys=keys,
        # A pool process starts from its parent's fleet: it may be forked after a breakage.
        fleet_file=FleetFile(fleet_path(), last_valid=inherited_fleet()),
        engine=engine,
        records=Records(client, keys),
        revisions=revisions,
        renders=renders,
        forced=ForcedSyncs(client, keys),
        metrics=metrics,
    )
