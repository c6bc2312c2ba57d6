"""The distributed runtime's subcommands: worker, beat, flower, webhook, sync, status...

Kept apart from ``cli.py`` (the one-shot commands) because these import Celery and talk
to Redis; the parser in ``cli.py`` registers them.  Every command checks what it needs
first (a fleet file that validates, a Redis that answers) and says plainly what is
missing, with exit code 2 for bad input and 1 for an unreachable service.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.cli import (
    OUTCOME_COLUMNS,
    Column,
    boolean_cell,
    change_summary,
    duration_cell,
    error_cell,
    hook_summary,
    load,
    print_hook_lines,
    print_listing,
    revision_cell,
    summary_of,
    target_name,
    targets_of,
)
from reconciler.errors import ConfigError, ReconcilerError, TransientError
from reconciler.store.provision import redis_answers

if TYPE_CHECKING:
    import redis

    from reconciler.engine import Engine
    from reconciler.fleet import Fleet, Target
    from reconciler.kube.client import KubeClient
    from reconciler.store.records import Records
    from workers.dispatch import Queued


def _redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def installation() -> str:
    """Which installation a command reads: its Redis (without a password) and key prefix.

    One Redis can serve several installations (DESIGN.md: every key is prefixed), so an
    empty listing or a sync nobody took usually means the wrong ``REDIS_URL`` or
    ``RECONCILER_REDIS_PREFIX``; naming both is what lets the reader see that.
    """
    from reconciler.source import redact_url  # noqa: PLC0415
    from reconciler.store.keys import default_prefix  # noqa: PLC0415

    return f"Redis {redact_url(_redis_url())}, prefix {default_prefix()!r}"


def require_redis() -> str:
    """The broker URL, after checking it answers (TransientError otherwise)."""
    from reconciler.source import redact_url  # noqa: PLC0415

    url = _redis_url()
    if not redis_answers(url):
        raise TransientError(
            f"Redis at {redact_url(url)} does not answer (set REDIS_URL, or use 'reconciler up')"
        )
    return url


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``command`` with Redis that stops answering mid-command reported as an error, exit 1.

    ``require_redis`` checks before a command starts, but Redis (the broker, the result
    backend, the status index) can go away between two reads; redis-py and kombu then
    raise their own exceptions, and Celery's result backend, once its reconnects are
    spent, a ``RuntimeError`` with the connection error as its cause.  Any of them would
    reach the user as a traceback.
    """

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ReconcilerError:
            raise
        except Exception as exc:
            lost = _lost_redis(exc)
            if lost is None:
                raise
            raise TransientError(f"Redis stopped answering ({installation()}): {lost}") from exc

    return run


def _lost_redis(exc: BaseException) -> BaseException | None:
    """The connection error of Redis behind ``exc`` (itself or a cause), if there is one."""
    import redis as redis_lib  # noqa: PLC0415
    from kombu.exceptions import OperationalError  # noqa: PLC0415

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, redis_lib.ConnectionError | redis_lib.TimeoutError | OperationalError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def known_fleet(args: argparse.Namespace) -> Fleet | None:
    """The fleet file when one is named (``--config``, ``RECONCILER_CONFIG``), else None.

    Listings work from Redis alone, but when the fleet is known it is the authority on
    which applications and clusters exist, so a typo gets a "did you mean" from it.
    """
    if getattr(args, "config", None) or os.environ.get("RECONCILER_CONFIG"):
        return load(args)
    return None


def recorded_clusters(records: Records, app: str) -> list[str]:
    """The clusters ``app`` has status entries for; ConfigError when others are recorded.

    Without a fleet file the status index is the only list of targets there is: when it
    holds targets but none of ``app``, the name is wrong (or the installation is), and
    an empty table would hide that.  An empty index says nothing, so it is no error.
    """
    from reconciler.fleet.messages import known, quote  # noqa: PLC0415

    entries = records.status()
    clusters = [str(e.get("cluster")) for e in entries if e.get("application") == app]
    if entries and not clusters:
        names = sorted({str(e.get("application")) for e in entries})
        raise ConfigError(
            f"unknown application {quote(app)}{known(app, names)}: the status index of "
            f"{installation()} records none of that name"
        )
    return clusters


