"""The components of an installation, each in the foreground: worker, beat, Flower,
the webhook server, and ``up``, which runs them all.

Each checks what it needs before it starts (a fleet file that validates, a Redis that
answers) so that a component never starts half-configured and fails on its first task.
"""

from __future__ import annotations

from cli.admin import require_fleet
from cli.installation import require_redis
from cli.local import Params
from reconciler.errors import ConfigError
from reconciler.settings import load as load_settings


def cmd_worker(args: Params) -> int:
    """Run a Celery worker (prefork) consuming forced work first, then scheduled work."""
    require_fleet(args)
    require_redis()
    from workers.app import app, queues_for  # noqa: PLC0415

    env = load_settings()
    routes = list(args.route or env.routes)
    queues = queues_for(routes)
    if args.forced_only:
        queues = [q for q in queues if "forced" in q]
    concurrency = args.concurrency or env.worker_concurrency
    argv = ["worker", "--loglevel", args.loglevel or env.log_level, "-Q", ",".join(queues), "-E",
            "--without-gossip", "--without-mingle"]  # fmt: skip
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if args.hostname:
        argv.append(f"--hostname={args.hostname}")
    app.worker_main(argv)
    return 0


def cmd_beat(args: Params) -> int:
    """Run beat: RedBeat schedules kept in step with the fleet file."""
    require_fleet(args)
    require_redis()
    from workers.app import app  # noqa: PLC0415

    level = args.loglevel or load_settings().log_level
    app.start(["beat", "--scheduler", "beat.scheduler:FleetScheduler", "--loglevel", level])
    return 0


def cmd_watcher(args: Params) -> int:
    """Run the watcher: live state, drift and health of the managed objects."""
    require_fleet(args)
    require_redis()
    from workers.watcher import run  # noqa: PLC0415

    run()
    return 0


def cmd_flower(args: Params) -> int:
    """Run Flower behind basic auth (FLOWER_BASIC_AUTH), unless told --insecure."""
    secret = load_settings().flower_basic_auth
    auth = secret.get_secret_value() if secret is not None else ""
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


def cmd_webhook(args: Params) -> int:
    """Run the Git webhook endpoint and the Prometheus metrics."""
    require_fleet(args)
    require_redis()
    from workers.webhook_server import run  # noqa: PLC0415

    run(host=args.host or load_settings().webhook_host, port=args.port,
        metrics_host=args.metrics_host, metrics_port=args.metrics_port,
        insecure=bool(args.insecure))  # fmt: skip
    return 0


def cmd_up(args: Params) -> int:
    """The whole stack in one command (see ``cli.supervisor``)."""
    from pathlib import Path  # noqa: PLC0415

    from cli.supervisor import UpOptions, up  # noqa: PLC0415

    workdir = Path(args.dir or (".demo" if args.demo else ".reconciler-up")).resolve()
    return up(UpOptions(
        config=args.config, demo=args.demo, workers=args.workers, concurrency=args.concurrency,
        flower_port=args.flower_port, webhook_port=args.webhook_port, workdir=workdir,
        until_synced=args.until_synced, no_flower=args.no_flower,
    ))  # fmt: skip
