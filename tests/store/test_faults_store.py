"""Dead workers, cluster slots and circuit breakers against a real Redis."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Queue

from reconciler.store.breaker import Breakers, CircuitState
from reconciler.store.heartbeat import DeliveryOwners, Heartbeats, Holder, set_worker_id
from reconciler.store.keys import Keys
from reconciler.store.lock import TargetLock, holder_of
from reconciler.store.semaphore import ClusterSlots
from workers.app import settings as celery_settings
from workers.broker import restore_dead_workers


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(redis_prefix)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_lock_of_a_dead_local_process_is_taken_at_once(client: redis.Redis, keys: Keys) -> None:
    heartbeats = Heartbeats(client, keys, ttl=5)
    gone = Holder(worker="", host=socket.gethostname(), pid=_dead_pid(), started="1")
    key = keys.lock("web", "prod")
    client.set(key, f"abc {gone.encode()}", px=60_000)
    mine = TargetLock(client, key, ttl=5, holder=Holder.this_process().encode(),
                      is_dead=heartbeats.holder_dead)  # fmt: skip
    assert mine.acquire(wait=0)
    assert mine.token is not None and holder_of(mine.token) == Holder.this_process().encode()
    mine.release()


def test_lock_of_a_live_holder_is_left_alone(client: redis.Redis, keys: Keys) -> None:
    heartbeats = Heartbeats(client, keys, ttl=5)
    heartbeats.beat("alive-1")
    alive = Holder(worker="alive-1", host="elsewhere", pid=1, started="1")
    key = keys.lock("web", "prod")
    client.set(key, f"abc {alive.encode()}", px=60_000)
    waiter = TargetLock(client, key, ttl=5, is_dead=heartbeats.holder_dead)
    assert not waiter.acquire(wait=0.2)
    client.delete(keys.worker_heartbeat("alive-1"))  # its worker dies
    assert waiter.acquire(wait=0)
    waiter.release()


def test_cluster_slots_are_bounded_and_dead_holders_freed(client: redis.Redis, keys: Keys) -> None:
    heartbeats = Heartbeats(client, keys, ttl=5)
    slots = ClusterSlots(client, keys, "prod", limit=2, ttl=60,
                         is_dead=lambda h: heartbeats.holder_dead(holder_of(h)))  # fmt: skip
    heartbeats.beat("w1")
    live = Holder(worker="w1", host="elsewhere", pid=1, started="1").encode()
    dead = Holder(worker="w2", host="elsewhere", pid=1, started="1").encode()
    assert slots.acquire(f"a {live}")
    assert slots.acquire(f"b {live}")
    assert not slots.acquire(f"c {live}")
    slots.release(f"b {live}")
    assert slots.acquire(f"d {dead}")  # w2 has no heartbeat
    assert slots.acquire(f"e {live}")  # so its slot is freed for this one
    assert len(slots.holders()) == 2


def test_cluster_slots_tell_how_long_the_current_runs_have_lasted(
    client: redis.Redis, keys: Keys
) -> None:
    slots = ClusterSlots(client, keys, "prod", limit=1, ttl=60)
    assert slots.held_for() == 0.0  # nobody holds a slot
    assert slots.acquire("a")
    time.sleep(0.3)
    assert not slots.acquire("b")
    assert 0.3 <= slots.held_for() < 5, slots.held_for()
    slots.release("a")
    assert slots.held_for() == 0.0


def test_breaker_opens_probes_and_closes(client: redis.Redis, keys: Keys) -> None:
    breakers = Breakers(client, keys, failures=2, cooldown=0.3, probe_ttl=10)
    assert breakers.admit("prod", "t1").run
    assert breakers.record("prod", "t1", False).state is CircuitState.CLOSED
    opened = breakers.record("prod", "t2", False)
    assert opened.state is CircuitState.OPEN and opened.failures == 2
    assert opened.next_retry > time.time()
    refused = breakers.admit("prod", "t3")
    assert not refused.run and refused.retry_at == pytest.approx(opened.next_retry)
    deadline = time.monotonic() + 5
    while not (probe := breakers.admit("prod", "t4")).run:
        assert time.monotonic() < deadline, "the breaker never let a probe through"
        time.sleep(0.05)
    assert probe.probe
    assert not breakers.admit("prod", "t5").run  # one probe at a time
    reopened = breakers.record("prod", "t4", False)  # the probe failed: open, longer
    assert reopened.state is CircuitState.OPEN
    assert reopened.next_retry - time.time() > 0.3
    assert breakers.states()["prod"].state is CircuitState.OPEN
    assert breakers.record("prod", "t6", True).state is CircuitState.CLOSED
    assert breakers.states() == {}


def test_breaker_opens_on_a_failing_share_although_runs_get_through(
    client: redis.Redis, keys: Keys
) -> None:
    # A cluster answering 503 to half its requests: failures, with successes between.
    breakers = Breakers(client, keys, failures=3, cooldown=30, probe_ttl=10,
                        window=10, failure_rate=0.5, min_runs=4)  # fmt: skip
    for n, reached in enumerate([False, True, False, True]):
        circuit = breakers.record("flaky", f"t{n}", reached)
        assert circuit.state is CircuitState.CLOSED, (n, circuit)
        assert circuit.failures <= 1  # never two failures in a row
    assert breakers.admit("flaky", "t4").run
    opened = breakers.record("flaky", "t4", False)  # 3 of the last 5 runs failed
    assert opened.state is CircuitState.OPEN, opened
    assert (opened.recent_failures, opened.recent_runs) == (3, 5)
    assert opened.next_retry > time.time() + 20
    assert not breakers.admit("flaky", "t5").run
    assert breakers.states()["flaky"].recent_failures == 3


def test_breaker_stays_closed_on_a_cluster_that_mostly_answers(
    client: redis.Redis, keys: Keys
) -> None:
    breakers = Breakers(client, keys, failures=3, cooldown=30, probe_ttl=10,
                        window=10, failure_rate=0.5, min_runs=4)  # fmt: skip
    runs = [True, True, False, True, True, False, True, True, True, False, True, False, True]
    for n, reached in enumerate(runs):
        assert breakers.record("prod", f"t{n}", reached).state is CircuitState.CLOSED, n
    # An early failure is no share yet: one failure of one run leaves it closed.
    assert breakers.record("fresh", "t0", False).state is CircuitState.CLOSED
    assert breakers.states() == {}  # closed breakers are not listed
    # Runs that never reached the cluster (no evidence) count for neither.
    assert breakers.record("prod", "none", None).recent_runs == 10


def test_breaker_probe_lets_others_come_back_within_a_cooldown_and_closes_clean(
    client: redis.Redis, keys: Keys
) -> None:
    breakers = Breakers(client, keys, failures=2, cooldown=0.3, probe_ttl=60,
                        window=10, failure_rate=0.5, min_runs=4)  # fmt: skip
    breakers.record("prod", "t1", False)
    assert breakers.record("prod", "t2", False).state is CircuitState.OPEN
    deadline = time.monotonic() + 5
    while not (probe := breakers.admit("prod", "probe")).run:
        assert time.monotonic() < deadline, "the breaker never let a probe through"
        time.sleep(0.05)
    assert probe.probe
    refused = breakers.admit("prod", "other")
    # Not the probe's 60 s lease: at most one cooldown, then ask again.
    assert not refused.run and refused.retry_at <= time.time() + 0.3 + 0.05
    closed = breakers.record("prod", "probe", True)
    assert closed.state is CircuitState.CLOSED
    assert (closed.failures, closed.recent_runs) == (0, 0)  # a clean record
    assert breakers.admit("prod", "other").run
    # Once closed again, one more failure does not reopen it on the old record.
    assert breakers.record("prod", "t3", False).state is CircuitState.CLOSED


def test_dead_workers_deliveries_go_back_and_live_ones_stay(
    redis_url: str, client: redis.Redis, keys: Keys
) -> None:
    options = {"global_keyprefix": keys.celery()}
    queue = Queue(f"q-{os.getpid()}")
    heartbeats = Heartbeats(client, keys, ttl=5)
    owners = DeliveryOwners(client, keys)
    taken = {}
    for worker in ("live", "dead"):
        set_worker_id(worker)
        conn = Connection(redis_url, transport="workers.broker:Transport",
                          transport_options=options)  # fmt: skip
        with conn.Producer() as producer:
            producer.publish({"by": worker}, routing_key=queue.name, declare=[queue])
        message = queue(conn.channel()).get(no_ack=False)
        assert message is not None
        taken[worker] = (conn, message)
    set_worker_id("")
    heartbeats.beat("live")
    assert owners.orphans(heartbeats) == [taken["dead"][1].delivery_tag]
    reaper = Connection(redis_url, transport="workers.broker:Transport", transport_options=options)
    assert restore_dead_workers(reaper, owners, heartbeats) == 1
    again = queue(reaper.channel()).get(no_ack=True)
    assert again is not None and again.payload == {"by": "dead"}
    assert client.hexists(keys.broker_unacked(), taken["live"][1].delivery_tag)
    # A delivery acknowledged on a connection that was closed meanwhile (a Redis
    # restart makes Celery close its connection under running tasks) still reaches Redis.
    conn, message = taken["live"]
    conn.close()
    message.ack()
    assert not client.hexists(keys.broker_unacked(), message.delivery_tag)
    assert not client.hexists(keys.delivery_owners(), message.delivery_tag)
    reaper.close()
    taken["dead"][0].close()


def test_the_delivery_owners_transport_serves_redis_and_sentinel_brokers(keys: Keys) -> None:
    plain = celery_settings("redis://127.0.0.1:1/0", keys)
    assert plain["broker_transport"] == "workers.broker:Transport"
    sentinel = celery_settings("sentinel://127.0.0.1:1;sentinel://127.0.0.1:2", keys)
    assert sentinel["broker_transport"] == "workers.broker:SentinelTransport"
    # TLS is turned on by kombu from the scheme only when kombu picks the transport.
    assert celery_settings("rediss://127.0.0.1:1/0", keys)["broker_transport"] is None