def require_fleet(args: argparse.Namespace) -> Fleet:
    """The fleet file, validated; exported as RECONCILER_CONFIG for workers and beat."""
    fleet = load(args)
    os.environ["RECONCILER_CONFIG"] = os.path.abspath(fleet.path)
    return fleet


def redis_client() -> redis.Redis:
    """A client of the checked broker Redis."""
    import redis as redis_lib  # noqa: PLC0415

    return redis_lib.Redis.from_url(require_redis(), socket_timeout=30)


# -- components ----------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Celery worker (prefork) consuming forced work first, then scheduled work."""
    require_fleet(args)
    require_redis()
    from workers.app import app, queues_for  # noqa: PLC0415

    routes = args.route or [r for r in os.environ.get("RECONCILER_ROUTES", "").split(",") if r]
    queues = queues_for(routes)
    if args.forced_only:
        queues = [q for q in queues if "forced" in q]
    concurrency = args.concurrency or int(os.environ.get("RECONCILER_WORKER_CONCURRENCY", "0"))
    argv = ["worker", "--loglevel", args.loglevel, "-Q", ",".join(queues), "-E",
            "--without-gossip", "--without-mingle"]  # fmt: skip
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    """Run beat: RedBeat schedules kept in step with the fleet file."""
    require_fleet(args)
    require_redis()
    from workers.app import app  # noqa: PLC0415

    app.start(["beat", "--scheduler", "beat.scheduler:FleetScheduler", "--loglevel", args.loglevel])
    return 0


def cmd_flower(args: argparse.Namespace) -> int:
    """Run Flower behind basic auth (FLOWER_BASIC_AUTH), unless told --insecure."""
    auth = os.environ.get("FLOWER_BASIC_AUTH", "")
    if not auth and not args.insecure:
        raise ConfigError(
            "Flower shows every reconcile task: set FLOWER_BASIC_AUTH=user:password "
            "(or pass --insecure on a machine nobody else can reach)"
        )
    if auth and (":" not in auth or auth.endswith(":change-me")):
        raise ConfigError("FLOWER_BASIC_AUTH must be user:password, and not the example value")
    require_redis()
    from workers.app import app  # noqa: PLC0415

    # Flower reads FLOWER_BASIC_AUTH from the environment itself: the password never
    # appears on a command line (visible to every user in ps).
    app.start(["flower", f"--port={args.port}", f"--address={args.address}",
               "--persistent=False", "--purge_offline_workers=60"])  # fmt: skip
    return 0


def cmd_webhook(args: argparse.Namespace) -> int:
    """Run the Git webhook endpoint and the Prometheus metrics."""
    require_fleet(args)
    require_redis()
    from workers.webhook_server import run  # noqa: PLC0415

    run(host=args.host, port=args.port)
    return 0


# -- admin ---------------------------------------------------------------------------------

