"""Pairing of desired and live objects, and a diff that reports only real drift.

Argo CD's diffs are noisy because the API server adds to every object: defaults
(``progressDeadlineSeconds``, ``imagePullPolicy``, ``protocol: TCP``), bookkeeping
(``uid``, ``resourceVersion``, ``managedFields``), ``status``, annotations written by
kubectl or controllers, and quantities rewritten into canonical form.  This module compares
only the fields the desired manifest declares, so none of that is drift, and lists of named
things (containers, env, ports, volumes) are matched by their key, not their position, so a
reordering is not drift either.  It is pure (no I/O, no clocks) so it can be table-tested
and called in a tight loop by the engine and the CLI ``diff``.

Notation of changed paths
-------------------------
A changed path is an RFC 6901 JSON pointer (``/spec/replicas``; ``~`` is written ``~0`` and
``/`` is written ``~1``, so a label key reads ``/metadata/labels/app.kubernetes.io~1name``),
extended for lists matched by key: the item is named by its key field, appended to the
list's segment in brackets::

    /spec/template/spec/containers[name=web]/image
    /spec/ports[port=53,protocol=UDP]           (protocol shown only when it is not TCP)
    /spec/template/spec/containers[name=web]/volumeMounts[mountPath=~1data]

Items of lists compared by position use their index (``/spec/args/1``).  The whole object
is ``/`` (a creation, or a desired object that is not a map at all).  Ignore rules accept
plain RFC 6901 pointers (indexes address list items, as in Argo CD) and also the bracket
form, so a path copied from a report can be pasted into ``ignoreDifferences``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from reconciler.model import Manifest, ObjectKey, group_of
from reconciler.quantity import parse_quantity

# --------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pairing:
    """Desired objects with their live twins, and the live objects nobody desires.

    ``orphans`` are only prune *candidates*: the caller keeps those that carry our
    ownership labels (or are in the inventory) and are not protected from pruning.
    """

    pairs: tuple[tuple[Manifest, Manifest | None], ...]
    orphans: tuple[Manifest, ...]


def pair(desired: Sequence[Manifest], live: Sequence[Manifest]) -> Pairing:
    """Pair objects by ``ObjectKey`` (group, kind, namespace, name), ignoring ``apiVersion``.

    The API server serves one object at several versions (``apps/v1`` and the older
    ``apps/v1beta1``), so the version a manifest is written at says nothing about identity.
    Pairs keep the desired order, which the apply order is derived from.  If the live list
    holds one object twice (listed through two versions) the first copy is used and the
    others are neither paired nor orphans: they are the same object.
    """
    live_by_key: dict[ObjectKey, Manifest] = {}
    for obj in live:
        live_by_key.setdefault(_key_of(obj), obj)
    wanted: set[ObjectKey] = set()
    pairs: list[tuple[Manifest, Manifest | None]] = []
    for obj in desired:
        key = _key_of(obj)
        wanted.add(key)
        pairs.append((obj, live_by_key.get(key)))
    orphans = tuple(obj for key, obj in live_by_key.items() if key not in wanted)
    return Pairing(pairs=tuple(pairs), orphans=orphans)


def _key_of(obj: Any) -> ObjectKey:
    """``ObjectKey.of``, tolerating odd data (a diff must never raise on it)."""
    try:
        return ObjectKey.of(obj)
    except (AttributeError, TypeError):  # not a map, or metadata that is not a map
        if not isinstance(obj, dict):
            return ObjectKey(group="", kind="", namespace="", name="")
        return ObjectKey(
            group=group_of(str(obj.get("apiVersion", ""))),
            kind=str(obj.get("kind", "")),
            namespace="",
            name="",
        )


# --------------------------------------------------------------------------- ignore rules


class IgnoreRuleLike(Protocol):
    """What an ``ignoreDifferences`` entry needs to offer (``config.IgnoreRule`` does).

    ``group`` None or ``"*"`` matches every group (``""`` is the core group); ``kind`` ``"*"``
    matches every kind; ``name`` and ``namespace`` None or empty match every object, as in
    Argo CD.  Each pointer is removed from both sides before they are compared.
    """

    @property
    def group(self) -> str | None: ...

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str | None: ...

    @property
    def namespace(self) -> str | None: ...

    @property
    def json_pointers(self) -> Sequence[str]: ...


def rule_matches(rule: IgnoreRuleLike, key: ObjectKey) -> bool:
    """Whether ``rule`` applies to the object ``key``."""
    return (
        rule.kind in ("*", key.kind)
        and (rule.group is None or rule.group in ("*", key.group))
        and (not rule.name or rule.name == key.name)
        and (not rule.namespace or rule.namespace == key.namespace)
    )


def parse_pointer(pointer: str) -> tuple[str, ...] | None:
    """RFC 6901 segments of ``pointer``; ``()`` for the whole document, None if malformed."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        return None
    return tuple(s.replace("~1", "/").replace("~0", "~") for s in pointer[1:].split("/"))


