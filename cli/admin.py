"""The admin commands of a running installation: sync, wait, get, status, history...

They talk to the installation's Redis (found as ``cli.installation`` says) and, for
health, to the clusters themselves; none needs a worker on this host.  Every command
checks what it needs first (a fleet file that validates, a Redis that answers) and says
plainly what is missing: exit 2 for bad input, 1 for a failed or unfinished sync or an
unreachable service.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cli.installation import current, installation, redis_client, require_redis
from cli.local import Params, load, targets_of
from cli.output import (
    OUTCOME_COLUMNS,
    Column,
    age_cell,
    boolean_cell,
    change_summary,
    duration_cell,
    error_cell,
    hook_summary,
    print_hook_lines,
    print_listing,
    revision_cell,
    summary_of,
    target_name,
    why_cell,
)
from reconciler.errors import ConfigError, ReconcilerError, TransientError

if TYPE_CHECKING:
    from reconciler.engine import Engine
    from reconciler.fleet import Fleet, Target
    from reconciler.kube.client import KubeClient
    from reconciler.store.records import Records
    from workers.dispatch import Queued


def known_fleet(args: Params) -> Fleet | None:
    """The fleet file when one is known (``--config``, the environment, the context).

    Listings work from Redis alone, but when the fleet is known it is the authority on
    which applications and clusters exist, so a typo gets a "did you mean" from it.
    """
    if not (getattr(args, "config", None) or current().config):
        return None
    try:
        return load(args)
    except ConfigError:
        if _running_fleet_is_invalid():
            return None  # the running stack's own breakage: reported, and read around
        raise


def _running_fleet_is_invalid() -> bool:
    """Whether the installation's components record their fleet file as invalid now.

    Then a listing still lists (from the status index) and says why on stderr, rather
    than failing on the same parse error the operator is trying to see the effect of.
    """
    from reconciler.store.fleet_state import FleetState  # noqa: PLC0415
    from reconciler.store.keys import Keys  # noqa: PLC0415

    health = FleetState(redis_client(), Keys()).read()
    return health is not None and not health.valid


def recorded_clusters(records: Records, app: str) -> list[str]:
    """The clusters ``app`` has status entries for; ConfigError when others are recorded.

    Without a fleet file the status index is the only list of targets there is: when it
    holds targets but none of ``app``, the name is wrong (or the installation is), and
    an empty table would hide that.  An empty index says nothing, so it is no error.
    """
    from reconciler.fleet.messages import known, quote  # noqa: PLC0415

    entries = records.status()
    clusters = [e.cluster for e in entries if e.application == app]
    if entries and not clusters:
        names = sorted({e.application for e in entries})
        raise ConfigError(
            f"unknown application {quote(app)}{known(app, names)}: the status index of "
            f"{installation()} records none of that name"
        )
    return clusters


def report_fleet_state(client: Any) -> dict[str, Any] | None:
    """Say on stderr when the running fleet file is invalid; its state for ``-o json``.

    The components keep running the last valid fleet when the file breaks, so a status
    that looks fine may describe a fleet nobody can change any more; this line is what
    tells the reader (``reconciler.store.fleet_state``).
    """
    from reconciler.store.fleet_state import FleetState  # noqa: PLC0415
    from reconciler.store.keys import Keys  # noqa: PLC0415

    health = FleetState(client, Keys()).read()
    if health is None:
        return None
    if not health.valid:
        print(f"error: {health.describe()}", file=sys.stderr)
    return health.to_dict()


def require_fleet(args: Params) -> Fleet:
    """The fleet file, validated; exported as RECONCILER_CONFIG for workers and beat."""
    fleet = load(args)
    os.environ["RECONCILER_CONFIG"] = os.path.abspath(fleet.path)
    return fleet


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


def who() -> str:
    """``user@host`` of whoever runs the command, as the outcomes of what it asks record."""
    import getpass  # noqa: PLC0415
    import socket  # noqa: PLC0415

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def cmd_sync(args: Params) -> int:
    """Force a sync of an application now (a fresh fetch) and report each target's outcome.

    As ``argocd app sync`` does, the command waits for the outcomes unless ``--async``,
    which returns once the workers have queued each target's run.  ``--revision`` syncs a
    branch, tag or commit other than the one the fleet tracks (the next automatic run
    goes back to the fleet's: suspend the application to keep it); ``--prune`` prunes
    this once even when ``sync.prune`` is off; ``--dry-run`` reports what would change.

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
    if args.wait_async and (args.wait or args.health):
        raise ConfigError("--async returns at once: it does not go with --wait or --health")
    cause = {"by": who(), **({"reason": args.reason} if getattr(args, "reason", "") else {})}
    result = enqueue_app(application.name, trigger=Trigger.MANUAL,
                         clusters=clusters if args.cluster else None, fresh=True,
                         revision=args.revision, prune=True if args.prune else None,
                         dry_run=args.dry_run, cause=cause)  # fmt: skip
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
    if args.wait_async:
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
        if row.get("skipped"):
            problems.append(f"{where}: not run: {row['skipped']}")
            continue
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
    from cli.local import engine  # noqa: PLC0415

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

    entry = Records(redis_client(), Keys()).entry(target.app.name, cluster)
    status = (entry.health if entry is not None else "") or "Unknown"
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


#: ``status``: one row per target, from its status-index entry (the last run's summary).
_STATUS_COLUMNS = (
    Column("APPLICATION", lambda r: r.get("application")),
    Column("CLUSTER", lambda r: r.get("cluster")),
    Column("REVISION", revision_cell),
    Column("SYNC", lambda r: f"{r.get('sync')}{' (suspended)' if r.get('suspended') else ''}"
                             f"{' (rolled back)' if r.get('rolled_back') else ''}"),
    Column("HEALTH", lambda r: r.get("health") or "-"),
    Column("REASON", lambda r: r.get("reason") or ""),
    Column("DRIFT", lambda r: r.get("drift_count", 0)),
    Column("HOOKS", lambda r: hook_summary(r.get("hooks") or {})),
    Column("AGE", lambda r: age_cell(str(r.get("finished", "")))),
    Column("CHANGES", lambda r: change_summary(r.get("actions") or {}), wide=True),
    Column("TRIGGER", lambda r: r.get("trigger"), wide=True),
    # A rolled-back target: the revision Git names, which it does not run until resumed.
    # Sync windows: open (automatic syncs may run), or closed until when.
    Column("WINDOW", lambda r: _window_cell(r.get("window")), wide=True),
    Column("GIT-REVISION", lambda r: str((r.get("rolled_back") or {}).get("wanted") or "")[:12]
           or "-", wide=True),
    Column("STARTED", lambda r: r.get("started"), wide=True),
    Column("DURATION", duration_cell, wide=True),
    Column("RETRYABLE", lambda r: boolean_cell(r.get("retryable")), wide=True),
    # The cluster's circuit breaker, read live: state, consecutive failed attempts on the
    # cluster, and when the next probe run may go (open or half-open only).
    Column("CIRCUIT", lambda r: r.get("circuit") or "closed", wide=True),
    Column("ATTEMPTS", lambda r: r.get("circuit_failures") or 0, wide=True),
    Column("NEXT-RETRY", lambda r: r.get("next_retry") or "-", wide=True),
    Column("ERROR", error_cell),
)


def _window_cell(window: Mapping[str, Any] | None) -> str:
    if not window:
        return "-"
    if window.get("allowed"):
        return "open"
    return f"closed until {window.get('next') or 'never'}"


def _windows_of(fleet: Fleet | None, rows: list[dict[str, Any]]) -> None:
    """Each row's sync windows now, from the fleet file: open or closed, and until when."""
    from reconciler.outcome import timestamp  # noqa: PLC0415
    from reconciler.windows import describe, verdict  # noqa: PLC0415

    if fleet is None:
        return
    now = datetime.now(UTC)
    for row in rows:
        try:
            application = fleet.application(str(row.get("application")))
            cluster = fleet.cluster(str(row.get("cluster")))
        except ConfigError:
            continue
        windows = fleet.windows_of(application, cluster)
        if not windows:
            continue
        found = verdict(windows, now, manual=False)
        row["window"] = {"allowed": found.allowed, "why": found.why,
                         "next": timestamp(found.next_allowed) if found.next_allowed else None,
                         "open": [describe(w) for w in found.open]}  # fmt: skip


def cmd_status(args: Params) -> int:
    """The fleet at a glance: one row per target, from the status index.

    An application the fleet file (or, without one, the status index) does not know is
    bad input, exit 2, with the closest names; an empty listing names the installation
    it read, since the usual cause is another ``REDIS_URL`` or prefix than the workers'.
    """
    from reconciler.store.breaker import Breakers  # noqa: PLC0415
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415
    from reconciler.store.rollback import Rollbacks  # noqa: PLC0415
    from reconciler.store.suspension import Suspensions  # noqa: PLC0415

    client = redis_client()  # first: a stopped installation says so before anything else
    fleet = known_fleet(args)
    keys = Keys()
    records = Records(client, keys)
    if args.app and fleet is not None:
        fleet.application(args.app)
    elif args.app:
        recorded_clusters(records, args.app)
    rows = [entry.to_dict() for entry in records.status(args.app)]
    suspended = Suspensions(client, keys).all()
    rolled_back = Rollbacks(client, keys).all()
    report_fleet_state(client)
    circuits = Breakers(client, keys, failures=1, cooldown=1, probe_ttl=1).states()
    for row in rows:
        row["suspended"] = row.get("application") in suspended
        held = rolled_back.get((str(row.get("application")), str(row.get("cluster"))))
        if held is not None:
            row["rolled_back"] = {"revision": held.revision, "replaced": held.replaced,
                                  "wanted": held.wanted, "at": held.at, "by": held.by,
                                  "reason": held.reason}  # fmt: skip
        circuit = circuits.get(str(row.get("cluster")))
        if circuit is not None:
            row["circuit"] = circuit.state.value
            row["circuit_failures"] = circuit.failures
            if circuit.next_retry:
                row["next_retry"] = datetime.fromtimestamp(circuit.next_retry, UTC).isoformat(
                    timespec="seconds"
                )
    _windows_of(fleet, rows)
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
    # Who asked and why, which push, which objects a heal corrected.
    Column("WHY", lambda r: why_cell(r.get("cause") or {}), wide=True),
    # A run that found nothing to do, repeated: how many in a row, since when.
    Column("RUNS", lambda r: r.get("repeats") or 1, wide=True),
    Column("SINCE", lambda r: r.get("first_started") or r.get("started"), wide=True),
    Column("ERROR", lambda r: error_cell(r, 50)),
)