#: Healths that end a wait for health: good ones, and Degraded, which needs a person (or a
#: new commit) and will not turn Healthy by waiting.  Suspended counts as good, as it does
#: for the engine's waves: somebody paused the object on purpose.
_GOOD_HEALTH = frozenset({"Healthy", "Suspended"})
_SETTLED_HEALTH = _GOOD_HEALTH | {"Degraded"}
#: Pauses between health reads grow from the first to the last (seconds).
_HEALTH_POLL = (0.25, 2.0)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def cmd_sync(args: argparse.Namespace) -> int:
    """Queue a forced sync of an application (fresh fetch); with --wait, report outcomes.

    ``--timeout`` bounds the whole command: the fan-out, every target's run and, with
    ``--health``, the wait for health after it (``_await_health``), as ``argocd app sync
    --timeout`` does.  Exit 0 when every target is Synced (and, with ``--health``, Healthy),
    1 when one failed, is Degraded or did not get there in time, naming each on stderr.
    """
    from celery.exceptions import TimeoutError as ResultTimeout  # noqa: PLC0415
    from redis import RedisError  # noqa: PLC0415

    from reconciler.outcome import Trigger  # noqa: PLC0415
    from workers.dispatch import enqueue_app, fan_out_result, wait_for_targets  # noqa: PLC0415

    deadline = time.monotonic() + args.timeout
    fleet = require_fleet(args)
    application = fleet.application(args.app)
    clusters = [c.name for c in targets_of(fleet, application, args.cluster)]
    require_redis()
    result = enqueue_app(application.name, trigger=Trigger.MANUAL,
                         clusters=clusters if args.cluster else None, fresh=True)  # fmt: skip
    fan_out = min(_left(deadline), 60.0)
    try:
        revision, targets = fan_out_result(result, timeout=fan_out)
    except (TimeoutError, ResultTimeout):
        raise TransientError(
            f"no worker took the sync of {application.name} within {min(args.timeout, 60):g}s: "
            f"is a worker running against {installation()}? The sync stays queued and runs "
            "when one starts"
        ) from None
    finally:
        # Unsubscribe from the result now: left to the garbage collector, Celery would try
        # it while the interpreter shuts down, and print a traceback after our message.
        # Best effort: when Redis is what failed, there is nothing left to unsubscribe from.
        with contextlib.suppress(RedisError, OSError):
            result.backend.remove_pending_result(result)
    if not (args.wait or args.health):
        rows = [{"application": application.name, "cluster": t.cluster, "task_id": t.task_id,
                 "queued": t.queued} for t in targets]  # fmt: skip
        data = {"application": application.name, "revision": revision,
                "targets": [t.__dict__ for t in targets]}  # fmt: skip
        print_listing(args.output, rows, _QUEUED_COLUMNS, name=target_name, data=data)
        return 0
    asked = datetime.now(UTC)
    waited = wait_for_targets(targets, timeout=_left(deadline))
    _last_attempts(application.name, targets, waited, since=asked)
    outcomes = {cluster: outcome if outcome is not None
                else _timed_out(application.name, cluster, args.timeout)
                for cluster, outcome in waited.items()}  # fmt: skip
    if args.health:
        found = _await_health(fleet, application.name, outcomes, deadline=deadline)
        for cluster, outcome in outcomes.items():
            seen = found.get(cluster)
            outcome["live_health"] = seen.to_dict() if seen is not None else None
    rows = list(outcomes.values())
    _print_outcomes(args.output, rows)
    problems = _sync_problems(rows, health=args.health, timeout=args.timeout)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _timed_out(app: str, cluster: str, timeout: float) -> dict[str, Any]:
    """The row of a target with no outcome by the deadline (its run never finished)."""
    return {"application": app, "cluster": cluster, "sync": "Unknown", "health": "Unknown",
            "reason": "", "error": "timed out",
            "errors": [{"message": f"no outcome within {timeout:g}s (is a worker running?)",
                        "retryable": True}]}  # fmt: skip


def _print_outcomes(output: str, rows: list[dict[str, Any]]) -> None:
    """Outcomes as ``reconcile`` prints them, then each run's hooks."""
    print_listing(output, [summary_of(r) for r in rows], OUTCOME_COLUMNS, name=target_name,
                  data=rows)  # fmt: skip
    if output in {"table", "wide"}:
        print_hook_lines(rows, label=lambda r: str(r.get("cluster")))


def _sync_problems(rows: list[dict[str, Any]], *, health: bool, timeout: float) -> list[str]:
    """One sentence per target that makes the sync fail, naming it: ``app on cluster: why``."""
    problems: list[str] = []
    for row in rows:
        where = f"{row.get('application')} on {row.get('cluster')}"
        sync = str(row.get("sync"))
        if sync != "Synced":
            stage = f" ({row['reason']})" if row.get("reason") else ""
            detail = error_cell(summary_of(row), 200)
            problems.append(f"{where}: {sync}{stage}" + (f": {detail}" if detail else ""))
            continue
        live = row.get("live_health") or {}
        status = str(live.get("status") or row.get("health"))
        if health and status not in _GOOD_HEALTH:
            state = status if status in _SETTLED_HEALTH else f"still {status} after {timeout:g}s"
            message = str(live.get("message") or "")
            problems.append(f"{where}: {state}" + (f": {message}" if message else ""))
    return problems