def escape_segment(segment: str) -> str:
    """One JSON pointer segment, with ``~`` and ``/`` escaped as RFC 6901 requires."""
    return segment.replace("~", "~0").replace("/", "~1")


_ABSENT: Final[Any] = object()  # a key or item missing on one side (distinct from null)
_SELECTOR = re.compile(r"(?P<list>.+)\[(?P<field>[^=\[\]]+)=(?P<value>[^\]]*)\]", re.DOTALL)
_INDEX = re.compile(r"0|[1-9][0-9]*", re.ASCII)


def _without(value: Any, segments: tuple[str, ...]) -> Any:
    """``value`` with the node at ``segments`` removed (``_ABSENT`` if that is ``value``).

    Copy-on-write: only the containers along the path are copied, so ignoring a field of
    a large object costs its depth, not its size, and the caller's data is never mutated.
    A path that does not exist returns ``value`` itself.
    """
    if not segments:
        return _ABSENT
    head, rest = segments[0], segments[1:]
    if isinstance(value, dict):
        if head in value:
            return _without_child(value, head, rest)
        match = _SELECTOR.fullmatch(head)
        if match is None or not isinstance(value.get(match["list"]), list):
            return value
        # Segments arrive unescaped; selectors are compared in their reported (escaped) form.
        wanted = f"{match['field']}={escape_segment(match['value'])}"
        field = match["field"]
        for index, item in enumerate(value[match["list"]]):
            if isinstance(item, dict) and field in item and _selector(item, field) == wanted:
                return _without(value, (match["list"], str(index), *rest))
        return value
    if isinstance(value, list) and _INDEX.fullmatch(head) and int(head) < len(value):
        return _without_child(value, int(head), rest)
    return value


def _without_child(container: Any, slot: Any, rest: tuple[str, ...]) -> Any:
    """``container`` (a map or list) with ``rest`` removed below ``container[slot]``."""
    child = _without(container[slot], rest)
    if child is container[slot]:
        return container
    copy = dict(container) if isinstance(container, dict) else list(container)
    if child is _ABSENT:
        del copy[slot]
    else:
        copy[slot] = child
    return copy


# --------------------------------------------------------------------------- diff


@dataclass(frozen=True)
class ObjectDiff:
    """The drift of one object: where it differs, and a ``kubectl diff``-like text."""

    key: ObjectKey
    changed_paths: tuple[str, ...]
    diff: str

    @property
    def changed(self) -> bool:
        """True when applying the desired object would change the live one."""
        return bool(self.changed_paths)


#: Top-level fields that never count: identity (already matched by pairing) and status.
_NOT_COMPARED: Final = frozenset({"apiVersion", "kind", "status"})
#: The only metadata the platform owns; name/namespace are identity, the rest is the server's.
_COMPARED_METADATA: Final = frozenset({"labels", "annotations"})

