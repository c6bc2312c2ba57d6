"""What the fleet page shows, built from data already read: no I/O, no clock.

The handlers (:mod:`workers.ui.pages`) read the fleet file and Redis once per request and
hand the results here; everything the templates print comes out of these functions as
small frozen records, so the rules (which colour a target gets, which rows a filter
keeps, what a page of 50 holds, which names are close to a mistyped one) are tested as
plain functions and the templates stay free of decisions.

A target's *tone* is the one colour a person scans the matrix for:

* ``ok`` (green): Synced and Healthy (or Suspended: paused on purpose);
* ``warn`` (amber): OutOfSync, Progressing or Missing;
* ``bad`` (red): the last run Failed, or the target is Degraded;
* ``unknown`` (grey): never run, or a health nobody could tell.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlencode

from reconciler.fleet import Fleet, redact_url
from reconciler.fleet.model import Application, Cluster
from reconciler.model import Health, SyncStatus
from reconciler.outcome import TargetStatus, describe_cause
from reconciler.rollout import Phase, RolloutState, step_of, steps_of
from reconciler.store.rollback import RolledBack

__all__ = [
    "PAGE_SIZE",
    "STATUSES",
    "Filters",
    "Matrix",
    "NotFound",
    "TargetPage",
    "Tone",
    "flower_link",
    "matrix",
    "select",
    "target_page",
    "tone_of",
]

#: Applications per page of the matrix.
PAGE_SIZE = 50
#: The values of the ``status`` filter.
STATUSES = ("synced", "outofsync", "failed", "degraded", "progressing", "unknown")
#: Outcomes of a target's history the target page lists.
HISTORY = 20
#: Characters of a commit shown in a cell or a table.
SHORT = 12
#: Characters of an error shown in a cell's tooltip.
TOOLTIP = 300


class Tone(StrEnum):
    """The colour of a target (see the module's docstring)."""

    OK = "ok"
    WARN = "warn"
    BAD = "bad"
    UNKNOWN = "unknown"


def tone_of(entry: TargetStatus | None) -> Tone:
    """The colour of a target whose status entry is ``entry`` (None: never run)."""
    if entry is None:
        return Tone.UNKNOWN
    return _classify(entry.sync, entry.health)[0]


def statuses_of(entry: TargetStatus | None) -> frozenset[str]:
    """The ``status`` filter values a target matches."""
    if entry is None:
        return _NEVER_RUN
    return _classify(entry.sync, entry.health)[1]


_SYNCED, _OUT_OF_SYNC, _FAILED = (s.value for s in (SyncStatus.SYNCED, SyncStatus.OUT_OF_SYNC,
                                                     SyncStatus.FAILED))  # fmt: skip
_BY_SYNC = {_SYNCED: "synced", _OUT_OF_SYNC: "outofsync", _FAILED: "failed"}
_BY_HEALTH = {Health.DEGRADED.value: "degraded", Health.PROGRESSING.value: "progressing"}
_AMBER_HEALTH = frozenset({Health.PROGRESSING.value, Health.MISSING.value})
_GREEN_HEALTH = frozenset({Health.HEALTHY.value, Health.SUSPENDED.value})
_NEVER_RUN = frozenset({"unknown"})


@functools.lru_cache(maxsize=256)
def _classify(sync: str, health: str) -> tuple[Tone, frozenset[str]]:
    """Tone and status-filter values of one (sync, health) pair: a fleet has few pairs, so
    each is decided once, not once per target."""
    if sync == _FAILED or health == Health.DEGRADED.value:
        tone = Tone.BAD
    elif sync == _OUT_OF_SYNC or health in _AMBER_HEALTH:
        tone = Tone.WARN
    elif sync == _SYNCED and health in _GREEN_HEALTH:
        tone = Tone.OK
    else:
        tone = Tone.UNKNOWN
    found = set()
    if sync in _BY_SYNC:
        found.add(_BY_SYNC[sync])
    if health in _BY_HEALTH:
        found.add(_BY_HEALTH[health])
    if health in ("", Health.UNKNOWN.value) or sync not in _BY_SYNC:
        found.add("unknown")
    return tone, frozenset(found)


def short(revision: str | None) -> str:
    """A commit as a table shows it."""
    return (revision or "")[:SHORT]


def held_by_rollout(state: RolloutState | None, cluster: str) -> bool:
    """Whether a rollout in progress has not yet sent its revision to ``cluster``."""
    if state is None or state.phase not in (Phase.PROGRESSING, Phase.HALTED):
        return False
    return state.assigned.get(cluster) != state.revision


def _ago(stamp: str, now: datetime) -> str:
    """``stamp`` (RFC 3339) as "5s ago", "3m ago", "2h ago", "4d ago"; "" if unreadable."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = max(0.0, (now - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


# --------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelFilter:
    """``key=value`` (the label has that value) or ``key`` (the cluster has the label)."""

    key: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> LabelFilter:
        key, sep, value = text.strip().partition("=")
        return cls(key.strip(), value.strip() if sep else None)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.value is None:
            return self.key in labels
        return labels.get(self.key) == self.value

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True)
class Filters:
    """The matrix's query: cluster labels (all must hold), an application substring, a
    status, a page; ``problems`` are the parameters that were not understood."""

    labels: tuple[LabelFilter, ...] = ()
    app: str = ""
    status: str = ""
    page: int = 1
    problems: tuple[str, ...] = ()

    @classmethod
    def parse(cls, query: Mapping[str, str] | Iterable[tuple[str, str]]) -> Filters:
        """From query parameters (a multi-dict's ``items()`` keeps repeated ``label``)."""
        pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
        labels: list[LabelFilter] = []
        app = status = ""
        page = 1
        problems: list[str] = []
        for name, value in pairs:
            if name == "label":
                labels += [LabelFilter.parse(part) for part in value.split(",") if part.strip()]
            elif name == "app":
                app = value.strip()
            elif name == "status":
                wanted = value.strip().lower()
                if wanted in STATUSES:
                    status = wanted
                elif wanted:
                    problems.append(f"status {value!r} is not one of {', '.join(STATUSES)}")
            elif name == "page":
                try:
                    page = max(1, int(value))
                except ValueError:
                    problems.append(f"page {value!r} is not a number")
        return cls(tuple(labels), app, status, page, tuple(problems))

    def query(self, **changes: Any) -> str:
        """The query string of these filters with ``changes`` (``page=2``), for links."""
        values = {"label": [str(label) for label in self.labels], "app": self.app,
                  "status": self.status, "page": self.page, **changes}  # fmt: skip
        pairs: list[tuple[str, str]] = [("label", label) for label in values.pop("label")]
        pairs += [(k, str(v)) for k, v in values.items() if v not in ("", None, 1)]
        return urlencode(pairs)

    @property
    def active(self) -> bool:
        return bool(self.labels or self.app or self.status)


# --------------------------------------------------------------------------------------
# The matrix
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One application on one cluster (``targeted`` False: it does not go there)."""

    cluster: str
    targeted: bool
    tone: Tone = Tone.UNKNOWN
    sync: str = ""
    health: str = ""
    revision: str = ""
    reason: str = ""
    error: str = ""
    rolled_back: bool = False
    held: bool = False
    #: False when a status filter is set and this target does not match it.
    matches: bool = True
    href: str = ""

    @property
    def label(self) -> str:
        """The cell's text: what a person reads before the colour."""
        if not self.targeted:
            return ""
        if not self.sync:
            return "never run"
        return self.sync if self.health in ("", Health.UNKNOWN.value) else \
            f"{self.sync} · {self.health}"  # fmt: skip

    @property
    def title(self) -> str:
        """The tooltip: the cell's text, revision, reason and error."""
        parts = [self.label]
        if self.revision:
            parts.append(f"at {self.revision}")
        if self.reason:
            parts.append(self.reason)
        if self.error:
            parts.append(self.error[:TOOLTIP])
        if self.rolled_back:
            parts.append("rolled back")
        if self.held:
            parts.append("held by its rollout step")
        return " — ".join(parts)


@dataclass(frozen=True)
class Row:
    application: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True)
class Column:
    name: str
    labels: tuple[tuple[str, str], ...]

    @property
    def title(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.labels) or "no labels"


@dataclass(frozen=True)
class Matrix:
    """One page of the matrix, and what the filters kept over every page."""

    filters: Filters
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    page: int
    pages: int
    #: Applications the filters kept (every page), of the fleet's.
    applications: int
    fleet_applications: int
    #: Targets the filters kept, by tone (every page).
    tones: Mapping[str, int] = field(default_factory=dict)

    @property
    def previous(self) -> str | None:
        return self.filters.query(page=self.page - 1) if self.page > 1 else None

    @property
    def next(self) -> str | None:
        return self.filters.query(page=self.page + 1) if self.page < self.pages else None


def target_href(app: str, cluster: str) -> str:
    return f"/ui/target/{quote(app, safe='')}/{quote(cluster, safe='')}"


@dataclass(frozen=True)
class Selection:
    """What the filters keep, over every page, and which applications the asked page holds.

    Built first so that the handler reads the rollouts of the page's applications only.
    """

    filters: Filters
    index: Mapping[tuple[str, str], TargetStatus]
    clusters: tuple[Cluster, ...]
    #: Every kept application, with the shown clusters it goes to.
    kept: tuple[tuple[str, tuple[str, ...]], ...]
    page: int
    pages: int
    page_size: int
    fleet_applications: int

    @property
    def page_applications(self) -> list[str]:
        start = (self.page - 1) * self.page_size
        return [name for name, _targets in self.kept[start : start + self.page_size]]


def select(
    fleet: Fleet, statuses: Iterable[TargetStatus], *, filters: Filters,
    page_size: int = PAGE_SIZE,
) -> Selection:  # fmt: skip
    """The applications and clusters ``filters`` keep.

    Columns are the clusters whose labels match, that a kept application goes to (every
    cluster matching when none is kept), in the fleet file's order; rows are the kept
    applications, in the file's order.  A status filter keeps the applications with at
    least one target in that status among the columns.
    """
    index = {(s.application, s.cluster): s for s in statuses}
    clusters = [c for c in fleet.clusters if all(f.matches(c.labels) for f in filters.labels)]
    shown = {c.name for c in clusters}
    needle = filters.app.lower()
    kept: list[tuple[str, tuple[str, ...]]] = []
    for app in fleet.applications:
        if needle and needle not in app.name.lower():
            continue
        targets = tuple(c.name for c in fleet.targets(app) if c.name in shown)
        if filters.labels and not targets:
            continue
        if filters.status and not any(
            filters.status in statuses_of(index.get((app.name, c))) for c in targets
        ):
            continue
        kept.append((app.name, targets))
    if kept:
        used = {name for _app, targets in kept for name in targets}
        clusters = [c for c in clusters if c.name in used]
    pages = max(1, math.ceil(len(kept) / page_size))
    return Selection(filters=filters, index=index, clusters=tuple(clusters), kept=tuple(kept),
                     page=min(filters.page, pages), pages=pages, page_size=page_size,
                     fleet_applications=len(fleet.applications))  # fmt: skip


def matrix(
    selection: Selection,
    *,
    rolled_back: Mapping[tuple[str, str], RolledBack] | None = None,
    rollouts: Mapping[str, RolloutState] | None = None,
) -> Matrix:
    """The page of the matrix ``selection`` holds; a status filter greys out the cells
    that do not match it.  ``rollouts`` needs only the page's applications."""
    rolled_back = rolled_back or {}
    rollouts = rollouts or {}
    filters, index = selection.filters, selection.index
    tones = {tone.value: 0 for tone in Tone}
    for app, targets in selection.kept:
        for cluster in targets:
            entry = index.get((app, cluster))
            if not filters.status or filters.status in statuses_of(entry):
                tones[tone_of(entry)] += 1
    start = (selection.page - 1) * selection.page_size
    rows = []
    for app, targets in selection.kept[start : start + selection.page_size]:
        mine = set(targets)
        state = rollouts.get(app)
        cells = []
        for column in selection.clusters:
            name = column.name
            if name not in mine:
                cells.append(Cell(name, targeted=False))
                continue
            cells.append(_cell(app, name, index.get((app, name)), filters=filters,
                               rolled_back=(app, name) in rolled_back,
                               held=held_by_rollout(state, name)))  # fmt: skip
        rows.append(Row(app, tuple(cells)))
    return Matrix(
        filters=filters,
        columns=tuple(Column(c.name, tuple(sorted(c.labels.items()))) for c in selection.clusters),
        rows=tuple(rows),
        page=selection.page,
        pages=selection.pages,
        applications=len(selection.kept),
        fleet_applications=selection.fleet_applications,
        tones=tones,
    )


def _cell(
    app: str, cluster: str, entry: TargetStatus | None, *, filters: Filters,
    rolled_back: bool, held: bool,
) -> Cell:  # fmt: skip
    href = target_href(app, cluster)
    matches = not filters.status or filters.status in statuses_of(entry)
    if entry is None:
        return Cell(cluster, True, rolled_back=rolled_back, held=held, matches=matches, href=href)
    return Cell(
        cluster,
        True,
        tone=tone_of(entry),
        sync=entry.sync,
        health=entry.health,
        revision=short(entry.revision),
        reason=entry.reason,
        error=entry.error,
        rolled_back=rolled_back,
        held=held,
        matches=matches,
        href=href,
    )


# --------------------------------------------------------------------------------------
# One target
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotFound:
    """An application or cluster the page does not know, with the names close to it."""

    message: str
    suggestions: tuple[tuple[str, str], ...] = ()  # (name, href)


@dataclass(frozen=True)
class RolloutView:
    phase: str
    revision: str
    step: int  # 1-based, of the cluster
    steps: int
    current: int  # 1-based, the rollout's
    step_clusters: tuple[str, ...]
    assigned: str
    held: bool
    reason: str


@dataclass(frozen=True)
class Run:
    """One outcome of the target's history, as its table row shows it."""

    started: str
    ago: str
    trigger: str
    revision: str
    sync: str
    health: str
    tone: Tone
    reason: str
    errors: tuple[str, ...]
    changes: str
    repeats: int
    #: Why it ran and who asked (``reconciler.outcome.describe_cause``).
    why: str = ""


@dataclass(frozen=True)
class DriftView:
    object: str
    kind: str
    paths: tuple[str, ...]
    diff: str


@dataclass(frozen=True)
class HookView:
    object: str
    phase: str
    result: str
    message: str


@dataclass(frozen=True)
class TargetPage:
    application: str
    cluster: str
    labels: tuple[tuple[str, str], ...]
    repo: str
    path: str
    ref: str
    status: TargetStatus | None
    tone: Tone
    ago: str
    #: The commit Git names now, when the store knows it (a rollback's, a rollout's).
    wanted: str
    rolled_back: RolledBack | None
    rollout: RolloutView | None
    history: tuple[Run, ...]
    #: The drift of the newest outcome that had any, and when that run started.
    drift: tuple[DriftView, ...]
    drift_started: str
    hooks: tuple[HookView, ...]
    hooks_started: str
    flower: str

    @property
    def short_revision(self) -> str:
        return short(self.status.revision if self.status else None)


def find_target(fleet: Fleet, app: str, cluster: str) -> tuple[Application, Cluster] | NotFound:
    """The application and cluster of a target page, or what to say instead."""
    apps = {a.name: a for a in fleet.applications}
    if app not in apps:
        close = difflib.get_close_matches(app, list(apps), n=5, cutoff=0.5)
        return NotFound(f"No application {app!r} in the fleet file.",
                        tuple((name, target_href(name, cluster)) for name in close))  # fmt: skip
    application = apps[app]
    targets = fleet.targets(application)
    names = [c.name for c in targets]
    if cluster not in names:
        known = cluster in {c.name for c in fleet.clusters}
        message = (f"Application {app!r} does not go to cluster {cluster!r}." if known
                   else f"No cluster {cluster!r} in the fleet file.")  # fmt: skip
        close = difflib.get_close_matches(cluster, names, n=5, cutoff=0.5) or names[:10]
        return NotFound(message, tuple((name, target_href(app, name)) for name in close))
    return application, targets[names.index(cluster)]


def target_page(
    fleet: Fleet,
    application: Application,
    cluster: Cluster,
    *,
    status: TargetStatus | None,
    history: Sequence[Mapping[str, Any]],
    rolled_back: RolledBack | None,
    rollout: RolloutState | None,
    flower_url: str,
    now: datetime,
) -> TargetPage:
    """Everything the target page shows, from what was read for it."""
    view = None
    wanted = ""
    if rollout is not None:
        steps = steps_of(application, fleet.targets(application))
        mine = step_of(steps, cluster.name)
        if mine is not None:
            view = RolloutView(
                phase=rollout.shown_phase,
                revision=rollout.revision,
                step=mine.index + 1,
                steps=len(steps),
                current=min(rollout.step, len(steps) - 1) + 1,
                step_clusters=mine.clusters,
                assigned=rollout.assigned.get(cluster.name, ""),
                held=held_by_rollout(rollout, cluster.name),
                reason=rollout.reason,
            )
        wanted = rollout.revision
    if rolled_back is not None and rolled_back.wanted:
        wanted = rolled_back.wanted
    drift: tuple[DriftView, ...] = ()
    drift_started = ""
    for outcome in history:
        if outcome.get("drift"):
            drift = tuple(_drift(d) for d in outcome["drift"])
            drift_started = str(outcome.get("started", ""))
            break
    hooks: tuple[HookView, ...] = ()
    hooks_started = ""
    for outcome in history:
        if outcome.get("hooks"):
            hooks = tuple(HookView(str(h.get("object", "")), str(h.get("phase", "")),
                                   str(h.get("result", "")), str(h.get("message", "")))
                          for h in outcome["hooks"])  # fmt: skip
            hooks_started = str(outcome.get("started", ""))
            break
    return TargetPage(
        application=application.name,
        cluster=cluster.name,
        labels=tuple(sorted(cluster.labels.items())),
        repo=redact_url(application.source.repo),
        path=application.source.path,
        ref=application.source.revision,
        status=status,
        tone=tone_of(status),
        ago=_ago(status.finished, now) if status else "",
        wanted=wanted,
        rolled_back=rolled_back,
        rollout=view,
        history=tuple(_run(outcome, now) for outcome in history[:HISTORY]),
        drift=drift,
        drift_started=drift_started,
        hooks=hooks,
        hooks_started=hooks_started,
        flower=flower_link(flower_url, application.name, cluster.name),
    )


def flower_link(base: str, app: str, cluster: str) -> str:
    """Flower's tasks page searching for the target's reconciles.

    Flower's ``name`` parameter becomes the search ``name:"..."``, a substring of the
    task's name (``reconcile APP → CLUSTER (trigger)``, see ``workers.flower``); the
    quotes keep the spaces, the opening parenthesis stops ``web`` finding ``web-2``.
    """
    phrase = f'"reconcile {app} → {cluster} ("'
    return f"{base.rstrip('/')}/tasks?name={quote(phrase, safe='')}"


def _drift(data: Mapping[str, Any]) -> DriftView:
    return DriftView(str(data.get("object", "")), str(data.get("kind", "changed")),
                     tuple(str(p) for p in data.get("paths") or ()),
                     str(data.get("diff") or ""))  # fmt: skip


def _run(outcome: Mapping[str, Any], now: datetime) -> Run:
    entry = TargetStatus.of({"application": "", "cluster": "", **outcome})
    counts = ", ".join(f"{n} {action}" for action, n in entry.actions.items()
                       if n and action != "unchanged")  # fmt: skip
    errors = tuple(str(p.get("message", "")) for p in outcome.get("errors") or ())
    return Run(
        started=entry.started,
        ago=_ago(entry.started, now),
        trigger=entry.trigger,
        revision=short(entry.revision),
        sync=entry.sync,
        health=entry.health,
        tone=tone_of(entry),
        reason=entry.reason,
        errors=errors,
        changes=counts or "no change",
        repeats=entry.repeats,
        why=describe_cause(outcome.get("cause") or {}),
    )
