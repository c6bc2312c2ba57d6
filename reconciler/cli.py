"""The ``reconciler`` command: one entry point, one subcommand per job.

Exit codes are a contract with scripts (DESIGN.md): 0 ok, 1 a reconcile failed or drift was
found where asked, 2 bad input or usage.

Listings of targets (``reconcile``, ``sync --wait``, ``status``, ``history``) take
``-o table|wide|json|yaml|name`` as kubectl's do, and share one vocabulary so a column
means the same thing wherever it appears: ``table`` is what a person scans (sync, health,
the REASON a run stopped, a HOOKS summary such as ``2 ok, 1 failed``); ``wide`` adds
columns and never removes or reorders one (ERROR stays last); ``json`` and ``yaml`` carry
the whole record (every hook, the reason, the drift); ``name`` prints ``app/cluster``.
Where a listing shows single runs, each hook of the run follows the table on a line of
its own, because a failed migration is the first thing an operator looks for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.errors import ConfigError, ReconcilerError

if TYPE_CHECKING:  # the heavy modules are imported by the commands that need them
    from reconciler.engine import Engine
    from reconciler.fleet import Application, Cluster, Fleet
    from reconciler.outcome import Outcome

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

Handler = Callable[[argparse.Namespace], int]


# -- output ------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Aligned columns, like kubectl's default output."""
    print_aligned([list(headers), *rows])