#: Maps whose values are resource quantities, compared by value (``1000m == 1``): container
#: resources, node capacity, ResourceQuota, LimitRange and RuntimeClass overhead.
_QUANTITY_MAPS: Final = frozenset(
    {
        "requests",
        "limits",
        "capacity",
        "allocatable",
        "hard",
        "used",
        "podFixed",
        "default",
        "defaultRequest",
        "max",
        "min",
        "maxLimitRequestRatio",
    }
)
#: Single fields that are quantities wherever they appear.
_QUANTITY_FIELDS: Final = frozenset({"sizeLimit", "storage"})

#: Candidate merge keys tried in order on any list of maps.
_MERGE_KEYS: Final = ("name", "mountPath", "containerPort", "port", "devicePath", "ip", "type")
#: Lists whose Kubernetes merge key is not the first generic candidate that fits.
_PREFERRED_MERGE_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"),
    "hostAliases": ("ip",),
    "conditions": ("type",),
}
#: Port-like keys identify an item together with its protocol, which defaults to TCP.
_PORT_KEYS: Final = frozenset({"containerPort", "port"})


def diff(
    desired: Manifest, live: Manifest | None, *, ignore: Sequence[IgnoreRuleLike] = ()
) -> ObjectDiff:
    """Compare the fields ``desired`` declares with ``live``; ``live`` None means create.

    Never raises on odd data: a type mismatch is drift at that path.  ``status``,
    ``apiVersion``, ``kind`` and metadata other than declared labels and annotations are
    never compared.
    """
    key = _key_of(desired)
    pointers = _pointers_for(key, ignore)
    desired = _strip(desired, pointers)
    header = _header(desired)
    shown = _shown(desired)
    try:
        if live is None:
            return ObjectDiff(key=key, changed_paths=("/",), diff=_unified(_ABSENT, shown, header))
        walk = _Walk()
        projection = walk.top(desired, _strip(live, pointers))
        if not walk.changed:
            return ObjectDiff(key=key, changed_paths=(), diff="")
        text = _unified(projection, shown, header)
        return ObjectDiff(key=key, changed_paths=tuple(walk.changed), diff=text)
    except RecursionError:  # absurdly deep data: report it, do not crash the reconcile
        return ObjectDiff(key=key, changed_paths=("/",), diff="")


def _pointers_for(key: ObjectKey, rules: Iterable[IgnoreRuleLike]) -> list[tuple[str, ...]]:
    pointers: list[tuple[str, ...]] = []
    for rule in rules:
        if rule_matches(rule, key):
            for text in rule.json_pointers:
                segments = parse_pointer(text)
                if segments is not None:
                    pointers.append(segments)
    return pointers


def _strip(obj: Any, pointers: list[tuple[str, ...]]) -> Any:
    for segments in pointers:
        obj = _without(obj, segments)
        if obj is _ABSENT:  # the pointer "" ignores the whole object
            return {}
    return obj


def _shown(desired: Any) -> Any:
    """What the diff text shows of the desired side: everything but ``status``."""
    if isinstance(desired, dict) and "status" in desired:
        return {k: v for k, v in desired.items() if k != "status"}
    return desired


def _header(desired: Any) -> str:
    """``apps/v1/Deployment/ns/web``: the object as ``kubectl diff`` names its files."""
    if not isinstance(desired, dict):
        return "object"
    key = _key_of(desired)
    parts = [str(desired.get("apiVersion", "")), key.kind]
    if key.namespace:
        parts.append(key.namespace)
    parts.append(key.name)
    return "/".join(part for part in parts if part) or "object"


