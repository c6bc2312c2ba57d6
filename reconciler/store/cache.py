"""Caches shared by every worker: resolved revisions, rendered manifests, forced syncs.

When beat fires an application on a hundred clusters, a hundred target tasks start within
a second and every one of them needs the commit ``main`` points to and the objects that
commit renders to.  Without sharing, that is a hundred ``git fetch`` calls against one Git
server and a hundred identical kustomize builds.  So:

* ``RevisionCache`` keeps a resolved revision for a few seconds and lets only one caller
  across all processes run the resolver at a time (single flight, guarded by a short Redis
  lock that is renewed while the resolver runs and expires if its holder dies); the others
  wait for its answer.
* ``RenderCache`` keeps a commit's rendered objects, compressed: a commit never changes,
  so neither does what it renders to with the same path and options.  Secrets are kept
  by identity only (see :class:`RenderCache`): their values never rest in Redis.
* ``ForcedSyncs`` remembers that a forced sync of a target is already queued, so a burst of
  webhooks or admin clicks queues one task, not fifty.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from reconciler.errors import LockBusy, TransientError
from reconciler.masking import is_secret, secret_identity
from reconciler.store.keys import Keys, repo_hash
from reconciler.store.lock import FIRST_POLL, TargetLock, jittered

#: Seconds a resolved revision is reused: short, as branches move.
DEFAULT_REVISION_TTL = 10.0
#: Seconds the single-flight lock lives unrenewed: how soon a dead resolver is replaced.
DEFAULT_FLIGHT_TTL = 30.0
#: Seconds a caller waits for another process's resolver (a first clone can be slow).
DEFAULT_FLIGHT_WAIT = 600.0
#: Longest pause between two looks at another process's flight.
MAX_FLIGHT_POLL = 0.1
#: Seconds a rendered result is kept after its last use.
DEFAULT_RENDER_TTL = 3600.0
#: Compressed renders larger than this are not cached: they would crowd Redis out.
MAX_RENDER_BYTES = 32 * 1024 * 1024
#: Field set on a cached item whose manifest is a Secret reduced to its identity.
REDACTED = "redacted"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


@dataclass(frozen=True)
class _Resolved:
    """A cached resolution and the flight (lock token) that produced it."""

    commit: str
    flight: str

    def dumps(self) -> str:
        return json.dumps({"commit": self.commit, "flight": self.flight}, separators=(",", ":"))

    @classmethod
    def loads(cls, raw: bytes | str | None) -> _Resolved | None:
        if raw is None:
            return None
        try:
            data = json.loads(_text(raw))
            return cls(str(data["commit"]), str(data["flight"]))
        except (ValueError, TypeError, KeyError):
            return None  # unreadable: resolve again rather than fail


class RevisionCache:
    """Revision -> commit, shared by all processes, resolved once per burst of callers."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        ttl: float = DEFAULT_REVISION_TTL,
        flight_ttl: float = DEFAULT_FLIGHT_TTL,
        wait: float = DEFAULT_FLIGHT_WAIT,
    ) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl
        self.flight_ttl = flight_ttl
        self.wait = wait
        self._calls = 0
        self._calls_lock = threading.Lock()

    @property
    def resolver_calls(self) -> int:
        """How many times this object ran a resolver (benchmarks count fetches with it)."""
        return self._calls

    def resolve(
        self, repo: str, revision: str, resolver: Callable[[], str], *, fresh: bool = False
    ) -> str:
        """The commit ``revision`` of ``repo`` names, from the cache or from ``resolver``.

        ``fresh`` skips a cached value (a webhook says the branch moved); fresh callers
        still share one resolver run, but only one that was under way or started after
        they asked.  If the resolver raises, its caller gets the error and the waiters try
        themselves once the flight lock is free.  ``TransientError`` when another
        process's flight outlasts ``wait``.
        """
        key = self.keys.revision(repo, revision)
        if not fresh:
            found = _Resolved.loads(self.client.get(key))
            if found is not None:
                return found.commit
        # Flights (lock tokens) under way since this call began: their results are usable.
        seen: set[str] = set()
        deadline = time.monotonic() + self.wait
        while True:
            flight = TargetLock(self.client, self.keys.fetch_flight(repo), ttl=self.flight_ttl)
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(flight)  # renewed while the resolver runs
                except LockBusy:
                    pass
                else:
                    # Another flight may have finished between our read and our lock.
                    found = _Resolved.loads(self.client.get(key))
                    if found is not None and (not fresh or found.flight in seen):
                        return found.commit
                    return self._run(key, resolver, flight=flight)
            commit = self._await(
                key, repo=repo, revision=revision, fresh=fresh, seen=seen, deadline=deadline
            )
            if commit is not None:
                return commit

    def _run(self, key: str, resolver: Callable[[], str], *, flight: TargetLock) -> str:
        with self._calls_lock:
            self._calls += 1
        commit = resolver()
        if not isinstance(commit, str) or not commit:
            raise TypeError(f"a revision resolver returned {commit!r}, not a commit id")
        self.client.set(key, _Resolved(commit, flight.token or "").dumps(), px=_ms(self.ttl))
        return commit

    def _await(
        self, key: str, *, repo: str, revision: str, fresh: bool, seen: set[str], deadline: float
    ) -> str | None:
        """Wait for the flight under way: its commit, or None once it ended without one."""
        flight_key = self.keys.fetch_flight(repo)
        delay = FIRST_POLL
        while True:
            pipe = self.client.pipeline(transaction=True)  # one consistent snapshot
            pipe.get(key)
            pipe.get(flight_key)
            raw, holder = pipe.execute()
            if holder is not None:
                seen.add(_text(holder))
            found = _Resolved.loads(raw)
            if found is not None and (not fresh or found.flight in seen):
                return found.commit
            if holder is None:
                return None  # finished without a usable answer, failed or expired: take over
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(
                    f"revision {revision!r} of repository {repo_hash(repo)}: another worker's "
                    f"resolve did not finish within {self.wait:g}s"
                )
            time.sleep(min(remaining, jittered(delay)))
            delay = min(delay * 2, MAX_FLIGHT_POLL)


