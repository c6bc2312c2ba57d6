"""The platform's counters, kept in Redis, for ``GET /metrics``.

Reconciles run in many prefork worker processes on many hosts, and each process lives
only as long as Celery keeps it.  A per-process ``prometheus_client`` counter would be
scattered across processes no scraper can reach and reset on every worker recycle.  So
every finished reconcile adds to a few Redis hashes instead, and the webhook server's
``/metrics`` reads them at scrape time: one place, every worker counted, nothing lost when
a worker restarts (Redis is the platform's shared state already).

What is counted: reconciles by application, cluster and result, with their durations;
Git fetches and the fetches that failed, by repository; webhook deliveries by provider and
result; and whether each cluster's last reconcile reached its API server.

Label values are bounded, because every distinct value is a series Prometheus keeps
forever.  Applications and clusters are the fleet's (DNS-1123 names; anything else counts
as ``_other``), and a fleet of thousands of clusters must not multiply into millions of
series: each application has series of its own for its first ``metrics_max_clusters``
clusters (``RECONCILER_METRICS_MAX_CLUSTERS``, default 100); runs on further clusters
count under ``cluster="_other"``.  A cluster, once admitted, keeps its series, so a
counter never jumps from one series to another.  Applications past
:data:`MAX_APPLICATIONS` and repositories past :data:`MAX_REPOSITORIES` fold into
``_other`` the same way; the reachability gauge reports at most
:data:`MAX_REACHABLE_CLUSTERS` clusters.  Repository labels are redacted URLs: a
credential in a fleet file's URL never becomes a label.

Each reconcile is observed by one Lua script (admission under the caps, the counter, the
histogram and the reachability, atomically), and a scrape reads every hash in one
MULTI/EXEC, so it never sees a count that disagrees with its buckets.  Buckets are stored
*non-cumulatively* (one field per observation) and made cumulative at read time: one write
per reconcile instead of up to twelve.  Fields are ``application/cluster/...``: names
never hold ``/``.  The reconciles hash also holds one field without a ``/``,
:data:`TOTAL_FIELD`: every reconcile counted, under any label, so a reader that only
wants to know how many have finished (a benchmark waiting for a pass) asks one field
instead of reading a field per target.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.commands.core import Script

from reconciler.fleet import redact_url
from reconciler.model import SyncStatus
from reconciler.settings import load as load_settings
from reconciler.store.keys import Keys

__all__ = [
    "DURATION_BUCKETS",
    "MAX_APPLICATIONS",
    "MAX_REACHABLE_CLUSTERS",
    "MAX_REPOSITORIES",
    "OTHER",
    "TOTAL_FIELD",
    "WEBHOOK_PROVIDERS",
    "WEBHOOK_RESULTS",
    "Histogram",
    "MetricsSnapshot",
    "ReconcileMetrics",
    "cluster_reachable",
    "result_of",
]

#: Upper bounds (seconds) of the duration histogram's finite buckets, Prometheus ``le``.
#: From a no-op reconcile of a small application to a large one near the soft time limit.
DURATION_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

#: Result label of an outcome that did not run (lock busy, application suspended).
SKIPPED = "skipped"
#: Result label of an outcome whose ``sync`` is not one we know: label values stay bounded.
UNKNOWN = "unknown"
#: The label value that stands for every name past a cap (never a DNS-1123 name).
OTHER = "_other"
#: Field of the reconciles hash counting every reconcile (no ``/``: never a series).
TOTAL_FIELD = "_total"
#: Applications with series of their own; a fleet file holds far fewer, so this only
#: bounds names that are not in the fleet (a task queued for an application since removed).
MAX_APPLICATIONS = 1000
#: Repositories with a failure counter of their own.
MAX_REPOSITORIES = 200
#: Clusters the reachability gauge reports (one series each: no ``_other`` for a gauge).
MAX_REACHABLE_CLUSTERS = 10000
#: Providers of a webhook delivery (``unknown``: no provider's headers at all).
WEBHOOK_PROVIDERS = frozenset({"github", "gitlab", "plain", "unknown"})
#: What became of a webhook delivery; anything else is counted as ``error``.
WEBHOOK_RESULTS = frozenset({
    "accepted", "duplicate", "ignored", "unauthorized", "bad_request", "too_large",
    "unavailable", "error",
})  # fmt: skip

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")

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


def _name(value: object) -> str:
    """An application or cluster label: the name when it is a DNS-1123 label, else _other."""
    return value if isinstance(value, str) and _DNS1123_LABEL.fullmatch(value) else OTHER


def cluster_reachable(outcome: Mapping[str, Any]) -> bool | None:
    """Whether a run reached its cluster's API server: True, False, or None (no evidence).

    False when the run stopped on ``ClusterUnavailable`` (refused, timed out, 5xx, 429),
    whose message the cluster client writes as ``cluster NAME: ...`` and marks
    retryable, or when no client could be made for the cluster from its kubeconfig
    (``cluster NAME: kubeconfig ...``): either way the platform cannot reach it.  None
    when the run never got as far as the cluster (skipped, fleet or source failures, a
    failure of the worker around the engine): the gauge keeps what it said before.
    """
    if outcome.get("skipped"):
        return None
    prefix = f"cluster {outcome.get('cluster')}: "
    for problem in outcome.get("errors") or ():
        if not isinstance(problem, Mapping):
            continue
        message = str(problem.get("message") or "")
        if message.startswith(prefix) and (
            problem.get("retryable") or message.startswith(prefix + "kubeconfig ")
        ):
            return False
    reason = str(outcome.get("reason") or "")
    if reason in _BEFORE_THE_CLUSTER:
        return None
    if not reason and outcome.get("sync") == SyncStatus.FAILED.value:
        return None
    return True


#: Stages that stop a run before it asks the cluster anything.
_BEFORE_THE_CLUSTER = frozenset({"ConfigInvalid", "SourceFailed"})

# KEYS[1] metrics_series (set), KEYS[2] metrics_series_counts (hash),
# KEYS[3] metrics_reconciles, KEYS[4] metrics_duration, KEYS[5] metrics_cluster_reachable.
# ARGV: application, cluster (checked names or _other), result, bucket field ('' when the
# run has no duration), seconds, reachable ('1', '0' or ''), max applications, max
# clusters per application, max reachable clusters, the total's field (TOTAL_FIELD).
# Returns {application, cluster}: the labels the run was counted under.
_OBSERVE = """
local function admit(member, counter, cap)
    if redis.call('SISMEMBER', KEYS[1], member) == 1 then return true end
    if tonumber(redis.call('HGET', KEYS[2], counter) or '0') >= cap then return false end
    redis.call('SADD', KEYS[1], member)
    redis.call('HINCRBY', KEYS[2], counter, 1)
    return true