class _Walk:
    """One comparison: records changed paths and builds the live side's projection.

    The projection is what the diff text shows as "live": the live values of the fields
    desired declares (plus live-only items of keyed lists, which are drift).  Where a
    subtree compares equal the projection holds the *desired* value, so equal-but-
    differently-written values (``1Gi``/``1024Mi``, reordered containers, ``{}`` versus
    absent) produce no lines in the text and the text shows exactly the drift.
    """

    __slots__ = ("changed",)

    def __init__(self) -> None:
        self.changed: list[str] = []

    def top(self, desired: Any, live: Any) -> Any:
        if not isinstance(desired, dict) or not isinstance(live, dict):
            return self.value(desired, live, path="", name=None, quantity=False)
        projection: dict[Any, Any] = {}
        for key, want in desired.items():
            if key in _NOT_COMPARED:
                if key != "status":
                    projection[key] = want
                continue
            path = "/" + escape_segment(str(key))
            if key == "metadata" and isinstance(want, dict):
                projection[key] = self._metadata(want, live.get(key), path)
                continue
            got = self.value(want, live.get(key, _ABSENT), path=path, name=key, quantity=False)
            if got is not _ABSENT:
                projection[key] = got
        return projection

    def _metadata(self, want: dict[Any, Any], got: Any, path: str) -> dict[Any, Any]:
        live_meta = got if isinstance(got, dict) else {}
        projection: dict[Any, Any] = {}
        for key, value in want.items():
            if key not in _COMPARED_METADATA:
                projection[key] = value  # shown on both sides, never compared
                continue
            child_path = f"{path}/{escape_segment(str(key))}"
            child = self.value(
                value, live_meta.get(key, _ABSENT), path=child_path, name=key, quantity=False
            )
            if child is not _ABSENT:
                projection[key] = child
        return projection

    def value(self, want: Any, got: Any, *, path: str, name: Any, quantity: bool) -> Any:
        """Compare one declared value; return the live projection (or ``_ABSENT``)."""
        if want is None:  # null in desired means "absent"
            if got is None or got is _ABSENT:
                return want
            return self._drift(path, got)
        if isinstance(want, dict):
            return self._map(want, got, path=path, name=name)
        if isinstance(want, list):
            return self._list(want, got, path=path, name=name)
        if got is _ABSENT:
            return self._drift(path, got)
        if _scalar_equal(want, got, quantity=quantity or name in _QUANTITY_FIELDS):
            return want
        return self._drift(path, got)

    def _drift(self, path: str, got: Any) -> Any:
        self.changed.append(path or "/")
        return got

    def _map(self, want: dict[Any, Any], got: Any, *, path: str, name: Any) -> Any:
        missing = got is _ABSENT or got is None
        if not missing and not isinstance(got, dict):
            return self._drift(path, got)
        live_map: dict[Any, Any] = {} if missing else got
        before = len(self.changed)
        children_are_quantities = name in _QUANTITY_MAPS
        projection: dict[Any, Any] = {}
        for key, value in want.items():
            child = self.value(
                value,
                live_map.get(key, _ABSENT),
                path=f"{path}/{escape_segment(str(key))}",
                name=key,
                quantity=children_are_quantities,
            )
            if child is not _ABSENT:
                projection[key] = child
        if missing and len(self.changed) > before:
            return got  # the live map is not there at all: show it as such
        return projection

    def _list(self, want: list[Any], got: Any, *, path: str, name: Any) -> Any:
        if got is _ABSENT or got is None:
            if not want:
                return want  # [] declares nothing: equal to a missing list
            return self._drift(path, got)
        if not isinstance(got, list):
            return self._drift(path, got)
        field = _merge_key(want, got, name)
        if field is None:
            return self._positional(want, got, path=path)
        return self._keyed(want, got, path=path, field=field)

    def _positional(self, want: list[Any], got: list[Any], *, path: str) -> list[Any]:
        projection: list[Any] = []
        for index in range(max(len(want), len(got))):
            item_path = f"{path}/{index}"
            if index >= len(got):
                self.changed.append(item_path)
            elif index >= len(want):
                projection.append(self._drift(item_path, got[index]))
            else:
                item = self.value(
                    want[index], got[index], path=item_path, name=None, quantity=False
                )
                if item is not _ABSENT:
                    projection.append(item)
        return projection

    def _keyed(self, want: list[Any], got: list[Any], *, path: str, field: str) -> list[Any]:
        live_items = {_identity(item, field): item for item in got}
        projection: list[Any] = []
        for item in want:
            identity = _identity(item, field)
            item_path = f"{path}[{_selector(item, field)}]"
            twin = live_items.pop(identity, _ABSENT)
            if twin is _ABSENT:
                self.changed.append(item_path)
                continue
            compared = self._map(item, twin, path=item_path, name=None)
            projection.append(compared)
        for item in live_items.values():  # live has items desired lacks: drift too
            projection.append(self._drift(f"{path}[{_selector(item, field)}]", item))
        return projection


