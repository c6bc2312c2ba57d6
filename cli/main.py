"""The ``reconciler`` command: one entry point, one subcommand per job.

Exit codes are a contract with scripts (DESIGN.md): 0 ok, 1 a reconcile failed or drift
was found where asked, 2 bad input or usage (click's usage errors are 2 as well).  Errors
are one line on stderr, ``error: ...``, never a traceback: our own errors say what and
where, and a lost Redis is turned into one by ``cli.installation.guarded``.

The options of each command are declared here, with click; the work is done by plain
functions in ``cli.local`` (no Redis needed), ``cli.admin`` (a running installation) and
``cli.components`` (the processes of one), which take the parsed options as one
namespace.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from cli.installation import current, guarded, use_context
from cli.local import EXIT_OK, EXIT_USAGE, Params
from cli.output import LISTING_OUTPUTS
from reconciler.errors import ConfigError, ReconcilerError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def package_version() -> str:
    """The installed distribution's version: the one a bug report has to name.

    Read from the package metadata rather than kept in a constant, so it cannot disagree
    with what ``pip`` installed; a source tree that was never installed says so.
    """
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("reconciler")
    except PackageNotFoundError:
        return "unknown (not installed)"


def run_with(handler: Callable[[Params], int], **params: Any) -> int:
    """Call a handler with the command's options as one namespace."""
    return handler(Params(**params))


def handler(module: str, name: str, *, redis: bool = False) -> Callable[..., int]:
    """A click callback running ``module.name`` (imported when the command runs).

    Importing on use keeps ``reconciler --help`` and the one-shot commands from loading
    Celery; ``redis`` wraps the handler so a Redis lost mid-command is an error, exit 1.
    The installation is resolved (and exported) before a module of the runtime is
    imported: the Celery app takes its broker from the environment when it is made.
    ``up`` is the exception: it starts an installation rather than joining one.
    """

    def callback(**params: Any) -> int:
        import importlib  # noqa: PLC0415

        if module != "cli.local" and name != "cmd_up":
            current()

        function: Callable[[Params], int] = getattr(importlib.import_module(module), name)
        if redis:
            function = guarded(function)
        return run_with(function, **params)

    callback.__name__ = name
    return callback


# -- shared options ------------------------------------------------------------------------

config_option = click.option(
    "--config", metavar="FILE",
    help="fleet file (default: $RECONCILER_CONFIG, else the installation context's)",
)  # fmt: skip


def listing_option(default: str = "table", extra: Sequence[str] = ()) -> Callable[..., Any]:
    """``-o`` of a listing of targets: the five formats kubectl's listings take."""
    return click.option(
        "-o", "--output", type=click.Choice([*extra, *LISTING_OUTPUTS]), default=default,
        show_default=True,
        help="table, wide (more columns), json or yaml (whole records), name (app/cluster)",
    )  # fmt: skip


def positive_seconds(_: Any, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise click.BadParameter(f"must be more than 0 seconds, not {value:g}", param=param)
    return value


timeout_option = click.option(
    "--timeout", type=float, default=300.0, show_default=True, metavar="SECONDS",
    callback=positive_seconds, help="bound on the whole command",
)  # fmt: skip
cluster_option = click.option(
    "--cluster", "cluster", multiple=True, metavar="NAME", help="only this cluster (repeatable)"
)
app_argument = click.argument("app", metavar="APP")


# -- the group -----------------------------------------------------------------------------


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_version(), "--version", prog_name="reconciler",
                      message="%(prog)s %(version)s")  # fmt: skip
@click.option("--context", "context", metavar="FILE", envvar=None,
              help="installation context file (default: $RECONCILER_CONTEXT, else the one "
              "'reconciler up' wrote in your configuration directory)")  # fmt: skip
def reconciler(context: str | None) -> None:
    """GitOps reconciliation for fleets of Kubernetes clusters."""
    use_context(context)


# -- one-shot commands ---------------------------------------------------------------------


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@click.option("--clusters", type=int, default=3, show_default=True, help="number of clusters")
@click.option("--port", type=int, default=0, help="port (default: a free one)")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--kubeconfig", help="write a kubeconfig with a context per cluster")
@click.option("--name-prefix", default="sim-", show_default=True, help="cluster name prefix")
@click.option("--controller-delay", type=float, default=0.5, show_default=True,
              help="seconds before simulated controllers report status")  # fmt: skip
