"""Managed fields and server-side apply, the way structured-merge-diff does them.

Since Kubernetes 1.18 every write records, in ``metadata.managedFields``, which field
manager last set which fields.  ``kubectl apply --server-side`` (and any client sending
``application/apply-patch+yaml``) relies on that bookkeeping: the applied configuration
becomes the manager's field set, values owned by someone else conflict unless forced, and
fields the manager stops applying are removed when nobody else owns them.  Tools such as
the reconciler read ``managedFields`` back to decide who owns what.  So the simulator has to
reproduce the real server's semantics and wire format (``fieldsV1`` with ``f:``, ``k:``,
``v:`` keys and ``"."`` members), not an approximation of its own.

This module is pure: the server passes in the live object, the request body and the time,
and gets back a new object with ``metadata.managedFields`` set.  Inputs are never mutated.

Deliberate differences from the real server (kept small on purpose):

* ``null`` values in an applied configuration are dropped before applying;
* no cap of ten ``Update`` entries (the real server folds older ones into
  ``ancient-changes``);
* no special interplay with ``kubectl.kubernetes.io/last-applied-configuration``;
* no version conversion: entries of other API versions are compared as if the schema were
  the same, which holds for the kinds the simulator serves;
* custom resources are treated as having a structural schema (maps are structs, lists are
  atomic), so their maps never get a ``"."`` member from an apply.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Final

from kubesim.patch import PatchError, json_equal
from kubesim.schema import FieldNames, KindSchema, ListType, schema_for

__all__ = [
    "ApplyConflict",
    "Conflict",
    "FieldPath",
    "PathElement",
    "decode_fields_v1",
    "encode_fields_v1",
    "path_string",
    "server_side_apply",
    "strip_status",
    "track_update",
]

PathElement = tuple[str, Any]
"""One step of a field path: ``("f", name)``, ``("k", key JSON)``, ``("v", value JSON)``."""

FieldPath = tuple[PathElement, ...]

BEFORE_FIRST_APPLY: Final = "before-first-apply"

# Paths the real server strips from every field set (StripMetaManager), plus the deletion
# markers, which only the server writes.
_UNTRACKED_TOP: Final = frozenset({"apiVersion", "kind"})
_UNTRACKED_META: Final = frozenset(
    {
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)


class _Missing:
    """Marks an absent value (as opposed to a JSON ``null``)."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()


class _ShapeError(Exception):
    """An object that does not fit its schema (e.g. a list item without its key)."""


# -- conflicts -------------------------------------------------------------------------


@dataclass(frozen=True)
class Conflict:
    """A field another manager owns and the apply would change.

    ``field`` is rendered like the real server: ``.spec.replicas`` or
    ``.spec.template.spec.containers[name="web"].image``.
    """

    manager: str
    field: str
    operation: str = "Apply"
    api_version: str = ""
    subresource: str = ""

    @property
    def manager_label(self) -> str:
        """The manager as the real server prints it: ``"kubectl" using apps/v1``."""
        label = json.dumps(self.manager, ensure_ascii=False)
        if self.subresource:
            label += f" with subresource {json.dumps(self.subresource, ensure_ascii=False)}"
        if self.operation == "Update":
            label += f" using {self.api_version}"
        return label

    @property
    def message(self) -> str:
        """The ``message`` of this conflict's ``FieldManagerConflict`` status cause."""
        return f"conflict with {self.manager_label}"