def _scalar_equal(want: Any, got: Any, *, quantity: bool) -> bool:
    """Exact equality, except ints equal their floats, and quantities compare by value."""
    if isinstance(want, bool) or isinstance(got, bool):  # True == 1 in Python, not in YAML
        return type(want) is type(got) and want == got
    if isinstance(want, int | float) and isinstance(got, int | float):
        if want == got:
            return True
        both_float = isinstance(want, float) and isinstance(got, float)
        return both_float and math.isnan(want) and math.isnan(got)
    if quantity:
        left = parse_quantity(want)
        if left is not None:
            right = parse_quantity(got)
            return right is not None and left == right
    if type(want) is not type(got):
        return False
    try:
        return bool(want == got)
    except Exception:  # exotic objects in odd data: unequal, never an exception
        return False


def _merge_key(want: list[Any], got: list[Any], name: Any) -> str | None:
    """The field that identifies items of both lists, or None to compare by position.

    A field qualifies when every item of both lists is a map holding it, with a scalar
    value, and no two items of one list share a value.  Fields are tried in Kubernetes'
    merge-key order for well-known lists (``volumeMounts`` by ``mountPath``), then the
    generic order, so a volume mounted twice under one name still matches by path.
    """
    if not want and not got:
        return None
    for item in want:
        if not isinstance(item, dict):
            return None
    for item in got:
        if not isinstance(item, dict):
            return None
    preferred = _PREFERRED_MERGE_KEYS.get(name, ()) if isinstance(name, str) else ()
    for field in (*preferred, *_MERGE_KEYS):
        if _unique_by(want, field) and _unique_by(got, field):
            return field
    return None


def _unique_by(items: list[dict[Any, Any]], field: str) -> bool:
    seen: set[Any] = set()
    for item in items:
        value = item.get(field, _ABSENT)
        if isinstance(value, bool) or not isinstance(value, str | int):
            return False  # floats (NaN) and containers make no identity
        identity = _identity(item, field)
        if identity in seen:
            return False
        seen.add(identity)
    return True


def _identity(item: dict[Any, Any], field: str) -> tuple[Any, ...]:
    value = item[field]
    # Tag the type so that the name "80" and the port 80 are different items.
    if field in _PORT_KEYS:
        protocol = item.get("protocol") or "TCP"
        return (type(value).__name__, value, protocol if isinstance(protocol, str) else "?")
    return (type(value).__name__, value)


def _selector(item: dict[Any, Any], field: str) -> str:
    """``name=web``, or ``port=53,protocol=UDP`` when a port's protocol is not TCP."""
    text = f"{field}={escape_segment(str(item[field]))}"
    if field in _PORT_KEYS:
        protocol = item.get("protocol") or "TCP"
        if protocol != "TCP":
            text += f",protocol={escape_segment(str(protocol))}"
    return text


# --------------------------------------------------------------------------- text


def _unified(live: Any, desired: Any, header: str) -> str:
    """``diff -u`` of the two YAML renderings, as ``kubectl diff`` prints it."""
    before = [] if live is _ABSENT else render_yaml(live).splitlines(keepends=True)
    after = render_yaml(desired).splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(before, after, fromfile=f"live/{header}", tofile=f"desired/{header}")
    )