end
local app, cluster = ARGV[1], ARGV[2]
if app == '_other' or not admit(app, '', tonumber(ARGV[7])) then
    app, cluster = '_other', '_other'
elseif cluster == '_other' or not admit(app .. '/' .. cluster, app, tonumber(ARGV[8])) then
    cluster = '_other'
end
local series = app .. '/' .. cluster .. '/'
redis.call('HINCRBY', KEYS[3], series .. ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], ARGV[10], 1)
if ARGV[4] ~= '' then
    redis.call('HINCRBY', KEYS[4], series .. ARGV[4], 1)
    redis.call('HINCRBYFLOAT', KEYS[4], series .. 'sum', ARGV[5])
    redis.call('HINCRBY', KEYS[4], series .. 'count', 1)
end
if ARGV[6] ~= '' and ARGV[2] ~= '_other' then
    if redis.call('HEXISTS', KEYS[5], ARGV[2]) == 1
            or redis.call('HLEN', KEYS[5]) < tonumber(ARGV[9]) then
        redis.call('HSET', KEYS[5], ARGV[2], ARGV[6])
    end
end
return {app, cluster}
"""

# KEYS[1] a counter hash. ARGV: field, cap.  Adds 1 to ``field``, or to ``_other`` when the
# hash already has ``cap`` other fields.  Returns the field counted.
_COUNT_CAPPED = """
local name = ARGV[1]
if redis.call('HEXISTS', KEYS[1], name) == 0 then
    local used = redis.call('HLEN', KEYS[1]) - redis.call('HEXISTS', KEYS[1], '_other')
    if used >= tonumber(ARGV[2]) then name = '_other' end