@dataclass(frozen=True)
class LiveHealth:
    """A target's health as ``sync --health`` last saw it, and where it was seen."""

    status: str
    #: Why, when not Healthy: the worst object, ``Kind/namespace/name: message``.
    message: str = ""
    #: ``run`` (the forced run's own reading), ``cluster`` (read live: the inventory's
    #: objects, judged by the engine's health rules) or ``status index`` (this host
    #: cannot read the cluster: the last run's reading).
    source: str = "run"
    #: The objects that are not Healthy: (object, health, message).
    resources: tuple[tuple[str, str, str], ...] = ()
    #: Why the cluster could not be read from here, when ``source`` is the status index.
    note: str = ""
    checked: str = field(default_factory=lambda: _now())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``-o json`` shows it under ``live_health``."""
        return {
            "status": self.status,
            "message": self.message,
            "source": self.source,
            "resources": [{"object": o, "health": h, "message": m} for o, h, m in self.resources],
            "note": self.note,
            "checked": self.checked,
        }


def _now() -> str:
    from reconciler.outcome import timestamp  # noqa: PLC0415

    return timestamp(datetime.now(UTC))


def live_health(kube: KubeClient, app: str) -> LiveHealth:
    """The health of what ``app`` owns on one cluster, read now from the cluster itself.

    The objects are the target's inventory (the ConfigMap the engine writes at every
    sync, DESIGN.md "Prune needs an inventory"): exactly what the last run applied, with
    no Git fetch and no render.  Each is judged by ``reconciler.health``, the rules the
    engine's own verdict uses, so the answer is the one the next run would record.
    """
    from reconciler import inventory as inv  # noqa: PLC0415
    from reconciler.health import HealthResult, aggregate, health_of  # noqa: PLC0415
    from reconciler.model import HEALTH_ORDER, Health  # noqa: PLC0415

    inventory = inv.from_configmap(kube.get("", "ConfigMap", inv.NAMESPACE, inv.name_for(app)))
    if not inventory.exists:
        where = f"ConfigMap/{inv.NAMESPACE}/{inv.name_for(app)}"
        return LiveHealth(Health.UNKNOWN.value, f"no inventory of {app} ({where})", "cluster")
    results: list[tuple[str, HealthResult]] = []
    for entry in inventory.entries:
        key = entry.key
        if kube.kind(key.group, key.kind) is None:
            results.append((str(key), HealthResult(Health.MISSING, "its kind is not served")))
            continue
        results.append((str(key), health_of(kube.get(key.group, key.kind, key.namespace,
                                                     key.name))))  # fmt: skip
    status = aggregate(result for _, result in results)
    unhealthy = sorted(((name, r) for name, r in results if r.status is not Health.HEALTHY),
                       key=lambda item: -HEALTH_ORDER.index(item[1].status))  # fmt: skip
    message = f"{unhealthy[0][0]}: {unhealthy[0][1].message}" if unhealthy else ""
    return LiveHealth(
        status.value, message, "cluster",
        tuple((name, r.status.value, r.message) for name, r in unhealthy),
    )  # fmt: skip


def _await_health(
    fleet: Fleet, app: str, outcomes: dict[str, dict[str, Any]], *, deadline: float
) -> dict[str, LiveHealth]:
    """Wait until every Synced target is Healthy (or Degraded), or the deadline passes.

    A run's own health is a snapshot taken the moment it finished applying: a Deployment
    that was just changed is Progressing then, and the status index only learns more at
    the application's next scheduled run, which may be an hour away.  So health is read
    live, from the clusters, through the kubeconfig contexts of the fleet file (the ones
    the workers use) with the engine's client factory and health rules: that is what
    ``argocd app wait --health`` sees through its server's live cache, it costs a few
    GETs per poll, and it writes nothing.  Queueing more forced runs instead would fetch
    Git again (and could apply a newer commit than the one being waited on), run hooks
    again on drift, take the target lock from scheduled work and fill the history with
    runs nobody asked for, all to learn a fact a read gives.

    Where this host cannot read a cluster (no kubeconfig here, no network path, no RBAC)
    health falls back to the status index, which the next scheduled run refreshes, and a
    note says so.  A cluster that only failed to answer is read again at the next poll.
    """
    from reconciler.cli import engine  # noqa: PLC0415

    found: dict[str, LiveHealth] = {}
    for cluster, outcome in outcomes.items():
        if outcome.get("sync") == "Synced":
            found[cluster] = LiveHealth(str(outcome.get("health") or "Unknown"))

    def pending() -> list[str]:
        # A run that ended anything but good is read live at least once: its Degraded
        # may describe the generation before the one it applied.
        return [c for c, seen in found.items() if seen.status not in _GOOD_HEALTH
                and (seen.source == "run" or seen.status not in _SETTLED_HEALTH)]  # fmt: skip

    if not pending():
        return found
    unreadable: dict[str, str] = {}
    noted: set[str] = set()
    eng = engine()
    pause, longest = _HEALTH_POLL
    try:
        while waiting := pending():
            with ThreadPoolExecutor(max_workers=min(8, len(waiting))) as pool:
                seen_now = list(pool.map(
                    lambda c: _observe(eng, fleet.target(app, c), unreadable), waiting
                ))  # fmt: skip
            found.update(zip(waiting, seen_now, strict=True))
            for cluster in sorted(set(unreadable) - noted):
                noted.add(cluster)
                print(f"note: {app} on {cluster}: cannot read the cluster from this host "
                      f"({unreadable[cluster]}); health comes from the status index, which "
                      "the next scheduled run refreshes", file=sys.stderr)  # fmt: skip
            if not _left(deadline):
                break
            time.sleep(min(pause, _left(deadline)))
            pause = min(pause * 1.5, longest)
    finally:
        eng.clients.close()
    return found


def _observe(eng: Engine, target: Target, unreadable: dict[str, str]) -> LiveHealth:
    """One reading of a target's health: live, else from the status index (see above)."""
    cluster = target.cluster.name
    note = unreadable.get(cluster, "")
    if not note:
        try:
            return live_health(eng.client(target), target.app.name)
        except ReconcilerError as exc:
            note = str(exc)
            if not exc.retryable:  # a kubeconfig or a permission this host lacks
                unreadable[cluster] = note
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415

    entries = Records(redis_client(), Keys()).status(target.app.name)
    entry = next((e for e in entries if e.get("cluster") == cluster), {})
    status = str(entry.get("health") or "Unknown")
    message = "" if status in _GOOD_HEALTH else "as its last run recorded it (cluster not read)"
    return LiveHealth(status, message, "status index", note=note)


