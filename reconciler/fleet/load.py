"""Reading a fleet file: YAML, then the model, then the whole-fleet checks.

The fleet file comes from Git, so anyone who can push can write it, and it drives every
schedule and every write to every cluster.  It is therefore validated as a whole before
anything runs (DESIGN.md, "Contracts"): all problems are collected and reported together,
one per line, each naming the file, the entry and the field, so a user fixes a file in one
round trip instead of one error at a time.  Pydantic's errors are translated here into
those lines; :func:`load_fleet` is the only function of the package that does I/O.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic.dataclasses import is_pydantic_dataclass
from pydantic_core import ErrorDetails

from reconciler.errors import ConfigError
from reconciler.fleet.checks import Entry, check_fleet
from reconciler.fleet.messages import (
    COLLECTIONS,
    ERROR_TYPE,
    Loc,
    Problem,
    describe,
    entry_name,
    literal,
    quote,
    suggestion,
)
from reconciler.fleet.model import (
    Application,
    Cluster,
    Fleet,
    FleetFile,
    FleetWindow,
    Notification,
    Project,
)
from reconciler.model import type_name
from reconciler.yamlio import load_documents

__all__ = ["load_fleet", "parse_fleet"]

_FILE = TypeAdapter(FleetFile)
_ITEMS: dict[str, TypeAdapter[Any]] = {
    "clusters": TypeAdapter(Cluster),
    "projects": TypeAdapter(Project),
    "applications": TypeAdapter(Application),
}
#: Where each part of the file comes in the report: as it is read, top to bottom.
_SECTIONS = {"defaults": 1, "clusters": 2, "projects": 3, "applications": 4, "windows": 5,
             "notifications": 6}

_MISSING = {"missing", "missing_argument", "missing_keyword_only_argument"}
_UNKNOWN = {"unexpected_keyword_argument", "extra_forbidden"}
_MAP_EXPECTED = {"dict_type", "dataclass_type", "dataclass_exact_type", "model_type"}
_LIST_EXPECTED = {"tuple_type", "list_type", "iterable_type"}
_CHOICE = {"enum", "literal_error"}
#: Noise: a default computed from another field that is itself invalid (reported already).
_IGNORED = {"default_factory_not_called"}


def load_fleet(path: str | os.PathLike[str]) -> Fleet:
    """Read and validate the fleet file at ``path``; the only function here that does I/O."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the fleet file: {exc.strerror}") from exc
    base_dir = os.path.dirname(os.path.abspath(source))
    return parse_fleet(data, source=source, base_dir=base_dir)


def parse_fleet(text: str | bytes, *, source: str, base_dir: str) -> Fleet:
    """Validate a fleet file's text as a whole; raise one ConfigError listing every problem.

    ``source`` names the file in messages; ``base_dir`` is where relative repository paths
    are resolved from (the fleet file's directory).  Pure: no file is read.
    """
    document = _document(text, source=source)
    context = {"base_dir": base_dir}
    problems: list[Problem] = []
    windows: tuple[FleetWindow, ...] = ()
    notifications: tuple[Notification, ...] = ()
    try:
        # By alias only: the file's field names are the camelCase ones.
        fleet_file = _FILE.validate_python(document, context=context, by_alias=True, by_name=False)
        clusters: list[Cluster | None] = list(fleet_file.clusters)
        projects: list[Project | None] = list(fleet_file.projects)
        applications: list[Application | None] = list(fleet_file.applications)
        windows = fleet_file.windows
        notifications = fleet_file.notifications
    except ValidationError as exc:
        problems += _problems(exc)
        # The entries that are valid on their own still go through the fleet checks.
        clusters = _valid_items("clusters", document, context)
        projects = _valid_items("projects", document, context)
        applications = _valid_items("applications", document, context)
    findings = check_fleet(
        _entries("clusters", document, clusters),
        _entries("applications", document, applications),
        projects=_entries("projects", document, projects),
    )
    problems += findings.errors
    if problems:
        problems.sort(key=_position)
        raise ConfigError("\n".join(_line(source, p, document) for p in problems))
    return Fleet(
        clusters=tuple(c for c in clusters if c is not None),
        applications=tuple(a for a in applications if a is not None),
        path=source,
        warnings=tuple(_line(source, p, document) for p in findings.warnings),
        projects=tuple(p for p in projects if p is not None),
        windows=windows,
        notifications=notifications,
    )


def _document(text: str | bytes, *, source: str) -> dict[str, Any]:
    try:
        documents = load_documents(text, source=source, error=ConfigError)
    except ConfigError as exc:
        # PyYAML's own messages may span lines; ours are one problem per line.
        raise ConfigError(" ".join(str(exc).split())) from None
    except ValueError as exc:
        # int() refuses integers of more than 4300 digits while PyYAML constructs them.
        raise ConfigError(f"{source}: invalid YAML: {exc}") from None
    if not documents:
        raise ConfigError(
            f"{source}: the fleet file is empty (expected a map with clusters and applications)"
        )
    if len(documents) > 1:
        raise ConfigError(
            f"{documents[1].where}: expected one YAML document, found {len(documents)}"
        )
    data = documents[0].data
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a map with clusters and applications, got {type_name(data)}"
        )
    return data


