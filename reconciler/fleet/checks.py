"""Checks that need the whole fleet, run once every entry has been validated on its own.

Pydantic validates each value where it stands; some rules need several entries at once:
names are unique, a selector's names exist, an application's project exists and admits its
destination namespace, and every templated path renders (and stays in its repository) on
every cluster the application selects.  They run on the entries
that validated, so a user sees these problems together with every other one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from reconciler.fleet.messages import Loc, Problem, known, quote
from reconciler.fleet.model import DEFAULT_PROJECT, Application, Cluster, Project
from reconciler.fleet.paths import MissingLabel, PathError, static_problems, target_paths

__all__ = ["Entry", "Findings", "check_fleet"]

T = TypeVar("T")

#: Clusters named in one "missing label" message; the rest are counted.
_MAX_LISTED = 5


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One item of ``clusters`` or ``applications``: the name written, and the valid value.

    ``value`` is None when the item did not validate; its name still counts for
    duplicates and for selectors that name it.
    """

    written_name: object
    value: T | None


@dataclass
class Findings:
    """What the checks found: errors stop the fleet from loading, warnings do not."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def check_fleet(
    clusters: Sequence[Entry[Cluster]],
    applications: Sequence[Entry[Application]],
    *,
    projects: Sequence[Entry[Project]] = (),
) -> Findings:
    """Every whole-fleet problem of these entries, in the order of the file."""
    findings = Findings()
    findings.errors += _duplicates("clusters", clusters)
    findings.errors += _duplicates("projects", projects)
    repeated = _duplicates("applications", applications)
    findings.errors += repeated
    skipped = {problem.loc[1] for problem in repeated}
    names = sorted({e.written_name for e in clusters if isinstance(e.written_name, str)})
    valid = [entry.value for entry in clusters if entry.value is not None]
    written: dict[str, Project | None] = {}
    for project in projects:  # the first of duplicates counts, as it is the one reported
        if isinstance(project.written_name, str):
            written.setdefault(project.written_name, project.value)
    for index, entry in enumerate(applications):
        if entry.value is not None and index not in skipped:
            _check_project(findings, index, entry.value, written)
            _check_application(findings, index, entry.value, clusters=valid, names=names)
    return findings


def _check_project(
    findings: Findings, index: int, app: Application, projects: Mapping[str, Project | None]
) -> None:
    """The project named exists, and its destinations admit the application's namespace.

    An invalid project is reported where it is written; its applications are not blamed
    for it again.
    """
    name = app.project
    if name is not None and name not in projects and name != DEFAULT_PROJECT:
        written = sorted(str(n) for n in projects)
        findings.errors.append(
            Problem(
                ("applications", index, "project"),
                f"unknown project {quote(name)}" + known(name, written),
            )
        )
        return
    project = projects.get(name or DEFAULT_PROJECT)
    namespace = app.destination.namespace
    if project is not None and namespace and not project.permits_namespace(namespace):
        allowed = ", ".join(project.destinations.namespaces)
        findings.errors.append(
            Problem(
                ("applications", index, "destination", "namespace"),
                f"{quote(namespace)} is not a destination of project {quote(project.name)} "
                f"(destinations.namespaces: {allowed})",
            )
        )


def _duplicates(collection: str, entries: Sequence[Entry[T]]) -> list[Problem]:
    first: dict[str, int] = {}
    out: list[Problem] = []
    for index, entry in enumerate(entries):
        name = entry.written_name
        if not isinstance(name, str):
            continue
        if name in first:
            out.append(
                Problem(
                    (collection, index, "name"),
                    f"duplicate {quote(name)} (already used by {collection}[{first[name]}])",
                )
            )
        else:
            first[name] = index
    return out


def _check_rollout(
    findings: Findings, entry: Loc, app: Application, targets: Sequence[Cluster]
) -> None:
    """A rollout step that none of the application's clusters falls into is a warning:
    its gate passes at once, which is rarely what its author meant (a label mistyped)."""
    if app.rollout is None or not targets:
        return
    left = list(targets)
    for s_index, step in enumerate(app.rollout.steps):
        mine = [cluster for cluster in left if step.clusters.matches(cluster)]
        if not mine:
            findings.warnings.append(
                Problem((*entry, "rollout", "steps", s_index, "clusters"),
                        "selects none of the application's clusters (or only clusters an "
                        "earlier step took); the step is passed at once")
            )  # fmt: skip
        left = [cluster for cluster in left if cluster not in mine]


def _check_application(
    findings: Findings,
    index: int,
    app: Application,
    *,
    clusters: Sequence[Cluster],
    names: Sequence[str],
) -> None:
    """Selector names exist, something matches, and the paths render on every target."""
    entry: Loc = ("applications", index)
    selector = app.destination.clusters
    for n_index, name in enumerate(selector.names or ()):
        if name not in names:
            findings.errors.append(
                Problem(
                    (*entry, "destination", "clusters", "names", n_index),
                    f"unknown cluster {quote(name)}" + known(name, names),
                )
            )
    targets = [cluster for cluster in clusters if selector.matches(cluster)]
    if not targets:
        findings.warnings.append(
            Problem((*entry, "destination", "clusters"), "matches no cluster; nothing is deployed")
        )
    _check_rollout(findings, entry, app, targets)
    source = app.source
    value_files = source.helm.value_files if source.helm else ()
    static = [
        Problem((*entry, "source", *where), error.describe(None))
        for where, error in static_problems(source.path, value_files)
    ]
    if static:
        findings.errors += static
        return
    missing: dict[tuple[Loc, str, str], list[str]] = {}
    for cluster in targets:
        try:
            target_paths(source.path, value_files, name=cluster.name, labels=cluster.labels)
        except PathError as exc:
            where = (*entry, "source", *exc.field)
            if isinstance(exc.error, MissingLabel):
                key = (where, exc.error.label, exc.error.template)
                missing.setdefault(key, []).append(cluster.name)
                continue
            findings.errors.append(Problem(where, f"on cluster {quote(cluster.name)}: {exc}"))
            return
    for (where, label, template), lacking in missing.items():
        shown = ", ".join(quote(name) for name in lacking[:_MAX_LISTED])
        more = f" and {len(lacking) - _MAX_LISTED} more" if len(lacking) > _MAX_LISTED else ""
        findings.errors.append(
            Problem(
                where,
                f"label {quote(label)} used in {quote(template)} is missing on "
                f"cluster{'s' if len(lacking) > 1 else ''} {shown}{more}",
            )
        )