#: ``sync`` without ``--wait``: the task each target's run was queued as.
_QUEUED_COLUMNS = (
    Column("CLUSTER", lambda r: r.get("cluster")),
    Column("TASK", lambda r: r.get("task_id")),
    Column("STATE", lambda r: "queued" if r.get("queued") else "already waiting"),
    Column("APPLICATION", lambda r: r.get("application"), wide=True),
)


def _last_attempts(
    app: str,
    targets: Sequence[Queued],
    outcomes: dict[str, dict[str, Any] | None],
    *,
    since: datetime,
) -> None:
    """For targets still retrying at the deadline, the attempt their history recorded.

    An entry that carries its task's id is matched by it; an older one by its start time.
    """
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415

    missing = [cluster for cluster, outcome in outcomes.items() if outcome is None]
    if not missing:
        return
    records = Records(redis_client(), Keys())
    task_ids = {t.cluster: t.task_id for t in targets}
    for cluster in missing:
        latest = records.history(app, cluster, n=1)
        if not latest:
            continue
        if latest[0].get("task_id"):
            if latest[0]["task_id"] == task_ids.get(cluster):
                outcomes[cluster] = {**latest[0], "note": "still retrying: last attempt shown"}
            continue
        try:
            started = datetime.fromisoformat(str(latest[0].get("started")))
        except ValueError:
            continue
        if started >= since.replace(microsecond=0):
            outcomes[cluster] = {**latest[0], "note": "still retrying: last attempt shown"}


def _age(finished: str) -> str:
    try:
        then = datetime.fromisoformat(finished)
    except (TypeError, ValueError):
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * 2:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


#: ``status``: one row per target, from its status-index entry (the last run's summary).
_STATUS_COLUMNS = (
    Column("APPLICATION", lambda r: r.get("application")),
    Column("CLUSTER", lambda r: r.get("cluster")),
    Column("REVISION", revision_cell),
    Column("SYNC", lambda r: f"{r.get('sync')}{' (suspended)' if r.get('suspended') else ''}"),
    Column("HEALTH", lambda r: r.get("health") or "-"),
    Column("REASON", lambda r: r.get("reason") or ""),
    Column("DRIFT", lambda r: r.get("drift_count", 0)),
    Column("HOOKS", lambda r: hook_summary(r.get("hooks") or {})),
    Column("AGE", lambda r: _age(str(r.get("finished", "")))),
    Column("CHANGES", lambda r: change_summary(r.get("actions") or {}), wide=True),
    Column("TRIGGER", lambda r: r.get("trigger"), wide=True),
    Column("STARTED", lambda r: r.get("started"), wide=True),
    Column("DURATION", duration_cell, wide=True),
    Column("RETRYABLE", lambda r: boolean_cell(r.get("retryable")), wide=True),
    Column("ERROR", error_cell),
)


