"""The three PATCH content types of the Kubernetes API, as pure functions.

The simulated API server must accept the patches kubectl and client libraries send:

* ``application/json-patch+json`` (RFC 6902), delegated to the ``jsonpatch`` library;
* ``application/merge-patch+json`` (RFC 7386);
* ``application/strategic-merge-patch+json``, Kubernetes' own format, which merges lists
  by key according to the kind's schema (:mod:`kubesim.schema`) and understands the
  ``$patch``, ``$retainKeys``, ``$deleteFromPrimitiveList/<field>`` and
  ``$setElementOrder/<field>`` directives (kubectl's client-side apply sends the last two).

Every function returns a new object and never mutates its inputs, so the server can keep
the stored object when a patch fails.  Failures raise :class:`PatchError` carrying the HTTP
status the real server answers with.  Whether a kind accepts strategic merge patch at all is
the server's decision (the real one answers 415 for custom resources);
:func:`strategic_merge_patch` itself treats unknown kinds like a merge patch with atomic
lists that still honours the directives.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch
import jsonpointer

from kubesim.schema import FieldNames, KindSchema, schema_for

__all__ = ["PatchError", "json_patch", "merge_patch", "strategic_merge_patch"]

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList/"
_SET_ELEMENT_ORDER = "$setElementOrder/"


class PatchError(ValueError):
    """A patch that cannot be applied.

    ``status_code`` is 422 for semantic failures (a JSON-patch ``test`` failed, a path is
    missing, a list item lacks its merge key) and 400 for malformed patch documents.
    ``str(e)`` is a human message like the real API server's.
    """

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


# -- helpers -------------------------------------------------------------------------------


def _go_repr(value: Any) -> str:
    """Render a JSON value roughly like Go's ``%v`` does, for error messages."""
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{_go_repr(v)}" for k, v in sorted(value.items()))
        return f"map[{inner}]"
    if isinstance(value, list):
        return "[" + " ".join(_go_repr(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values that, unlike ``==``, keeps booleans apart from numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and bool(a == b)


def _json_type(value: Any) -> str:
    """The JSON type name of ``value``, the way Go's reflection would distinguish it."""
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "null"


def _unmarshal_message(value: Any) -> str:
    return (
        f"json: cannot unmarshal {_json_type(value)} into Go value of type "
        "map[string]interface {}"
    )


# -- JSON patch (RFC 6902) -----------------------------------------------------------------


def _json_patch_failure(op: dict[str, Any], exc: Exception) -> str:
    """A message shaped like evanphx/json-patch's, which the real server reports."""
    kind = op.get("op")
    path = op.get("path")
    if isinstance(exc, jsonpatch.JsonPatchTestFailed):
        return f"testing value {path} failed: test failed"
    if kind == "remove":
        return f"unable to remove nonexistent key: {path}: missing value"
    if kind == "replace":
        return f"replace operation does not apply: doc is missing key: {path}: missing value"
    if kind in ("move", "copy"):
        return f"{kind} operation does not apply: doc is missing from path: {op.get('from')}"
    return f"{kind} operation does not apply: doc is missing path: {json.dumps(path)}"


def json_patch(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an RFC 6902 JSON patch (``application/json-patch+json``) to ``obj``."""
    if not isinstance(patch, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch", 400)
    for op in patch:
        if not isinstance(op, dict):
            raise PatchError(
                f"json: cannot unmarshal {_json_type(op)} into Go value of type "
                "jsonpatch.Operation",
                400,
            )
        if not isinstance(op.get("path"), str) or not isinstance(op.get("op"), str):
            raise PatchError(f"invalid JSON patch operation: {_go_repr(op)}", 400)
    doc: Any = copy.deepcopy(obj)
    patch = copy.deepcopy(patch)  # "add" and "replace" insert their values by reference
    for op in patch:
        try:
            doc = jsonpatch.JsonPatch([op]).apply(doc, in_place=True)
        except jsonpatch.InvalidJsonPatch as exc:
            raise PatchError(str(exc), 400) from exc
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise PatchError(_json_patch_failure(op, exc), 422) from exc
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            # jsonpatch lets a few malformed operations escape as plain Python errors
            raise PatchError(f"invalid JSON patch operation: {_go_repr(op)}", 400) from exc
    if not isinstance(doc, dict):
        raise PatchError(
            _unmarshal_message(doc),
            422,
        )
    return doc


# -- JSON merge patch (RFC 7386) -----------------------------------------------------------


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def merge_patch(obj: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an RFC 7386 JSON merge patch (``application/merge-patch+json``) to ``obj``.

    ``null`` deletes a field, objects merge recursively, everything else (lists included)
    replaces.  A patch that is not a JSON object cannot produce an object and is refused.
    """
    if not isinstance(patch, dict):
        raise PatchError(
            _unmarshal_message(patch),
            400,
        )
    result = _merge(copy.deepcopy(obj), patch)
    assert isinstance(result, dict)
    return result


# -- strategic merge patch ---------------------------------------------------------------


class _Strategic:
    """One strategic-merge-patch run against the schema of one kind.

    Works on private deep copies of the object and the patch, which it mutates freely.
    """

    def __init__(self, schema: KindSchema) -> None:
        self.schema = schema

    def merge_strategy(self, path: FieldNames) -> tuple[bool, str]:
        """(merge?, merge key) of the list at ``path``; custom resources never merge lists."""
        if not self.schema.builtin:
            return False, ""
        lt = self.schema.list_type(path)
        return lt.patch_strategy == "merge", lt.patch_merge_key

    # A value appearing only in the patch still has its directives and nulls processed.
    def fresh(self, value: Any, path: FieldNames) -> Any:
        if isinstance(value, dict):
            return self.merge_map({}, value, path)
        if isinstance(value, list):
            return [self.fresh(item, path) for item in value if not _is_directive_item(item)]
        return value

    def merge_map(self, original: dict[str, Any], patch: dict[str, Any], path: FieldNames) -> Any:
        if _DIRECTIVE in patch:
            directive = patch[_DIRECTIVE]
            if directive == "replace":
                rest = {k: v for k, v in patch.items() if k != _DIRECTIVE}
                return self.merge_map({}, rest, path)
            if directive == "delete":
                return {}
            if directive != "merge":
                raise PatchError(
                    f"Unknown patch type: {_go_repr(directive)} in map: {_go_repr(patch)}", 400
                )
            patch = {k: v for k, v in patch.items() if k != _DIRECTIVE}

        if _RETAIN_KEYS in patch:
            self.retain_keys(original, patch)
            patch = {k: v for k, v in patch.items() if k != _RETAIN_KEYS}

        patch = self.apply_element_orders(original, patch, path)

        for key, value in patch.items():
            if key.startswith(_DELETE_FROM_PRIMITIVE_LIST):
                field = key[len(_DELETE_FROM_PRIMITIVE_LIST) :]
                self.delete_from_primitive_list(original, field, value)
                continue
            if value is None:
                original.pop(key, None)
                continue
            child = (*path, key)
            current = original.get(key)
            if key not in original or _json_type(current) != _json_type(value):
                original[key] = self.fresh(value, child)
            elif isinstance(value, dict) and isinstance(current, dict):
                original[key] = self.merge_map(current, value, child)
            elif isinstance(value, list) and isinstance(current, list):
                merge, merge_key = self.merge_strategy(child)
                if merge:
                    original[key] = self.merge_list(current, value, merge_key, child)
                else:
                    original[key] = self.fresh(value, child)
            else:
                original[key] = value
        return original

    def retain_keys(self, original: dict[str, Any], patch: dict[str, Any]) -> None:
        keys = patch[_RETAIN_KEYS]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise PatchError("invalid patch format of retainKeys", 400)
        keep = set(keys)
        for k, v in patch.items():
            if v is None or k.startswith("$"):
                continue
            if k not in keep:
                raise PatchError("invalid patch format of retainKeys", 400)
        for k in list(original):
            if k not in keep:
                del original[k]

    def delete_from_primitive_list(self, original: dict[str, Any], field: str, value: Any) -> None:
        if not isinstance(value, list) or any(isinstance(v, dict | list) for v in value):
            raise PatchError("invalid patch format of primitive list", 400)
        current = original.get(field)
        if not isinstance(current, list):
            return
        if any(isinstance(v, dict | list) for v in current):
            raise PatchError(f"cannot delete primitives from the non-primitive list {field!r}", 422)
        remaining = [v for v in current if not any(json_equal(v, d) for d in value)]
        # the real server returns what is left de-duplicated and sorted
        original[field] = sorted(_uniq(remaining), key=_go_repr)

    def element_kind(self, *lists: list[Any]) -> str:
        kinds = {_json_type(item) for items in lists for item in items}
        if "slice" in kinds:
            raise PatchError("lists of lists are not supported", 422)
        if len(kinds) > 1:
            raise PatchError("list elements do not all have the same type", 422)
        return next(iter(kinds), "")

    def merge_list(
        self, original: list[Any], patch: list[Any], merge_key: str, path: FieldNames
    ) -> list[Any]:
        if not original and not patch:
            return original
        if self.element_kind(original, patch) != "map":
            return _uniq([*original, *patch])
        if not merge_key:
            raise PatchError(f"cannot merge lists without merge key for {'.'.join(path)}", 422)
        plain: list[dict[str, Any]] = []
        replace = False
        for item in patch:
            if _DIRECTIVE not in item:
                plain.append(item)
                continue
            directive = item[_DIRECTIVE]
            if directive == "delete":
                if merge_key not in item:
                    raise PatchError("delete patch type with no merge key defined", 422)
                original = [o for o in original if not _key_matches(o, merge_key, item[merge_key])]
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                plain.append(item)
            else:
                raise PatchError(
                    f"Unknown patch type: {_go_repr(directive)} in map: {_go_repr(item)}", 400
                )
        if replace:
            return [self.merge_map({}, item, path) for item in plain]
        for item in plain:
            if merge_key not in item:
                raise PatchError(
                    f"map: {_go_repr(item)} does not contain declared merge key: {merge_key}", 422
                )
            for i, existing in enumerate(original):
                if _key_matches(existing, merge_key, item[merge_key]):
                    original[i] = self.merge_map(existing, item, path)
                    break
            else:
                original.append(self.merge_map({}, item, path))
        return original

    def apply_element_orders(
        self, original: dict[str, Any], patch: dict[str, Any], path: FieldNames
    ) -> dict[str, Any]:
        """Process ``$setElementOrder/<field>``; returns the patch without what it consumed."""
        orders = [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]
        if not orders:
            return patch
        patch = dict(patch)
        for directive in orders:
            order = patch.pop(directive)
            field = directive[len(_SET_ELEMENT_ORDER) :]
            child = (*path, field)
            if not isinstance(order, list):
                raise PatchError("invalid patch format of setElementOrder list", 400)
            found_original, found_patch = field in original, field in patch
            original_list = original.get(field)
            patch_list = patch.get(field)
            if found_original and not isinstance(original_list, list):
                raise PatchError(f"{field} is not a list in the object", 422)
            if found_patch and not isinstance(patch_list, list):
                raise PatchError(f"{field} is not a list in the patch", 400)
            # a snapshot: merging appends to the live list, but the live order is the reference
            original_items: list[Any] = (
                list(original_list) if isinstance(original_list, list) else []
            )
            patch_items: list[Any] = patch_list if isinstance(patch_list, list) else []
            merge, merge_key = self.merge_strategy(child)
            key = merge_key if merge else ""
            _validate_order(patch_items, order, key)
            if found_original and found_patch:
                if merge:
                    merged = self.merge_list(list(original_items), patch_items, merge_key, child)
                else:
                    merged = self.fresh(patch_items, child)
            elif found_patch:
                merged = self.fresh(patch_items, child)
            elif found_original:
                merged = original_items
            else:
                continue
            kind = self.element_kind(original_items, patch_items)
            if kind == "map" and key:
                for item in [*merged, *order]:
                    if not isinstance(item, dict) or key not in item:
                        raise PatchError(
                            f"map: {_go_repr(item)} does not contain declared merge key: {key}",
                            422,
                        )
            in_order = [m for m in merged if _index(order, m, key) >= 0]
            server_only = [m for m in merged if _index(order, m, key) < 0]
            in_order.sort(key=lambda m: _index(order, m, key))
            server_only.sort(key=lambda m: _rank(original_items, m, key))
            original[field] = _merge_sorted(server_only, in_order, original_items, key)
            patch.pop(field, None)
        return patch


def _is_directive_item(item: Any) -> bool:
    return isinstance(item, dict) and _DIRECTIVE in item


def _key_matches(item: Any, key: str, value: Any) -> bool:
    return isinstance(item, dict) and key in item and json_equal(item[key], value)


def _uniq(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not any(json_equal(item, o) for o in out):
            out.append(item)
    return out


def _index(items: list[Any], item: Any, key: str) -> int:
    """Position of ``item`` in ``items``, matching maps by ``key`` when given; -1 if absent."""
    for i, candidate in enumerate(items):
        if key:
            if isinstance(item, dict) and key in item and _key_matches(candidate, key, item[key]):
                return i
        elif json_equal(candidate, item):
            return i
    return -1


def _rank(items: list[Any], item: Any, key: str) -> int:
    i = _index(items, item, key)
    return i if i >= 0 else len(items)


def _validate_order(patch_items: list[Any], order: list[Any], key: str) -> None:
    """The non-directive patch items must appear in ``order`` in the same relative order."""
    items = [p for p in patch_items if not _is_directive_item(p)]
    if not items or not order:
        return
    p = 0
    for entry in order:
        if p >= len(items):
            break
        if key:
            if not isinstance(entry, dict) or key not in entry:
                raise PatchError(
                    f"map: {_go_repr(entry)} does not contain declared merge key: {key}", 422
                )
            if _key_matches(items[p], key, entry[key]):
                p += 1
        elif json_equal(items[p], entry):
            p += 1
    if p < len(items):
        raise PatchError(
            f"The order in patch list:\n{_go_repr(patch_items)}\n doesn't match "
            f"$setElementOrder list:\n{_go_repr(order)}\n",
            422,
        )


def _merge_sorted(
    left: list[Any], right: list[Any], server_order: list[Any], key: str
) -> list[Any]:
    """Interleave server-only items (``left``) with ordered patch items (``right``).

    Both keep their relative order; where both items exist in the live list, the live
    order decides, otherwise the patch item goes first (apimachinery's mergeSortedSlice).
    """
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li, ri = _index(server_order, left[i], key), _index(server_order, right[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def strategic_merge_patch(
    obj: dict[str, Any], patch: Any, *, group: str, kind: str
) -> dict[str, Any]:
    """Apply a strategic merge patch (``application/strategic-merge-patch+json``) to ``obj``.

    Lists merge according to :mod:`kubesim.schema` for ``group``/``kind``; lists of
    unknown kinds (custom resources) are replaced whole, like in a JSON merge patch.
    """
    if not isinstance(patch, dict):
        raise PatchError(
            _unmarshal_message(patch),
            400,
        )
    engine = _Strategic(schema_for(group, kind))
    try:
        result = engine.merge_map(copy.deepcopy(obj), copy.deepcopy(patch), ())
    except RecursionError as exc:  # pragma: no cover - absurdly deep documents
        raise PatchError("patch is nested too deeply", 400) from exc
    assert isinstance(result, dict)
    return result
