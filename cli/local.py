"""The one-shot commands: sim, validate, reconcile, diff and schema.

They need no Redis and no worker: each runs the engine in this process against the
clusters of the fleet file, so they work in a CI job, on a laptop, or when the rest of
the platform is down.  Exit codes are a contract with scripts: 0 ok, 1 a reconcile
failed or drift was found where asked, 2 bad input or usage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar

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
from reconciler.errors import ConfigError, ReconcilerError, SourceError, TransientError
from reconciler.source import GitSource

if TYPE_CHECKING:  # the heavy modules are imported by the commands that need them
    from reconciler.engine import Engine, RenderInput
    from reconciler.fleet import Application, Cluster, Fleet, Source, Target
    from reconciler.outcome import Outcome
    from reconciler.render import RenderedObject

_T = TypeVar("_T")

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
    """Validate the fleet file and render every target; write nothing to any cluster.

    Built for fleets of thousands of applications: each (repository, revision) is
    fetched and resolved once, every path the targets need at one commit is read from
    Git in one pass, and each distinct render (commit, path, render inputs) runs once and
    is shared by every target that needs it; discovery is read once per cluster.
    Progress goes to stderr while it runs.
    """
    from reconciler.settings import load as load_settings  # noqa: PLC0415

    fleet = load(args)
    validation = _Validation(fleet, load_settings().cache_path)
    try:
        rows = validation.run()
    finally:
        validation.engine.clients.close()
    bad_input = any(r["error"] and not r["retryable"] for r in rows)
    failed = any(r["error"] and r["retryable"] for r in rows)
    for r in rows:
        del r["retryable"]
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


#: Without a terminal, ``validate`` writes a progress line every this many targets.
PROGRESS_EVERY = 500


class _Validation:
    """One ``validate`` run: an engine whose source, resolve and render stages are shared.

    Results, errors included, are kept per (repository, revision) and per (commit,
    render inputs), so ten thousand applications of one repository cost one fetch, one
    read of the tree and as many renders as there are distinct paths and inputs.
    """

    def __init__(self, fleet: Fleet, cache_dir: Path) -> None:
        from reconciler.engine import Engine, GitRenderer  # noqa: PLC0415
        from reconciler.kube.client import ClientFactory  # noqa: PLC0415

        self.fleet = fleet
        self.source = _ReadAheadSource(cache_dir)
        self._render_from_git = GitRenderer(self.source)
        self.engine = Engine(source=self.source, clients=ClientFactory(cache_dir=cache_dir),
                             renderer=self._render)  # fmt: skip
        self._commits: dict[tuple[str, str], str | ReconcilerError] = {}
        self._fetched: dict[str, ReconcilerError | None] = {}
        self._renders: dict[tuple[str, str], list[RenderedObject] | ReconcilerError] = {}

    def run(self) -> list[dict[str, Any]]:
        """One row per target, in fleet order: the commit, the object count or the error."""
        planned: list[tuple[dict[str, Any], Target | None]] = []
        paths: dict[tuple[str, str], set[str]] = {}
        for app in self.fleet.applications:
            commit: str | None = None
            problem: ReconcilerError | None = None
            try:
                commit = self._resolve(app.source)
            except ReconcilerError as exc:
                problem = exc
            for cluster in self.fleet.targets(app):
                row = _row(app.name, cluster.name, commit)
                target = None
                if problem is not None:
                    _fail(row, problem)
                else:
                    try:
                        target = self.fleet.target(app.name, cluster.name)
                    except ReconcilerError as exc:
                        _fail(row, exc)
                if target is not None and commit is not None:
                    paths.setdefault((app.source.repo, commit), set()).add(target.path)
                planned.append((row, target))
        for (repo, commit), wanted in paths.items():
            self.source.read_ahead(repo, commit, sorted(wanted))
        with _Progress(len(planned)) as progress:
            for row, target in planned:
                if target is not None and row["revision"]:
                    try:
                        manifests, _ = self.engine.desired(target, row["revision"])
                        row["objects"] = len(manifests)
                    except ReconcilerError as exc:
                        _fail(row, exc)
                progress.advance()
        return [row for row, _ in planned]

    def _resolve(self, source: Source) -> str:
        """The commit of (repository, revision): the repository fetched once per run."""
        key = (source.repo, source.revision)
        if key not in self._commits:
            fetch_error = self._fetched.get(source.repo)
            try:
                if fetch_error is not None:
                    raise fetch_error
                fresh = source.repo not in self._fetched
                self._fetched.setdefault(source.repo, None)
                try:
                    self._commits[key] = self.source.resolve(
                        source.repo, source.revision, fetch=fresh
                    )
                except TransientError as exc:
                    self._fetched[source.repo] = exc
                    raise
            except ReconcilerError as exc:
                self._commits[key] = exc
        return _result(self._commits[key])

    def _render(self, spec: RenderInput, commit: str) -> list[RenderedObject]:
        """The engine's render stage, run once per (commit, render inputs)."""
        key = (commit, self._shared(spec, commit).key())
        if key not in self._renders:
            try:
                self._renders[key] = self._render_from_git(spec, commit)
            except ReconcilerError as exc:
                self._renders[key] = exc
        return _result(self._renders[key])

    def _shared(self, spec: RenderInput, commit: str) -> RenderInput:
        """``spec`` without what cannot change its render, so more targets share one.

        A path left to detection carries the options a chart would render with (the
        application's name as release name, its namespace); when the path holds no chart
        they are unused, and every application of that path renders the same objects.
        """
        from reconciler.render import SourceKind, detect  # noqa: PLC0415
        from reconciler.render.options import DEFAULT_HELM_OPTIONS  # noqa: PLC0415

        if spec.helm is not None or spec.jsonnet is not None or spec.directory is not None:
            return spec
        try:
            files = self.source.read_tree(spec.repo, commit, spec.path)
        except ReconcilerError:
            return spec  # the render reports it
        if detect(files) is SourceKind.HELM:
            return spec
        return dataclasses.replace(spec, chart=DEFAULT_HELM_OPTIONS)


