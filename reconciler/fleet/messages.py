"""How problems with a fleet file are worded and located.

Every problem is reported on one line as ``file: entry: field: message``, where the entry is
``applications[2] (web)`` and the field is the path inside it as the user wrote it
(``sync.interval``, ``ignoreDifferences[0].jsonPointers[1]``).  Pydantic's errors, the
whole-fleet checks and :meth:`Fleet.target` all go through :func:`describe`, so a problem
reads the same whichever stage found it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

#: The collections whose items are "entries" in messages, in the order of the file.
COLLECTIONS = ("clusters", "projects", "applications")
#: The pydantic error type of every problem worded by this package.
ERROR_TYPE = "fleet"

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9_./-]{1,63}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,63}")
_MAX_SHOWN = 80

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in a fleet file, located by its field path."""

    loc: Loc
    message: str


def invalid(message: str) -> PydanticCustomError:
    """A validation error carrying our own wording, for validators to raise."""
    return PydanticCustomError(ERROR_TYPE, "{message}", {"message": message})


def invalid_at(field: str | int, message: str, value: object) -> ValidationError:
    """A validation error about ``field`` of the object being validated.

    A model-level validator would otherwise blame the whole object; pydantic prefixes the
    location of an error raised inside a validator with the validator's own location.
    """
    detail: InitErrorDetails = {"type": invalid(message), "loc": (field,), "input": value}
    return ValidationError.from_exception_data(ERROR_TYPE, [detail])


def quote(value: object) -> str:
    """Quote a value for a message: escaped (one problem per line) and shortened."""
    text = json.dumps(value if isinstance(value, str) else str(value), ensure_ascii=False)
    text = _CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 4] + '..."'
    return text


def has_control(text: str) -> bool:
    """Whether ``text`` holds characters that would break a one-line message or a log."""
    return _CONTROL.search(text) is not None


def suggestion(word: str, options: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` for the closest option, ignoring case (``selfheal``)."""
    by_lower = {option.lower(): option for option in options}
    close = difflib.get_close_matches(word[:100].lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {quote(by_lower[close[0]])}?)" if close else ""


def known(name: str, names: Sequence[str]) -> str:
    """Close known names for an unknown one, or the short list of all of them."""
    close = difflib.get_close_matches(name[:100], list(names), n=3, cutoff=0.6)
    if close:
        return " (did you mean " + " or ".join(quote(c) for c in close) + "?)"
    if not names:
        return " (none are defined)"
    if len(names) <= 10:
        return " (known: " + ", ".join(names) + ")"
    return ""


def literal(value: object) -> str:
    """``value`` as it was written in YAML: ``true`` rather than Python's ``True``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def entry_name(item: object) -> str | None:
    """The name an entry was written with, when it has one (for ``applications[2] (web)``)."""
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) and name else None


def describe(source: str, loc: Loc, message: str, *, name: str | None = None) -> str:
    """``source: entry: field: message``; ``name`` is the entry's name, when known."""
    entry = ""
    rest = loc
    if len(loc) >= 2 and loc[0] in COLLECTIONS and isinstance(loc[1], int):
        entry = f"{loc[0]}[{loc[1]}]"
        if name:
            entry += f" ({name if _PLAIN_NAME.fullmatch(name) else quote(name)})"
        rest = loc[2:]
    elif loc and loc[0] == "defaults":
        entry, rest = "defaults", loc[1:]
    return ": ".join(part for part in (source, entry, field_path(rest), message) if part)


def field_path(loc: Sequence[Any]) -> str:
    """``sync.interval``, ``names[0]``, ``labels."odd key"``: a location as the user wrote it."""
    out = ""
    for segment in loc:
        if isinstance(segment, int):
            out += f"[{segment}]"
            continue
        shown = segment if _PLAIN_SEGMENT.fullmatch(segment) else quote(segment)
        out += f".{shown}" if out else shown
    return out