end
redis.call('HINCRBY', KEYS[1], name, 1)
return name
"""


@dataclass(frozen=True)
class Histogram:
    """One duration histogram: ``buckets`` cumulative, ``(upper bound, observations <=
    bound)`` in ascending order, ending with ``(inf, count)``."""

    buckets: tuple[tuple[float, int], ...]
    sum: float
    count: int


@dataclass(frozen=True)
class MetricsSnapshot:
    """The counters at one instant, in the shape Prometheus exposes them."""

    #: Reconciles by (application, cluster, result).
    reconciles: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: Reconcile durations by (application, cluster).
    durations: dict[tuple[str, str], Histogram] = field(default_factory=dict)
    git_fetches: int = 0
    #: Failed fetches by repository (redacted URL, or ``_other``).
    git_fetch_failures: dict[str, int] = field(default_factory=dict)
    #: Webhook deliveries by (provider, result).
    webhook_deliveries: dict[tuple[str, str], int] = field(default_factory=dict)
    #: 1 or 0 by cluster: whether its last reconcile reached its API server.
    cluster_reachable: dict[str, int] = field(default_factory=dict)


class ReconcileMetrics:
    """The platform's counters in Redis: reconciles, Git fetches, webhook deliveries.

    ``max_clusters`` is the number of clusters per application with series of their own
    (default: ``RECONCILER_METRICS_MAX_CLUSTERS``).
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, max_clusters: int | None = None) -> None:
        self.client = client
        self.keys = keys
        self.max_clusters = (
            load_settings().metrics_max_clusters if max_clusters is None else max_clusters
        )
        self.reconciles_key = keys.metrics_reconciles()
        self.duration_key = keys.metrics_duration()
        self._observe = Script(client, _OBSERVE.encode())
        self._count_capped = Script(client, _COUNT_CAPPED.encode())

    def observe(self, outcome: Mapping[str, Any]) -> tuple[str, str]:
        """Count one finished reconcile (an ``Outcome.to_dict()`` or a skipped result).

        The result counter always moves; the histogram only for a run that has a usable
        duration, so a skipped task does not pull the latency distribution towards zero;
        the cluster's reachability only when the run says (:func:`cluster_reachable`).
        Returns the (application, cluster) labels the run was counted under.
        """
        seconds = _duration_of(outcome)
        bucket = ""
        if seconds is not None:
            bucket = _bucket_field(next((b for b in DURATION_BUCKETS if seconds <= b), math.inf))
        reachable = cluster_reachable(outcome)
        keys = [
            self.keys.metrics_series(),
            self.keys.metrics_series_counts(),
            self.reconciles_key,
            self.duration_key,
            self.keys.metrics_cluster_reachable(),
        ]
        args: list[str | int] = [
            _name(outcome.get("application")), _name(outcome.get("cluster")), result_of(outcome),
            bucket, repr(seconds or 0.0), "" if reachable is None else str(int(reachable)),
            MAX_APPLICATIONS, self.max_clusters, MAX_REACHABLE_CLUSTERS, TOTAL_FIELD,
        ]  # fmt: skip
        app, cluster = self._observe(keys=keys, args=args)
        return _text(app), _text(cluster)

    def total(self) -> int:
        """Reconciles counted so far, under any label and result: one field, one round trip.

        Cheap enough to poll while a pass runs; the per-series counts are
        :meth:`snapshot`'s.  Runs counted before this field existed are not in it.
        """
        return int(self.client.hget(self.reconciles_key, TOTAL_FIELD) or 0)

    def git_fetched(self) -> None:
        """Count one Git fetch (its failure, if it fails, is :meth:`git_fetch_failed`)."""
        self.client.incr(self.keys.metrics_git_fetches())

    def git_fetch_failed(self, repo: str) -> str:
        """Count one failed fetch of ``repo``; returns the label it was counted under."""
        label = redact_url(repo)
        key = self.keys.metrics_git_fetch_failures()
        return _text(self._count_capped(keys=[key], args=[label, MAX_REPOSITORIES]))

    def webhook_delivery(self, provider: str, result: str) -> None:
        """Count one webhook delivery; values outside the known sets count as such."""
        provider = provider if provider in WEBHOOK_PROVIDERS else "unknown"
        result = result if result in WEBHOOK_RESULTS else "error"
        self.client.hincrby(self.keys.metrics_webhook_deliveries(), f"{provider}/{result}", 1)

    def snapshot(self) -> MetricsSnapshot:
        """Every counter now, read in one transaction, with cumulative buckets.

        Fields not in today's ``application/cluster/...`` shape (left by an older version,
        which counted by result alone) are skipped.
        """
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(self.reconciles_key)
        pipe.hgetall(self.duration_key)
        pipe.get(self.keys.metrics_git_fetches())
        pipe.hgetall(self.keys.metrics_git_fetch_failures())
        pipe.hgetall(self.keys.metrics_webhook_deliveries())
        pipe.hgetall(self.keys.metrics_cluster_reachable())
        raw_results, raw_duration, fetches, failures, deliveries, reachable = pipe.execute()
        reconciles: dict[tuple[str, str, str], int] = {}
        for name, value in raw_results.items():
            parts = _text(name).split("/")
            if len(parts) == 3:
                reconciles[(parts[0], parts[1], parts[2])] = int(value)
        fields: dict[tuple[str, str], dict[str, str]] = {}
        for name, value in raw_duration.items():
            parts = _text(name).split("/")
            if len(parts) == 3:
                fields.setdefault((parts[0], parts[1]), {})[parts[2]] = _text(value)
        durations = {series: _histogram(values) for series, values in sorted(fields.items())}
        webhook: dict[tuple[str, str], int] = {}
        for name, value in deliveries.items():
            provider, _, result = _text(name).partition("/")
            webhook[(provider, result)] = int(value)
        return MetricsSnapshot(
            reconciles=dict(sorted(reconciles.items())),
            durations=durations,
            git_fetches=int(fetches or 0),
            git_fetch_failures={_text(k): int(v) for k, v in sorted(failures.items())},
            webhook_deliveries=dict(sorted(webhook.items())),
            cluster_reachable={_text(k): int(v) for k, v in sorted(reachable.items())},
        )


def _histogram(values: Mapping[str, str]) -> Histogram:
    """The histogram of one series from its hash fields (``le=...``, ``sum``, ``count``)."""
    buckets: list[tuple[float, int]] = []
    running = 0
    for bound in (*DURATION_BUCKETS, math.inf):
        running += int(values.get(_bucket_field(bound), 0))
        buckets.append((float(bound), running))
    return Histogram(
        buckets=tuple(buckets),
        sum=float(values.get(_SUM, 0.0)),
        count=int(values.get(_COUNT, 0)),
    )
