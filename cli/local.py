"""The one-shot commands: sim, validate, reconcile, diff and schema.

They need no Redis and no worker: each runs the engine in this process against the
clusters of the fleet file, so they work in a CI job, on a laptop, or when the rest of
the platform is down.  Exit codes are a contract with scripts: 0 ok, 1 a reconcile
failed or drift was found where asked, 2 bad input or usage.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from cli.installation import current
from cli.output import (
    OUTCOME_COLUMNS,
    Column,
    print_hook_lines,
    print_json,
    print_listing,
    short,
    summary_of,
    target_name,
)
from reconciler.errors import ConfigError, ReconcilerError

if TYPE_CHECKING:  # the heavy modules are imported by the commands that need them
    from reconciler.engine import Engine
    from reconciler.fleet import Application, Cluster, Fleet
    from reconciler.outcome import Outcome

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: The parsed options of one command, by name (click hands them over as keywords).
Params = SimpleNamespace


# -- shared plumbing -----------------------------------------------------------------------


def load(args: Params) -> Fleet:
    """The fleet named by ``--config`` or ``RECONCILER_CONFIG`` (ConfigError otherwise)."""
    from reconciler.fleet import load_fleet  # noqa: PLC0415 - keep start-up light

    path = getattr(args, "config", None) or current().config
    if not path:
        raise ConfigError("no fleet file: pass --config FILE or set RECONCILER_CONFIG")
    return load_fleet(path)


def engine() -> Engine:
    """A local engine with the user's cache directory."""
    from reconciler.engine import Engine  # noqa: PLC0415
    from reconciler.settings import load as load_settings  # noqa: PLC0415

    return Engine.local(load_settings().cache_path)


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


def cmd_sim(args: Params) -> int:
    """Run kubesim in the foreground with N clusters and a kubeconfig."""
    import argparse  # noqa: PLC0415  (kubesim's own runner takes its parsed options)

    from kubesim.runtime import run_from_args  # noqa: PLC0415

    return run_from_args(argparse.Namespace(**vars(args)))


#: ``validate``: one row per target, what it renders to or why it does not.
VALIDATE_COLUMNS: tuple[Column, ...] = (
    Column("APPLICATION", lambda r: r["application"]),
    Column("CLUSTER", lambda r: r["cluster"]),
    Column("REVISION", lambda r: (r["revision"] or "-")[:12]),
    Column("OBJECTS", lambda r: r["objects"]),
    Column("RESULT", lambda r: short(r["error"]) if r["error"] else "ok"),
    Column("COMMIT", lambda r: r["revision"] or "-", wide=True),
)


def cmd_validate(args: Params) -> int:
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
    for warning in fleet.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    data = {"fleet": fleet.path, "warnings": list(fleet.warnings), "targets": rows}
    print_listing(args.output, rows, VALIDATE_COLUMNS, name=target_name, data=data,
                  empty=f"{fleet.path}: no application targets a cluster.")  # fmt: skip
    for r in rows:
        if r["error"] and args.output in {"table", "wide"}:
            print(f"error: {r['application']} on {r['cluster']}: {r['error']}", file=sys.stderr)
    if bad_input:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


def _run_targets(args: Params, *, dry_run: bool) -> list[Outcome]:
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


def cmd_reconcile(args: Params) -> int:
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


def _diff_row(outcome: Outcome) -> dict[str, Any]:
    data = outcome.to_dict()
    return {"application": outcome.application, "cluster": outcome.cluster,
            "revision": outcome.revision, "drift_count": len(outcome.drift),
            "drift": data["drift"], "errors": data["errors"]}  # fmt: skip


#: ``diff -o wide``: which targets drifted, and where.
DIFF_COLUMNS: tuple[Column, ...] = (
    Column("CLUSTER", lambda r: r["cluster"]),
    Column("REVISION", lambda r: (r["revision"] or "-")[:12]),
    Column("DRIFT", lambda r: r["drift_count"]),
    Column("OBJECTS", lambda r: " ".join(d["object"] for d in r["drift"])),
    Column("APPLICATION", lambda r: r["application"], wide=True),
    Column("ERROR", lambda r: short(r["errors"][0]["message"]) if r["errors"] else ""),
)


def cmd_diff(args: Params) -> int:
    """Show what a sync would change on each target, as ``kubectl diff``: exit 1 on drift.

    Every cluster of the application is compared unless ``--cluster`` names some; the
    default output is the unified diff of each drifted object under a ``# APP on CLUSTER``
    line, ``-o table|wide`` a row per target, ``-o name`` the targets that drifted.
    """
    outcomes = _run_targets(args, dry_run=True)
    rows = [_diff_row(o) for o in outcomes]
    if args.output == "diff":
        for outcome in outcomes:
            if outcome.drift:
                print(f"# {outcome.application} on {outcome.cluster}")
            for drift in outcome.drift:
                if drift.kind == "extra":
                    print(f"# {drift.object}: not in Git any more (would be pruned)")
                elif drift.diff:
                    print(drift.diff, end="" if drift.diff.endswith("\n") else "\n")
    elif args.output == "name":
        for row in rows:
            if row["drift_count"]:
                print(target_name(row))
    else:
        print_listing(args.output, rows, DIFF_COLUMNS, name=target_name)
    for outcome in outcomes:
        for problem in outcome.errors:
            print(f"error: {outcome.application} on {outcome.cluster}: {problem.message}",
                  file=sys.stderr)  # fmt: skip
    if any(o.errors for o in outcomes):
        return EXIT_FAILED if any(o.retryable for o in outcomes if o.errors) else EXIT_USAGE
    return EXIT_FAILED if any(o.drift for o in outcomes) else EXIT_OK


def cmd_schema(args: Params) -> int:
    """Print the fleet file's JSON Schema, for editors and linters in CI."""
    from reconciler.fleet import json_schema  # noqa: PLC0415
    from reconciler.yamlio import dump  # noqa: PLC0415

    schema = json_schema()
    if args.output == "yaml":
        print(dump(schema), end="")
    else:
        print_json(schema)
    return EXIT_OK
