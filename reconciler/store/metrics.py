"""Reconcile counters and a duration histogram kept in Redis, for ``GET /metrics``.

Reconciles run in many prefork worker processes on many hosts, and each process lives
only as long as Celery keeps it.  A per-process ``prometheus_client`` counter would be
scattered across processes no scraper can reach and reset on every worker recycle.  So
every finished reconcile adds to a few Redis hashes instead, and the webhook server's
``/metrics`` reads them at scrape time: one place, every worker counted, nothing lost when
a worker restarts (Redis is the platform's shared state already).

Each observation is one MULTI/EXEC transaction, and the histogram (buckets, sum and count)
lives in a single hash read with one HGETALL, so a scrape never sees a count that
disagrees with its buckets.  Buckets are stored *non-cumulatively* (one field per
observation) and made cumulative at read time: one write per reconcile instead of up to
twelve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from reconciler.model import SyncStatus
from reconciler.store.keys import Keys

__all__ = ["DURATION_BUCKETS", "MetricsSnapshot", "ReconcileMetrics", "result_of"]

#: Upper bounds (seconds) of the duration histogram's finite buckets, Prometheus ``le``.
#: From a no-op reconcile of a small application to a large one near the soft time limit.
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

#: Result label of an outcome that did not run (lock busy, application suspended).
SKIPPED = "skipped"
#: Result label of an outcome whose ``sync`` is not one we know: label values stay bounded.
UNKNOWN = "unknown"

_SYNC_VALUES = frozenset(status.value for status in SyncStatus)
_SUM = "sum"
_COUNT = "count"
_INF = "+Inf"


def _bucket_field(bound: float) -> str:
    """Hash field of the bucket whose upper bound is ``bound``: ``le=0.05`` ... ``le=+Inf``."""
    return f"le={_INF if math.isinf(bound) else repr(float(bound))}"


def result_of(outcome: Mapping[str, Any]) -> str:
    """The ``result`` label of an outcome: its ``sync`` value, or ``skipped``.

    A task that returned without running (``{"skipped": "busy"}``) has no ``sync``.
    Anything else unexpected is counted as ``unknown`` rather than becoming a new label
    value: a label per odd value would grow the series without bound.
    """
    if outcome.get("skipped"):
        return SKIPPED
    sync = outcome.get("sync")
    return sync if isinstance(sync, str) and sync in _SYNC_VALUES else UNKNOWN


def _duration_of(outcome: Mapping[str, Any]) -> float | None:
    """Seconds the reconcile ran, or None when it did not run or the value is unusable."""
    if outcome.get("skipped"):
        return None
    value = outcome.get("duration")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@dataclass(frozen=True)
class MetricsSnapshot:
    """The counters at one instant, in the shape Prometheus exposes them.

    ``buckets`` is cumulative, ``(upper bound, observations <= bound)`` in ascending
    order, and ends with ``(inf, duration_count)``.
    """

    reconciles: dict[str, int]
    buckets: tuple[tuple[float, int], ...]
    duration_sum: float
    duration_count: int


class ReconcileMetrics:
    """Counts finished reconciles per result, and their durations, in Redis."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.reconciles_key = keys.metrics_reconciles()
        self.duration_key = keys.metrics_duration()

    def observe(self, outcome: Mapping[str, Any]) -> None:
        """Count one finished reconcile (an ``Outcome.to_dict()`` or a skipped result).

        The result counter always moves; the histogram only for a run that has a usable
        duration, so a skipped task does not pull the latency distribution towards zero.
        """
        pipe = self.client.pipeline(transaction=True)
        pipe.hincrby(self.reconciles_key, result_of(outcome), 1)
        seconds = _duration_of(outcome)
        if seconds is not None:
            bound = next((b for b in DURATION_BUCKETS if seconds <= b), math.inf)
            pipe.hincrby(self.duration_key, _bucket_field(bound), 1)
            pipe.hincrbyfloat(self.duration_key, _SUM, seconds)
            pipe.hincrby(self.duration_key, _COUNT, 1)
        pipe.execute()

    def snapshot(self) -> MetricsSnapshot:
        """The counters now, read in one transaction, with cumulative buckets."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self.reconciles_key)
        pipe.hgetall(self.duration_key)
        raw_results, raw_duration = pipe.execute()
        reconciles = {_text(name): int(value) for name, value in raw_results.items()}
        duration = {_text(name): _text(value) for name, value in raw_duration.items()}
        buckets: list[tuple[float, int]] = []
        running = 0
        for bound in (*DURATION_BUCKETS, math.inf):
            running += int(duration.get(_bucket_field(bound), 0))
            buckets.append((float(bound), running))
        return MetricsSnapshot(
            reconciles=dict(sorted(reconciles.items())),
            buckets=tuple(buckets),
            duration_sum=float(duration.get(_SUM, 0.0)),
            duration_count=int(duration.get(_COUNT, 0)),
        )