def print_aligned(rows: Sequence[Sequence[Any]]) -> None:
    """Rows as aligned columns, without a header (lines that follow a table)."""
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        return
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print(
            "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def print_json(data: Any) -> None:
    """Indented JSON on stdout."""
    print(json.dumps(data, indent=2, sort_keys=False))


def short(text: str, width: int = 80) -> str:
    """One line, cut to ``width``."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def print_yaml(data: Any) -> None:
    """Block YAML on stdout, keys in their given order (the same data ``-o json`` prints)."""
    from reconciler.yamlio import dump  # noqa: PLC0415

    print(dump(data), end="")


# -- listings ------------------------------------------------------------------------------

#: Every listing's ``-o`` choices, as kubectl's.
LISTING_OUTPUTS = ("table", "wide", "json", "yaml", "name")

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """One column of a listing: its header, its cell for a row, whether only ``-o wide`` has it."""

    header: str
    cell: Callable[[Row], object]
    wide: bool = False


def print_listing(
    output: str,
    rows: Sequence[Row],
    columns: Sequence[Column],
    *,
    name: Callable[[Row], str],
    data: Any = None,
    empty: str = "No resources found.",
) -> None:
    """Print ``rows`` as ``output`` asks; ``data`` (default ``rows``) is what json/yaml show.

    ``name`` prints each distinct name once, in order: the outcomes in a history are all
    of one target, and ``-o name`` names targets, as ``kubectl rollout history`` names its
    object once.  An empty table says so on stderr, as kubectl does, so stdout stays empty.
    """
    if output == "json":
        print_json(rows if data is None else data)
    elif output == "yaml":
        print_yaml(list(rows) if data is None else data)
    elif output == "name":
        for shown in dict.fromkeys(name(row) for row in rows):
            print(shown)
    elif not rows:
        print(empty, file=sys.stderr)
    else:
        chosen = [c for c in columns if output == "wide" or not c.wide]
        print_table([c.header for c in chosen], [[c.cell(row) for c in chosen] for row in rows])


def target_name(row: Row) -> str:
    """``app/cluster``: how ``-o name`` and messages name a target."""
    return f"{row.get('application')}/{row.get('cluster')}"


#: Hook results as the HOOKS column counts them, in the order it lists them.
_HOOK_WORDS = {"Succeeded": "ok", "Failed": "failed", "Running": "running", "Skipped": "skipped"}


def hook_summary(counts: Mapping[str, int]) -> str:
    """``2 ok, 1 failed``: a run's hooks in one cell; empty when it ran none."""
    known = [f"{counts[r]} {word}" for r, word in _HOOK_WORDS.items() if counts.get(r)]
    other = [f"{n} {r.lower() or 'unknown'}" for r, n in sorted(counts.items())
             if r not in _HOOK_WORDS and n]  # fmt: skip
    return ", ".join(known + other)


def change_summary(counts: Mapping[str, int]) -> str:
    """``created=2 configured=1``: a run's change set by action, in the action order."""
    from reconciler.model import Action  # noqa: PLC0415

    order = [a.value for a in Action] + sorted(set(counts) - {a.value for a in Action})
    return " ".join(f"{action}={counts[action]}" for action in order if counts.get(action))


def summary_of(outcome: Row) -> dict[str, Any]:
    """The status-index entry of a full outcome: what every table shows of a run.

    Tables read these summaries, whatever they list (runs just made, the status index, a
    history), so counts, drift left and the first error are worked out in one place
    (``reconciler.store.records.summarize``).  ``-o json|yaml`` print the outcomes whole.
    """
    from reconciler.store.records import summarize  # noqa: PLC0415

    shown = summarize(outcome)
    shown["attempt"] = outcome.get("attempt") or 1
    shown["live_health"] = outcome.get("live_health")
    return shown


def error_cell(row: Row, width: int = 60) -> str:
    """The run's first error on one line; else, when health was waited for and is bad, why."""
    text = str(row.get("error") or "")
    live = row.get("live_health") or {}
    if not text and live.get("status") not in {None, "Healthy", "Suspended"}:
        text = str(live.get("message") or "")
    return short(text, width)


def revision_cell(row: Row) -> str:
    return str(row.get("revision") or "-")[:12]


def duration_cell(row: Row) -> str:
    return f"{float(row.get('duration') or 0):.2f}s"


def health_cell(row: Row) -> str:
    """The health last seen: read live when ``sync --health`` waited for it, else the run's."""
    live = row.get("live_health") or {}
    return str(live.get("status") or row.get("health") or "-")


def boolean_cell(value: object) -> str:
    """A boolean cell, spelt as kubectl spells them."""
    return "true" if value else "false"


#: One run per target (``reconcile``, ``sync --wait``): the summary of each outcome.
OUTCOME_COLUMNS: tuple[Column, ...] = (
    Column("CLUSTER", lambda r: r.get("cluster")),
    Column("REVISION", revision_cell),
    Column("SYNC", lambda r: r.get("sync")),
    Column("HEALTH", health_cell),
    Column("REASON", lambda r: r.get("reason") or ""),
    Column("CHANGES", lambda r: change_summary(r.get("actions") or {})),
    Column("DRIFT", lambda r: r.get("drift_count", 0)),
    Column("HOOKS", lambda r: hook_summary(r.get("hooks") or {})),
    Column("DURATION", duration_cell),
    Column("APPLICATION", lambda r: r.get("application"), wide=True),
    Column("TRIGGER", lambda r: r.get("trigger"), wide=True),
    Column("STARTED", lambda r: r.get("started"), wide=True),
    Column("RETRYABLE", lambda r: boolean_cell(r.get("retryable")), wide=True),
    Column("ERROR", error_cell),
)


def print_hook_lines(rows: Sequence[Row], *, label: Callable[[Row], str]) -> None:
    """After a table, one line per hook of each run: which, when, and how it ended.

    ``label`` says which row a hook belongs to (the cluster; the start time in a
    history).  A message is shown for hooks that did not succeed: that is where the
    reason a migration failed is.
    """
    lines = [
        [label(row), "hook", hook.get("phase", ""), hook.get("object", ""),
         hook.get("result", ""),
         "" if hook.get("result") == "Succeeded" else short(str(hook.get("message") or ""), 80)]
        for row in rows for hook in row.get("hooks") or []
    ]  # fmt: skip
    if lines:
        print()
        print_aligned(lines)


# -- shared plumbing -----------------------------------------------------------------------


def load(args: argparse.Namespace) -> Fleet:
    """The fleet named by ``--config`` or ``RECONCILER_CONFIG`` (ConfigError otherwise)."""
    from reconciler.fleet import load_fleet  # noqa: PLC0415 - keep start-up light

    path = args.config or os.environ.get("RECONCILER_CONFIG", "")
    if not path:
        raise ConfigError("no fleet file: pass --config FILE or set RECONCILER_CONFIG")
    return load_fleet(path)


def engine() -> Engine:
    """A local engine with the user's cache directory."""
    from reconciler.engine import Engine  # noqa: PLC0415
    from reconciler.source import default_cache_dir  # noqa: PLC0415

    return Engine.local(Path(default_cache_dir()))


def targets_of(fleet: Fleet, app: Application, names: Sequence[str] | None) -> list[Cluster]:
    """The clusters to work on: all targets of ``app``, or the named ones (each a target)."""
    targets = fleet.targets(app)
    if not names:
        if not targets:
            raise ConfigError(f"application {app.name} targets no cluster")
        return list(targets)
    chosen = []
    for name in names:
        cluster = fleet.cluster(name)
        if cluster not in targets:
            raise ConfigError(f"application {app.name} does not target cluster {name}")
        chosen.append(cluster)
    return chosen


# -- commands ------------------------------------------------------------------------------


def _cmd_sim(args: argparse.Namespace) -> int:
    """Run kubesim in the foreground with N clusters and a kubeconfig."""
    from kubesim.runtime import run_from_args  # noqa: PLC0415

    return run_from_args(args)


def _cmd_validate(args: argparse.Namespace) -> int:
    """Validate the fleet file and render every target; write nothing to any cluster."""
    fleet = load(args)
    eng = engine()
    rows: list[dict[str, Any]] = []
    bad_input = failed = False
    for app in fleet.applications:
        commit: str | None = None
        try:
            commit = eng.resolve(app.source, True)
        except ReconcilerError as exc:
            for cluster in fleet.targets(app):
                rows.append({"application": app.name, "cluster": cluster.name, "revision": None,
                             "objects": 0, "error": str(exc)})  # fmt: skip
            bad_input |= not exc.retryable
            failed |= exc.retryable
            continue
        for cluster in fleet.targets(app):
            row: dict[str, Any] = {"application": app.name, "cluster": cluster.name,
                                   "revision": commit, "objects": 0, "error": ""}  # fmt: skip
            try:
                manifests, _ = eng.desired(fleet.target(app.name, cluster.name), commit)
                row["objects"] = len(manifests)
            except ReconcilerError as exc:
                row["error"] = str(exc)
                bad_input |= not exc.retryable
                failed |= exc.retryable
            rows.append(row)
    if args.output == "json":
        print_json({"fleet": fleet.path, "warnings": list(fleet.warnings), "targets": rows})
    else:
        for warning in fleet.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print_table(
            ["APPLICATION", "CLUSTER", "REVISION", "OBJECTS", "RESULT"],
            [[r["application"], r["cluster"], (r["revision"] or "-")[:12], r["objects"],
              short(r["error"]) if r["error"] else "ok"] for r in rows],
        )  # fmt: skip
        for r in rows:
            if r["error"]:
                print(f"error: {r['application']} on {r['cluster']}: {r['error']}", file=sys.stderr)
    if bad_input:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


def _run_targets(args: argparse.Namespace, *, dry_run: bool) -> list[Outcome]:
    from reconciler.engine import Options  # noqa: PLC0415
    from reconciler.outcome import Trigger  # noqa: PLC0415

    fleet = load(args)
    app = fleet.application(args.app)
    clusters = targets_of(fleet, app, args.cluster)
    eng = engine()
    # One commit for every target of this run, fetched once.
    options = Options(dry_run=dry_run, revision=eng.resolve(app.source, True))
    with ThreadPoolExecutor(max_workers=min(8, len(clusters))) as pool:
        outcomes = list(pool.map(
            lambda c: eng.reconcile(fleet.target(app.name, c.name), trigger=Trigger.CLI,
                                    options=options),
            clusters,
        ))  # fmt: skip
    eng.clients.close()
    return outcomes


def _cmd_reconcile(args: argparse.Namespace) -> int:
    """Reconcile one application on its clusters, in this process."""
    outcomes = _run_targets(args, dry_run=args.dry_run)
    rows = [o.to_dict() for o in outcomes]
    print_listing(args.output, [summary_of(r) for r in rows], OUTCOME_COLUMNS, name=target_name,
                  data=rows)  # fmt: skip
    if args.output in {"table", "wide"}:
        print_hook_lines(rows, label=lambda r: str(r["cluster"]))
    for o in outcomes:
        for problem in o.errors:
            print(f"error: {o.application} on {o.cluster}: {problem.message}", file=sys.stderr)
    return EXIT_FAILED if any(o.failed for o in outcomes) else EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    """Show drift of one target, as ``kubectl diff`` does: exit 1 when there is some."""
    (outcome,) = _run_targets(args, dry_run=True)
    if args.output == "json":
        print_json({"application": outcome.application, "cluster": outcome.cluster,
                    "revision": outcome.revision,
                    "drift": outcome.to_dict()["drift"],
                    "errors": outcome.to_dict()["errors"]})  # fmt: skip
    else:
        for drift in outcome.drift:
            if drift.kind == "extra":
                print(f"# {drift.object}: not in Git any more (would be pruned)")
            elif drift.diff:
                print(drift.diff, end="" if drift.diff.endswith("\n") else "\n")
    for problem in outcome.errors:
        print(f"error: {problem.message}", file=sys.stderr)
    if outcome.errors:
        return EXIT_FAILED if outcome.retryable else EXIT_USAGE
    return EXIT_FAILED if outcome.drift else EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    """Print the fleet file's JSON Schema, for editors and linters in CI."""
    from reconciler.fleet import json_schema  # noqa: PLC0415
    from reconciler.yamlio import dump  # noqa: PLC0415

    schema = json_schema()
    if args.output == "yaml":
        print(dump(schema), end="")
    else:
        print_json(schema)
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------


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


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="fleet file (default: $RECONCILER_CONFIG)", metavar="FILE")


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", choices=["table", "json"], default="table")


