"""The target lock against a real Redis: exclusive, owned, renewed, lost, waited for."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from reconciler.errors import LockBusy
from reconciler.store.keys import Keys
from reconciler.store.lock import TargetLock
from tests.store import eventually


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def key(redis_prefix: str) -> str:
    return Keys(redis_prefix).lock("web", "prod")


def test_only_one_holder_at_a_time(client: redis.Redis, key: str) -> None:
    first, second = TargetLock(client, key), TargetLock(client, key)
    assert first.acquire()
    assert first.held and first.token is not None
    assert not second.acquire()
    assert not second.held
    assert client.get(key) == first.token.encode()
    assert first.release()
    assert client.get(key) is None
    assert second.acquire()


def test_for_target_uses_the_lock_key(client: redis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    lock = TargetLock.for_target(client, keys, app="web", cluster="prod", ttl=5)
    assert lock.acquire()
    assert client.exists(keys.lock("web", "prod"))
    assert lock.release()


def test_release_by_a_non_owner_does_nothing(client: redis.Redis, key: str) -> None:
    owner, other = TargetLock(client, key), TargetLock(client, key)
    assert owner.acquire()
    assert not other.acquire()
    assert not other.release()
    assert client.get(key) == (owner.token or "").encode()


def test_a_stale_holder_cannot_release_the_new_holders_lock(client: redis.Redis, key: str) -> None:
    stale, fresh = TargetLock(client, key, ttl=0.1), TargetLock(client, key, ttl=30)
    assert stale.acquire()
    assert fresh.acquire(wait=10), "the expired lock was not free"
    assert not stale.release()
    assert not stale.renew()
    assert client.get(key) == (fresh.token or "").encode()
    assert client.pttl(key) > 20_000  # stale.renew() did not shorten it either


def test_expiry_lets_another_acquire(client: redis.Redis, key: str) -> None:
    dead, next_one = TargetLock(client, key, ttl=0.2), TargetLock(client, key)
    assert dead.acquire()  # and never released: its worker "died"
    assert not next_one.acquire()
    assert next_one.acquire(wait=10)


def test_renewal_keeps_the_lock_beyond_its_ttl(client: redis.Redis, key: str) -> None:
    other = TargetLock(client, key)
    with TargetLock(client, key, ttl=0.3) as lock:
        held_until = time.monotonic() + 1.2  # four TTLs
        while time.monotonic() < held_until:
            assert client.get(key) == (lock.token or "").encode()
            time.sleep(0.02)
        assert not other.acquire()
        assert not lock.lost
    assert client.get(key) is None


def test_lost_lock_is_detected_and_the_new_holder_kept(client: redis.Redis, key: str) -> None:
    with TargetLock(client, key, ttl=0.3) as lock:
        client.set(key, "someone-else")  # as if it had expired and been taken meanwhile
        assert eventually(lambda: lock.lost), "renewal did not notice the lost lock"
        assert not lock.held
    assert client.get(key) == b"someone-else"


def test_enter_raises_lock_busy_after_waiting(client: redis.Redis, key: str) -> None:
    holder = TargetLock(client, key, ttl=30)
    assert holder.acquire()
    started = time.monotonic()
    with pytest.raises(LockBusy, match="held by another worker"), TargetLock(client, key, wait=0.3):
        pass
    assert time.monotonic() - started >= 0.3
    assert LockBusy.retryable


def test_acquire_waits_for_a_release_within_the_wait(client: redis.Redis, key: str) -> None:
    holder, waiter = TargetLock(client, key, ttl=30), TargetLock(client, key)
    assert holder.acquire()
    releaser = threading.Timer(0.2, holder.release)
    releaser.start()
    started = time.monotonic()
    try:
        assert waiter.acquire(wait=10)
    finally:
        releaser.join()
    assert time.monotonic() - started < 5  # well before the holder's TTL of 30 s


def test_a_lock_object_is_not_reentrant(client: redis.Redis, key: str) -> None:
    lock = TargetLock(client, key)
    assert lock.acquire()
    with pytest.raises(RuntimeError, match="already holds"):
        lock.acquire()


def _contend(url: str, key: str, rounds: int, queue: multiprocessing.queues.Queue[str]) -> None:
    """Enter the lock ``rounds`` times; report how often another holder was inside too."""
    try:
        with redis.Redis.from_url(url) as client:
            overlaps = 0
            inside = key + ":inside"
            for _ in range(rounds):
                with TargetLock(client, key, ttl=5, wait=60):
                    if client.incr(inside) != 1:
                        overlaps += 1
                    time.sleep(0.002)
                    client.decr(inside)
            queue.put(f"overlaps={overlaps}")
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(f"error: {exc!r}")


def test_processes_contending_never_both_hold_it(redis_url: str, key: str) -> None:
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.queues.Queue[str] = context.Queue()
    workers = [context.Process(target=_contend, args=(redis_url, key, 25, queue)) for _ in range(3)]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert results == ["overlaps=0"] * len(workers)
