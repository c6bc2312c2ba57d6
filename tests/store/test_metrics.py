"""The platform's counters against a real Redis: reconciles, durations, caps, Git fetches,
webhook deliveries and cluster reachability."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from reconciler.store.keys import Keys
from reconciler.store.metrics import (
    DURATION_BUCKETS,
    MAX_REPOSITORIES,
    OTHER,
    Histogram,
    ReconcileMetrics,
    cluster_reachable,
    result_of,
)

WEB = ("web", "prod")


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


def bucket(histogram: Histogram, bound: float) -> int:
    return dict(histogram.buckets)[bound]


def results(metrics: ReconcileMetrics, series: tuple[str, str] = WEB) -> dict[str, int]:
    """The result counters of one (application, cluster) series."""
    snap = metrics.snapshot()
    return {result: n for (app, cluster, result), n in snap.reconciles.items()
            if (app, cluster) == series}  # fmt: skip


def test_empty_snapshot(metrics: ReconcileMetrics) -> None:
    snap = metrics.snapshot()
    assert snap.reconciles == {} and snap.durations == {}
    assert snap.git_fetches == 0 and snap.git_fetch_failures == {}
    assert snap.webhook_deliveries == {} and snap.cluster_reachable == {}


def test_observe_counts_results_per_target(metrics: ReconcileMetrics) -> None:
    metrics.observe(outcome("Synced"))
    metrics.observe(outcome("Synced"))
    metrics.observe(outcome("OutOfSync"))
    metrics.observe(outcome("Failed"))
    metrics.observe({"application": "web", "cluster": "prod", "skipped": "busy"})
    metrics.observe(outcome("Synced", cluster="staging"))
    assert results(metrics) == {"Failed": 1, "OutOfSync": 1, "Synced": 2, "skipped": 1}
    assert results(metrics, ("web", "staging")) == {"Synced": 1}
    hist = metrics.snapshot().durations[WEB]
    assert [b for b, _ in hist.buckets] == [*map(float, DURATION_BUCKETS), math.inf]
    assert hist.count == 4  # the skipped run has no duration


def test_unexpected_sync_values_do_not_become_labels(metrics: ReconcileMetrics) -> None:
    metrics.observe(outcome("Synced\nevil"))
    metrics.observe(outcome(None))  # type: ignore[arg-type]
    assert results(metrics) == {"unknown": 2}
    assert result_of({"sync": "Synced", "skipped": "suspended"}) == "skipped"


def test_names_that_are_not_fleet_names_count_as_other(metrics: ReconcileMetrics) -> None:
    assert metrics.observe(outcome(application="Bad Name")) == (OTHER, OTHER)
    assert metrics.observe(outcome(cluster="x/y")) == ("web", OTHER)
    assert metrics.observe(outcome(cluster=None)) == ("web", OTHER)
    assert results(metrics, (OTHER, OTHER)) == {"Synced": 1}
    assert results(metrics, ("web", OTHER)) == {"Synced": 2}


def test_clusters_past_the_cap_fold_into_other(client: redis.Redis, redis_prefix: str) -> None:
    capped = ReconcileMetrics(client, Keys(redis_prefix), max_clusters=2)
    assert capped.observe(outcome(cluster="c1")) == ("web", "c1")
    assert capped.observe(outcome(cluster="c2")) == ("web", "c2")
    assert capped.observe(outcome(cluster="c3")) == ("web", OTHER)
    assert capped.observe(outcome(cluster="c4", duration=0.2)) == ("web", OTHER)
    # Admitted clusters keep their series; the cap is per application.
    assert capped.observe(outcome(cluster="c1")) == ("web", "c1")
    assert capped.observe(outcome(application="api", cluster="c3")) == ("api", "c3")
    snap = capped.snapshot()
    assert {series for series in snap.durations if series[0] == "web"} == {
        ("web", "c1"), ("web", "c2"), ("web", OTHER),
    }  # fmt: skip
    assert snap.reconciles[("web", OTHER, "Synced")] == 2
    assert snap.durations[("web", OTHER)].count == 2
    assert snap.durations[("web", OTHER)].sum == pytest.approx(1.7)
    assert snap.reconciles[("web", "c1", "Synced")] == 2
    # The reachability gauge is per cluster, not capped with the series.
    assert set(snap.cluster_reachable) == {"c1", "c2", "c3", "c4"}
    folded = ReconcileMetrics(client, Keys(redis_prefix + "zero:"), max_clusters=0)
    assert folded.observe(outcome()) == ("web", OTHER)


def test_the_cap_defaults_to_the_setting(
    client: redis.Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_METRICS_MAX_CLUSTERS", "1")
    capped = ReconcileMetrics(client, Keys(redis_prefix))
    assert capped.max_clusters == 1
    capped.observe(outcome(cluster="c1"))
    assert capped.observe(outcome(cluster="c2")) == ("web", OTHER)


UNREACHABLE = "cluster prod: list: cannot reach the API server (connection refused)"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, True),
        ({"sync": "Failed", "reason": "ApplyFailed",
          "errors": [{"message": "ConfigMap/ns/c: invalid", "retryable": False}]}, True),
        ({"sync": "Failed", "reason": "LiveStateFailed",
          "errors": [{"message": UNREACHABLE, "retryable": True}]}, False),
        ({"sync": "Failed", "reason": "ApplyFailed",
          "errors": [{"message": "cluster prod: apply: boom (503 ServiceUnavailable)",
                      "retryable": True}]}, False),
        ({"sync": "Failed", "reason": "LiveStateFailed",
          "errors": [{"message": "cluster prod: kubeconfig /k context 'p': no such context",
                      "retryable": False}]}, False),
        ({"sync": "Failed", "reason": "WaveTimeout",
          "errors": [{"message": "Deployment/ns/web: wave 1 not Healthy", "retryable": True}]},
         True),
        ({"sync": "Failed", "reason": "SourceFailed",
          "errors": [{"message": "repo: unknown revision", "retryable": False}]}, None),
        ({"sync": "Failed", "errors": [{"message": "reconcile exceeded 300s", "retryable": True}]},
         None),
        ({"skipped": "busy"}, None),
    ],
)  # fmt: skip
def test_cluster_reachable_from_an_outcome(fields: dict[str, Any], expected: bool | None) -> None:
    assert cluster_reachable(outcome(**fields)) is expected


def test_reachability_follows_the_last_run_that_says(metrics: ReconcileMetrics) -> None:
    metrics.observe(outcome())
    assert metrics.snapshot().cluster_reachable == {"prod": 1}
    down = {"sync": "Failed", "reason": "LiveStateFailed",
            "errors": [{"message": UNREACHABLE, "retryable": True}]}  # fmt: skip
    metrics.observe(outcome(**down))
    assert metrics.snapshot().cluster_reachable == {"prod": 0}
    metrics.observe({"application": "web", "cluster": "prod", "skipped": "busy"})
    metrics.observe(outcome(sync="Failed", reason="SourceFailed"))
    assert metrics.snapshot().cluster_reachable == {"prod": 0}
    metrics.observe(outcome(application="api"))
    assert metrics.snapshot().cluster_reachable == {"prod": 1}


def test_git_fetches_and_failures_by_redacted_repository(metrics: ReconcileMetrics) -> None:
    metrics.git_fetched()
    metrics.git_fetched()
    token_url = "https://x-token:ghp_secret123@github.com/acme/apps.git"
    assert metrics.git_fetch_failed(token_url) == "https://***@github.com/acme/apps.git"
    metrics.git_fetch_failed("https://***@github.com/acme/apps.git")
    snap = metrics.snapshot()
    assert snap.git_fetches == 2
    assert snap.git_fetch_failures == {"https://***@github.com/acme/apps.git": 2}
    assert "ghp_secret123" not in repr(snap)


def test_git_fetch_failures_are_capped(metrics: ReconcileMetrics) -> None:
    for i in range(MAX_REPOSITORIES + 3):
        metrics.git_fetch_failed(f"https://example.com/repo-{i}.git")
    metrics.git_fetch_failed("https://example.com/repo-0.git")
    failures = metrics.snapshot().git_fetch_failures
    assert len(failures) == MAX_REPOSITORIES + 1
    assert failures[OTHER] == 3
    assert failures["https://example.com/repo-0.git"] == 2


def test_webhook_deliveries_by_provider_and_result(metrics: ReconcileMetrics) -> None:
    metrics.webhook_delivery("github", "accepted")
    metrics.webhook_delivery("github", "accepted")
    metrics.webhook_delivery("gitlab", "unauthorized")
    metrics.webhook_delivery("evil\nprovider", "made-up")
    assert metrics.snapshot().webhook_deliveries == {
        ("github", "accepted"): 2, ("gitlab", "unauthorized"): 1, ("unknown", "error"): 1,
    }  # fmt: skip


def test_fields_of_an_older_version_are_skipped(
    client: redis.Redis, redis_prefix: str, metrics: ReconcileMetrics
) -> None:
    keys = Keys(redis_prefix)
    client.hset(keys.metrics_reconciles(), mapping={"Synced": 7})
    client.hset(keys.metrics_duration(), mapping={"le=0.05": 1, "sum": 0.01, "count": 1})
    metrics.observe(outcome())
    snap = metrics.snapshot()
    assert snap.reconciles == {("web", "prod", "Synced"): 1}
    assert list(snap.durations) == [WEB]


def test_histogram_buckets_are_cumulative_and_match_count_and_sum(
    metrics: ReconcileMetrics,
) -> None:
    durations = [0.01, 0.05, 0.07, 0.3, 1.0, 2.0, 4.9, 59.0, 61.0, 500.0]
    for seconds in durations:
        metrics.observe(outcome(duration=seconds))
    hist = metrics.snapshot().durations[WEB]
    counts = [count for _, count in hist.buckets]
    assert counts == sorted(counts), "cumulative buckets never decrease"
    for bound, count in hist.buckets:
        assert count == sum(1 for d in durations if d <= bound), bound
    assert bucket(hist, 0.05) == 2  # le is inclusive: 0.05 falls in le=0.05
    assert bucket(hist, math.inf) == hist.count == len(durations)
    assert hist.sum == pytest.approx(sum(durations))


def test_runs_without_a_usable_duration_count_but_stay_out_of_the_histogram(
    metrics: ReconcileMetrics,
) -> None:
    metrics.observe({"application": "web", "cluster": "prod", "skipped": "busy", "duration": 3})
    metrics.observe(outcome(duration=float("nan")))
    metrics.observe(outcome(duration=-1.0))
    metrics.observe(outcome(duration="2"))  # type: ignore[arg-type]
    snap = metrics.snapshot()
    assert sum(snap.reconciles.values()) == 4
    assert snap.durations == {}


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
    assert snap.reconciles == {("web", "prod", "Synced"): 200}
    hist = snap.durations[WEB]
    assert hist.count == 200
    assert bucket(hist, 0.25) == 200
    assert bucket(hist, 0.1) == 0
    assert hist.sum == pytest.approx(40.0)


def test_keys_live_under_the_installation_prefix(
    client: redis.Redis, redis_prefix: str, metrics: ReconcileMetrics
) -> None:
    metrics.observe(outcome())
    names = {key.decode() for key in client.scan_iter(match="*metrics*", count=1000)}
    mine = {name for name in names if name.startswith(redis_prefix)}
    assert mine == {
        f"{redis_prefix}metrics:{name}"
        for name in ("reconciles", "duration", "series", "series_counts", "cluster_reachable")
    }
    other = ReconcileMetrics(client, Keys(redis_prefix + "other:"))
    assert other.snapshot().reconciles == {}
