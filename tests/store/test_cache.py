"""Revision single flight, render cache and forced-sync dedupe against a real Redis."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from reconciler.errors import TransientError
from reconciler.store.cache import ForcedSyncs, RenderCache, RevisionCache
from reconciler.store.keys import Keys
from tests.store import eventually

REPO = "https://user:s3cret@git.example.com/org/repo.git"
OLD = "1" * 40
NEW = "2" * 40


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(redis_prefix)


@pytest.fixture
def cache(client: redis.Redis, keys: Keys) -> RevisionCache:
    return RevisionCache(client, keys, ttl=30)


def slow(commit: str, calls: list[str], *, seconds: float = 0.3) -> Callable[[], str]:
    """A resolver that takes a while, as a fetch does, and logs its calls."""

    def resolver() -> str:
        calls.append(commit)
        time.sleep(seconds)  # the work being shared, not a synchronisation
        return commit

    return resolver


def test_concurrent_threads_run_the_resolver_once(cache: RevisionCache) -> None:
    calls: list[str] = []
    start = threading.Barrier(8)

    def ask() -> str:
        start.wait()
        return cache.resolve(REPO, "main", slow(OLD, calls))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ask(), range(8)))
    assert results == [OLD] * 8
    assert calls == [OLD]
    assert cache.resolver_calls == 1


def test_a_cached_revision_is_reused_until_fresh_is_asked(cache: RevisionCache) -> None:
    assert cache.resolve(REPO, "main", lambda: OLD) == OLD
    assert cache.resolve(REPO, "main", lambda: NEW) == OLD
    assert cache.resolve(REPO, "main", lambda: NEW, fresh=True) == NEW
    assert cache.resolve(REPO, "main", lambda: OLD) == NEW
    assert cache.resolver_calls == 2
    # Another revision, and the same repository reached without credentials.
    assert cache.resolve(REPO, "v1", lambda: OLD) == OLD
    assert cache.resolve("https://git.example.com/org/repo.git", "main", lambda: OLD) == NEW


def test_the_cache_expires(client: redis.Redis, keys: Keys) -> None:
    cache = RevisionCache(client, keys, ttl=0.1)
    assert cache.resolve(REPO, "main", lambda: OLD) == OLD
    assert eventually(lambda: cache.resolve(REPO, "main", lambda: NEW) == NEW)


def test_fresh_callers_share_one_flight(cache: RevisionCache) -> None:
    assert cache.resolve(REPO, "main", lambda: OLD) == OLD
    calls: list[str] = []
    asked = threading.Semaphore(0)

    def resolver() -> str:
        calls.append(NEW)
        for _ in range(7):  # every other caller has entered resolve()...
            assert asked.acquire(timeout=10)
        time.sleep(0.5)  # ...and had ample time to find this flight under way
        return NEW

    def ask() -> str:
        asked.release()
        return cache.resolve(REPO, "main", resolver, fresh=True)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: ask(), range(8)))
    assert results == [NEW] * 8
    assert calls == [NEW]


def test_resolver_errors_reach_their_caller_and_the_next_call_retries(
    cache: RevisionCache, client: redis.Redis, keys: Keys
) -> None:
    def broken() -> str:
        raise RuntimeError("git server said no")

    with pytest.raises(RuntimeError, match="said no"):
        cache.resolve(REPO, "main", broken)
    assert not client.exists(keys.fetch_flight(REPO)), "the flight lock was not freed"
    assert cache.resolve(REPO, "main", lambda: OLD) == OLD
    assert cache.resolver_calls == 2


def test_waiters_resolve_themselves_when_the_flight_fails(
    cache: RevisionCache, client: redis.Redis, keys: Keys
) -> None:
    fail = threading.Event()

    def failing() -> str:
        assert fail.wait(timeout=10)
        raise RuntimeError("fetch failed")

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.resolve, REPO, "main", failing)
        assert eventually(lambda: bool(client.exists(keys.fetch_flight(REPO))))
        second = pool.submit(cache.resolve, REPO, "main", lambda: NEW)
        fail.set()
        with pytest.raises(RuntimeError, match="fetch failed"):
            first.result(timeout=30)
        assert second.result(timeout=30) == NEW
    assert cache.resolver_calls == 2


def test_a_dead_flight_holder_is_replaced(
    cache: RevisionCache, client: redis.Redis, keys: Keys
) -> None:
    client.set(keys.fetch_flight(REPO), "dead-worker", px=300)  # never renewed, never released
    started = time.monotonic()
    assert cache.resolve(REPO, "main", lambda: OLD) == OLD
    assert time.monotonic() - started >= 0.2
    assert cache.resolver_calls == 1


def test_waiting_too_long_is_a_transient_error(client: redis.Redis, keys: Keys) -> None:
    cache = RevisionCache(client, keys, wait=0.3)
    client.set(keys.fetch_flight(REPO), "busy-worker", px=30_000)
    with pytest.raises(TransientError, match="did not finish") as caught:
        cache.resolve(REPO, "main", lambda: OLD)
    assert "s3cret" not in str(caught.value)
    assert cache.resolver_calls == 0


def test_the_flight_lock_is_renewed_while_the_resolver_runs(
    client: redis.Redis, keys: Keys
) -> None:
    cache = RevisionCache(client, keys, flight_ttl=0.3)
    calls: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.resolve, REPO, "main", slow(OLD, calls, seconds=1.2))
        assert eventually(lambda: bool(client.exists(keys.fetch_flight(REPO))))
        second = pool.submit(cache.resolve, REPO, "main", slow(NEW, calls))
        assert first.result(timeout=30) == OLD
        assert second.result(timeout=30) == OLD
    assert calls == [OLD]


def _resolve_in_process(
    url: str,
    prefix: str,
    start: multiprocessing.synchronize.Barrier,
    queue: multiprocessing.queues.Queue[str],
) -> None:
    try:
        with redis.Redis.from_url(url) as client:
            keys = Keys(prefix)
            counter = keys.prefix + "test-resolver-calls"

            def resolver() -> str:
                client.incr(counter)
                time.sleep(0.3)
                return OLD

            cache = RevisionCache(client, keys)
            start.wait(timeout=60)
            queue.put(cache.resolve(REPO, "main", resolver))
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(f"error: {exc!r}")


def test_processes_share_one_resolution(
    redis_url: str, redis_prefix: str, client: redis.Redis
) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.queues.Queue[str] = context.Queue()
    start = context.Barrier(2)
    workers = [
        context.Process(target=_resolve_in_process, args=(redis_url, redis_prefix, start, queue))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert results == [OLD, OLD]
    assert client.get(redis_prefix + "test-resolver-calls") == b"1"


OBJECTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "é"}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
]


def test_render_cache_round_trip_and_miss(client: redis.Redis, keys: Keys) -> None:
    renders = RenderCache(client, keys, ttl=60)
    assert renders.get(OLD, "apps/web|plain") is None
    renders.put(OLD, "apps/web|plain", OBJECTS)
    assert renders.get(OLD, "apps/web|plain") == OBJECTS
    assert renders.get(OLD, "apps/web|kustomize") is None
    assert renders.get(NEW, "apps/web|plain") is None
    key = keys.render(OLD, "apps/web|plain")
    assert 0 < client.pttl(key) <= 60_000
    stored = client.get(key)
    assert isinstance(stored, bytes) and b"ConfigMap" not in stored  # compressed
    renders.put(OLD, "apps/empty|plain", [])
    assert renders.get(OLD, "apps/empty|plain") == []


def test_render_cache_treats_garbage_as_a_miss(client: redis.Redis, keys: Keys) -> None:
    renders = RenderCache(client, keys)
    client.set(keys.render(OLD, "p"), b"not zlib")
    assert renders.get(OLD, "p") is None


def test_render_cache_needs_a_binary_client(redis_url: str, keys: Keys) -> None:
    with (
        redis.Redis.from_url(redis_url, decode_responses=True) as client,
        pytest.raises(ValueError, match="decode_responses"),
    ):
        RenderCache(client, keys)


def test_forced_syncs_are_deduplicated(client: redis.Redis, keys: Keys) -> None:
    forced = ForcedSyncs(client, keys)
    assert not forced.forced_pending("web", "prod")
    assert forced.mark_forced_pending("web", "prod", ttl=60)
    assert not forced.mark_forced_pending("web", "prod", ttl=60)
    assert forced.mark_forced_pending("web", "staging", ttl=60)
    assert forced.forced_pending("web", "prod")
    forced.clear_forced_pending("web", "prod")
    assert forced.mark_forced_pending("web", "prod", ttl=0.1)
    assert eventually(lambda: forced.mark_forced_pending("web", "prod", ttl=60))
