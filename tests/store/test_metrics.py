"""Reconcile counters and the duration histogram against a real Redis."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from reconciler.store.keys import Keys
from reconciler.store.metrics import DURATION_BUCKETS, ReconcileMetrics, result_of


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def metrics(client: redis.Redis, redis_prefix: str) -> ReconcileMetrics:
    return ReconcileMetrics(client, Keys(redis_prefix))


def outcome(sync: str = "Synced", duration: float = 1.5, **fields: Any) -> dict[str, Any]:
    return {"application": "web", "cluster": "prod", "sync": sync, "duration": duration,
            "health": "Healthy", **fields}  # fmt: skip


def bucket(snapshot_buckets: tuple[tuple[float, int], ...], bound: float) -> int:
    return dict(snapshot_buckets)[bound]


def test_empty_snapshot_has_every_bucket_at_zero(metrics: ReconcileMetrics) -> None:
    snap = metrics.snapshot()
    assert snap.reconciles == {}
    assert [b for b, _ in snap.buckets] == [*map(float, DURATION_BUCKETS), math.inf]
    assert all(count == 0 for _, count in snap.buckets)
    assert (snap.duration_sum, snap.duration_count) == (0.0, 0)


def test_observe_counts_results(metrics: ReconcileMetrics) -> None:
    metrics.observe(outcome("Synced"))
    metrics.observe(outcome("Synced"))
    metrics.observe(outcome("OutOfSync"))
    metrics.observe(outcome("Failed"))
    metrics.observe({"application": "web", "cluster": "prod", "skipped": "busy"})
    assert metrics.snapshot().reconciles == {"Failed": 1, "OutOfSync": 1, "Synced": 2, "skipped": 1}


def test_unexpected_sync_values_do_not_become_labels(metrics: ReconcileMetrics) -> None:
    metrics.observe(outcome("Synced\nevil"))
    metrics.observe(outcome(None))  # type: ignore[arg-type]
    assert metrics.snapshot().reconciles == {"unknown": 2}
    assert result_of({"sync": "Synced", "skipped": "suspended"}) == "skipped"


def test_histogram_buckets_are_cumulative_and_match_count_and_sum(
    metrics: ReconcileMetrics,
) -> None:
    durations = [0.01, 0.05, 0.07, 0.3, 1.0, 2.0, 4.9, 59.0, 61.0, 500.0]
    for seconds in durations:
        metrics.observe(outcome(duration=seconds))
    snap = metrics.snapshot()
    counts = [count for _, count in snap.buckets]
    assert counts == sorted(counts), "cumulative buckets never decrease"
    for bound, count in snap.buckets:
        assert count == sum(1 for d in durations if d <= bound), bound
    assert bucket(snap.buckets, 0.05) == 2  # le is inclusive: 0.05 falls in le=0.05
    assert bucket(snap.buckets, math.inf) == snap.duration_count == len(durations)
    assert snap.duration_sum == pytest.approx(sum(durations))


def test_runs_without_a_usable_duration_count_but_stay_out_of_the_histogram(
    metrics: ReconcileMetrics,
) -> None:
    metrics.observe({"application": "web", "cluster": "prod", "skipped": "busy", "duration": 3})
    metrics.observe(outcome(duration=float("nan")))
    metrics.observe(outcome(duration=-1.0))
    metrics.observe(outcome(duration="2"))  # type: ignore[arg-type]
    snap = metrics.snapshot()
    assert sum(snap.reconciles.values()) == 4
    assert snap.duration_count == 0
    assert snap.buckets[-1] == (math.inf, 0)


def test_observations_from_many_clients_all_count(
    redis_url: str, redis_prefix: str, metrics: ReconcileMetrics
) -> None:
    """Workers are separate processes: each with its own connection, none may lose a count."""

    def worker() -> None:
        with redis.Redis.from_url(redis_url) as own:
            mine = ReconcileMetrics(own, Keys(redis_prefix))
            for _ in range(50):
                mine.observe(outcome(duration=0.2))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snap = metrics.snapshot()
    assert snap.reconciles == {"Synced": 200}
    assert snap.duration_count == 200
    assert bucket(snap.buckets, 0.25) == 200
    assert bucket(snap.buckets, 0.1) == 0
    assert snap.duration_sum == pytest.approx(40.0)


def test_keys_live_under_the_installation_prefix(
    client: redis.Redis, redis_prefix: str, metrics: ReconcileMetrics
) -> None:
    metrics.observe(outcome())
    names = {key.decode() for key in client.scan_iter(match="*metrics*", count=1000)}
    mine = {name for name in names if name.startswith(redis_prefix)}
    assert mine == {f"{redis_prefix}metrics:reconciles", f"{redis_prefix}metrics:duration"}
    other = ReconcileMetrics(client, Keys(redis_prefix + "other:"))
    assert other.snapshot().reconciles == {}
