"""The reconciles' total: every run counted in one field, and never taken for a series."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from reconciler.store.keys import Keys
from reconciler.store.metrics import OTHER, ReconcileMetrics


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def metrics(client: redis.Redis, redis_prefix: str) -> ReconcileMetrics:
    return ReconcileMetrics(client, Keys(redis_prefix), max_clusters=1)


def outcome(**fields: Any) -> dict[str, Any]:
    return {"application": "web", "cluster": "prod", "sync": "Synced", "duration": 0.2,
            **fields}  # fmt: skip


def test_the_total_counts_every_run_whatever_its_labels_and_result(
    metrics: ReconcileMetrics,
) -> None:
    assert metrics.total() == 0
    metrics.observe(outcome())
    metrics.observe(outcome(sync="Failed"))
    metrics.observe({"application": "web", "cluster": "prod", "skipped": "busy"})
    metrics.observe(outcome(cluster="staging"))  # past max_clusters: counted under _other
    metrics.observe(outcome(application="Bad Name"))
    assert metrics.total() == 5
    snap = metrics.snapshot()
    assert sum(snap.reconciles.values()) == 5, "the total is not a series of its own"
    assert ("web", OTHER, "Synced") in snap.reconciles


def test_the_total_loses_no_run_of_concurrent_workers(
    redis_url: str, redis_prefix: str, metrics: ReconcileMetrics
) -> None:
    def worker() -> None:
        with redis.Redis.from_url(redis_url) as own:
            mine = ReconcileMetrics(own, Keys(redis_prefix))
            for _ in range(50):
                mine.observe(outcome())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.total() == 200


def test_the_total_is_the_installations_own(
    client: redis.Redis, redis_prefix: str, metrics: ReconcileMetrics
) -> None:
    metrics.observe(outcome())
    assert ReconcileMetrics(client, Keys(redis_prefix + "other:")).total() == 0
