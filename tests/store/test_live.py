"""What the watcher shares with the workers: leases, members, streams, last changes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from reconciler.store.keys import Keys
from reconciler.store.live import ClusterLeases, LiveChanges, WatcherMembers, WatchStreams
from workers.watcher import spec_hash


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as conn:
        yield conn


@pytest.fixture
def keys(redis_prefix: str) -> Keys:
    return Keys(redis_prefix)


def test_a_lease_is_held_renewed_and_only_released_by_its_holder(
    client: redis.Redis, keys: Keys
) -> None:
    leases = ClusterLeases(client, keys, ttl=0.3)
    assert leases.hold("prod", "a") and not leases.hold("prod", "b")
    assert leases.hold("prod", "a")  # renewed
    leases.release("prod", "b")  # not b's: nothing happens
    assert leases.holders(["prod", "dev"]) == {"prod": "a", "dev": None}
    deadline = time.monotonic() + 5
    while leases.holders(["prod"])["prod"] is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # polling for the expiry of a dead holder's lease
    assert leases.hold("prod", "b")
    leases.release("prod", "b")
    assert leases.holders(["prod"]) == {"prod": None}


def test_members_count_the_live_replicas(client: redis.Redis, keys: Keys) -> None:
    members = WatcherMembers(client, keys, ttl=30)
    assert members.beat("a") == 1
    assert members.beat("b") == 2
    members.leave("a")
    assert members.beat("b") == 1
    members.leave("b")


def test_a_stream_says_since_when_and_goes(client: redis.Redis, keys: Keys) -> None:
    streams = WatchStreams(client, keys, ttl=30)
    assert streams.get("prod") is None
    streams.live("prod", holder="a", since=1234.5)
    found = streams.get("prod")
    assert found is not None and (found.holder, found.since) == ("a", 1234.5)
    streams.gone("prod")
    assert streams.get("prod") is None


def test_last_changes_keep_the_highest_version(client: redis.Redis, keys: Keys) -> None:
    changes = LiveChanges(client, keys)
    assert changes.last("web", "prod") == 0
    changes.changed({("web", "prod"): 40, ("api", "prod"): 7})
    changes.changed({("web", "prod"): 12})  # an older event written late
    assert (changes.last("web", "prod"), changes.last("api", "prod")) == (40, 7)
    client.delete(keys.live_changed())


def test_the_spec_hash_ignores_status_and_what_the_server_keeps() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"},
           "metadata": {"name": "c", "resourceVersion": "5", "labels": {"x": "y"}}}  # fmt: skip
    moved = {**obj, "status": {"phase": "ok"},
             "metadata": {**obj["metadata"], "resourceVersion": "9", "managedFields": [{}]}}  # type: ignore[dict-item]  # fmt: skip
    assert spec_hash(obj) == spec_hash(moved)
    assert spec_hash(obj) != spec_hash({**obj, "data": {"a": "2"}})
    relabelled = {**obj, "metadata": {**obj["metadata"], "labels": {"x": "z"}}}  # type: ignore[dict-item]
    assert spec_hash(obj) != spec_hash(relabelled)