class ApplyConflict(Exception):
    """Server-side apply would change fields owned by other managers (HTTP 409)."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = list(conflicts)
        super().__init__(_conflict_message(self.conflicts))


def _conflict_message(conflicts: list[Conflict]) -> str:
    if len(conflicts) == 1:
        c = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {c.manager_label}: {c.field}"
    groups: dict[tuple[str, str, str, str], list[Conflict]] = {}
    for c in conflicts:
        groups.setdefault((c.manager, c.operation, c.api_version, c.subresource), []).append(c)
    lines: list[str] = []
    for key in sorted(groups):
        group = groups[key]
        lines.append(f"conflicts with {group[0].manager_label}:")
        lines.extend(f"- {c.field}" for c in group)
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


# -- paths and the fieldsV1 wire format ---------------------------------------------------


def _normalize(value: Any) -> Any:
    """Integral floats become ints, as Kubernetes' JSON decoding does."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def _canon(value: Any) -> str:
    """Compact JSON with sorted keys: how structured-merge-diff serializes keys and values."""
    return json.dumps(_normalize(value), separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _names(path: FieldPath) -> FieldNames:
    return tuple(str(e[1]) for e in path if e[0] == "f")


def _element_key(element: PathElement) -> str:
    kind, value = element
    return f"{kind}:{value}"


def _element_sort(element: PathElement) -> tuple[int, str, int]:
    kind, value = element
    rank = {"f": 0, "k": 1, "v": 2, "i": 3}.get(kind, 4)
    if kind == "i":
        return rank, "", int(value)
    return rank, str(value), 0


def _path_sort(path: FieldPath) -> list[tuple[int, str, int]]:
    return [_element_sort(e) for e in path]


def path_string(path: FieldPath) -> str:
    """Render a field path like structured-merge-diff: ``.spec.ports[port=80,protocol="TCP"]``."""
    out: list[str] = []
    for kind, value in path:
        if kind == "f":
            out.append(f".{value}")
        elif kind == "k":
            fields = json.loads(value)
            out.append("[" + ",".join(f"{k}={_canon(v)}" for k, v in fields.items()) + "]")
        elif kind == "v":
            out.append(f"[={value}]")
        else:
            out.append(f"[{value}]")
    return "".join(out)


def encode_fields_v1(paths: set[FieldPath] | frozenset[FieldPath]) -> dict[str, Any]:
    """Serialize a field set to the ``fieldsV1`` JSON the real server stores."""
    root: dict[PathElement, Any] = {}
    members: set[FieldPath] = set(paths)
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})

    def emit(node: dict[PathElement, Any], prefix: FieldPath) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if prefix in members and node:
            out["."] = {}
        for element in sorted(node, key=_element_sort):
            out[_element_key(element)] = emit(node[element], (*prefix, element))
        return out

    return emit(root, ())


def _parse_element(key: str) -> PathElement:
    kind, sep, rest = key.partition(":")
    if not sep:
        raise ValueError(f"invalid fieldsV1 key {key!r}")
    if kind == "f":
        return "f", rest
    if kind == "k":
        fields = json.loads(rest)
        if not isinstance(fields, dict):
            raise ValueError(f"invalid fieldsV1 key {key!r}")
        return "k", _canon(fields)
    if kind == "v":
        return "v", _canon(json.loads(rest))
    if kind == "i":
        return "i", int(rest)
    raise ValueError(f"invalid fieldsV1 key {key!r}")


def decode_fields_v1(fields_v1: Any) -> set[FieldPath]:
    """Parse ``fieldsV1`` JSON into a set of paths; raises ValueError when malformed."""
    out: set[FieldPath] = set()

    def walk(node: Any, prefix: FieldPath) -> None:
        if not isinstance(node, dict):
            raise ValueError("fieldsV1 nodes must be objects")
        for key, child in node.items():
            if key == ".":
                out.add(prefix)
                continue
            path = (*prefix, _parse_element(key))
            if isinstance(child, dict) and child:
                walk(child, path)
            else:
                out.add(path)

    walk(fields_v1, ())
    return out


def _tracked(path: FieldPath) -> bool:
    """Whether ownership of ``path`` is recorded at all (server-owned metadata is not)."""
    if not path:
        return False
    first = path[0]
    if first[0] == "f" and first[1] in _UNTRACKED_TOP:
        return False
    if first == ("f", "metadata"):
        if len(path) == 1:
            return False
        second = path[1]
        if second[0] == "f" and second[1] in _UNTRACKED_META:
            return False
    return True