def _result(value: _T | ReconcilerError) -> _T:
    """A kept result, or its kept error raised again (with a fresh traceback)."""
    if isinstance(value, ReconcilerError):
        raise value.with_traceback(None)
    return value


def _row(app: str, cluster: str, commit: str | None) -> dict[str, Any]:
    return {"application": app, "cluster": cluster, "revision": commit, "objects": 0,
            "error": "", "retryable": False}  # fmt: skip


def _fail(row: dict[str, Any], exc: ReconcilerError) -> None:
    row["error"] = str(exc)
    row["retryable"] = exc.retryable


class _ReadAheadSource(GitSource):
    """A Git source serving ``read_tree`` from trees read for a whole fleet at once."""

    def __init__(self, cache_dir: Path) -> None:
        super().__init__(cache_dir)
        self._trees: dict[tuple[str, str], dict[str, dict[str, bytes] | SourceError]] = {}

    def read_ahead(self, url: str, commit: str, paths: list[str]) -> None:
        """Read ``paths`` at ``commit`` in one pass; on failure each is read alone later."""
        # On failure read_tree, path by path, reports the error where it belongs.
        with contextlib.suppress(ReconcilerError):
            self._trees[(url, commit)] = self.read_trees(url, commit, paths)

    def read_tree(self, url: str, commit: str, path: str = "") -> dict[str, bytes]:
        files = self._trees.get((url, commit), {}).get(path)
        if files is None:
            return super().read_tree(url, commit, path)
        if isinstance(files, SourceError):
            raise SourceError(str(files))
        return dict(files)


class _Progress:
    """Targets done, on stderr: a rich progress bar on a terminal, else a line every so often."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty() and self.total:
            from rich.console import Console  # noqa: PLC0415
            from rich.progress import Progress  # noqa: PLC0415

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("validating targets", total=self.total)
        return self

    def advance(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)
        elif self.done % PROGRESS_EVERY == 0 or (
            self.done == self.total and self.total >= PROGRESS_EVERY
        ):
            elapsed = time.monotonic() - self.started
            print(f"validate: {self.done}/{self.total} targets ({elapsed:.1f}s)", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


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