#: ``history`` of every target of an application: the same, each row naming its cluster.
_APP_HISTORY_COLUMNS = (_HISTORY_COLUMNS[0], Column("CLUSTER", lambda r: r.get("cluster")),
                        *_HISTORY_COLUMNS[1:])  # fmt: skip


def history_clusters(args: Params, records: Records) -> tuple[list[str], str]:
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
    recorded = [e.cluster for e in entries if e.application == args.app]
    if fleet is not None:
        names = [a.name for a in fleet.applications]
        if args.app in names or _near_miss(args.app, names):
            application = fleet.application(args.app)  # ConfigError naming the near miss
            chosen = [args.cluster] if args.cluster else None
            return [c.name for c in targets_of(fleet, application, chosen)], ""
        note = f"; {args.app} is not an application of {fleet.path}"
    else:
        names = sorted({e.application for e in entries})
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


def cmd_history(args: Params) -> int:
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


def cmd_suspend(args: Params, *, suspend: bool) -> int:
    """Stop (or restart) an application's scheduled runs; forced syncs still run."""
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.suspension import Suspensions  # noqa: PLC0415

    fleet = require_fleet(args)
    application = fleet.application(args.app)
    client = redis_client()
    if suspend:
        Suspensions(client, Keys()).suspend(application.name)
        print(
            f"{application.name}: suspended (scheduled runs skipped; 'reconciler sync' still works)"
        )
    else:
        from reconciler.store.rollback import Rollbacks  # noqa: PLC0415

        Suspensions(client, Keys()).resume(application.name)
        chosen = list(getattr(args, "cluster", None) or ()) or None
        released = Rollbacks(client, Keys()).release(application.name, chosen)
        print(f"{application.name}: resumed")
        if released:
            print(f"{application.name}: rollback released on {', '.join(sorted(released))}; "
                  "the next run applies Git's revision")  # fmt: skip
    return 0