def add_listing_output(parser: argparse.ArgumentParser) -> None:
    """``-o`` of a listing of targets: the five formats kubectl's listings take."""
    parser.add_argument(
        "-o", "--output", choices=LISTING_OUTPUTS, default="table",
        help="table (default), wide (more columns), json or yaml (whole records), "
        "name (app/cluster)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from kubesim.runtime import add_arguments  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="reconciler",
        description="GitOps reconciliation for fleets of Kubernetes clusters.",
    )
    parser.add_argument("--version", action="version", version=f"reconciler {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    sim = sub.add_parser(
        "sim",
        help="run simulated Kubernetes clusters (kubesim) in the foreground",
        description="Serve N simulated clusters over the real Kubernetes REST API and write "
        "a kubeconfig with one context per cluster. Stops on SIGINT or SIGTERM.",
    )
    add_arguments(sim)
    sim.set_defaults(handler=_cmd_sim)

    validate = sub.add_parser(
        "validate",
        help="validate the fleet file and render every application for every cluster",
        description="Validate the fleet file, then resolve and render every application for "
        "every cluster it targets. Writes nothing to any cluster (reads discovery). "
        "Exit 2 when the fleet file or a manifest is invalid, 1 when a source or "
        "cluster cannot be reached.",
    )
    add_config_argument(validate)
    add_output_argument(validate)
    validate.set_defaults(handler=_cmd_validate)

    reconcile = sub.add_parser(
        "reconcile",
        help="reconcile an application now, in this process (no Redis needed)",
        description="Reconcile APP on each cluster it targets (or the --cluster ones), in "
        "this process. Exit 1 if any target failed.",
    )
    add_config_argument(reconcile)
    reconcile.add_argument("app", metavar="APP")
    reconcile.add_argument("--cluster", action="append", metavar="NAME",
                           help="only this cluster (repeatable)")  # fmt: skip
    reconcile.add_argument("--dry-run", action="store_true",
                           help="detect and report drift, write nothing")  # fmt: skip
    add_listing_output(reconcile)
    reconcile.set_defaults(handler=_cmd_reconcile)

    diff = sub.add_parser(
        "diff",
        help="show the drift of one target (exit 1 when there is drift)",
        description="Print what differs between Git and the cluster for APP on one cluster, "
        "as kubectl diff does: exit 0 when there is no drift, 1 when there is.",
    )
    add_config_argument(diff)
    diff.add_argument("app", metavar="APP")
    diff.add_argument("--cluster", action="append", required=True, metavar="NAME")
    add_output_argument(diff)
    diff.set_defaults(handler=_cmd_diff)

    schema = sub.add_parser(
        "schema",
        help="print the fleet file's JSON Schema",
        description="Print the JSON Schema (draft 2020-12) of the fleet file, for editors "
        "and CI linters. It checks the shape; 'reconciler validate' also checks what needs "
        "the whole fleet (duplicate names, templates on every cluster).",
    )
    schema.add_argument("-o", "--output", choices=["json", "yaml"], default="json")
    schema.set_defaults(handler=_cmd_schema)

    from reconciler.cli_runtime import add_parsers  # noqa: PLC0415

    add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the subcommand, map errors to exit codes."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "diff" and len(args.cluster) != 1:
        parser.error("diff takes exactly one --cluster")
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ReconcilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if not exc.retryable else EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
