"""The distributed runtime's subcommands: worker, beat, flower, webhook, sync, status...

Kept apart from ``cli.py`` (the one-shot commands) because these import Celery and talk
to Redis; the parser in ``cli.py`` registers them.  Every command checks what it needs
first (a fleet file that validates, a Redis that answers) and says plainly what is
missing, with exit code 2 for bad input and 1 for an unreachable service.
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.errors import ConfigError, TransientError
from reconciler.store.provision import redis_answers

if TYPE_CHECKING:
    import redis

    from reconciler.fleet import Fleet


def _redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> str:
    """The broker URL, after checking it answers (TransientError otherwise)."""
    from reconciler.source import redact_url  # noqa: PLC0415

    url = _redis_url()
    if not redis_answers(url):
        raise TransientError(
            f"Redis at {redact_url(url)} does not answer (set REDIS_URL, or use 'reconciler up')"
        )
    return url


def require_fleet(args: argparse.Namespace) -> Fleet:
    """The fleet file, validated; exported as RECONCILER_CONFIG for workers and beat."""
    from reconciler.cli import load  # noqa: PLC0415

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


def cmd_sync(args: argparse.Namespace) -> int:
    """Queue a forced sync of an application (fresh fetch); with --wait, report outcomes."""
    from reconciler.cli import print_json, print_table, short, targets_of  # noqa: PLC0415
    from reconciler.outcome import Trigger  # noqa: PLC0415
    from workers.dispatch import enqueue_app, fan_out_result, wait_for_targets  # noqa: PLC0415

    fleet = require_fleet(args)
    application = fleet.application(args.app)
    clusters = [c.name for c in targets_of(fleet, application, args.cluster)]
    require_redis()
    result = enqueue_app(application.name, trigger=Trigger.MANUAL,
                         clusters=clusters if args.cluster else None, fresh=True)  # fmt: skip
    try:
        revision, targets = fan_out_result(result, timeout=min(args.timeout, 60.0))
    except TimeoutError:
        raise TransientError(
            f"no worker took the sync of {application.name} in time (is a worker running?)"
        ) from None
    if not args.wait:
        queued = [[t.cluster, t.task_id, "queued" if t.queued else "already waiting"]
                  for t in targets]  # fmt: skip
        if args.output == "json":
            print_json({"application": application.name, "revision": revision,
                        "targets": [t.__dict__ for t in targets]})  # fmt: skip
        else:
            print_table(["CLUSTER", "TASK", "STATE"], queued)
        return 0
    asked = datetime.now(UTC)
    outcomes = wait_for_targets(targets, timeout=args.timeout)
    _last_attempts(application.name, outcomes, since=asked)
    if args.output == "json":
        print_json([o if o else {"cluster": c, "sync": "Unknown", "error": "timed out"}
                    for c, o in outcomes.items()])  # fmt: skip
    else:
        rows: list[list[Any]] = []
        for cluster, outcome in outcomes.items():
            if outcome is None:
                rows.append([cluster, "-", "TimedOut", "-", "-", "no outcome within timeout"])
                continue
            errors = outcome.get("errors") or []
            rows.append([cluster, str(outcome.get("revision") or "-")[:12], outcome.get("sync"),
                         outcome.get("health", "-"), len(outcome.get("drift") or []),
                         short(errors[0]["message"], 60) if errors else ""])  # fmt: skip
        print_table(["CLUSTER", "REVISION", "SYNC", "HEALTH", "DRIFT", "ERROR"], rows)
    ok = all(o is not None and o.get("sync") == "Synced" for o in outcomes.values())
    return 0 if ok else 1


def _last_attempts(
    app: str, outcomes: dict[str, dict[str, Any] | None], *, since: datetime
) -> None:
    """For targets still retrying at the deadline, the attempt their history recorded."""
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415

    missing = [cluster for cluster, outcome in outcomes.items() if outcome is None]
    if not missing:
        return
    records = Records(redis_client(), Keys())
    for cluster in missing:
        latest = records.history(app, cluster, n=1)
        if not latest:
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


def cmd_status(args: argparse.Namespace) -> int:
    """The fleet at a glance: one row per target, from the status index."""
    from reconciler.cli import print_json, print_table, short  # noqa: PLC0415
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415

    client = redis_client()
    keys = Keys()
    rows = Records(client, keys).status(args.app)
    suspended = {m.decode() if isinstance(m, bytes) else str(m)
                 for m in client.smembers(keys.suspended())}  # fmt: skip
    for row in rows:
        row["suspended"] = row.get("application") in suspended
    if args.output == "json":
        print_json(rows)
        return 0
    print_table(
        ["APPLICATION", "CLUSTER", "REVISION", "SYNC", "HEALTH", "DRIFT", "AGE", "ERROR"],
        [[r.get("application"), r.get("cluster"), str(r.get("revision") or "-")[:12],
          str(r.get("sync")) + (" (suspended)" if r["suspended"] else ""), r.get("health"),
          r.get("drift_count", 0), _age(str(r.get("finished", ""))),
          short(str(r.get("error") or ""), 60)] for r in rows],
    )  # fmt: skip
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    """The last outcomes of one target, newest first."""
    from reconciler.cli import print_json, print_table, short  # noqa: PLC0415
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415

    items = Records(redis_client(), Keys()).history(args.app, args.cluster, n=args.n)
    if args.output == "json":
        print_json(items)
        return 0
    rows: list[list[Any]] = []
    for item in items:
        counts: dict[str, int] = {}
        for change in item.get("changes") or []:
            counts[change["action"]] = counts.get(change["action"], 0) + 1
        errors = item.get("errors") or []
        revision = str(item.get("revision") or "-")[:12]
        rows.append([item.get("started"), item.get("trigger"), revision,
                     item.get("sync"), item.get("health"),
                     " ".join(f"{k}={v}" for k, v in sorted(counts.items())),
                     f"{float(item.get('duration') or 0):.2f}s",
                     short(errors[0]["message"], 50) if errors else ""])  # fmt: skip
    print_table(["STARTED", "TRIGGER", "REVISION", "SYNC", "HEALTH", "CHANGES", "DURATION",
                 "ERROR"], rows)  # fmt: skip
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


def add_parsers(sub: Any) -> None:
    """Register the runtime subcommands on the main parser's subparsers."""
    from reconciler.cli import add_config_argument as config  # noqa: PLC0415
    from reconciler.cli import add_output_argument as output  # noqa: PLC0415

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

    sync = sub.add_parser("sync", help="force a sync of an application now (admin)")
    config(sync)
    sync.add_argument("app", metavar="APP")
    sync.add_argument("--cluster", action="append", metavar="NAME")
    sync.add_argument("--wait", action="store_true", help="wait and print each target's outcome")
    sync.add_argument("--timeout", type=float, default=300.0)
    output(sync)
    sync.set_defaults(handler=cmd_sync)

    status = sub.add_parser("status", help="the fleet at a glance, one row per target")
    status.add_argument("app", metavar="APP", nargs="?")
    output(status)
    status.set_defaults(handler=cmd_status)

    history = sub.add_parser("history", help="the last outcomes of one target")
    history.add_argument("app", metavar="APP")
    history.add_argument("--cluster", required=True, metavar="NAME")
    history.add_argument("-n", type=int, default=20)
    output(history)
    history.set_defaults(handler=cmd_history)

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
        parser.set_defaults(handler=lambda a, s=flag: cmd_suspend(a, suspend=s))