class RenderCache:
    """Rendered objects by commit and render input, compressed JSON with a sliding TTL.

    A Secret is stored as its identity only (``apiVersion``, ``kind``, name, namespace),
    marked ``"redacted": true``; its data, stringData, labels and annotations are dropped
    on the way in.  Redis is shared by every component, readable by anyone who can reach
    it, copied by its backups and replicas: the cache must not become the one place
    where every Secret of every application rests in plain text (base64 is not
    encryption).  :func:`has_redacted` tells a reader that a render needs its Secrets
    back; the worker then renders again from Git, which holds them anyway, and keeps the
    full render in its own memory (``workers.runtime``).  Encrypting the values instead
    would keep them shareable, but every worker host would need one key that Redis never
    sees, to be generated, distributed and rotated; re-rendering costs one render per
    worker process per commit of an application with Secrets and needs no key at all.

    The values are binary, so the client must not decode responses.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl: float = DEFAULT_RENDER_TTL) -> None:
        if client.get_encoder().decode_responses:
            raise ValueError("RenderCache needs a Redis client with decode_responses=False")
        self.client = client
        self.keys = keys
        self.ttl = ttl

    def has(self, commit: str, path_key: str) -> bool:
        """Whether the render is cached, without reading (and inflating) it."""
        return bool(self.client.exists(self.keys.render(commit, path_key)))

    def get(self, commit: str, path_key: str) -> list[dict[str, Any]] | None:
        """The objects stored for (``commit``, ``path_key``), or None; a hit stays longer.

        Secrets come back as identities marked ``redacted`` (:func:`has_redacted`).
        """
        raw = self.client.getex(self.keys.render(commit, path_key), px=_ms(self.ttl))
        if not isinstance(raw, bytes):
            return None
        try:
            objects = json.loads(zlib.decompress(raw))
        except (ValueError, zlib.error):
            return None  # unreadable: render again, the next put overwrites it
        if not isinstance(objects, list) or not all(isinstance(o, dict) for o in objects):
            return None
        return objects

    def put(self, commit: str, path_key: str, objects: list[dict[str, Any]]) -> None:
        """Store the render of ``path_key`` (path plus render options) at ``commit``.

        Each item is ``{"manifest": ..., ...}``; a Secret's manifest is stored as its
        identity only, whatever the caller passes.
        """
        stored = [_without_secret_values(item) for item in objects]
        payload = json.dumps(stored, separators=(",", ":"), ensure_ascii=False)
        data = zlib.compress(payload.encode("utf-8"), 6)
        if len(data) > MAX_RENDER_BYTES:
            return
        self.client.set(self.keys.render(commit, path_key), data, px=_ms(self.ttl))


def _without_secret_values(item: dict[str, Any]) -> dict[str, Any]:
    manifest = item.get("manifest")
    if not isinstance(manifest, dict) or not is_secret(manifest):
        return item
    return {**item, "manifest": secret_identity(manifest), REDACTED: True}


def has_redacted(objects: list[dict[str, Any]]) -> bool:
    """Whether a cached render stands in for Secrets it does not hold."""
    return any(item.get(REDACTED) for item in objects)


class ForcedSyncs:
    """At most one queued forced sync per target (SET NX with a TTL as a safety net)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def mark_forced_pending(self, app: str, cluster: str, *, ttl: float) -> bool:
        """True if this caller should queue the forced sync; False if one already waits."""
        key = self.keys.forced_pending(app, cluster)
        return bool(self.client.set(key, "1", nx=True, px=_ms(ttl)))

    def claim(self, app: str, cluster: str, *, task_id: str, ttl: float) -> str | None:
        """Queue-or-join: None when ``task_id`` is now the target's waiting forced sync,
        else the id of the forced sync already waiting (callers can wait on that one)."""
        key = self.keys.forced_pending(app, cluster)
        for _ in range(3):
            if self.client.set(key, task_id, nx=True, px=_ms(ttl)):
                return None
            existing = self.client.get(key)
            if existing is not None:
                return _text(existing)
            # The waiting one started between our SET and GET: try to claim again.
        return None  # contended: queue ours; the target lock still serialises them

    def clear_forced_pending(self, app: str, cluster: str) -> None:
        """The forced sync started: the next request may queue another."""
        self.client.delete(self.keys.forced_pending(app, cluster))

    def forced_pending(self, app: str, cluster: str) -> bool:
        """Whether a forced sync of the target is queued and not started yet."""
        return bool(self.client.exists(self.keys.forced_pending(app, cluster)))
