"""What every renderer yields: validated objects that remember where they were written.

Directory, kustomize, Helm and Jsonnet output all pass through ``objects_of`` so later
stages can rely on the same shape (``apiVersion``, ``kind``, a name or a ``generateName``,
string labels) whichever tool produced it, and so every message can point a person at the
file (and line, where there is one) that holds the object.  Pure: data in, objects out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler.errors import RenderError
from reconciler.model import Manifest, ObjectKey
from reconciler.yamlio import Document


class EmptyRender(RenderError):
    """The source rendered no object at all.

    A separate type because an empty render is the one render outcome that policy may
    accept (``allowEmpty``): everywhere else it means a wrong path or a broken source, and
    pruning on it would delete everything the application owns.
    """


@dataclass(frozen=True)
class RenderedObject:
    """One desired object and where it was written, for messages.

    ``source`` is the file a person edits (a manifest, a Helm template, a Jsonnet entry
    point, or a kustomization's build output); ``line`` the 1-based line of the document
    there (in the tool's output for kustomize and Helm, 1 for Jsonnet).  ``index`` is the
    0-based document index in its source; ``item`` the 0-based position inside a
    ``kind: List`` document, or None.
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


def objects_of(documents: Iterable[Document], *, label: str = "document") -> list[RenderedObject]:
    """Validate documents as Kubernetes objects, expanding ``kind: List`` documents.

    ``label`` names a document in messages (``document 2``, ``output item 2``).
    """
    objects: list[RenderedObject] = []
    for doc in documents:
        what = f"{label} {doc.index + 1}"
        data = doc.data
        if is_list(data):
            items = data["items"]
            if not isinstance(items, list):
                raise RenderError(f"{doc.where}: {what}: List items must be a list")
            for position, item in enumerate(items):
                check_object(item, where=doc.where, what=f"{what}, item {position + 1}")
                objects.append(RenderedObject(item, doc.source, doc.line, doc.index, position))
            continue
        check_object(data, where=doc.where, what=what)
        objects.append(RenderedObject(data, doc.source, doc.line, doc.index))
    return objects


def is_list(data: Any) -> bool:
    """Whether ``data`` is a ``kind: List`` document (``v1.List``, ``ConfigMapList``... are not)."""
    return isinstance(data, dict) and data.get("kind") == "List" and "items" in data


#: Longest object name any kind accepts (a DNS subdomain); the API server refuses longer.
MAX_NAME_CHARS = 253


def check_object(data: Any, *, where: str, what: str) -> None:
    """The fields every later stage relies on, with the types the API server expects.

    A ``generateName`` stands in for a missing name here; whether the object may go
    without a name (only hooks may, as they are created anew each run) is decided in
    ``finalize``, which knows the annotations' meaning.
    """
    if not isinstance(data, dict):
        raise RenderError(f"{where}: {what} is a {type_name(data)}, not a mapping")
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
    for field in ("name", "generateName"):
        value = meta.get(field)
        if value is not None and not isinstance(value, str):
            raise RenderError(f"{where}: {what}: metadata.{field} must be a string")
        if isinstance(value, str) and len(value) > MAX_NAME_CHARS:
            raise RenderError(
                f"{where}: {what}: metadata.{field} is {len(value)} characters, over "
                f"Kubernetes' {MAX_NAME_CHARS} ({value[:40]}...)"
            )
    if isinstance(meta.get("namespace"), str) and len(meta["namespace"]) > 63:
        raise RenderError(f"{where}: {what}: metadata.namespace is over 63 characters")
    if not meta.get("name") and not meta.get("generateName"):
        raise RenderError(f"{where}: {what} has no metadata.name")
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
                    f"(quote it), not a {type_name(value)}"
                )


def type_name(value: Any) -> str:
    """A value's type as YAML and JSON authors call it, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return "string" if isinstance(value, str) else "number"