# -- get and wait --------------------------------------------------------------------------

#: ``get``: each target of one application, from its status-index entry.
_GET_COLUMNS = (
    Column("CLUSTER", lambda r: r.get("cluster")),
    Column("REVISION", revision_cell),
    Column("SYNC", lambda r: r.get("sync") or "Unknown"),
    Column("HEALTH", lambda r: r.get("health") or "-"),
    Column("REASON", lambda r: r.get("reason") or ""),
    Column("DRIFT", lambda r: r.get("drift_count", 0)),
    Column("HOOKS", lambda r: hook_summary(r.get("hooks") or {})),
    Column("AGE", lambda r: age_cell(str(r.get("finished", "")))),
    Column("TRIGGER", lambda r: r.get("trigger") or "", wide=True),
    Column("CHANGES", lambda r: change_summary(r.get("actions") or {}), wide=True),
    Column("DURATION", duration_cell, wide=True),
    Column("ERROR", error_cell),
)


def _never_run(app: str, cluster: str) -> dict[str, Any]:
    """The row of a target the fleet has but no run has recorded yet."""
    return {"application": app, "cluster": cluster, "sync": "Unknown", "health": "Unknown",
            "reason": "", "error": "", "note": "no run recorded yet"}  # fmt: skip


def _targets_of_app(args: Params, records: Records) -> tuple[Fleet | None, list[dict[str, Any]]]:
    """The fleet (when known) and one row per target of ``args.app``: fleet targets first.

    A target the fleet has and no run has recorded is shown as Unknown rather than left
    out: a target that never ran is the first thing to look at.
    """
    fleet = known_fleet(args)
    wanted: list[str] = []
    if fleet is not None:
        application = fleet.application(args.app)
        chosen = [args.cluster] if getattr(args, "cluster", None) else None
        wanted = [c.name for c in targets_of(fleet, application, chosen)]
    else:
        wanted = recorded_clusters(records, args.app)
        if getattr(args, "cluster", None):
            wanted = [c for c in wanted if c == args.cluster]
    entries = {e.cluster: e.to_dict() for e in records.status(args.app)}
    return fleet, [entries.get(c) or _never_run(args.app, c) for c in wanted]