def cmd_status(args: argparse.Namespace) -> int:
    """The fleet at a glance: one row per target, from the status index.

    An application the fleet file (or, without one, the status index) does not know is
    bad input, exit 2, with the closest names; an empty listing names the installation
    it read, since the usual cause is another ``REDIS_URL`` or prefix than the workers'.
    """
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415

    fleet = known_fleet(args)
    client = redis_client()
    keys = Keys()
    records = Records(client, keys)
    if args.app and fleet is not None:
        fleet.application(args.app)
    elif args.app:
        recorded_clusters(records, args.app)
    rows = records.status(args.app)
    suspended = {m.decode() if isinstance(m, bytes) else str(m)
                 for m in client.smembers(keys.suspended())}  # fmt: skip
    for row in rows:
        row["suspended"] = row.get("application") in suspended
    what = f"No targets of {args.app} recorded" if args.app else "No targets recorded"
    print_listing(args.output, rows, _STATUS_COLUMNS, name=target_name,
                  empty=f"{what} in {installation()}.")  # fmt: skip
    return 0


#: ``history``: one row per recorded outcome of a target (its summary), newest first.
_HISTORY_COLUMNS = (
    Column("STARTED", lambda r: r.get("started")),
    Column("TRIGGER", lambda r: r.get("trigger")),
    Column("REVISION", revision_cell),
    Column("SYNC", lambda r: r.get("sync")),
    Column("HEALTH", lambda r: r.get("health") or "-"),
    Column("REASON", lambda r: r.get("reason") or ""),
    Column("CHANGES", lambda r: change_summary(r.get("actions") or {})),
    Column("DRIFT", lambda r: r.get("drift_count", 0)),
    Column("HOOKS", lambda r: hook_summary(r.get("hooks") or {})),
    Column("DURATION", duration_cell),
    Column("ATTEMPT", lambda r: r.get("attempt") or 1, wide=True),
    Column("RETRYABLE", lambda r: boolean_cell(r.get("retryable")), wide=True),
    Column("ERROR", lambda r: error_cell(r, 50)),
)


#: ``history`` of every target of an application: the same, each row naming its cluster.
_APP_HISTORY_COLUMNS = (_HISTORY_COLUMNS[0], Column("CLUSTER", lambda r: r.get("cluster")),
                        *_HISTORY_COLUMNS[1:])  # fmt: skip


def history_clusters(args: argparse.Namespace, records: Records) -> tuple[list[str], str]:
    """The clusters whose histories ``history`` reads (``--cluster``, else every target),
    and a note for an empty answer.

    History is about the past, and the past includes applications that have since left
    the fleet (their records outlive them until beat forgets them).  So a name the fleet
    file (or, without one, the status index) does not know is bad input only when it is
    a near miss of one it does, a typo, which gets the suggestion; any other is read as
    given, and an empty answer says that the name is not in the fleet.
    """
    from reconciler.fleet.messages import known, quote  # noqa: PLC0415

    fleet = known_fleet(args)
    entries = records.status()
    recorded = [str(e.get("cluster")) for e in entries if e.get("application") == args.app]
    if fleet is not None:
        names = [a.name for a in fleet.applications]
        if args.app in names or _near_miss(args.app, names):
            application = fleet.application(args.app)  # ConfigError naming the near miss
            chosen = [args.cluster] if args.cluster else None
            return [c.name for c in targets_of(fleet, application, chosen)], ""
        note = f"; {args.app} is not an application of {fleet.path}"
    else:
        names = sorted({str(e.get("application")) for e in entries})
        if not recorded and _near_miss(args.app, names):
            recorded_clusters(records, args.app)  # ConfigError naming the near miss
        if args.cluster and recorded and args.cluster not in recorded:
            raise ConfigError(
                f"unknown cluster {quote(args.cluster)} for {args.app}"
                f"{known(args.cluster, recorded)}: the status index of {installation()} "
                "records no such target"
            )
        note = ""
    return ([args.cluster] if args.cluster else recorded), note


