"""The reconcile tasks: one per application (fan-out), one per target (the work).

``reconcile_app`` resolves the application's revision once (shared across workers),
renders each distinct path once into the shared cache, then sends one
``reconcile_target`` per matching cluster, so a hundred clusters reconcile in parallel on
every worker that is free.  ``reconcile_target`` holds the target's lock while the engine
runs and records the whole outcome in the status index and the target's capped history.

What Celery (and so Flower) sees follows the outcome: a Failed run ends FAILURE, raising
``ReconcileFailed`` once the outcome is recorded; a retryable one is RETRY until its
retries are spent; a run that did not happen (target busy, application suspended or gone
from the fleet) is SUCCESS with ``skipped`` in its result.  The task's return value is a
short summary (``workers.flower.job_summary``), not the outcome with its diffs: readers
of the outcome (``sync --wait``, ``history``) read the records, which carry the task id.

Arguments are identifiers only: application and cluster names, the trigger, a commit id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init, worker_process_init, worker_shutdown

from reconciler.engine import Options
from reconciler.errors import ConfigError, LockBusy, ReconcilerError
from reconciler.fleet import Fleet
from reconciler.model import SyncStatus
from reconciler.notify import outcome_events
from reconciler.outcome import Outcome, Problem, TargetStatus, Trigger, timestamp
from reconciler.settings import load as load_settings
from reconciler.store import connect
from reconciler.store.breaker import Breakers, Circuit
from reconciler.store.deferred import Deferrals
from reconciler.store.deliveries import WebhookDeliveries
from reconciler.store.heartbeat import (
    AppliedDeliveries,
    DeliveryOwners,
    Heartbeats,
    Holder,
    Pulse,
    new_worker_id,
    set_worker_id,
)
from reconciler.store.keys import Keys
from reconciler.store.lock import TargetLock, holder_of
from reconciler.store.metrics import cluster_reachable
from reconciler.store.pending import ScheduledRuns, WatchQueue
from reconciler.store.rollback import Rollbacks
from reconciler.store.rollout import Rollouts
from reconciler.store.semaphore import ClusterSlots
from reconciler.windows import verdict
from workers.app import (
    HARD_TIME_LIMIT,
    SOFT_TIME_LIMIT,
    app,
    queue_for,
    redis_url,
    route_label,
)
from workers.broker import restore_dead_workers
from workers.fleet_file import fleet_path, start_worker_watch, stop_worker_watch
from workers.flower import ReconcileFailed, job_summary, skipped
from workers.notifications import dispatch
from workers.rollouts import WAITING, assigned, notify_decision, progress, queue_decision
from workers.runtime import Runtime, reset_runtime, runtime

log = logging.getLogger("reconciler.workers")

#: Seconds a target lock lives between renewals (renewed every third of it while held);
#: also how long a target stays locked after its worker died.
LOCK_TTL = load_settings().lock_ttl
#: Retries of a target whose failure was transient, with exponential backoff and jitter.
MAX_RETRIES = 5
#: Seconds of a task's soft time limit kept for recording the outcome after the run.
RUN_MARGIN = 15.0
BACKOFF_BASE = 2.0
BACKOFF_CAP = 120.0
#: How long a queued forced sync stays marked as waiting (safety net if it is lost).
FORCED_MARK_TTL = 3600.0
#: Seconds a worker's heartbeat lives; a worker silent this long is taken for dead.
HEARTBEAT_TTL = load_settings().heartbeat_ttl
#: Seconds an applied attempt stays marked, so a late redelivery of it is recognised.
APPLIED_MARK_TTL = 24 * 3600.0

#: Reconciles of one cluster at once, fleet-wide (0: no limit); a target over it is
#: deferred (``slot_backoff``), leaving its worker slot to other clusters.
CLUSTER_CONCURRENCY = load_settings().cluster_concurrency
#: Seconds a target over its cluster's limit is deferred at least and at most; between
#: them, about as long as the cluster's current runs have lasted (``slot_backoff``).
SLOT_RETRY = 0.1
SLOT_RETRY_CAP = 2.0
#: Seconds a queued scheduled run keeps newer intervals from queuing another.
SCHEDULED_MARK_TTL = 600.0
#: Triggers whose run waits for a busy target instead of giving way: somebody (a push, an
#: operator, a rollout's step) wants this run, not merely the next.
_WAITING_TRIGGERS = frozenset({Trigger.MANUAL, Trigger.WEBHOOK, Trigger.ROLLOUT})

_pulse: Pulse | None = None


@worker_process_init.connect
def _fresh_process(**_: Any) -> None:
    """Each forked worker process builds its own clients and connections."""
    reset_runtime()


@worker_init.connect
def _watch_fleet(**_: Any) -> None:
    """The worker's main process watches the fleet file: one report per worker, not per task.

    Before the pool forks, so every pool process starts from the fleet read here.
    """
    start_worker_watch(fleet_path(), redis_url=redis_url(), keys=Keys())


@worker_init.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """The worker's main process says it is alive, and gives dead workers' work back.

    Its identity is set before the pool forks, so pool processes name it in the locks
    they take and the deliveries they are handed are recorded under it.
    """
    global _pulse  # noqa: PLW0603 - one heartbeat per worker main process

    worker = new_worker_id(str(getattr(sender, "hostname", "") or "worker"))
    set_worker_id(worker)
    client = connect.client(redis_url())
    keys = Keys()
    heartbeats = Heartbeats(client, keys, ttl=HEARTBEAT_TTL)
    owners = DeliveryOwners(client, keys)
    broker: list[Any] = []

    def reap() -> None:
        if not broker:
            broker.append(app.connection_for_write())
        try:
            restore_dead_workers(broker[0], owners, heartbeats)
        except Exception:
            broker.pop().release()  # a fresh connection next beat
            raise

    _pulse = Pulse(heartbeats, worker, after_beat=reap)
    _pulse.start()
    log.info("worker %s: heartbeat every %.1fs (dead after %.1fs)", worker, HEARTBEAT_TTL / 3,
             HEARTBEAT_TTL)  # fmt: skip


@worker_shutdown.connect
def _stop_watching_fleet(**_: Any) -> None:
    stop_worker_watch()
    if _pulse is not None:
        _pulse.stop()


def backoff(retries: int) -> float:
    """Seconds before retry number ``retries + 1``: exponential, capped, full jitter."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2**retries))
    return random.uniform(ceiling / 2, ceiling)  # jitter, not security