def _application_summary(fleet: Fleet | None, app: str, suspended: bool) -> dict[str, Any]:
    """What ``get`` says of the application itself, from the fleet file when known."""
    from reconciler.fleet import redact_url  # noqa: PLC0415

    summary: dict[str, Any] = {"name": app, "suspended": suspended}
    if fleet is None:
        return summary
    application = fleet.application(app)
    source, sync = application.source, application.sync
    summary.update(
        repo=redact_url(str(source.repo)), revision=source.revision, path=source.path,
        kind=("helm" if source.helm else "jsonnet" if source.jsonnet else
              "directory" if source.directory else "detected"),
        sync={"automated": sync.automated, "prune": sync.prune, "selfHeal": sync.self_heal,
              "interval": sync.interval_seconds, "suspended": sync.suspended},
        fleet=fleet.path,
    )  # fmt: skip
    return summary


def cmd_get(args: Params) -> int:
    """One application and every target of it, as ``argocd app get`` shows one.

    The application (its source, sync policy, whether it is suspended), then a row per
    target: revision, sync, health, drift, the REASON a run stopped, hooks and the last
    error.  ``-o json|yaml`` give ``{"application": ..., "targets": [...]}`` with each
    target's whole status entry.  Exit 1 when a target is not Synced and Healthy.
    """
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415
    from reconciler.store.suspension import Suspensions  # noqa: PLC0415

    client = redis_client()
    records = Records(client, Keys())
    fleet, rows = _targets_of_app(args, records)
    suspended = Suspensions(client, Keys()).is_suspended(args.app)
    summary = _application_summary(fleet, args.app, suspended)
    fleet_state = report_fleet_state(client)
    if args.output in {"json", "yaml"}:
        data = {"application": summary, "targets": rows, "fleet": fleet_state}
        print_listing(args.output, rows, _GET_COLUMNS, name=target_name, data=data)
    elif args.output == "name":
        print_listing("name", rows, _GET_COLUMNS, name=target_name)
    else:
        _print_application(summary)
        print()
        print_listing(args.output, rows, _GET_COLUMNS, name=target_name,
                      empty=f"No targets of {args.app} in {installation()}.")  # fmt: skip
    good = all(r.get("sync") == "Synced" and r.get("health") in _GOOD_HEALTH for r in rows)
    return 0 if rows and good else 1