def _near_miss(name: str, names: Sequence[str]) -> bool:
    """Whether ``name`` is close to one of ``names``, as "did you mean" judges closeness."""
    import difflib  # noqa: PLC0415

    return bool(difflib.get_close_matches(name[:100], list(names), n=1, cutoff=0.6))


def cmd_history(args: argparse.Namespace) -> int:
    """The last outcomes of a target, or of every target of an application, newest first.

    Across targets the ``-n`` newest runs are shown whichever cluster they ran on, so a
    fleet-wide incident reads in the order it happened.  ``-o wide`` lists each run's hooks.
    """
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415

    records = Records(redis_client(), Keys())
    clusters, note = history_clusters(args, records)
    items = [item for cluster in clusters for item in records.history(args.app, cluster, n=args.n)]
    items.sort(key=lambda item: str(item.get("started") or ""), reverse=True)
    items = items[: args.n]
    where = f"on {args.cluster}" if args.cluster else "on any cluster"
    empty = f"No outcomes recorded for {args.app} {where} in {installation()}{note}."
    columns = _HISTORY_COLUMNS if args.cluster else _APP_HISTORY_COLUMNS
    print_listing(args.output, [summary_of(i) for i in items], columns,
                  name=target_name, data=items, empty=empty)  # fmt: skip
    if args.output == "wide":
        label: Callable[[Mapping[str, Any]], str] = (
            (lambda r: str(r.get("started"))) if args.cluster
            else (lambda r: f"{r.get('started')} {r.get('cluster')}")
        )  # fmt: skip
        print_hook_lines(items, label=label)
    return 0


def cmd_suspend(args: argparse.Namespace, *, suspend: bool) -> int:
    """Stop (or restart) an application's scheduled runs; forced syncs still run."""
    from reconciler.store.keys import Keys  # noqa: PLC0415

    fleet = require_fleet(args)
    application = fleet.application(args.app)
    client = redis_client()
    if suspend:
        client.sadd(Keys().suspended(), application.name)
        print(
            f"{application.name}: suspended (scheduled runs skipped; 'reconciler sync' still works)"
        )
    else:
        client.srem(Keys().suspended(), application.name)
        print(f"{application.name}: resumed")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """The whole stack in one command (see ``reconciler.supervisor``)."""
    from pathlib import Path  # noqa: PLC0415

    from reconciler.supervisor import UpOptions, up  # noqa: PLC0415

    workdir = Path(args.dir or (".demo" if args.demo else ".reconciler-up")).resolve()
    return up(UpOptions(
        config=args.config, demo=args.demo, workers=args.workers, concurrency=args.concurrency,
        flower_port=args.flower_port, webhook_port=args.webhook_port, workdir=workdir,
        until_synced=args.until_synced, no_flower=args.no_flower,
    ))  # fmt: skip