def render_yaml(value: Any) -> str:
    """Block YAML with sorted keys, written with the standard library only.

    The pure core may not import PyYAML; this emitter covers JSON-like data, quoting any
    string a YAML 1.1 reader could take for something else, so the text reads back as the
    same data.
    """
    lines: list[str] = []
    _emit(value, 0, lines)
    return "".join(line + "\n" for line in lines)


_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./:@=+-]*(?: [A-Za-z0-9_./:@=+()-]+)*", re.ASCII)
#: ``1Gi``, ``500m``, ``30s``: digits then letters (not an exponent, hex, octal or binary).
_PLAIN_NUMBER_WITH_UNIT = re.compile(r"[0-9]+(?:\.[0-9]+)?[A-DF-Za-df-np-wyz][A-Za-z]*", re.ASCII)
_RESERVED_WORDS: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})
#: Characters a YAML reader refuses raw or reads as line breaks (U+0085, U+2028/9) or a BOM.
_NEEDS_ESCAPE = re.compile(
    "[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


def _emit(value: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict) and value:
        for key in sorted(value, key=str):
            child = value[key]
            head = f"{pad}{_scalar(str(key))}:"
            if isinstance(child, dict) and child:
                lines.append(head)
                _emit(child, indent + 2, lines)
            elif isinstance(child, list) and child:
                lines.append(head)
                _emit(child, indent, lines)  # sequences under a key are not indented
            else:
                _emit_scalar(child, head, indent + 2, lines)
    elif isinstance(value, list) and value:
        for item in value:
            start = len(lines)
            _emit(item, indent + 2, lines)
            first = lines[start]
            lines[start] = f"{pad}- {first[indent + 2 :]}"
    else:
        start = len(lines)
        _emit_scalar(value, "", indent + 2, lines)  # block contents must be indented
        lines[start] = pad + lines[start]


def _emit_scalar(value: Any, head: str, indent: int, lines: list[str]) -> None:
    """``head value`` on one line, or a literal block for multi-line strings."""
    sep = " " if head else ""
    if isinstance(value, str) and _literal_ok(value):
        body = value.rstrip("\n")
        trailing = len(value) - len(body)
        chomp = "-" if trailing == 0 else "" if trailing == 1 else "+"
        lines.append(f"{head}{sep}|{chomp}")
        pad = " " * indent
        lines.extend(pad + line if line else "" for line in body.split("\n"))
        lines.extend("" for _ in range(trailing - 1))
        return
    lines.append(f"{head}{sep}{_scalar(value)}")


def _literal_ok(text: str) -> bool:
    """Whether a multi-line string survives as a literal block (else it is quoted)."""
    if "\n" not in text or _NEEDS_ESCAPE.search(text.replace("\n", "")):
        return False
    body = text.rstrip("\n")
    if not body:
        return False
    return all(not line.startswith(" ") and line == line.rstrip() for line in body.split("\n"))


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "." not in text:  # YAML 1.1 floats need a dot: 1e+16 -> 1.0e+16
            mantissa, _, exponent = text.partition("e")
            text = f"{mantissa}.0e{exponent}" if exponent else f"{mantissa}.0"
        return text
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    text = str(value)
    plain = (
        _PLAIN.fullmatch(text) and ": " not in text and not text.endswith(":")
    ) or _PLAIN_NUMBER_WITH_UNIT.fullmatch(text)
    if plain and text.lower() not in _RESERVED_WORDS:
        return text
    return _double_quoted(text)


def _double_quoted(text: str) -> str:
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        if code <= 0xFF:
            return f"\\x{code:02x}"
        if code <= 0xFFFF:
            return f"\\u{code:04x}"
        return f"\\U{code:08x}"

    body = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + _NEEDS_ESCAPE.sub(escape, body) + '"'
