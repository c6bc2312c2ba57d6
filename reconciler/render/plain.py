"""Plain manifest directories: every YAML and JSON file of a tree, as objects.

The simplest layout a team can keep in Git, and the one every other renderer's output is
checked against.  Pure: files in (``path -> bytes``), objects out, each remembering the
``file:line`` it came from so any later error can point a person at the right line.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.errors import RenderError
from reconciler.model import Manifest, ObjectKey
from reconciler.yamlio import Document, load_documents

#: File name endings read as manifests; anything else (README.md, scripts) is ignored.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class RenderedObject:
    """One desired object and where it was written, for messages.

    ``index`` is the 0-based document index in its file; ``item`` the 0-based position
    inside a ``kind: List`` document, or None.
    """

    manifest: Manifest
    source: str
    line: int
    index: int
    item: int | None = None

    @property
    def where(self) -> str:
        """``file:line`` of the document the object came from."""
        return f"{self.source}:{self.line}"

    @property
    def key(self) -> ObjectKey:
        """The object's identity as the API server sees it."""
        return ObjectKey.of(self.manifest)


def manifest_paths(files: Mapping[str, bytes]) -> list[str]:
    """Paths of ``files`` read as manifests: sorted, hidden files and folders skipped.

    Hidden folders hold tooling (``.github``, ``.git-crypt``), never manifests to apply.
    """
    return sorted(
        path
        for path in files
        if path.endswith(MANIFEST_SUFFIXES)
        and not any(part.startswith(".") for part in path.split("/"))
    )


def render_plain(files: Mapping[str, bytes], *, base: str = "") -> list[RenderedObject]:
    """Objects of every manifest file in ``files``, in path then document order.

    ``base`` is prefixed to paths in messages (the application's path in its repository).
    """
    objects: list[RenderedObject] = []
    for path in manifest_paths(files):
        source = posixpath.join(base, path) if base else path
        objects.extend(objects_of(load_documents(files[path], source=source)))
    return objects


def objects_of(documents: list[Document]) -> list[RenderedObject]:
    """Validate documents as Kubernetes objects, expanding ``kind: List`` documents."""
    objects: list[RenderedObject] = []
    for doc in documents:
        what = f"document {doc.index + 1}"
        data = doc.data
        if isinstance(data, dict) and data.get("kind") == "List" and "items" in data:
            items = data["items"]
            if not isinstance(items, list):
                raise RenderError(f"{doc.where}: {what}: List items must be a list")
            for position, item in enumerate(items):
                _check_object(item, where=doc.where, what=f"{what}, item {position + 1}")
                objects.append(RenderedObject(item, doc.source, doc.line, doc.index, position))
            continue
        _check_object(data, where=doc.where, what=what)
        objects.append(RenderedObject(data, doc.source, doc.line, doc.index))
    return objects


def _check_object(data: Any, *, where: str, what: str) -> None:
    """The fields every later stage relies on, with the types the API server expects."""
    if not isinstance(data, dict):
        raise RenderError(f"{where}: {what} is a {_type(data)}, not a mapping")
    for field in ("apiVersion", "kind"):
        if field not in data or data[field] in (None, ""):
            raise RenderError(f"{where}: {what} has no {field}")
        if not isinstance(data[field], str):
            raise RenderError(f"{where}: {what}: {field} must be a string")
    meta = data.get("metadata")
    if meta is None:
        raise RenderError(f"{where}: {what} has no metadata.name")
    if not isinstance(meta, dict):
        raise RenderError(f"{where}: {what}: metadata must be a mapping")
    name = meta.get("name")
    if name in (None, ""):
        raise RenderError(f"{where}: {what} has no metadata.name")
    if not isinstance(name, str):
        raise RenderError(f"{where}: {what}: metadata.name must be a string")
    namespace = meta.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise RenderError(f"{where}: {what}: metadata.namespace must be a string")
    for field in ("labels", "annotations"):
        values = meta.get(field)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise RenderError(f"{where}: {what}: metadata.{field} must be a mapping")
        for key, value in values.items():
            if not isinstance(value, str):
                raise RenderError(
                    f"{where}: {what}: metadata.{field}.{key} must be a string "
                    f"(quote it), not a {_type(value)}"
                )


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return "string" if isinstance(value, str) else "number"