def sim(**params: Any) -> int:
    """Run simulated Kubernetes clusters (kubesim).

    In the foreground. Serves N clusters over the real Kubernetes REST API and writes a
    kubeconfig with one context per cluster. Stops on SIGINT or SIGTERM.
    """
    return handler("cli.local", "cmd_sim")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@listing_option()
def validate(**params: Any) -> int:
    """Validate the fleet file and render every target.

    Writes nothing to any cluster (reads discovery). Exit 2 when the fleet file or a
    manifest is invalid, 1 when a source or cluster cannot be reached.
    """
    return handler("cli.local", "cmd_validate")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@cluster_option
@click.option("--dry-run", is_flag=True, help="detect and report drift, write nothing")
@listing_option()
def reconcile(**params: Any) -> int:
    """Reconcile APP now, in this process.

    No Redis or worker needed. Runs on each cluster APP targets (or the --cluster ones).
    Exit 1 if any target failed.
    """
    return handler("cli.local", "cmd_reconcile")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@cluster_option
@listing_option(default="diff", extra=("diff",))
def diff(**params: Any) -> int:
    """Show what a sync of APP would change.

    On each of its clusters, as kubectl diff: the unified diff of every drifted object
    (default), exit 0 when nothing differs and 1 when something does. -o table|wide lists
    the targets.
    """
    return handler("cli.local", "cmd_diff")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@click.argument("apps", metavar="[APP]...", nargs=-1)
@click.option("--revision", required=True, metavar="REF",
              help="the branch, tag or commit to plan (it need not be merged)")
@click.option("--cluster", multiple=True, metavar="NAME", help="only this cluster (repeatable)")
@click.option("--diff", is_flag=True, help="show the diff of every object that would change")
@click.option("-o", "--output", type=click.Choice(["table", "json", "yaml", "markdown"]),
              default="table", show_default=True,
              help="table, json or yaml (every target's plan), markdown (a pull-request comment)")
def plan(**params: Any) -> int:  # fmt: skip
    """What REF would do to every cluster of APP (of every application when none).

    Rendered at REF for each target, compared with the live state and checked by the
    server's dry-run: objects to create, change (with the field paths) and prune, and the
    hooks a sync would run, in rollout step order. Writes nothing; read access to the
    clusters is enough. Exit 0 when nothing would change, 1 when something would, 2 on bad
    input (a render error names the file and line).
    """
    return handler("cli.plan", "cmd_plan")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@click.option("-o", "--output", type=click.Choice(["json", "yaml"]), default="json",
              show_default=True)  # fmt: skip
def schema(**params: Any) -> int:
    """Print the fleet file's JSON Schema.

    Draft 2020-12, for editors and CI linters. It checks the shape; 'reconciler validate'
    also checks what needs the whole fleet (duplicate names, templates on every cluster).
    """
    return handler("cli.local", "cmd_schema")(**params)


# -- components ----------------------------------------------------------------------------


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@click.option(
    "--concurrency",
    type=int,
    default=0,
    help="processes (default: $RECONCILER_WORKER_CONCURRENCY, else one per CPU)",
)
@click.option(
    "--route",
    multiple=True,
    metavar="VALUE",
    help="also serve targets whose routing label has this value (repeatable; "
    "default $RECONCILER_ROUTES)",
)
@click.option("--forced-only", is_flag=True, help="serve only forced work (admin syncs, webhooks)")
@click.option("--hostname", help="Celery node name (default: celery@HOST)")
@click.option("--loglevel", default=None, help="log level (default: $RECONCILER_LOG_LEVEL or INFO)")
def worker(**params: Any) -> int:
    """Run a Celery worker that reconciles targets.

    Forced work (admin syncs, webhooks) is taken before scheduled work.
    """
    return handler("cli.components", "cmd_worker")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
def watcher(**params: Any) -> int:
    """Watch the managed objects of the fleet's clusters.

    A change to a managed object is seen at once: healed under selfHeal, reported
    otherwise, and the targets' health kept live. Replicas share the clusters
    (a lease per cluster, RECONCILER_WATCH_LEASE_TTL).
    """
    return handler("cli.components", "cmd_watcher")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@click.option("--loglevel", default=None, help="log level (default: $RECONCILER_LOG_LEVEL or INFO)")
