"""The HTTP face of the platform: Git push webhooks, Prometheus metrics and a health check.

``reconciler webhook`` serves three routes:

* ``POST /hooks/git`` turns an authenticated push into forced ``reconcile_app`` tasks for
  the applications that follow the pushed branch or tag, so a merge deploys in seconds
  instead of waiting for the next scheduled interval.  The route faces the internet: the
  body is size-limited before it is read whole, authenticated before it is parsed
  (:mod:`reconciler.webhook`), and a push is queued once per (repository, ref, commit)
  within ``RECONCILER_WEBHOOK_REPLAY_WINDOW``, whatever its delivery id: a signature
  covers the body, not the headers, so a replayed push under a fresh delivery id is
  answered ``200 {"duplicate": true}`` and queues nothing.  Each source address may send
  ``RECONCILER_WEBHOOK_RATE_LIMIT`` requests a minute (then 429 with ``Retry-After``),
  decided in the process before any other work; a body that is neither JSON nor
  GitHub's form encoding is refused with 415 before it is read.  Only application names
  and the trigger reach the task (Flower shows task arguments to anyone); secrets and
  bodies are never logged.
* ``GET /metrics`` is computed from Redis at scrape time (targets from the status index,
  reconcile counters from :class:`ReconcileMetrics`, queue depths from the broker's
  lists), so one scrape target sees the work of every worker process on every host.
* ``GET /metrics`` also says whether the fleet file is valid (``reconciler_fleet_valid``),
  as this server reads it: while it is invalid, pushes are routed by the last valid fleet.
* ``GET /healthz`` answers 200 while Redis answers PING: without Redis nothing can be
  queued, and a load balancer should send webhooks elsewhere.  Its PING runs on threads
  of its own, so a burst of deliveries waiting for Redis never delays the answer.

``/metrics`` can be served on a listener of its own (``RECONCILER_METRICS_PORT`` and
``RECONCILER_METRICS_HOST``), so the scrape endpoint, which names every application and
cluster, need not face the internet with the webhook: the webhook's port then answers 404
for it.  Every delivery is counted (``reconciler_webhook_deliveries_total``) and logged:
an accepted one at INFO with its provider, repository, ref, commit, delivery id and the
applications queued; a refused one at WARNING with the reason, never a secret.

Redis, the fleet file and the broker are blocking clients; every call to them runs in a
thread so one slow request never stalls the event loop for the others.
"""

from __future__ import annotations

import asyncio
import logging
import math
import platform
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any

import celery
import redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import SecretStr

from reconciler.errors import ConfigError
from reconciler.fleet import Fleet, redact_url
from reconciler.model import Health, SyncStatus
from reconciler.outcome import Trigger
from reconciler.settings import load as load_settings
from reconciler.store import connect
from reconciler.store.deliveries import Seen, WebhookDeliveries
from reconciler.store.fleet_state import FleetState
from reconciler.store.keys import Keys
from reconciler.store.metrics import ReconcileMetrics
from reconciler.store.records import Records
from reconciler.store.suspension import Suspensions
from reconciler.webhook import (
    MAX_BODY_BYTES,
    MAX_TRACKED_SOURCES,
    Provider,
    PushEvent,
    RateLimiter,
    WebhookError,
    WebhookTooLarge,
    WebhookUnsupportedType,
    check_content_type,
    claimed_provider,
    matching_applications,
    parse,
    push_identity,
    source_of,
    verify,
)
from workers.app import FORCED_QUEUE, SCHEDULED_QUEUE, redis_url
from workers.fleet_file import FleetFile, FleetSource, FleetWatch, fleet_path
from workers.logs import configure_logging
from workers.readers import ReadAccess
from workers.ui import FleetPage

__all__ = ["WebhookSecrets", "make_app", "run"]

#: Anyone may read: for applications built in tests and loopback listeners.
OPEN = ReadAccess(anonymous=True)
log = logging.getLogger("reconciler.webhook")

