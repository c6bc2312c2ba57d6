"""How every command prints: tables, listings of targets, JSON and YAML.

Listings of targets (``reconcile``, ``sync``, ``wait``, ``get``, ``status``, ``history``,
``diff``, ``validate``) take ``-o table|wide|json|yaml|name`` as kubectl's do, and share
one vocabulary so a column means the same thing wherever it appears: ``table`` is what a
person scans (sync, health, the REASON a run stopped, a HOOKS summary such as ``2 ok, 1
failed``); ``wide`` adds columns and never removes or reorders one (ERROR stays last);
``json`` and ``yaml`` carry the whole record (every hook, the reason, the drift); ``name``
prints ``app/cluster``.  Where a listing shows single runs, each hook of the run follows
the table on a line of its own, because a failed migration is the first thing an
operator looks for.

On a terminal a table is drawn by rich, with sync and health in colour; piped or
redirected it is plain aligned text, byte for byte what a script parsed yesterday, since
scripts cut kubectl-style output at its header's columns.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: Colours of sync and health values in a terminal table (plain text elsewhere).
_STYLES = {
    "Synced": "green", "Healthy": "green", "OutOfSync": "yellow", "Progressing": "cyan",
    "Suspended": "blue", "Failed": "bold red", "Degraded": "bold red", "Missing": "yellow",
    "Unknown": "dim", "ok": "green",
}  # fmt: skip


def _terminal() -> bool:
    return sys.stdout.isatty()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Aligned columns, like kubectl's default output; drawn by rich on a terminal."""
    if not _terminal():
        print_aligned([list(headers), *rows])
        return
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 3, 0, 0))
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(Text(str(c), style=_STYLES.get(str(c).split(" ")[0], "")) for c in row))
    Console(soft_wrap=False).print(table)


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
    (``reconciler.outcome.TargetStatus``).  ``-o json|yaml`` print the outcomes whole.
    """
    from reconciler.outcome import TargetStatus  # noqa: PLC0415

    shown = TargetStatus.of(outcome).to_dict()
    shown["attempt"] = outcome.get("attempt") or 1
    shown["cause"] = outcome.get("cause") or {}
    shown["live_health"] = outcome.get("live_health")
    return shown


def why_cell(cause: Mapping[str, Any], width: int = 60) -> str:
    """Why a run happened, in one cell (``reconciler.outcome.describe_cause``)."""
    from reconciler.outcome import describe_cause  # noqa: PLC0415

    return short(describe_cause(cause), width) or "-"


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


def age_cell(finished: str) -> str:
    """How long ago ``finished`` was, as kubectl's AGE column says it: ``45s``, ``3m``, ``2d``."""
    from datetime import UTC, datetime  # noqa: PLC0415

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