def _print_application(summary: Mapping[str, Any]) -> None:
    from cli.output import print_aligned  # noqa: PLC0415

    lines = [["Name:", summary["name"]]]
    if "repo" in summary:
        sync = summary["sync"]
        policy = ", ".join(name for name in ("automated", "prune", "selfHeal") if sync[name])
        lines += [
            ["Source:", f"{summary['repo']} @ {summary['revision']}"],
            ["Path:", f"{summary['path']} ({summary['kind']})"],
            ["Sync policy:", f"{policy or 'manual'}, every {sync['interval']:g}s"],
        ]
    lines.append(["Suspended:", "yes" if summary["suspended"] else "no"])
    print_aligned(lines)


def cmd_wait(args: Params) -> int:
    """Wait until every target of an application is Synced (and Healthy with --health).

    As ``argocd app wait``: it watches and does not act.  The status index says when each
    target's latest run is Synced; health is then read live from the clusters, as ``sync
    --health`` reads it.  A target whose latest run Failed with an error that waiting
    cannot mend (an invalid manifest, a rejected apply) ends the wait at once, exit 1,
    naming it; so does one that is Degraded.  Exit 1 too when the timeout passes first.
    """
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415

    deadline = time.monotonic() + args.timeout
    records = Records(redis_client(), Keys())
    fleet, rows = _targets_of_app(args, records)
    pause = 0.2
    while True:
        pending = [r for r in rows if r.get("sync") != "Synced" and not _hopeless(r)]
        if not pending or not _left(deadline):
            break
        time.sleep(min(pause, _left(deadline)))
        pause = min(pause * 1.5, 2.0)
        fleet, rows = _targets_of_app(args, records)
    outcomes = {str(r["cluster"]): dict(r) for r in rows}
    if args.health and fleet is not None:
        found = _await_health(fleet, args.app, outcomes, deadline=deadline)
        for cluster, outcome in outcomes.items():
            seen = found.get(cluster)
            outcome["live_health"] = seen.to_dict() if seen is not None else None
    shown = list(outcomes.values())
    print_listing(args.output, [summary_of(r) for r in shown], OUTCOME_COLUMNS, name=target_name,
                  data=shown, empty=f"No targets of {args.app} in {installation()}.")  # fmt: skip
    problems = _sync_problems(shown, health=args.health, timeout=args.timeout)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems or not shown else 0


def _hopeless(row: Mapping[str, Any]) -> bool:
    """Whether a target's latest run failed in a way more waiting will not change."""
    return row.get("sync") == "Failed" and row.get("retryable") is False