def _seconds(text: str) -> float:
    """A positive number of seconds (argparse: a usage error, exit 2, otherwise)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _count(text: str) -> int:
    """A positive whole number (argparse: a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def add_parsers(sub: Any) -> None:
    """Register the runtime subcommands on the main parser's subparsers."""
    from reconciler.cli import add_config_argument as config  # noqa: PLC0415
    from reconciler.cli import add_listing_output as listing  # noqa: PLC0415

    worker = sub.add_parser("worker", help="run a Celery worker that reconciles targets")
    config(worker)
    worker.add_argument(
        "--concurrency",
        type=int,
        default=0,
        help="processes (default: $RECONCILER_WORKER_CONCURRENCY or CPUs)",
    )
    worker.add_argument(
        "--route",
        action="append",
        metavar="VALUE",
        help="also serve targets whose routing label has this value "
        "(repeatable; default $RECONCILER_ROUTES)",
    )
    worker.add_argument(
        "--forced-only",
        action="store_true",
        help="serve only forced work (admin syncs and webhooks)",
    )
    worker.add_argument("--hostname", help="Celery node name (default: celery@HOST)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=cmd_worker)  # fmt: skip

    beat = sub.add_parser("beat", help="run the scheduler (one entry per application)")
    config(beat)
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(handler=cmd_beat)

    flower = sub.add_parser("flower", help="run Flower to inspect reconcile tasks")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--address", default="127.0.0.1")
    flower.add_argument(
        "--insecure",
        action="store_true",
        help="run without FLOWER_BASIC_AUTH (only where nobody else can reach)",
    )
    flower.set_defaults(handler=cmd_flower)  # fmt: skip

    webhook = sub.add_parser("webhook", help="serve POST /hooks/git and /metrics")
    config(webhook)
    webhook.add_argument("--port", type=int, default=8088)
    webhook.add_argument("--host", default=os.environ.get("RECONCILER_WEBHOOK_HOST", "127.0.0.1"))
    webhook.set_defaults(handler=cmd_webhook)

    sync = sub.add_parser(
        "sync",
        help="force a sync of an application now (admin)",
        description="Queue a forced sync of APP (a fresh Git fetch) on the forced queue. "
        "--wait prints each target's outcome; --health also waits until every target is "
        "Healthy, reading health live from the clusters through the fleet's kubeconfig "
        "contexts. Exit 0 when all are Synced (and Healthy), 1 when any failed, is "
        "Degraded or did not get there within --timeout, 2 for bad input.",
    )
    config(sync)
    sync.add_argument("app", metavar="APP")
    sync.add_argument("--cluster", action="append", metavar="NAME",
                      help="only this cluster (repeatable)")  # fmt: skip
    sync.add_argument("--wait", action="store_true", help="wait and print each target's outcome")
    sync.add_argument("--health", action="store_true",
                      help="wait until every target is Healthy too (implies --wait)")  # fmt: skip
    sync.add_argument("--timeout", type=_seconds, default=300.0, metavar="SECONDS",
                      help="bound on the whole command, runs and health (default 300)")  # fmt: skip
    listing(sync)
    sync.set_defaults(handler=guarded(cmd_sync))

    status = sub.add_parser(
        "status",
        help="the fleet at a glance, one row per target",
        description="One row per target, from the status index. With a fleet file "
        "(--config or $RECONCILER_CONFIG) an unknown APP is an error that names the "
        "closest one (exit 2).",
    )
    config(status)
    status.add_argument("app", metavar="APP", nargs="?")
    listing(status)
    status.set_defaults(handler=guarded(cmd_status))

    history = sub.add_parser(
        "history",
        help="the last outcomes of an application's targets",
        description="The last outcomes of APP, newest first: on one cluster with --cluster, "
        "else on every cluster it targets (with a CLUSTER column). Why each run stopped "
        "(REASON) and its hooks; -o wide lists every hook of every run.",
    )
    config(history)
    history.add_argument("app", metavar="APP")
    history.add_argument("--cluster", metavar="NAME", help="only this cluster")
    history.add_argument("-n", type=_count, default=20, help="how many (default 20)")
    listing(history)
    history.set_defaults(handler=guarded(cmd_history))

    up = sub.add_parser(
        "up",
        help="run Redis, workers, beat, the webhook server and Flower in one command",
        description="Run the whole platform as child processes: Redis (REDIS_URL if it "
        "answers, else an embedded one), workers, beat, the webhook server and Flower, "
        "with a live status table. --demo also starts simulated clusters and a local Git "
        "repository of sample applications. Ctrl-C stops everything.",
    )
    config(up)
    up.add_argument(
        "--demo",
        action="store_true",
        help="simulated clusters and sample applications from a local repository",
    )
    up.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    up.add_argument(
        "--concurrency", type=int, default=4, help="reconciles in parallel per worker (default 4)"
    )
    up.add_argument("--flower-port", type=int, default=5555)
    up.add_argument("--webhook-port", type=int, default=8088)
    up.add_argument("--no-flower", action="store_true", help="do not start Flower")
    up.add_argument("--dir", help="working directory (default ./.demo with --demo)")
    up.add_argument(
        "--until-synced",
        type=float,
        metavar="SECONDS",
        help="exit 0 once every target is Synced (1 if not within SECONDS)",
    )
    up.set_defaults(handler=cmd_up)  # fmt: skip

    for name, flag in (("suspend", True), ("resume", False)):
        parser = sub.add_parser(name, help=f"{name} an application's scheduled runs")
        config(parser)
        parser.add_argument("app", metavar="APP")
        parser.set_defaults(handler=guarded(functools.partial(cmd_suspend, suspend=flag)))