def _valid_items(
    collection: str, document: Mapping[str, Any], context: dict[str, str]
) -> list[Any]:
    items = document.get(collection)
    if not isinstance(items, list):
        return []
    out: list[Any] = []
    for item in items:
        try:
            out.append(
                _ITEMS[collection].validate_python(
                    item, context=context, by_alias=True, by_name=False
                )
            )
        except ValidationError:
            out.append(None)
    return out


def _entries(
    collection: str, document: Mapping[str, Any], values: Sequence[Any]
) -> list[Entry[Any]]:
    items = document.get(collection)
    written = items if isinstance(items, list) else []
    return [
        Entry(item.get("name") if isinstance(item, dict) else None, value)
        for item, value in zip(written, values, strict=False)
    ]


# --------------------------------------------------------------------------------------
# Pydantic's errors, in our words
# --------------------------------------------------------------------------------------


def _problems(exc: ValidationError) -> list[Problem]:
    out: list[Problem] = []
    for error in exc.errors(include_url=False):
        if error["type"] in _IGNORED:
            continue
        loc: Loc = tuple(error["loc"])
        message = _message(error, loc)
        if loc and loc[-1] == "[key]":  # a map key: the problem is the map's
            loc = loc[:-2]
        out.append(Problem(loc, message))
    return out


def _message(error: ErrorDetails, loc: Loc) -> str:
    kind, value = error["type"], error["input"]
    ctx = error.get("ctx") or {}
    if kind == ERROR_TYPE:
        return str(ctx["message"])
    if kind in _MISSING:
        return "required"
    if kind in _UNKNOWN:
        return "unknown field" + suggestion(str(loc[-1]), _fields_at(loc[:-1]))
    if kind == "string_type" or (kind in _CHOICE and not isinstance(value, str)):
        hint = f" (quote it: {quote(literal(value))})" if isinstance(value, int | float) else ""
        return f"expected a string, got {type_name(value)}{hint}"
    if kind in _CHOICE:
        if not value:
            return "required (must not be empty)"
        choices = _choices(ctx.get("expected", ""))
        noun = loc[-1] if loc and isinstance(loc[-1], str) else "value"
        close = suggestion(value, choices)
        return f"unknown {noun} {quote(value)}{close} (use one of {', '.join(choices)})"
    if kind == "bool_type":
        return f"expected true or false, got {type_name(value)}"
    if kind in _MAP_EXPECTED:
        return f"expected a map, got {type_name(value)}"
    if kind in _LIST_EXPECTED:
        return f"expected a list, got {type_name(value)}"
    text = error["msg"]
    return text[:1].lower() + text[1:]


def _choices(expected: object) -> list[str]:
    """``'In', 'NotIn' or 'Exists'`` (pydantic's wording) -> the choices."""
    return [part.strip("'") for part in str(expected).replace(" or ", ", ").split(", ")]


def _fields_at(loc: Loc) -> list[str]:
    """The field names (as written) of the model at ``loc``, for "did you mean"."""
    kind: Any = FleetFile
    for segment in loc:
        kind = _step(_unwrap(kind), segment)
        if kind is None:
            return []
    kind = _unwrap(kind)
    if not is_pydantic_dataclass(kind):
        return []
    return [info.alias or name for name, info in kind.__pydantic_fields__.items()]


def _unwrap(kind: Any) -> Any:
    """The model or container under ``Annotated[...]`` and ``X | None``."""
    while True:
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        elif typing.get_origin(kind) in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(kind) if arg is not type(None)]
            if len(members) != 1:
                return kind
            kind = members[0]
        else:
            return kind


def _step(kind: Any, segment: str | int) -> Any:
    if is_pydantic_dataclass(kind):
        for name, info in kind.__pydantic_fields__.items():
            if (info.alias or name) == segment:
                return info.annotation
        return None
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is tuple and args and isinstance(segment, int):
        return args[0]
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return None


# --------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------


def _position(problem: Problem) -> tuple[int, int]:
    """Sort key: the part of the file, then the entry; a stable sort keeps the rest."""
    loc = problem.loc
    if not loc:
        return (-1, -1)
    section = _SECTIONS.get(str(loc[0]), 0)
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
    return (section, index)


def _line(source: str, problem: Problem, document: Mapping[str, Any]) -> str:
    name = None
    loc = problem.loc
    if len(loc) >= 2 and loc[0] in COLLECTIONS and isinstance(loc[1], int):
        items = document.get(str(loc[0]))
        if isinstance(items, list) and loc[1] < len(items):
            name = entry_name(items[loc[1]])
    return describe(source, loc, problem.message, name=name)