def beat(**params: Any) -> int:
    """Run the scheduler: one RedBeat entry per application.

    The entries follow the fleet file as it changes; no restart is needed.
    """
    return handler("cli.components", "cmd_beat")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@click.option("--port", type=int, default=5555, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option(
    "--insecure",
    is_flag=True,
    help="run without FLOWER_BASIC_AUTH (only where nobody else can reach)",
)
def flower(**params: Any) -> int:  # fmt: skip
    """Run Flower to inspect reconcile jobs.

    It asks for the login in FLOWER_BASIC_AUTH (user:password) unless --insecure.
    """
    return handler("cli.components", "cmd_flower")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@click.option("--port", type=int, default=8088, show_default=True)
@click.option("--host", default=None, help="address (default: $RECONCILER_WEBHOOK_HOST)")
@click.option("--metrics-port", type=int, default=None,
              help="serve /metrics on this port instead, away from the webhook "
              "(default: $RECONCILER_METRICS_PORT; 0: beside the webhook)")
@click.option("--metrics-host", default=None, help="address of the metrics port "
              "(default: $RECONCILER_METRICS_HOST)")
@click.option("--insecure", is_flag=True, help="serve /metrics without RECONCILER_HTTP_TOKEN "
              "on every address (only where nobody else can reach)")  # fmt: skip
def webhook(**params: Any) -> int:
    """Serve the Git webhook and /metrics.

    POST /hooks/git takes GitHub, GitLab and plain-token pushes. /metrics asks for
    RECONCILER_HTTP_TOKEN unless the listener is on a loopback address or --insecure.
    """
    return handler("cli.components", "cmd_webhook")(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@click.option(
    "--demo",
    is_flag=True,
    help="simulated clusters and sample applications from a local repository",
)
@click.option("--workers", type=int, default=1, show_default=True, help="worker processes")
@click.option(
    "--concurrency",
    type=int,
    default=4,
    show_default=True,
    help="reconciles in parallel per worker",
)
@click.option("--flower-port", type=int, default=5555, show_default=True)
@click.option("--webhook-port", type=int, default=8088, show_default=True)
@click.option("--no-flower", is_flag=True, help="do not start Flower")
@click.option("--dir", "dir", help="working directory (default ./.demo with --demo)")
@click.option(
    "--until-synced",
    type=float,
    metavar="SECONDS",
    help="exit 0 once every target is Synced (1 if not within SECONDS)",
)
def up(**params: Any) -> int:  # fmt: skip
    """Run the whole platform in one command.

    Workers, beat, the webhook server and Flower; Redis is REDIS_URL when it answers, else
    an embedded one; --demo also starts simulated clusters and a local Git repository of
    sample applications. The installation's connection is written to the context file, where
    the other commands find it. Children that exit are restarted; Ctrl-C stops everything.
    """
    return handler("cli.components", "cmd_up")(**params)


# -- admin commands ------------------------------------------------------------------------


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@cluster_option
@click.option("--revision", metavar="REF", help="sync this branch, tag or commit instead")
@click.option("--prune", is_flag=True, help="prune what left Git, even if sync.prune is off")
@click.option("--dry-run", is_flag=True, help="report what would change; write nothing")
@click.option("--reason", metavar="TEXT", default="", help="why, recorded with each outcome")
@click.option("--async", "wait_async", is_flag=True, help="return once the runs are queued")
@click.option("--wait", is_flag=True, help="wait for each target's outcome (the default)")
@click.option("--health", is_flag=True, help="wait until every target is Healthy too")
@timeout_option
@listing_option()
def sync(**params: Any) -> int:  # fmt: skip
    """Force a sync of APP now and report each outcome.

    A fresh Git fetch, then a forced run on each target; waits unless --async. Exit 0 when
    all are Synced (and Healthy with --health), 1 when any failed, is Degraded or did not
    get there within --timeout, 2 for bad input. Health is read live from the clusters
    through the fleet's kubeconfig contexts.
    """
    return handler("cli.admin", "cmd_sync", redis=True)(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@click.option("--cluster", metavar="NAME", help="only this cluster")
@click.option("--health", is_flag=True, help="wait until every target is Healthy too")
@timeout_option
@listing_option()
def wait(**params: Any) -> int:
    """Wait until APP is Synced (and Healthy with --health).

    It watches and does not act. Exit 1 when a target failed in a way waiting will not
    mend, is Degraded, or the timeout passed first.
    """
    return handler("cli.admin", "cmd_wait", redis=True)(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@click.option("--cluster", metavar="NAME", help="only this cluster")
@listing_option()
def get(**params: Any) -> int:
    """Show APP and each of its targets.

    Each target's revision, sync, health, drift, hooks and last error. Exit 1 when a target
    is not Synced and Healthy.
    """
    return handler("cli.admin", "cmd_get", redis=True)(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@click.argument("app", metavar="APP", required=False)
@listing_option()
def status(**params: Any) -> int:
    """The fleet at a glance, one row per target.

    From the status index. With a fleet file an unknown APP is an error that names the
    closest one (exit 2).
    """
    return handler("cli.admin", "cmd_status", redis=True)(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@click.option("--cluster", metavar="NAME", help="only this cluster")
@click.option("-n", "n", type=click.IntRange(min=1), default=20, show_default=True,
              help="how many")  # fmt: skip
@listing_option()
def history(**params: Any) -> int:
    """The last outcomes of APP, newest first.

    On every cluster, or on --cluster's. Why each run stopped (REASON) and its hooks; -o
    wide lists every hook of every run.
    """
    return handler("cli.admin", "cmd_history", redis=True)(**params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
def suspend(**params: Any) -> int:
    """Suspend APP's automatic runs ('sync' still works).

    Scheduled and push-triggered runs are skipped until 'reconciler resume'.
    """
    current()
    from cli.admin import cmd_suspend  # noqa: PLC0415

    return run_with(guarded(functools.partial(cmd_suspend, suspend=True)), **params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@click.option("--cluster", multiple=True, metavar="NAME",
              help="rolled-back targets: only this cluster's (repeatable)")
def resume(**params: Any) -> int:
    """Resume APP's scheduled and push-triggered runs, and those of its rolled-back targets."""
    current()
    from cli.admin import cmd_suspend  # noqa: PLC0415

    return run_with(guarded(functools.partial(cmd_suspend, suspend=False)), **params)


@reconciler.command(context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@click.option("--cluster", multiple=True, metavar="NAME", help="only this cluster (repeatable)")
@click.option("--to", metavar="REVISION", default=None,
              help="a commit (or prefix) from the history, or a branch, tag or commit")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="this many revisions before the one each target runs")
@click.option("--reason", metavar="TEXT", default="", help="why, kept with the rollback")
@timeout_option
@listing_option()
def rollback(**params: Any) -> int:
    """Apply an earlier revision of APP and keep it until 'reconciler resume'.

    Each target (or each --cluster) goes back to --to REVISION, or --steps N revisions
    before the one it runs, from its history; its automatic sync (schedule, pushes, heals)
    then waits for 'reconciler resume APP', so the next poll does not undo it. Exit 1 when
    a target's run failed, 2 for bad input (not that much history, an ambiguous prefix).
    """
    return handler("cli.rollback", "cmd_rollback", redis=True)(**params)


# -- rollout -------------------------------------------------------------------------------


@reconciler.group(context_settings=CONTEXT_SETTINGS)
def rollout() -> None:
    """APP's progressive rollout: status, promote, pause, resume, abort."""


@rollout.command("status", context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@listing_option()
def rollout_status(**params: Any) -> int:
    """Per step: the clusters, the revision each is assigned and runs, sync and health."""
    return handler("cli.rollout", "cmd_rollout_status", redis=True)(**params)


@rollout.command("promote", context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
def rollout_promote(**params: Any) -> int:
    """Skip the current step's gate: its clusters all take the revision, the next begins.

    A rollout halted by a failing step goes on regardless of the failure.
    """
    return handler("cli.rollout", "cmd_rollout_promote", redis=True)(**params)


@rollout.command("pause", context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
@click.option("--reason", metavar="TEXT", default="", help="why, shown by 'rollout status'")
def rollout_pause(**params: Any) -> int:
    """Assign no more clusters until 'rollout resume'; those reached keep the revision."""
    return handler("cli.rollout", "cmd_rollout_pause", redis=True)(**params)


@rollout.command("resume", context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
def rollout_resume(**params: Any) -> int:
    """Go on after a pause or a halt (a step that still fails halts it again)."""
    return handler("cli.rollout", "cmd_rollout_resume", redis=True)(**params)


@rollout.command("abort", context_settings=CONTEXT_SETTINGS)
@config_option
@app_argument
def rollout_abort(**params: Any) -> int:
    """Send every cluster back to the revision it ran before this rollout began."""
    return handler("cli.rollout", "cmd_rollout_abort", redis=True)(**params)


# -- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the subcommand, map errors to exit codes."""
    try:
        result = reconciler.main(args=list(argv) if argv is not None else None,
                                 prog_name="reconciler", standalone_mode=False)  # fmt: skip
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return int(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        return 130
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ReconcilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if not exc.retryable else 1
    return int(result) if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
