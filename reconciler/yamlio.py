"""The one YAML loader of the platform.

Manifests and fleet files come from Git, which means from anyone who can push.  PyYAML's
safe loader is not enough on its own for that: it shares aliased nodes, so a small
"billion laughs" document expands to gigabytes as soon as it is walked or serialised;
it silently keeps the last of two duplicate keys; and it turns ``2024-01-01`` into a
``date`` that JSON cannot carry.  This module loads YAML (and JSON, its subset) into plain
JSON-compatible data, refuses those cases with an error naming ``file:line``, and keeps
the start line of every document so later stages can point at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.errors import ReconcilerError, RenderError

#: Largest manifest file we read; bigger files are almost certainly not hand-written manifests.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Largest number of values a document may expand to once aliases are followed.
MAX_EXPANDED_NODES = 200_000
#: Deepest nesting accepted; deeper documents are an attack on recursion, not configuration.
MAX_DEPTH = 100

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader without implicit timestamps and with duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue  # PyYAML reports unhashable keys itself below
            # 1 and true collide too: Python's dict (and JSON's keys) cannot hold both.
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


# Kubernetes reads dates as strings; drop the timestamp resolver from our loader only.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_mapping)


@dataclass(frozen=True)
class Document:
    """One YAML document of a file, with where it starts (1-based line, 0-based index)."""

    data: Any
    source: str
    line: int
    index: int

    @property
    def where(self) -> str:
        """``file:line`` of the document's first line, for messages."""
        return f"{self.source}:{self.line}"


def load_documents(
    text: str | bytes, *, source: str, error: type[ReconcilerError] = RenderError
) -> list[Document]:
    """Parse every non-empty document of ``text``; raise ``error`` naming ``source:line``."""
    if len(text) > MAX_FILE_BYTES:
        raise error(f"{source}: file is {len(text)} bytes, over the {MAX_FILE_BYTES} byte limit")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{source}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return list(_iter_documents(text, source=source, error=error))


def _iter_documents(text: str, *, source: str, error: type[ReconcilerError]) -> Iterator[Document]:
    loader = _Loader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            line = node.start_mark.line + 1 if node is not None else 1
            data = loader.construct_document(node)
            if data is not None:
                where = f"{source}:{line}"
                yield Document(_plain(data, where=where, error=error), source, line, index)
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(f"{source}:{line}: {problem}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise error(f"{source}: invalid YAML: {problem}") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        raise error(f"{source}: invalid value: {exc}") from None
    except RecursionError:
        raise error(f"{source}: document nested too deeply") from None
    finally:
        loader.dispose()


def _plain(data: Any, *, where: str, error: type[ReconcilerError]) -> Any:
    """Return ``data`` as JSON-compatible values, refusing alias bombs and foreign types.

    Aliases make the loaded tree a DAG; sizes are memoised per node identity so the check
    itself stays linear in the size of the file, not of the expansion.
    """
    sizes: dict[int, int] = {}

    def size(value: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise error(f"{where}: document nested deeper than {MAX_DEPTH} levels")
        if not isinstance(value, dict | list):
            return 1
        known = sizes.get(id(value))
        if known is not None:
            return known
        children = value.values() if isinstance(value, dict) else value
        total = 1 + sum(size(child, depth + 1) for child in children)
        if total > MAX_EXPANDED_NODES:
            raise error(
                f"{where}: document expands to more than {MAX_EXPANDED_NODES} values "
                "(too many aliases?)"
            )
        sizes[id(value)] = total
        return total

    size(data, 0)
    return _convert(data, where=where, error=error)


def _convert(value: Any, *, where: str, error: type[ReconcilerError]) -> Any:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            name = _key(key, where=where, error=error)
            if name in out:
                raise error(f"{where}: duplicate key {name!r} once keys are made strings")
            out[name] = _convert(child, where=where, error=error)
        return out
    if isinstance(value, list):
        return [_convert(child, where=where, error=error) for child in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise error(f"{where}: unsupported YAML value of type {type(value).__name__}")


def _key(key: Any, *, where: str, error: type[ReconcilerError]) -> str:
    """Map keys as Kubernetes' YAML-to-JSON conversion makes them: scalars become strings."""
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int | float):
        return str(key)
    if key is None:
        return "null"
    raise error(f"{where}: unsupported map key {key!r}")


def dump(data: Any) -> str:
    """Serialise plain data as block YAML with keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