#: Seconds a delivery id is remembered: providers redeliver within hours, not days.
SEEN_TTL = 24 * 3600
#: Seconds a push that names no commit (a deleted ref, a plain push without ``commit``)
#: counts as queued: it means "the ref moved", and a later one may mean another move.
COMMITLESS_WINDOW = 10.0
#: Seconds between two log lines about one rate-limited source.
RATE_LIMIT_LOG_EVERY = 60.0
#: Environment variables holding each provider's secret.
GITHUB_SECRET_ENV = "RECONCILER_WEBHOOK_GITHUB_SECRET"
GITLAB_TOKEN_ENV = "RECONCILER_WEBHOOK_GITLAB_TOKEN"
PLAIN_TOKEN_ENV = "RECONCILER_WEBHOOK_TOKEN"
#: kombu's Redis transport keeps a message with a priority other than 0 in a list named
#: ``<queue><separator><priority>``; its depth belongs to ``<queue>``.
_PRIORITY_SEPARATOR = "\x06\x16"
#: Longest event name echoed back in an ``ignored`` answer.
_EVENT_CHARS = 64


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookSecrets:
    """Each provider's secret; None when that provider is not accepted.

    Fields are left out of ``repr`` so that logging or printing the object, or a
    traceback showing it, never reveals a secret.
    """

    github_secret: str | None = field(default=None, repr=False)
    gitlab_token: str | None = field(default=None, repr=False)
    plain_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WebhookSecrets:
        """Secrets from ``RECONCILER_WEBHOOK_{GITHUB_SECRET,GITLAB_TOKEN,TOKEN}``.

        An empty variable counts as unset, so ``FOO=`` in a compose file disables a
        provider instead of configuring an empty key.
        """
        env = load_settings(environ)

        def reveal(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return cls(
            github_secret=reveal(env.webhook_github_secret),
            gitlab_token=reveal(env.webhook_gitlab_token),
            plain_token=reveal(env.webhook_token),
        )

    def providers(self) -> list[str]:
        """Names of the providers with a secret (for a startup log line, never values)."""
        named = {
            Provider.GITHUB.value: self.github_secret,
            Provider.GITLAB.value: self.gitlab_token,
            Provider.PLAIN.value: self.plain_token,
        }
        return [name for name, secret in named.items() if secret]


def _default_enqueue(
    app_name: str, settle: str | None = None, cause: dict[str, Any] | None = None
) -> str:
    """Queue a forced, fresh ``reconcile_app``: a push means the cached revision is stale.

    ``settle``: the claim of a push without a commit, released when the fan-out starts.
    ``cause``: the push (delivery, commit, author, message) the outcomes record.
    """
    from workers.dispatch import enqueue_app  # noqa: PLC0415 - Celery only when used

    return str(enqueue_app(app_name, trigger=Trigger.WEBHOOK, fresh=True, settle=settle,
                           cause=cause).id)  # fmt: skip


# --------------------------------------------------------------------------------------
# Deliveries
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Answer:
    status: int
    body: dict[str, Any]
    #: What became of the delivery, as ``reconciler_webhook_deliveries_total`` counts it.
    result: str


def _refusal(status: int) -> str:
    """The delivery result of a refusal with HTTP ``status`` (415 counts as a bad request)."""
    return {401: "unauthorized", 413: "too_large"}.get(status, "bad_request")


class _Deliveries:
    """Everything after the body is read: the blocking part of ``POST /hooks/git``."""

    def __init__(
        self,
        *,
        fleet: FleetSource,
        client: redis.Redis,
        keys: Keys,
        secrets: WebhookSecrets,
        enqueue: Callable[[str, str | None, dict[str, Any] | None], str],
        replay_window: float,
    ) -> None:
        self.fleet = fleet
        self.client = client
        self.keys = keys
        self.secrets = secrets
        self.enqueue = enqueue
        self.replay_window = replay_window
        self.metrics = ReconcileMetrics(client, keys)
        self.claims = WebhookDeliveries(client, keys)

    def handle(self, headers: Mapping[str, str], body: bytes) -> _Answer:
        """Authenticate, parse, dedupe and queue; every refusal is an answer, not a raise.

        Every delivery is counted by provider (the one its headers claim, for a refusal)
        and result, whatever became of it.
        """
        claimed = claimed_provider(headers)
        provider = claimed.value if claimed is not None else "unknown"
        try:
            answer = self._answer(headers, body)
        except Exception:
            self.count(provider, "error")
            raise
        self.count(provider, answer.result)
        return answer

    def count(self, provider: str, result: str) -> None:
        """Count one delivery; a Redis that cannot count it does not change the answer."""
        try:
            self.metrics.webhook_delivery(provider, result)
        except (redis.RedisError, OSError) as exc:
            log.warning("webhook: cannot count a delivery: %s", type(exc).__name__)

    def _answer(self, headers: Mapping[str, str], body: bytes) -> _Answer:
        try:
            provider = verify(
                headers,
                body,
                github_secret=self.secrets.github_secret,
                gitlab_token=self.secrets.gitlab_token,
                plain_token=self.secrets.plain_token,
            )
            event = parse(provider, headers, body)
        except WebhookError as exc:
            # The messages of reconciler.webhook never hold a secret or the body.
            claimed = claimed_provider(headers)
            log.warning("webhook %s refused (%d): %s", claimed or "unknown", exc.status, exc)
            return _Answer(exc.status, {"error": str(exc)}, _refusal(exc.status))
        if event is None:
            ignored = _event_name(headers)
            log.info("webhook %s: %s event ignored", provider.value, ignored)
            return _Answer(200, {"ignored": ignored}, "ignored")
        return self._push(provider, event)

    def _push(self, provider: Provider, event: PushEvent) -> _Answer:
        repository = redact_url(event.repo_urls[0])
        where = (
            f"webhook {provider.value} delivery={event.delivery or '-'} "
            f"repo={repository} ref={event.ref} commit={event.commit or '-'}"
        )
        fields = {"provider": provider.value, "repository": repository, "ref": event.ref,
                  "commit": event.commit, "delivery": event.delivery}  # fmt: skip
        try:
            fleet = self.fleet.get()
        except ConfigError as exc:
            # No valid fleet was ever read (an invalid file is otherwise replaced by the
            # last valid fleet): nothing is queued, and the provider may redeliver once
            # it is fixed, so the delivery is not marked as seen.
            log.error("%s: fleet file invalid: %s", where, exc)
            return _Answer(503, {"error": str(exc)}, "unavailable")
        identity = push_identity(event)
        window = self.replay_window if event.commit else min(self.replay_window, COMMITLESS_WINDOW)
        claimed = False
        try:
            seen = self.claims.claim(identity, event.delivery, window=window, seen_ttl=SEEN_TTL)
            if seen is not Seen.NEW:
                what = (
                    "delivery" if seen is Seen.DELIVERY else "push (queued under another delivery)"
                )
                log.info("%s: duplicate %s, nothing queued", where, what, extra=fields)
                return _Answer(200, {"duplicate": True}, "duplicate")
            claimed = True
            matched = matching_applications(fleet, event)
            suspended = self._suspended(fleet, matched)
            wanted = [name for name in matched if name not in suspended]
            # A push without a commit is claimed only until its fan-out starts.
            settle = None if event.commit else WebhookDeliveries.token(identity)
            cause = {key: value for key, value in (
                ("delivery", event.delivery), ("commit", event.commit), ("ref", event.ref),
                ("author", event.author), ("message", event.message)) if value}  # fmt: skip
            tasks = {name: self.enqueue(name, settle, cause) for name in wanted}
        except (redis.RedisError, OSError) as exc:
            # Forget the claim so the provider's redelivery queues it again: a task
            # queued twice is harmless (forced syncs of a target are joined), a lost
            # push is not.
            if claimed:
                self._forget(identity, event.delivery)
            log.error("%s: cannot queue: %s", where, type(exc).__name__)
            return _Answer(
                503, {"error": f"cannot reach Redis: {type(exc).__name__}"}, "unavailable"
            )
        except Exception:
            if claimed:
                self._forget(identity, event.delivery)
            raise
        if wanted:
            queued = f"queued {', '.join(wanted)}"
        else:
            queued = "nothing queued" if suspended else "none matched"
        log.info(
            "%s%s: %s%s",
            where,
            " (deleted)" if event.deleted else "",
            queued,
            f", suspended {', '.join(sorted(suspended))}" if suspended else "",
            extra={**fields, "queued": wanted, "suspended": sorted(suspended)},
        )
        answer: dict[str, Any] = {"applications": wanted}
        if suspended:
            answer["suspended"] = [name for name in matched if name in suspended]
        if not wanted:
            return _Answer(200, answer, "accepted")
        answer["tasks"] = tasks
        return _Answer(202, answer, "accepted")

    def _suspended(self, fleet: Fleet, names: list[str]) -> set[str]:
        """Applications among ``names`` suspended in the fleet file or by ``suspend``.

        A push must not deploy what an operator suspended; ``reconcile_app`` only checks
        suspension for scheduled runs, so the webhook checks it before queueing.
        """
        by_operator = Suspensions(self.client, self.keys).which(names)
        return {
            name for name in names if name in by_operator or fleet.application(name).sync.suspended
        }

    def _forget(self, identity: str, delivery: str | None) -> None:
        try:
            self.claims.release(identity, delivery)
        except (redis.RedisError, OSError):
            log.warning(
                "cannot forget webhook delivery %s; a redelivery will be ignored", delivery or "-"
            )


def _event_name(headers: Mapping[str, str]) -> str:
    """The provider's event name (``ping``, ``issues``...), trimmed for echoing back."""
    lowered = {name.lower(): value for name, value in headers.items()}
    name = lowered.get("x-github-event") or lowered.get("x-gitlab-event") or "event"
    printable = "".join(ch for ch in name.strip() if ch.isprintable())
    return printable[:_EVENT_CHARS] or "event"


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The request body, refused with WebhookTooLarge as soon as it passes ``limit``.

    A declared Content-Length over the limit is refused before reading anything; a
    chunked body is read only up to one byte past the limit.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise WebhookTooLarge(f"webhook body is {declared} bytes, over the {limit} byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(min(64 * 1024, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise WebhookTooLarge(f"webhook body is over the {limit} byte limit")


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------


class RedisCollector(Collector):
    """Prometheus metrics read from Redis at each scrape (nothing cached in the process)."""

    def __init__(self, *, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self.records = Records(client, keys)
        self.metrics = ReconcileMetrics(client, keys)

    def collect(self) -> Iterator[Metric]:
        """Targets, reconciles, Git fetches, deliveries, clusters and queues, as they are now."""
        yield from self._targets()
        yield from self._reconciles()
        yield self._queue_depths()

    def _targets(self) -> Iterable[Metric]:
        labels = ["application", "cluster"]
        status = GaugeMetricFamily(
            "reconciler_target_status",
            "1 for each target, labelled with the sync and health of its last run.",
            labels=[*labels, "sync", "health"],
        )
        drift = GaugeMetricFamily(
            "reconciler_target_drift",
            "Objects that differed from Git in the last run.",
            labels=labels,
        )
        synced = GaugeMetricFamily(
            "reconciler_target_synced",
            "1 when the last run left the target Synced.",
            labels=labels,
        )
        healthy = GaugeMetricFamily(
            "reconciler_target_healthy",
            "1 when the target was Healthy after its last run.",
            labels=labels,
        )
        last_run = GaugeMetricFamily(
            "reconciler_target_last_run_timestamp_seconds",
            "Unix time the target's last run finished.",
            labels=labels,
        )
        for entry in self.records.status():
            target = [entry.application, entry.cluster]
            sync, health = entry.sync, entry.health
            status.add_metric([*target, sync, health], 1)
            drift.add_metric(target, _number(entry.drift_count))
            synced.add_metric(target, 1 if sync == SyncStatus.SYNCED.value else 0)
            healthy.add_metric(target, 1 if health == Health.HEALTHY.value else 0)
            finished = _timestamp(entry.finished)
            if finished is not None:
                last_run.add_metric(target, finished)
        return [status, drift, synced, healthy, last_run]

    def _reconciles(self) -> Iterable[Metric]:
        snapshot = self.metrics.snapshot()
        target = ["application", "cluster"]
        total = CounterMetricFamily(
            "reconciler_reconciles",
            "Finished target reconciles, by result (sync status, or skipped); clusters past "
            "an application's cap count under cluster _other.",
            labels=[*target, "result"],
        )
        for (app, cluster, result), count in snapshot.reconciles.items():
            total.add_metric([app, cluster, result], count)
        duration = HistogramMetricFamily(
            "reconciler_reconcile_duration_seconds",
            "Seconds each target reconcile ran.",
            labels=target,
        )
        for (app, cluster), histogram in snapshot.durations.items():
            duration.add_metric(
                [app, cluster],
                buckets=[(_le(bound), count) for bound, count in histogram.buckets],
                sum_value=histogram.sum,
            )
        fetches = CounterMetricFamily(
            "reconciler_git_fetches",
            "Git fetches by every worker (one per repository per commit, however many "
            "applications use it).",
        )
        fetches.add_metric([], snapshot.git_fetches)
        failures = CounterMetricFamily(
            "reconciler_git_fetch_failures",
            "Git fetches that failed, by repository (URL without credentials).",
            labels=["repository"],
        )
        for repository, count in snapshot.git_fetch_failures.items():
            failures.add_metric([repository], count)
        deliveries = CounterMetricFamily(
            "reconciler_webhook_deliveries",
            "Webhook deliveries, by provider and what became of them.",
            labels=["provider", "result"],
        )
        for (provider, result), count in snapshot.webhook_deliveries.items():
            deliveries.add_metric([provider, result], count)
        reachable = GaugeMetricFamily(
            "reconciler_cluster_reachable",
            "1 when the cluster's last reconcile reached its API server, 0 when it could not.",
            labels=["cluster"],
        )
        for cluster, value in snapshot.cluster_reachable.items():
            reachable.add_metric([cluster], value)
        return [total, duration, fetches, failures, deliveries, reachable]

    def _queue_depths(self) -> Metric:
        depth = GaugeMetricFamily(
            "reconciler_queue_depth",
            "Messages waiting in each Celery queue (forced work is taken first).",
            labels=["queue"],
        )
        for queue, length in sorted(queue_depths(self.client, self.keys).items()):
            depth.add_metric([queue], length)
        return depth


class FleetCollector(Collector):
    """``reconciler_fleet_valid``: the fleet file as this server reads it, at each scrape.

    Read from the file, not from Redis: the gauge must drop even when no other component
    runs, and looking (one stat) is also what makes a watch report a breakage.
    """

    def __init__(self, fleet: FleetSource) -> None:
        self.fleet = fleet

    def collect(self) -> Iterator[Metric]:
        """1 while the file is valid, 0 while it is invalid (the last valid fleet runs)."""
        valid = GaugeMetricFamily(
            "reconciler_fleet_valid",
            "1 while the fleet file is valid; 0 while it is invalid and the last valid "
            "fleet keeps running.",
        )
        valid.add_metric([], 1 if self.fleet.check().valid else 0)
        yield valid


class BuildInfoCollector(Collector):
    """``reconciler_build_info``: the versions this server runs, as labels of a constant 1.

    Dashboards join it to tell which release (and which Python and Celery) served a
    scrape, the way Prometheus's own ``prometheus_build_info`` is used.
    """

    def __init__(self) -> None:
        try:
            version = metadata.version("reconciler")
        except metadata.PackageNotFoundError:
            version = "unknown"
        self.labels = [version, platform.python_version(), str(celery.__version__)]

    def collect(self) -> Iterator[Metric]:
        """A single sample, 1."""
        info = GaugeMetricFamily(
            "reconciler_build_info",
            "1, labelled with the versions of reconciler, Python and Celery serving it.",
            labels=["version", "python", "celery"],
        )
        info.add_metric(self.labels, 1)
        yield info


class _Throttle:
    """Per-source rate limiting, what it refused, and when it last said so in the log.

    Refused requests are counted here, in the process, not in Redis: a flood must not
    turn into a Redis write per request.  Each server's ``/metrics`` shows its own count.
    """

    def __init__(self, per_minute: int) -> None:
        self.limiter = RateLimiter(per_minute)
        self.refused = 0
        self._logged: OrderedDict[str, float] = OrderedDict()

    def check(self, address: str | None) -> float:
        """0 when the request may go on, else seconds the source should wait."""
        source = source_of(address)
        now = time.monotonic()
        wait = self.limiter.allow(source, now)
        if wait:
            self.refused += 1
            last = self._logged.pop(source, None)
            if last is None or now - last >= RATE_LIMIT_LOG_EVERY:
                last = now
                log.warning(
                    "webhook refused (429): source %s is over %d requests a minute",
                    source,
                    self.limiter.per_minute,
                )
            self._logged[source] = last
            while len(self._logged) > MAX_TRACKED_SOURCES:
                self._logged.popitem(last=False)
        return wait


class RateLimitCollector(Collector):
    """``reconciler_webhook_rate_limited_total``: requests this server refused with 429."""

    def __init__(self, throttle: _Throttle) -> None:
        self.throttle = throttle

    def collect(self) -> Iterator[Metric]:
        """The count of this process since it started."""
        refused = CounterMetricFamily(
            "reconciler_webhook_rate_limited",
            "Requests to /hooks/git this webhook server refused because their source "
            "address was over RECONCILER_WEBHOOK_RATE_LIMIT (counted per server process).",
        )
        refused.add_metric([], self.throttle.refused)
        yield refused


def queue_depths(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """Messages waiting per queue: LLEN of kombu's list ``<celery prefix><queue>``.

    The two shared queues are always reported (0 when empty: kombu deletes an empty
    list); routed queues (``reconciler-forced.<label>``) are found by SCAN.  Keys that are
    not lists (results, bindings) are skipped, and priority sub-lists count towards their
    queue.
    """
    prefix = keys.celery()
    names = {FORCED_QUEUE, SCHEDULED_QUEUE}
    for raw in client.scan_iter(match=f"{prefix}reconciler-*", count=1000, _type="list"):
        key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        names.add(key.removeprefix(prefix))
    depths: dict[str, int] = {}
    ordered = sorted(names)
    pipe = client.pipeline(transaction=False)
    for name in ordered:
        pipe.llen(prefix + name)
    for name, length in zip(ordered, pipe.execute(), strict=True):
        queue = name.partition(_PRIORITY_SEPARATOR)[0]
        depths[queue] = depths.get(queue, 0) + int(length)
    return depths


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def _timestamp(value: object) -> float | None:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def _le(bound: float) -> str:
    """A bucket bound as Prometheus spells it: ``+Inf``, ``0.05``, ``1.0``."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


# --------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------


def make_app(
    *,
    fleet: FleetSource,
    client: redis.Redis,
    keys: Keys,
    secrets: WebhookSecrets,
    enqueue: Callable[[str, str | None, dict[str, Any] | None], str] | None = None,
    metrics_at: tuple[str, int] | None = None,
    rate_limit: int | None = None,
    replay_window: float | None = None,
    readers: ReadAccess = OPEN,
    metrics_readers: ReadAccess = OPEN,
) -> web.Application:
    """The aiohttp application serving ``/hooks/git``, ``/metrics`` and ``/healthz``.

    ``enqueue`` queues one application's reconcile and returns its task id; the default
    sends a forced, fresh ``reconcile_app`` through Celery.  Tests inject one to count
    calls without a broker consumer.  ``client`` is not closed here: the caller owns it.

    ``metrics_at`` (host, port) moves ``/metrics`` to a listener of its own, started and
    stopped with the application (``/healthz`` is served on both); the application's own
    port then answers 404 for ``/metrics``.

    ``readers`` and ``metrics_readers``: who may read ``/metrics`` on the application's
    own listener and on the metrics one (``run`` applies ``ReadAccess.for_listener``;
    an application built here for a test is open unless told).

    ``rate_limit`` (requests a minute per source address, 0 for none) and
    ``replay_window`` (seconds a push is queued at most once) default to
    ``RECONCILER_WEBHOOK_RATE_LIMIT`` and ``RECONCILER_WEBHOOK_REPLAY_WINDOW``.
    """
    if rate_limit is None or replay_window is None:
        env = load_settings()
        rate_limit = env.webhook_rate_limit if rate_limit is None else rate_limit
        replay_window = env.webhook_replay_window if replay_window is None else replay_window
    deliveries = _Deliveries(
        fleet=fleet,
        client=client,
        keys=keys,
        secrets=secrets,
        enqueue=enqueue or _default_enqueue,
        replay_window=replay_window,
    )
    throttle = _Throttle(rate_limit)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client=client, keys=keys))
    registry.register(BuildInfoCollector())
    registry.register(FleetCollector(fleet))
    registry.register(RateLimitCollector(throttle))
    # /healthz pings on threads of its own: the default executor may be full of
    # deliveries waiting for Redis, and a load balancer must still get its answer.
    pinger = ThreadPoolExecutor(max_workers=2, thread_name_prefix="healthz")

    async def hook(request: web.Request) -> web.Response:
        # First, before any work: the source's rate, then what the headers promise.
        wait = throttle.check(request.remote)
        if wait:
            return web.json_response(
                {"error": "too many requests from this address; retry later"},
                status=429,
                headers={"Retry-After": RateLimiter.retry_after(wait)},
            )
        try:
            check_content_type(request.headers)
            body = await _read_body(request, MAX_BODY_BYTES)
        except (WebhookTooLarge, WebhookUnsupportedType) as exc:
            claimed = claimed_provider(request.headers)
            log.warning("webhook %s refused (%d): %s", claimed or "unknown", exc.status, exc)
            provider = claimed.value if claimed is not None else "unknown"
            await asyncio.to_thread(deliveries.count, provider, _refusal(exc.status))
            return web.json_response({"error": str(exc)}, status=exc.status)
        answer = await asyncio.to_thread(deliveries.handle, dict(request.headers), body)
        return web.json_response(answer.body, status=answer.status)

    async def metrics(_: web.Request) -> web.Response:
        try:
            text = await asyncio.to_thread(generate_latest, registry)
        except (redis.RedisError, OSError) as exc:
            log.error("metrics: cannot read Redis: %s", type(exc).__name__)
            return web.Response(status=503, text=f"cannot reach Redis: {type(exc).__name__}\n")
        response = web.Response(body=text)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def healthz(_: web.Request) -> web.Response:
        try:
            alive = bool(await asyncio.get_running_loop().run_in_executor(pinger, client.ping))
        except (redis.RedisError, OSError):
            alive = False
        if alive:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="redis unavailable\n")

    async def stop_pinger(_: web.Application) -> None:
        pinger.shutdown(wait=False, cancel_futures=True)

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/hooks/git", hook)
    app.router.add_get("/healthz", healthz)
    # The fleet page (/ui), behind the same rule as /metrics on this listener.
    FleetPage(fleet=fleet, client=client, keys=keys).register(app.router, readers)
    app.on_cleanup.append(stop_pinger)
    if metrics_at is None:
        app.router.add_get("/metrics", readers.guard(metrics))
        return app
    scrape = web.Application()
    scrape.router.add_get("/metrics", metrics_readers.guard(metrics))
    scrape.router.add_get("/healthz", healthz)
    _serve_beside(app, scrape, metrics_at)
    return app


def _serve_beside(app: web.Application, other: web.Application, at: tuple[str, int]) -> None:
    """Serve ``other`` on ``at`` (host, port) for as long as ``app`` runs.

    Started in ``app``'s start-up, so a port that is taken fails the start like the
    webhook's own would; stopped in its clean-up, before the Redis client it shares is
    closed (clean-up callbacks run in the order they were added).
    """
    runner = web.AppRunner(other, access_log=None, shutdown_timeout=5.0)
    host, port = at

    async def start(_: web.Application) -> None:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        log.info("metrics on http://%s:%d/metrics", host, port)

    async def stop(_: web.Application) -> None:
        await runner.cleanup()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def run(
    *,
    host: str,
    port: int,
    metrics_host: str | None = None,
    metrics_port: int | None = None,
    insecure: bool = False,
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM (configuration from the environment).

    ``REDIS_URL``, ``RECONCILER_REDIS_PREFIX``, ``RECONCILER_CONFIG`` and the webhook
    secrets are read once here; the fleet file itself is re-read whenever it changes.
    ``/metrics`` is served on ``metrics_host:metrics_port`` when the port is not 0
    (default: ``RECONCILER_METRICS_HOST`` and ``RECONCILER_METRICS_PORT``), else beside
    the webhook.  ``/metrics`` asks for ``RECONCILER_HTTP_TOKEN`` on a listener that is not
    on a loopback address unless ``insecure`` (or ``RECONCILER_HTTP_INSECURE``).  Logs in
    the platform's format (``workers.logs``) as ``webhook``.
    Raises ConfigError before listening when ``RECONCILER_CONFIG`` is not set, or when
    the metrics port is the webhook's own.
    """
    configure_logging("webhook")
    env = load_settings()
    metrics_port = env.metrics_port if metrics_port is None else metrics_port
    metrics_at = (metrics_host or env.metrics_host, metrics_port) if metrics_port else None
    if metrics_port == port:
        raise ConfigError(
            f"RECONCILER_METRICS_PORT={metrics_port} is the webhook's own port: choose "
            "another, or 0 to serve /metrics beside the webhook"
        )
    secrets = WebhookSecrets.from_env()
    path = fleet_path()
    client = connect.client(redis_url(), socket_timeout=10)
    keys = Keys()
    fleet = FleetWatch(FleetFile(path), component="webhook", state=FleetState(client, keys))
    providers = secrets.providers()
    if providers:
        log.info("webhook providers enabled: %s", ", ".join(providers))
    else:
        log.warning(
            "no webhook secret configured (%s, %s, %s): every push will be refused",
            GITHUB_SECRET_ENV,
            GITLAB_TOKEN_ENV,
            PLAIN_TOKEN_ENV,
        )
    if insecure:
        env = env.model_copy(update={"http_insecure": True})
    readers = ReadAccess.for_listener(host, env)
    metrics_readers = ReadAccess.for_listener(metrics_at[0], env) if metrics_at else readers
    for where, rule in ((host, readers), (metrics_at and metrics_at[0], metrics_readers)):
        if where and not rule.anonymous and not rule.token:
            log.warning("/metrics on %s is refused to every reader: set RECONCILER_HTTP_TOKEN "
                        "(or --insecure where nobody else can reach it)", where)  # fmt: skip
    app = make_app(fleet=fleet, client=client, keys=keys, secrets=secrets, metrics_at=metrics_at,
                   readers=readers, metrics_readers=metrics_readers)  # fmt: skip

    async def close_client(_: web.Application) -> None:
        await asyncio.to_thread(client.close)

    app.on_cleanup.append(close_client)
    # run_app turns SIGINT and SIGTERM into a graceful shutdown: it stops accepting,
    # lets in-flight requests finish (up to shutdown_timeout) and runs on_cleanup.
    web.run_app(
        app,
        host=host,
        port=port,
        handle_signals=True,
        shutdown_timeout=10.0,
        access_log=None,
        print=lambda message: log.info("%s", str(message).strip()),
    )