def slot_backoff(held_for: float) -> float:
    """Seconds a target waits, off any worker slot, after finding its cluster full.

    ``held_for``: how long the cluster's longest-running reconcile has held its slot.
    A healthy cluster's reconciles take milliseconds: a target deferred by a whole second
    would be its round's straggler.  A slow cluster's take seconds: its waiting targets
    asking every tenth of a second would spend the healthy clusters' worker slots on
    deferrals.  So the wait follows the cluster's own pace, within ``SLOT_RETRY`` and
    ``SLOT_RETRY_CAP``, with jitter.
    """
    ceiling = min(SLOT_RETRY_CAP, max(SLOT_RETRY, held_for))
    return random.uniform(ceiling / 2, ceiling)  # jitter, not security


@app.task(name="reconciler.reconcile_app", bind=True, ignore_result=False)
def reconcile_app(
    self: Task,
    app_name: str,
    trigger: str = Trigger.SCHEDULE.value,
    clusters: list[str] | None = None,
    fresh: bool = False,
    revision: str | None = None,
    prune: bool | None = None,
    dry_run: bool = False,
    settle: str | None = None,
    cause: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve and render once, then queue one target task per matching cluster.

    An admin sync may name a ``revision`` (a branch, tag or commit other than the one the
    fleet tracks), force ``prune`` on or off for this run, or ask for a ``dry_run``.  Such
    a run never joins another forced sync already waiting: its options are its own.
    """
    rt = runtime()
    kind = Trigger(trigger)
    if settle:
        # Queued by a push that named no commit: later pushes must queue again from now.
        WebhookDeliveries(rt.client, rt.keys).settle(settle)
    fleet = rt.fleet()
    try:
        application = fleet.application(app_name)
    except ConfigError as exc:
        # Left the fleet after this run was queued: nothing to do, and nothing to retry.
        log.info("reconcile_app %s: %s", app_name, exc)
        return {"application": app_name, "skipped": "not in the fleet", "targets": []}
    # Suspension stops automatic runs (schedule and webhook); an admin sync still runs.
    if kind.automatic and (application.sync.suspended or rt.suspended(app_name)):
        return {"application": app_name, "skipped": "suspended", "targets": []}
    targets = fleet.targets(application)
    if clusters:
        targets = [c for c in targets if c.name in set(clusters)]
    sent: list[dict[str, Any]] = []
    try:
        source = application.source
        if revision:
            source = dataclasses.replace(source, revision=revision)
        commit: str | None = rt.resolve(source, fresh=fresh)
    except ReconcilerError as exc:
        # Every target records the failure (and retries it) on its own.
        log.warning("reconcile_app %s: source: %s", app_name, exc)
        commit = None
    if kind.automatic:
        # Rolled-back targets wait for ``resume``; they learn what Git names meanwhile.
        rollbacks = Rollbacks(rt.client, rt.keys)
        held = rollbacks.of_app(app_name)
        if held and commit is not None and not revision:
            rollbacks.saw_wanted(app_name, held, commit)
        for cluster in [c for c in targets if c.name in held]:
            sent.append({"cluster": cluster.name, "task_id": None, "queued": False,
                         "skipped": rolled_back_note(held[cluster.name].revision)})  # fmt: skip
        targets = [c for c in targets if c.name not in held]
    if commit is not None:
        _prerender(rt, fleet, app_name, [c.name for c in targets], commit)
    forced = kind in {Trigger.MANUAL, Trigger.WEBHOOK}
    own_options = bool(revision) or prune is not None or dry_run
    label = route_label()
    # A rollout says which revision each cluster runs (an explicit revision overrides it).
    revisions: dict[str, str | None] = {c.name: commit for c in targets}
    if application.rollout is not None and not revision:
        decision = progress(Rollouts(rt.client, rt.keys), rt.records, fleet, application, commit)
        notify_decision(rt.client, rt.keys, fleet, app_name, decision)
        runs = decision.state.assigned if decision is not None else {}
        revisions = {c.name: runs.get(c.name) for c in targets}
        for cluster in [c for c in targets if revisions[c.name] is None]:
            sent.append({"cluster": cluster.name, "task_id": None, "queued": False,
                         "skipped": WAITING})  # fmt: skip
        targets = [c for c in targets if revisions[c.name] is not None]
    task_ids = [str(uuid.uuid4()) for _ in targets]
    # A scheduled fan-out claims every target's mark in one round trip.
    claimed = ([True] * len(targets) if forced else
               ScheduledRuns(rt.client, rt.keys).claim_many(
                   app_name, [c.name for c in targets], task_ids=task_ids,
                   ttl=SCHEDULED_MARK_TTL))  # fmt: skip
    for cluster, task_id, free in zip(targets, task_ids, claimed, strict=True):
        if forced and not own_options:
            waiting = rt.forced.claim(app_name, cluster.name, task_id=task_id, ttl=FORCED_MARK_TTL)
            if waiting is not None:
                sent.append({"cluster": cluster.name, "task_id": waiting, "queued": False})
                continue
        if not free:
            # The previous interval's run of this target still waits: one is enough.
            sent.append({"cluster": cluster.name, "task_id": None, "queued": False})
            continue
        queue = queue_for(forced=forced, route=cluster.labels.get(label, "") if label else "")
        reconcile_target.apply_async(
            args=(app_name, cluster.name, trigger),
            kwargs={"revision": revisions[cluster.name], "ref": revision, "prune": prune,
                    "dry_run": dry_run, **({"cause": cause} if cause else {})},
            queue=queue,
            task_id=task_id,
        )
        sent.append({"cluster": cluster.name, "task_id": task_id, "queued": True})
    return {"application": app_name, "revision": commit, "trigger": trigger, "targets": sent}


def _prerender(rt: Runtime, fleet: Fleet, app_name: str, clusters: list[str], commit: str) -> None:
    """Render each distinct (path, value files) once into the shared cache.

    The first cluster of each group renders for all: clusters of another version (a
    chart's ``.Capabilities``) miss the cache and render their own.
    """
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for name in clusters:
        target = fleet.target(app_name, name)
        if (target.path, target.value_files) in seen:
            continue
        seen.add((target.path, target.value_files))
        try:
            spec = rt.engine.render_input(target, rt.engine.client(target))
            if not rt.renders.has(commit, spec.key()):
                rt.render(spec, commit)
        except ReconcilerError as exc:
            log.warning("reconcile_app %s: render %s: %s", app_name, target.path or ".", exc)


@app.task(
    name="reconciler.reconcile_target",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    # An expected outcome, not a bug of the worker: logged in one line, no traceback.
    throws=(ReconcileFailed,),
)
def reconcile_target(
    self: Task,
    app_name: str,
    cluster_name: str,
    trigger: str = Trigger.SCHEDULE.value,
    revision: str | None = None,
    prune: bool | None = None,
    dry_run: bool = False,
    ref: str | None = None,
    deferred: int = 0,
    cause: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Reconcile one target under its lock, record the outcome, end as the outcome did.

    A target whose cluster's breaker is open, or whose cluster has all its reconcile
    slots taken, is deferred: retried later (``deferred`` counts how often), holding no
    worker slot meanwhile and spending none of its retries on failures.

    ``revision`` is the commit the fan-out resolved; when it could not, the target
    resolves on its own: ``ref`` (an admin sync's ``--revision``) if one was asked for,
    never silently the fleet's branch instead.
    """
    rt = runtime()
    kind = Trigger(trigger)
    forced = kind in _WAITING_TRIGGERS
    if kind in {Trigger.MANUAL, Trigger.WEBHOOK} and not self.request.retries:
        rt.forced.clear_forced_pending(app_name, cluster_name)
    if kind is Trigger.WATCH:
        WatchQueue(rt.client, rt.keys).started(app_name, cluster_name)
    why = _not_to_run(rt, app_name, cluster_name, kind)
    rolling = not why and not ref and _rolls_out(rt, app_name)
    if rolling:
        # Whatever asked for this run, the cluster runs what its rollout assigns it.
        revision = _rollout_revision(rt, app_name, cluster_name)
        why = WAITING if revision is None else ""
    if why:
        if kind is Trigger.SCHEDULE:
            ScheduledRuns(rt.client, rt.keys).started(app_name, cluster_name)
        result = skipped(app_name, cluster_name, trigger, why)
        rt.metrics.observe(result)
        return result
    scheduled = ScheduledRuns(rt.client, rt.keys)
    heartbeats = Heartbeats(rt.client, rt.keys, ttl=HEARTBEAT_TTL)
    settings = load_settings()
    breakers = Breakers(rt.client, rt.keys, failures=settings.breaker_failures,
                        cooldown=settings.breaker_cooldown, probe_ttl=HARD_TIME_LIMIT,
                        window=settings.breaker_window,
                        failure_rate=settings.breaker_failure_rate,
                        min_runs=settings.breaker_min_runs)  # fmt: skip
    token = self.request.id or str(uuid.uuid4())
    admission = breakers.admit(cluster_name, token)
    if not admission.run:
        # The cluster keeps failing: come back when its breaker lets a probe through.
        return _defer(
            self,
            deferred,
            max(0.5, admission.retry_at - time.time()) + random.uniform(0, 1),
            f"{cluster_name}: circuit open",
        )
    # A scheduled run yields to whoever holds the target; a forced one waits its turn.
    wait = SOFT_TIME_LIMIT / 2 if forced else 0.0
    lock = TargetLock.for_target(
        rt.client, rt.keys, app=app_name, cluster=cluster_name, ttl=LOCK_TTL, wait=wait,
        holder=Holder.this_process().encode(), is_dead=heartbeats.holder_dead,
    )  # fmt: skip
    slots = ClusterSlots(rt.client, rt.keys, cluster_name, limit=CLUSTER_CONCURRENCY,
                         ttl=HARD_TIME_LIMIT,
                         is_dead=lambda h: heartbeats.holder_dead(holder_of(h)))  # fmt: skip
    applied = AppliedDeliveries(rt.client, rt.keys, ttl=APPLIED_MARK_TTL)
    attempt = self.request.retries
    try:
        with lock:
            if self.request.id and applied.applied(self.request.id, attempt):
                # A second delivery of an attempt that already ran (its worker was taken
                # for dead, or the broker redelivered it): the first one's record stands.
                result = skipped(app_name, cluster_name, trigger, "already applied")
                rt.metrics.observe(result)
                return result
            plain = prune is None and not dry_run and not ref
            quiet = (_unchanged(rt, app_name, cluster_name, revision, kind)
                     if kind is Trigger.SCHEDULE and revision and plain else None)  # fmt: skip
            if quiet is not None:
                # The watcher vouches that nothing changed: recorded without a request.
                if admission.probe:
                    breakers.record(cluster_name, token, None)  # a probe that did not run
                scheduled.started(app_name, cluster_name)
                quiet.attempt, quiet.task_id = attempt + 1, self.request.id
                stored = rt.records.record(quiet)
                if self.request.id:
                    applied.mark(self.request.id, attempt)
                rt.metrics.observe(stored)
                return job_summary(stored)
            slot = str(lock.token)
            if not slots.acquire(slot):
                breakers.record(cluster_name, token, None)  # a probe that did not run
                busy = f"{cluster_name}: all {CLUSTER_CONCURRENCY} slots busy"
                raise _Deferred(slot_backoff(slots.held_for()), busy)
            try:
                if kind is Trigger.SCHEDULE:
                    scheduled.started(app_name, cluster_name)
                outcome = _run(rt, app_name, cluster_name, kind, revision,
                               Options(prune=prune, dry_run=dry_run), ref,
                               pinned=rolling)  # fmt: skip
            finally:
                slots.release(slot)
            if lock.lost:
                outcome.errors.append(Problem("the target lock was lost during the run", True))
                outcome.sync = SyncStatus.FAILED
            if outcome.observed_rv is not None:
                outcome.render_key, outcome.app_digest = _fingerprint(rt, app_name, cluster_name)
            # Links the recorded outcome to its task: ``sync --wait`` finds it by this id.
            outcome.attempt, outcome.task_id = attempt + 1, self.request.id
            outcome.cause = _cause_of(outcome, cause)
            circuit = breakers.record(cluster_name, token, cluster_reachable(outcome.to_dict()))
            outcome.circuit = _circuit_dict(circuit)
            previous = _previous_for_notifications(rt, app_name, cluster_name)
            # Recorded and marked applied under the lock, so a second delivery of this
            # attempt, waiting for the lock, finds both.
            data = rt.records.record(outcome)
            if self.request.id:
                applied.mark(self.request.id, attempt)
    except _Deferred as later:
        return _defer(self, deferred, later.countdown, later.why)
    except LockBusy:
        breakers.record(cluster_name, token, None)
        if not forced:
            scheduled.started(app_name, cluster_name)
            result = skipped(app_name, cluster_name, trigger, "busy")
            rt.metrics.observe(result)
            return result
        retry = self.retry(countdown=backoff(self.request.retries),
                           max_retries=MAX_RETRIES * 4 + deferred)  # fmt: skip
        raise retry from None
    rt.metrics.observe(data)
    if previous is not None:
        _notify_outcome(rt, outcome, previous[0])
    if rolling:
        _queue_rollout_decision(rt, app_name)
    summary = job_summary(data)
    failures = self.request.retries - deferred
    if outcome.retryable and failures < MAX_RETRIES:
        delay = backoff(failures)
        log.info("retrying %s/%s in %.1fs: %s", app_name, cluster_name, delay,
                 outcome.errors[0].message)  # fmt: skip
        # The failure rides along, so Flower's retried row says why.  Celery counts
        # deferrals as retries too: the bound is the failure budget plus the deferrals.
        raise self.retry(countdown=delay, exc=ReconcileFailed.of(summary),
                         max_retries=MAX_RETRIES + deferred)  # fmt: skip
    if outcome.failed:
        raise ReconcileFailed.of(summary)
    return summary


class _Deferred(Exception):
    """The target cannot run now (its cluster is full): retry in ``countdown`` seconds."""

    def __init__(self, countdown: float, why: str) -> None:
        super().__init__(why)
        self.countdown = countdown
        self.why = why


def _defer(task: Task, deferred: int, countdown: float, why: str) -> dict[str, Any]:
    """Send the target again in ``countdown`` seconds, same task id, one more deferral.

    Raises Celery's ``Retry``: the task ends RETRY and a worker takes it up later; the
    retry is not counted against the task's failure retries (``deferred`` is).
    """
    log.info("deferring %s for %.1fs: %s", task.request.id, countdown, why)
    kwargs = {**(task.request.kwargs or {}), "deferred": deferred + 1}
    # ``max_retries=None`` would mean the task's default to Celery, not "no bound": a
    # deferral is always allowed, so its bound is the retry it is.
    raise task.retry(countdown=countdown, max_retries=task.request.retries + 1, kwargs=kwargs)


def _unchanged(
    rt: Runtime, app_name: str, cluster_name: str, revision: str, kind: Trigger
) -> Outcome | None:
    """The outcome of a scheduled run the watcher lets skip the cluster, or None."""
    try:
        return rt.unchanged(rt.fleet().target(app_name, cluster_name), revision, kind)
    except ReconcilerError:
        return None  # the full run will say what is wrong


def _fingerprint(rt: Runtime, app_name: str, cluster_name: str) -> tuple[str, str]:
    """The render key and target digest a later run compares (empty when unknown)."""
    try:
        return rt.fingerprint(rt.fleet().target(app_name, cluster_name))
    except ReconcilerError:
        return "", ""


def _circuit_dict(circuit: Circuit) -> dict[str, Any]:
    """The breaker as an outcome shows it: state, consecutive failures, next probe."""
    data = circuit.to_dict()
    retry_at = data.get("next_retry")
    if isinstance(retry_at, float):
        data["next_retry"] = timestamp(datetime.fromtimestamp(retry_at, UTC))
    return data


def _not_to_run(rt: Runtime, app_name: str, cluster_name: str, kind: Trigger) -> str:
    """Why a queued target run is skipped ("" to run it): gone from the fleet, suspended.

    Both can change between the fan-out and the moment a worker takes the task.  A fleet
    file that cannot be read is not a reason to skip: the run records that failure.
    """
    try:
        fleet = rt.fleet()
    except ReconcilerError:
        return ""
    try:
        application = fleet.application(app_name)
        member = fleet.cluster(cluster_name)
    except ConfigError:
        return "not in the fleet"
    if not application.destination.clusters.matches(member):
        return "not in the fleet"
    if kind.automatic and (application.sync.suspended or rt.suspended(app_name)):
        return "suspended"
    if kind.automatic:
        held = Rollbacks(rt.client, rt.keys).get(app_name, cluster_name)
        if held is not None:
            return rolled_back_note(held.revision)
    windows = fleet.windows_of(application, member)
    if windows and kind is not Trigger.CLI:
        now = datetime.now(UTC)
        found = verdict(windows, now, manual=not kind.automatic)
        if not found.allowed:
            if kind.automatic and found.next_allowed is not None:
                # Not lost: run when the windows let it (beat's tick sends it then).
                Deferrals(rt.client, rt.keys).defer(app_name, cluster_name,
                                                    at=found.next_allowed.timestamp(),
                                                    trigger=kind.value)  # fmt: skip
            when = (f"; deferred to {timestamp(found.next_allowed)}"
                    if kind.automatic and found.next_allowed else "")  # fmt: skip
            return f"{found.why}{when}"
    return ""


def rolled_back_note(revision: str) -> str:
    """Why an automatic run of a rolled-back target did not run."""
    return f"rolled back to {revision[:12]}: automatic sync waits for 'reconciler resume'"


def _run(
    rt: Runtime,
    app_name: str,
    cluster_name: str,
    kind: Trigger,
    revision: str | None,
    asked: Options,
    ref: str | None = None,
    *,
    pinned: bool = False,
) -> Outcome:
    """The engine's run, with the process's fleet and caches; never raises our errors.

    ``pinned``: ``revision`` is the one the target's rollout assigns, never replaced.
    """
    try:
        target = rt.fleet().target(app_name, cluster_name)
        if revision is None:
            source = target.app.source
            revision = rt.resolve(dataclasses.replace(source, revision=ref) if ref else source,
                                  fresh=False)  # fmt: skip
        elif kind is Trigger.WEBHOOK and not ref and not pinned:
            # A later push may have moved the ref since this run was queued (its fan-out
            # joined this waiting run): apply the newest commit resolved, not the queued.
            with contextlib.suppress(ReconcilerError):
                revision = rt.resolve(target.app.source, fresh=False)
        # Waves and hooks wait within the task's time limit; past it, the run stops as
        # retryable and the next one goes on from the waves already Healthy.
        deadline = time.monotonic() + SOFT_TIME_LIMIT - RUN_MARGIN
        options = dataclasses.replace(asked, revision=revision, fresh=False, deadline=deadline)
        return rt.engine.reconcile(target, trigger=kind, options=options)
    except ReconcilerError as exc:
        return _failed(app_name, cluster_name, kind, revision, Problem(str(exc), exc.retryable))
    except SoftTimeLimitExceeded:
        problem = Problem(f"reconcile exceeded {SOFT_TIME_LIMIT:.0f}s", True)
        return _failed(app_name, cluster_name, kind, revision, problem)


def _failed(app_name: str, cluster_name: str, kind: Trigger, revision: str | None,
            problem: Problem) -> Outcome:  # fmt: skip
    outcome = Outcome(application=app_name, cluster=cluster_name, trigger=kind.value,
                      started=timestamp(datetime.now(UTC)),
                      revision=revision)  # fmt: skip
    outcome.errors.append(problem)
    return outcome


def _cause_of(outcome: Outcome, asked: dict[str, Any] | None) -> dict[str, Any]:
    """Why the run happened, as its outcome records it: what the sender said (who asked,
    which push, which rollout step), and for a heal the objects that had drifted."""
    cause = dict(asked or {})
    if outcome.trigger == Trigger.WATCH.value and outcome.drift:
        cause["objects"] = [d.object for d in outcome.drift][:20]
    return cause


def _previous_for_notifications(
    rt: Runtime, app_name: str, cluster_name: str
) -> tuple[TargetStatus | None] | None:
    """The target's status entry before this outcome, when the fleet has notifications
    (None: it has none, and nothing is read)."""
    try:
        if not rt.fleet().notifications:
            return None
    except ReconcilerError:
        return None
    return (rt.records.entry(app_name, cluster_name),)


def _notify_outcome(rt: Runtime, outcome: Outcome, previous: TargetStatus | None) -> None:
    """Queue the notifications the outcome raises; never fails the reconcile."""
    try:
        raised, cleared = outcome_events(outcome, previous)
        dispatch(rt.client, rt.keys, rt.fleet(), raised, cleared,
                 app_name=outcome.application, cluster_name=outcome.cluster)  # fmt: skip
    except Exception:
        log.exception("notifications of %s/%s", outcome.application, outcome.cluster)


def _rolls_out(rt: Runtime, app_name: str) -> bool:
    """Whether the application reaches its clusters by a progressive rollout."""
    try:
        return rt.fleet().application(app_name).rollout is not None
    except ReconcilerError:
        return False


def _rollout_revision(rt: Runtime, app_name: str, cluster_name: str) -> str | None:
    """The revision the cluster's rollout assigns it; before any rollout state exists,
    the revision it runs (its status entry); None when it has neither (not reached)."""
    application = rt.fleet().application(app_name)
    found = assigned(Rollouts(rt.client, rt.keys), application, cluster_name)
    if found.state is not None:
        return found.revision
    entry = rt.records.entry(app_name, cluster_name)
    return entry.revision if entry is not None else None


def _queue_rollout_decision(rt: Runtime, app_name: str) -> None:
    """Queue a decision on the application's rollout unless one already waits."""
    queue_decision(rt.client, rt.keys, app_name)