# -- managedFields entries --------------------------------------------------------------


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    fields: set[FieldPath]

    def same_manager(self, manager: str, operation: str, api_version: str, sub: str) -> bool:
        """Identity as the real server builds it: appliers are not split by API version."""
        if (self.manager, self.operation, self.subresource) != (manager, operation, sub):
            return False
        return operation == "Apply" or self.api_version == api_version

    def encode(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time:
            out["time"] = self.time
        out["fieldsType"] = "FieldsV1"
        out["fieldsV1"] = encode_fields_v1(self.fields)
        if self.subresource:
            out["subresource"] = self.subresource
        return out


def _decode_entries(raw: Any) -> list[_Entry]:
    """Decode ``metadata.managedFields``; malformed entries are dropped."""
    entries: list[_Entry] = []
    if not isinstance(raw, list):
        return entries
    for item in raw:
        if not isinstance(item, dict):
            continue
        manager, operation = item.get("manager", ""), item.get("operation")
        api_version, sub = item.get("apiVersion", ""), item.get("subresource", "")
        time = item.get("time")
        if operation not in ("Apply", "Update") or not isinstance(manager, str):
            continue
        if not isinstance(api_version, str) or not isinstance(sub, str):
            continue
        if item.get("fieldsType", "FieldsV1") != "FieldsV1":
            continue
        try:
            paths = decode_fields_v1(item.get("fieldsV1", {}))
        except (ValueError, TypeError):
            continue
        paths = {p for p in paths if _tracked(p)}
        existing = next(
            (e for e in entries if e.same_manager(manager, operation, api_version, sub)), None
        )
        if existing is not None:
            existing.fields |= paths
            continue
        entries.append(
            _Entry(manager, operation, api_version, sub, time if isinstance(time, str) else None,
                   paths)
        )  # fmt: skip
    return entries


def _encode_entries(entries: list[_Entry]) -> list[dict[str, Any]]:
    """Encode the non-empty entries in the real server's order (operation, time, manager)."""
    kept = [e for e in entries if e.fields]
    kept.sort(key=lambda e: (e.operation, e.time or "", e.manager, e.api_version, e.subresource))
    return [e.encode() for e in kept]


def _is_reset(raw: Any) -> bool:
    """``managedFields: [{}]`` asks the server to forget all managed fields."""
    return isinstance(raw, list) and len(raw) == 1 and raw[0] == {}


# -- schema-aware walks --------------------------------------------------------------------


@dataclass
class _Comparison:
    added: set[FieldPath]
    modified: set[FieldPath]
    removed: set[FieldPath]


class _Walker:
    """Field-set operations over JSON objects of one kind."""

    def __init__(self, schema: KindSchema) -> None:
        self.schema = schema

    def list_type(self, path: FieldPath) -> ListType:
        return self.schema.list_type(_names(path))

    # list items ------------------------------------------------------------------

    def item_element(self, lt: ListType, item: Any, path: FieldPath, index: int) -> PathElement:
        if lt.kind == "set":
            if isinstance(item, dict | list):
                raise _ShapeError(
                    f"{path_string(path)}: element {index}: expected a primitive in a set"
                )
            return "v", _canon(item)
        if not isinstance(item, dict):
            raise _ShapeError(f"{path_string(path)}: element {index}: expected map")
        key: dict[str, Any] = {}
        for name in lt.keys:
            value = item.get(name)
            if value is None:
                value = lt.key_default(name)
            if value is None:
                raise _ShapeError(
                    f"{path_string(path)}: element {index}: associative list with keys has an "
                    f'element that omits key field "{name}" (and doesn\'t have default value)'
                )
            key[name] = value
        return "k", _canon(key)

    def index(
        self, lt: ListType, items: list[Any], path: FieldPath, *, strict: bool
    ) -> list[tuple[PathElement, Any]] | None:
        """Pair each item with its path element.

        Strict mode (applied configurations) raises on bad or duplicate items; lenient mode
        (stored objects) returns None so the caller treats the list as atomic.
        """
        out: list[tuple[PathElement, Any]] = []
        seen: set[PathElement] = set()
        for i, item in enumerate(items):
            try:
                element = self.item_element(lt, item, path, i)
            except _ShapeError:
                if strict:
                    raise
                return None
            if element in seen:
                if strict:
                    raise _ShapeError(
                        f"{path_string(path)}: duplicate entries for key {path_string((element,))}"
                    )
                return None
            seen.add(element)
            out.append((element, item))
        return out

    def granular_list(self, value: Any, path: FieldPath) -> ListType | None:
        if not isinstance(value, list):
            return None
        lt = self.list_type(path)
        return None if lt.kind == "atomic" else lt

    def granular_map(self, value: Any, path: FieldPath) -> bool:
        return isinstance(value, dict) and not (path and self.schema.map_atomic(_names(path)))

    # the field set of an applied configuration -------------------------------------

    def to_set(self, value: Any, path: FieldPath, out: set[FieldPath]) -> None:
        if self.granular_map(value, path):
            for key, child in value.items():
                self.to_set(child, (*path, ("f", key)), out)
            return
        lt = self.granular_list(value, path)
        if lt is None:
            out.add(path)
            return
        pairs = self.index(lt, value, path, strict=True)
        assert pairs is not None
        for element, item in pairs:
            item_path = (*path, element)
            out.add(item_path)
            if lt.kind == "map":
                for key, child in item.items():
                    self.to_set(child, (*item_path, ("f", key)), out)

    # merging an applied configuration into the live object ----------------------------

    def merge(self, lhs: Any, rhs: Any, path: FieldPath) -> Any:
        if self.granular_map(lhs, path) and self.granular_map(rhs, path):
            out = dict(lhs)
            for key, value in rhs.items():
                child = (*path, ("f", key))
                out[key] = self.merge(lhs[key], value, child) if key in lhs else value
            return out
        lt = self.granular_list(rhs, path)
        if lt is not None and isinstance(lhs, list):
            return self.merge_list(lt, lhs, rhs, path)
        return rhs

    def merge_list(self, lt: ListType, lhs: list[Any], rhs: list[Any], path: FieldPath) -> Any:
        """structured-merge-diff's list merge: rhs order wins, lhs-only items stay in place."""
        rhs_pairs = self.index(lt, rhs, path, strict=True)
        lhs_pairs = self.index(lt, lhs, path, strict=False)
        assert rhs_pairs is not None
        if lhs_pairs is None:
            return rhs
        observed_lhs = dict(lhs_pairs)
        observed_rhs = dict(rhs_pairs)
        shared = [e for e, _ in rhs_pairs if e in observed_lhs]
        next_shared = shared.pop(0) if shared else None
        merged_rhs: set[PathElement] = set()
        out: list[Any] = []
        li = ri = 0
        while li < len(lhs_pairs) or ri < len(rhs_pairs):
            if li < len(lhs_pairs) and ri < len(rhs_pairs):
                element = lhs_pairs[li][0]
                if element == rhs_pairs[ri][0]:
                    merged_rhs.add(element)
                    out.append(self.merge_item(lt, lhs_pairs[li][1], rhs_pairs[ri][1], path,
                                               element))  # fmt: skip
                    li += 1
                    ri += 1
                    next_shared = shared.pop(0) if shared else None
                    continue
                if element in observed_rhs and next_shared is not None and next_shared != element:
                    li += 1
                    continue
            if li < len(lhs_pairs):
                element, item = lhs_pairs[li]
                if element not in observed_rhs:
                    out.append(item)
                    li += 1
                    continue
                if element in merged_rhs:
                    li += 1
                    continue
            if ri < len(rhs_pairs):
                element, item = rhs_pairs[ri]
                merged_rhs.add(element)
                out.append(self.merge_item(lt, observed_lhs.get(element, _MISSING), item, path,
                                           element))  # fmt: skip
                ri += 1
                if next_shared is not None and next_shared == element:
                    next_shared = shared.pop(0) if shared else None
        return out

    def merge_item(
        self, lt: ListType, lhs: Any, rhs: Any, path: FieldPath, element: PathElement
    ) -> Any:
        if lt.kind != "map" or lhs is _MISSING:
            return rhs
        return self.merge(lhs, rhs, (*path, element))

    # comparing two versions of an object ---------------------------------------------

    def compare(self, lhs: Any, rhs: Any) -> _Comparison:
        result = _Comparison(set(), set(), set())
        self._compare(lhs, rhs, (), result)
        return result

    def _shape(self, value: Any, path: FieldPath) -> str:
        if value is _MISSING:
            return "missing"
        if self.granular_map(value, path):
            return "map"
        lt = self.granular_list(value, path)
        if lt is not None and self.index(lt, value, path, strict=False) is not None:
            return "list"
        return "leaf"

    def _compare(self, lhs: Any, rhs: Any, path: FieldPath, out: _Comparison) -> None:
        ls, rs = self._shape(lhs, path), self._shape(rhs, path)
        if ls == rs == "leaf":
            if not json_equal(lhs, rhs):
                out.modified.add(path)
            return
        if ls == rs:
            self._descend(lhs, rhs, path, out)
            return
        if ls == "missing":
            if rs != "leaf":
                self._descend(_MISSING, rhs, path, out)
                if all(e[0] == "f" for e in path) and self.schema.is_struct(_names(path)):
                    return  # exists (empty) in a new object of a built-in kind
            out.added.add(path)
            return
        if rs == "missing":
            if ls != "leaf":
                self._descend(lhs, _MISSING, path, out)
            out.removed.add(path)
            return
        out.modified.add(path)
        if ls != "leaf":
            self._descend(lhs, _MISSING, path, out)
        if rs != "leaf":
            self._descend(_MISSING, rhs, path, out)

    def _descend(self, lhs: Any, rhs: Any, path: FieldPath, out: _Comparison) -> None:
        container = rhs if lhs is _MISSING else lhs
        if isinstance(container, dict):
            left: dict[str, Any] = lhs if isinstance(lhs, dict) else {}
            right: dict[str, Any] = rhs if isinstance(rhs, dict) else {}
            for key in [*left, *(k for k in right if k not in left)]:
                self._compare(left.get(key, _MISSING), right.get(key, _MISSING),
                              (*path, ("f", key)), out)  # fmt: skip
            return
        lt = self.list_type(path)
        left_pairs = self.index(lt, lhs, path, strict=False) if isinstance(lhs, list) else []
        right_pairs = self.index(lt, rhs, path, strict=False) if isinstance(rhs, list) else []
        left_items = dict(left_pairs or [])
        right_items = dict(right_pairs or [])
        for element in [*left_items, *(e for e in right_items if e not in left_items)]:
            self._compare(left_items.get(element, _MISSING), right_items.get(element, _MISSING),
                          (*path, element), out)  # fmt: skip

    def changed(self, lhs: Any, rhs: Any) -> set[FieldPath]:
        """Tracked paths added or modified going from ``lhs`` to ``rhs``."""
        cmp = self.compare(lhs, rhs)
        return {p for p in cmp.added | cmp.modified if _tracked(p)}

    # removing fields a manager stopped applying ----------------------------------------

    def remove(self, obj: dict[str, Any], paths: set[FieldPath], keep: set[FieldPath]) -> None:
        """Remove ``paths`` from ``obj`` in place, except where ``keep`` needs them.

        A path is kept when a kept path lies below it, and key fields of list items are
        never removed on their own (the item goes as a whole or not at all).  Maps and lists
        emptied by a removal disappear too, except the top-level stanzas.
        """
        below_kept = {k[:i] for k in keep for i in range(1, len(k))}
        for path in sorted(paths, key=len):
            if path in below_kept or self._is_key_field(path):
                continue
            self._remove_one(obj, path)

    def _is_key_field(self, path: FieldPath) -> bool:
        if len(path) < 2 or path[-1][0] != "f" or path[-2][0] != "k":
            return False
        return path[-1][1] in self.list_type(path[:-2]).keys

    def _remove_one(self, obj: dict[str, Any], path: FieldPath) -> None:
        trail: list[tuple[Any, Any]] = []  # (container, key or index) down to the target
        node: Any = obj
        for depth, element in enumerate(path):
            kind, value = element
            if kind == "f":
                if not isinstance(node, dict) or value not in node:
                    return
                trail.append((node, value))
                node = node[value]
                continue
            if not isinstance(node, list):
                return
            lt = self.list_type(path[:depth])
            pairs = self.index(lt, node, path[:depth], strict=False)
            if pairs is None:
                return
            position = next((i for i, (e, _) in enumerate(pairs) if e == element), None)
            if position is None:
                return
            trail.append((node, position))
            node = node[position]
        if not trail:
            return
        container, where = trail[-1]
        del container[where]
        for j in range(len(trail) - 1, 1, -1):
            container, _ = trail[j]
            parent, where = trail[j - 1]
            if container or not isinstance(parent, dict):
                break
            del parent[where]


# -- public API ------------------------------------------------------------------------------


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _metadata(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def _set_managed_fields(obj: dict[str, Any], entries: list[_Entry]) -> None:
    encoded = _encode_entries(entries)
    meta = _metadata(obj)
    if encoded:
        meta["managedFields"] = encoded
    else:
        meta.pop("managedFields", None)


def strip_status(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` without ``status``.

    The real server ignores ``status`` in writes to the main resource of kinds that have a
    status subresource (and everything but ``status`` in writes to that subresource).  Which
    kinds have one is the server's knowledge, so callers strip before calling
    :func:`server_side_apply` / :func:`track_update`.
    """
    return {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    group: str,
    kind: str,
    api_version: str,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """Apply ``applied`` to ``live`` (None: create) as field manager ``manager``.

    Returns the merged object with ``metadata.managedFields`` updated.  Raises
    :class:`ApplyConflict` when fields owned by other managers would change and ``force``
    is false, and :class:`~kubesim.patch.PatchError` for configurations that do not fit the
    schema (e.g. a container without ``name``).  Server-controlled metadata in ``applied``
    (uid, resourceVersion, ...) is ignored; the server sets those.
    """
    if not isinstance(applied, dict):
        raise PatchError("apply patches must be objects", 400)
    raw_meta = applied.get("metadata")
    if isinstance(raw_meta, dict) and raw_meta.get("managedFields") is not None:
        raise PatchError("metadata.managedFields must be nil", 400)
    gvk = f"{api_version}, Kind={kind}"
    walker = _Walker(schema_for(group, kind))

    config = _drop_nulls(copy.deepcopy(applied))
    config_meta = config.get("metadata")
    if isinstance(config_meta, dict):
        for key in _UNTRACKED_META - {"name", "namespace"}:
            config_meta.pop(key, None)
    try:
        applied_set: set[FieldPath] = set()
        walker.to_set(config, (), applied_set)
    except _ShapeError as exc:
        raise PatchError(f"failed to create typed patch object ({gvk}): {exc}", 422) from exc
    applied_set = {p for p in applied_set if _tracked(p)}

    base: dict[str, Any] = copy.deepcopy(live) if live is not None else {}
    entries = _decode_entries(_metadata(base).get("managedFields")) if live is not None else []
    if live is not None:
        _metadata(base).pop("managedFields", None)
        if not entries:
            # the real server attributes everything set so far to a pseudo-manager
            owned = walker.changed({}, base)
            if owned:
                entries.append(_Entry(BEFORE_FIRST_APPLY, "Update", api_version, "", now, owned))

    try:
        merged = copy.deepcopy(walker.merge(base, config, ()))
    except _ShapeError as exc:
        raise PatchError(f"failed to merge into the live object ({gvk}): {exc}", 422) from exc
    if not isinstance(merged, dict):  # pragma: no cover - both sides are objects
        raise PatchError("apply produced a non-object", 422)

    mine = next(
        (e for e in entries if e.same_manager(manager, "Apply", api_version, subresource)), None
    )
    others = [e for e in entries if e is not mine]
    if mine is not None and mine.fields:
        owned_by_others: set[FieldPath] = set().union(*(e.fields for e in others))
        stale = mine.fields - applied_set - owned_by_others
        if stale:
            walker.remove(merged, stale, owned_by_others | applied_set)

    comparison = walker.compare(base, merged)
    changed = comparison.added | comparison.modified
    conflicts = [
        Conflict(e.manager, path_string(p), e.operation, e.api_version, e.subresource)
        for e in others
        for p in sorted(e.fields & changed, key=_path_sort)
    ]
    if conflicts and not force:
        conflicts.sort(key=lambda c: (c.manager, c.operation, c.api_version, c.subresource))
        raise ApplyConflict(conflicts)
    for e in others:
        e.fields -= changed
        e.fields -= comparison.removed

    object_changed = not json_equal(base, merged)
    if mine is None:
        entries.append(_Entry(manager, "Apply", api_version, subresource, now, applied_set))
    else:
        if object_changed or mine.fields != applied_set or mine.api_version != api_version:
            mine.time = now
        mine.fields = applied_set
        mine.api_version = api_version
    _set_managed_fields(merged, entries)
    return merged


def track_update(
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    group: str,
    kind: str,
    api_version: str,
    now: str,
    operation: str = "Update",
    subresource: str = "",
) -> dict[str, Any]:
    """Record a non-apply write (create, PUT, PATCH) of ``new`` over ``old`` by ``manager``.

    Fields that changed (all fields of ``new`` when ``old`` is None) join the manager's
    entry and leave every other manager's set; Update operations take ownership without
    conflicts.  Like the real server:

    * managedFields sent in ``new`` replace the stored ones (``[{}]`` resets them), except
      for subresource writes, which always start from ``old``'s;
    * an existing object without managedFields is not tracked by updates (only an apply
      or a create starts the bookkeeping).
    """
    walker = _Walker(schema_for(group, kind))
    result = copy.deepcopy(new)
    base: dict[str, Any] = copy.deepcopy(old) if old is not None else {}
    old_raw = _metadata(base).get("managedFields") if old is not None else None
    new_raw = _metadata(result).get("managedFields")
    if subresource:
        entries = _decode_entries(old_raw)
    elif _is_reset(new_raw):
        entries = []
    else:
        entries = _decode_entries(new_raw) or _decode_entries(old_raw)
    _metadata(result).pop("managedFields", None)
    if old is not None:
        _metadata(base).pop("managedFields", None)
        if not entries:
            return result

    comparison = walker.compare(base, result)
    changed = {p for p in comparison.added | comparison.modified if _tracked(p)}
    for e in entries:
        e.fields -= changed
        e.fields -= comparison.removed
    if changed:
        mine = next(
            (e for e in entries if e.same_manager(manager, operation, api_version, subresource)),
            None,
        )
        if mine is None:
            entries.append(_Entry(manager, operation, api_version, subresource, now, changed))
        else:
            mine.fields |= changed
            mine.time = now
    _set_managed_fields(result, entries)
    return result
