"""One simulated cluster: its objects, their indexes, resource versions and watch history.

Every verb of the API is a method here, with the real server's semantics (metadata the
server owns, optimistic concurrency, dry-run, finalizers, namespace and owner cascades,
field managers).  The HTTP layer only parses requests and serialises answers, so the
behaviour can be tested directly and the server stays thin.  Lookups go through indexes
(by namespace, by label pair, by owner uid): a list never scans other kinds or namespaces.
"""

from __future__ import annotations

import base64
import builtins
import json
import random
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubesim import fields, patch
from kubesim.catalog import Catalog, ResourceType
from kubesim.defaults import apply_defaults
from kubesim.errors import ApiError, already_exists, bad_request, conflict, not_found
from kubesim.selectors import FieldSelector, LabelSelector
from kubesim.validation import invalid_status, prepare_write, validate, validate_update

Obj = dict[str, Any]
TypeKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace, name); namespace "" when cluster-scoped

#: Requests remembered per cluster by the request log.
REQUEST_LOG_SIZE = 20_000
#: Watch events kept per cluster for resuming from a resourceVersion; older ones are "Expired".
HISTORY_SIZE = 50_000
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields")


def now_rfc3339() -> str:
    """Current time as the API server formats it (seconds, UTC, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Faults:
    """Per-cluster trouble, set at run time: latency, error rate, refusal, rollouts."""

    latency: float = 0.0
    error_rate: float = 0.0
    error_code: int = 500
    down: bool = False
    #: "" (rollouts succeed), "fail" (ProgressDeadlineExceeded) or "hang" (never finish).
    rollout: str = ""
    #: Seconds before simulated controllers report status after a change.
    controller_delay: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form for the admin endpoint."""
        return {
            "latency": self.latency,
            "errorRate": self.error_rate,
            "errorCode": self.error_code,
            "down": self.down,
            "rollout": self.rollout,
            "controllerDelay": self.controller_delay,
        }

    def update(self, values: dict[str, Any]) -> None:
        """Change the fields named in ``values`` (admin endpoint's JSON names)."""
        names = {
            "latency": ("latency", float),
            "errorRate": ("error_rate", float),
            "errorCode": ("error_code", int),
            "down": ("down", bool),
            "rollout": ("rollout", str),
            "controllerDelay": ("controller_delay", float),
        }
        for key, value in values.items():
            if key not in names:
                raise bad_request(f"unknown fault {key!r}; known: {', '.join(names)}")
            attr, cast = names[key]
            try:
                setattr(self, attr, cast(value))
            except (TypeError, ValueError):
                raise bad_request(f"fault {key}: invalid value {value!r}") from None
        if self.rollout not in {"", "fail", "hang"}:
            raise bad_request("fault rollout must be '', 'fail' or 'hang'")
        if not 0.0 <= self.error_rate <= 1.0:
            raise bad_request("fault errorRate must be between 0 and 1")


@dataclass
class Event:
    """A change, as a watch sends it."""

    rv: int
    type_key: TypeKey
    kind: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    """One open watch; the server drains ``push``-ed events from ``queue``."""

    type_key: TypeKey
    namespace: str | None
    labels: LabelSelector | None
    fields_: FieldSelector | None
    push: Callable[[str, Obj], None]
    #: Ends the watch's stream (the server closes it as an API server restart would).
    close: Callable[[], None] | None = None

    def offer(self, event: Event) -> None:
        """Send ``event`` as seen through this watch's filters (selector transitions too)."""
        if event.type_key != self.type_key:
            return
        new_in = self._matches(event.obj) and event.kind != "DELETED"
        old_in = event.old is not None and self._matches(event.old)
        if event.kind == "DELETED":
            if self._matches(event.obj):
                self.push("DELETED", event.obj)
        elif new_in and (old_in or event.kind == "ADDED"):
            self.push(event.kind, event.obj)
        elif new_in:
            self.push("ADDED", event.obj)
        elif old_in:
            self.push("DELETED", event.obj)

    def _matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        if self.labels is not None and not self.labels.matches(meta.get("labels") or {}):
            return False
        return self.fields_ is None or self.fields_.matches(obj)


@dataclass
class TypeStore:
    """The objects of one resource type, indexed by namespace and by label pair."""

    rt: ResourceType
    by_ns: dict[str, dict[str, Obj]] = field(default_factory=dict)
    by_label: dict[tuple[str, str], set[ObjKey]] = field(default_factory=dict)

    def get(self, key: ObjKey) -> Obj | None:
        """The object stored under ``key``, or None."""
        return self.by_ns.get(key[0], {}).get(key[1])

    def put(self, key: ObjKey, obj: Obj) -> None:
        """Store ``obj`` (replacing any old version) and update the label index."""
        old = self.get(key)
        if old is not None:
            self._unindex(key, old)
        self.by_ns.setdefault(key[0], {})[key[1]] = obj
        for pair in (obj["metadata"].get("labels") or {}).items():
            self.by_label.setdefault(pair, set()).add(key)

    def remove(self, key: ObjKey) -> None:
        """Forget the object under ``key``."""
        old = self.get(key)
        if old is None:
            return
        self._unindex(key, old)
        names = self.by_ns[key[0]]
        del names[key[1]]
        if not names:
            del self.by_ns[key[0]]

    def _unindex(self, key: ObjKey, obj: Obj) -> None:
        for pair in (obj["metadata"].get("labels") or {}).items():
            keys = self.by_label.get(pair)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_label[pair]

    def select(self, namespace: str | None, labels: LabelSelector | None) -> Iterator[Obj]:
        """Candidates in ``namespace`` (all when None), narrowed by the label index, in key order.

        The caller still applies the full selector: the index only answers equalities.
        """
        candidates: Iterable[ObjKey] | None = None
        if labels is not None:
            for pair in labels.equality_requirements().items():
                keys = self.by_label.get(pair, set())
                if candidates is None or len(keys) < len(candidates):  # type: ignore[arg-type]
                    candidates = keys
        if candidates is not None:
            ordered = sorted(k for k in candidates if namespace is None or k[0] == namespace)
            objs: Iterable[Obj] = (self.by_ns[k[0]][k[1]] for k in ordered)
        elif namespace is not None:
            names = self.by_ns.get(namespace, {})
            objs = (names[n] for n in sorted(names))
        else:
            objs = (self.by_ns[ns][n] for ns in sorted(self.by_ns) for n in sorted(self.by_ns[ns]))
        yield from objs

    def count(self) -> int:
        """Number of objects of this type."""
        return sum(len(names) for names in self.by_ns.values())


@dataclass(frozen=True)
class WriteOptions:
    """What a mutating request asked for besides its body."""

    dry_run: bool = False
    manager: str = ""
    force: bool = False
    subresource: str = ""


class Cluster:
    """The state of one simulated cluster and every verb on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.catalog = Catalog(kubernetes_version="1.37.0")
        self.rv = 0
        self.types: dict[TypeKey, TypeStore] = {}
        self.history: deque[Event] = deque(maxlen=HISTORY_SIZE)
        self.watchers: set[Watcher] = set()
        #: Watches from a resourceVersion older than this get 410 Gone (history compacted).
        self.compacted = 0
        self.faults = Faults()
        self.requests: Counter[tuple[str, str]] = Counter()
        #: Recent requests with start/end times: lets tests prove two runs never overlapped.
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.owners: dict[str, set[tuple[TypeKey, ObjKey]]] = {}
        #: Called after every committed change: (resource type, event kind, object).
        self.listeners: list[Callable[[ResourceType, str, Obj], None]] = []
        self._bootstrap()

    # -- bootstrap ---------------------------------------------------------------------

    def _bootstrap(self) -> None:
        opts = WriteOptions(manager="kube-apiserver")
        ns_type = self.resource_type("", "v1", "namespaces")
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(ns_type, "", {"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": ns}}, opts)  # fmt: skip
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver"}},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
        }
        self.create(self.resource_type("", "v1", "services"), "default", svc, opts)

    def log_request(self, start: float, end: float, method: str, path: str, status: int) -> None:
        """Remember one served request (status 0: the connection was dropped)."""
        self.request_log.append(
            {"start": start, "end": end, "method": method, "path": path, "status": status}
        )

    # -- lookups -----------------------------------------------------------------------

    def resource_type(self, group: str, version: str, plural: str) -> ResourceType:
        """The served resource, or a 404 like the real server's for unknown paths."""
        rt = self.catalog.get(group, version, plural)
        if rt is None:
            raise ApiError(404, "the server could not find the requested resource")
        return rt

    def store_of(self, rt: ResourceType) -> TypeStore:
        """The object store of ``rt`` (created on first use)."""
        key = (rt.group, rt.plural)
        store = self.types.get(key)
        if store is None:
            store = self.types[key] = TypeStore(rt)
        return store

    def namespace_exists(self, namespace: str) -> Obj | None:
        """The Namespace object, or None."""
        store = self.types.get(("", "namespaces"))
        return None if store is None else store.get(("", namespace))

    def object_count(self) -> int:
        """Objects stored across every type (for the admin endpoint and benchmarks)."""
        return sum(store.count() for store in self.types.values())

    # -- reads -------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        """One object, or 404."""
        obj = self.store_of(rt).get((namespace if rt.namespaced else "", name))
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        *,
        labels: LabelSelector | None = None,
        fields_: FieldSelector | None = None,
        limit: int = 0,
        continue_: str = "",
    ) -> Obj:
        """A ``<Kind>List`` with ``limit``/``continue`` paging like the real server."""
        start_after: tuple[str, str] | None = None
        if continue_:
            start_after = _decode_continue(continue_)
        ns_filter = namespace if rt.namespaced else None
        field_ns, field_name = (
            (None, None) if fields_ is None else (fields_.namespace, fields_.name)
        )
        store = self.store_of(rt)
        candidates: Iterator[Obj]
        if field_ns is not None and rt.namespaced and ns_filter not in (None, field_ns):
            candidates = iter(())
        else:
            if field_ns is not None and rt.namespaced:
                ns_filter = field_ns
            if field_name is not None and (ns_filter is not None or not rt.namespaced):
                found = store.get((ns_filter or "", field_name))
                candidates = iter([found] if found is not None else [])
            else:
                candidates = store.select(ns_filter, labels)
        items: list[Obj] = []
        next_token = ""
        remaining = 0
        for obj in candidates:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            if start_after is not None and key <= start_after:
                continue
            if labels is not None and not labels.matches(meta.get("labels") or {}):
                continue
            if fields_ is not None and not fields_.matches(obj):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(obj)
            if limit and len(items) == limit:
                next_token = _encode_continue(key, self.rv)
        list_meta: Obj = {"resourceVersion": str(self.rv)}
        if remaining:
            list_meta["continue"] = next_token
            list_meta["remainingItemCount"] = remaining
        return {
            "kind": rt.list_kind,
            "apiVersion": rt.api_version,
            "metadata": list_meta,
            "items": items,
        }

    def events_since(self, rv: int) -> builtins.list[Event]:
        """Events after ``rv``, or 410 Expired when history no longer reaches back that far."""
        if rv < self.compacted:
            raise ApiError(410, f"too old resource version: {rv} ({self.compacted})",
                           reason="Expired")  # fmt: skip
        if self.history and self.history[0].rv > rv + 1 and len(self.history) == HISTORY_SIZE:
            raise ApiError(
                410,
                f"too old resource version: {rv} ({self.history[0].rv - 1})",
                reason="Expired",
            )
        return [event for event in self.history if event.rv > rv]

    # -- writes ------------------------------------------------------------------------

    def cut_watches(self, *, compact: bool = False) -> int:
        """End every open watch (how many); ``compact`` also forgets the event history,
        so a watch resumed from before now gets 410 Gone, as after etcd's compaction."""
        if compact:
            self.history.clear()
            self.compacted = self.rv
        cut = 0
        for watcher in list(self.watchers):
            if watcher.close is not None:
                watcher.close()
                cut += 1
        return cut

    def create(self, rt: ResourceType, namespace: str, body: Any, opts: WriteOptions) -> Obj:
        """POST: a new object; generateName, defaults, validation, managed fields."""
        obj = self._check_body(rt, body)
        meta = obj["metadata"]
        ns = self._check_namespace(rt, namespace, meta)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise _invalid(rt, "", [("FieldValueRequired", "metadata.name",
                                          "name or generateName is required")])  # fmt: skip
            meta["name"] = prefix + "".join(random.choices(_GENERATE_ALPHABET, k=5))
        for field_name in _SERVER_METADATA:
            meta.pop(field_name, None)
        meta.pop("deletionTimestamp", None)
        if "status" in rt.subresources:
            obj.pop("status", None)
        key = (ns, meta["name"])
        if self.store_of(rt).get(key) is not None:
            raise already_exists(rt.plural, rt.group, meta["name"])
        _prepare_namespace_create(rt, obj)
        self._admit(rt, obj)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if _tracks_generation(rt):
            meta["generation"] = 1
        obj = fields.track_update(
            None, obj, manager=opts.manager, group=rt.group, kind=rt.kind,
            api_version=rt.api_version, now=now_rfc3339(), operation="Update",
        )  # fmt: skip
        if opts.dry_run:
            obj["metadata"]["resourceVersion"] = str(self.rv)
            return obj
        return self._commit(rt, key, None, obj)

    def update(
        self, rt: ResourceType, namespace: str, name: str, body: Any, opts: WriteOptions
    ) -> Obj:
        """PUT: replace with optimistic concurrency on ``metadata.resourceVersion``."""
        new = self._check_body(rt, body)
        meta = new["metadata"]
        _check_name(meta, name)
        ns = self._check_namespace(rt, namespace, meta, must_exist=False)
        old = self.store_of(rt).get((ns, name))
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        _check_fresh(rt, name, meta, old)
        return self._write(rt, (ns, name), old, new, opts, apply=False)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        patch_type: str,
        body: Any,
        opts: WriteOptions,
    ) -> Obj:
        """PATCH: JSON, merge, strategic merge, or server-side apply."""
        ns = namespace if rt.namespaced else ""
        old = self.store_of(rt).get((ns, name))
        if patch_type == "apply":
            return self._apply(rt, ns, name, old, body, opts)
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        try:
            if patch_type == "json":
                new = patch.json_patch(old, body)
            elif patch_type == "merge":
                new = patch.merge_patch(old, body)
            elif patch_type == "strategic":
                if not rt.builtin:
                    raise ApiError(
                        415,
                        "strategic merge patch format is not supported",
                        reason="UnsupportedMediaType",
                    )
                new = patch.strategic_merge_patch(old, body, group=rt.group, kind=rt.kind)
            else:
                raise ApiError(415, f"unsupported patch type {patch_type}")
        except patch.PatchError as exc:
            raise ApiError(exc.status_code, str(exc)) from None
        if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
            raise ApiError(422, "patch produced an object without metadata")
        meta = new["metadata"]
        if meta.get("name") != name or (rt.namespaced and meta.get("namespace") != ns):
            raise bad_request("metadata.name and metadata.namespace cannot be changed by a patch")
        _check_fresh(rt, name, meta, old)
        return self._write(rt, (ns, name), old, new, opts, apply=False)

    def _apply(
        self, rt: ResourceType, ns: str, name: str, old: Obj | None, body: Any, opts: WriteOptions
    ) -> Obj:
        if not opts.manager:
            raise _invalid_options(
                "fieldManager", "is required for apply patch", kind="PatchOptions"
            )
        applied = self._check_body(rt, body)
        meta = applied["metadata"]
        _check_name(meta, name)
        if rt.namespaced:
            if meta.get("namespace", ns) != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = ns
        for key in _SERVER_METADATA:
            meta.pop(key, None)
        if opts.subresource != "status" and "status" in rt.subresources:
            applied.pop("status", None)
        try:
            new = fields.server_side_apply(
                old, applied, manager=opts.manager, force=opts.force, group=rt.group,
                kind=rt.kind, api_version=rt.api_version, now=now_rfc3339(),
                subresource=opts.subresource,
            )  # fmt: skip
        except fields.ApplyConflict as exc:
            raise ApiError(
                409,
                str(exc),
                reason="Conflict",
                details={
                    "causes": [
                        {"reason": "FieldManagerConflict",
                         "message": f'conflict with "{c.manager}"', "field": c.field}
                        for c in exc.conflicts
                    ]
                },
            ) from None  # fmt: skip
        if old is None:
            self._check_namespace(rt, ns, new["metadata"])
            _prepare_namespace_create(rt, new)
            self._admit(rt, new)
            new["metadata"]["uid"] = str(uuid.uuid4())
            new["metadata"]["creationTimestamp"] = now_rfc3339()
            if _tracks_generation(rt):
                new["metadata"]["generation"] = 1
            if opts.dry_run:
                new["metadata"]["resourceVersion"] = str(self.rv)
                return new
            return self._commit(rt, (ns, name), None, new)
        return self._write(rt, (ns, name), old, new, opts, apply=True)

    def _write(
        self, rt: ResourceType, key: ObjKey, old: Obj, new: Obj, opts: WriteOptions, *, apply: bool
    ) -> Obj:
        """Common tail of update, patch and apply on an existing object."""
        new = dict(new)
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        new_meta = dict(new.get("metadata") or {})
        old_meta = old["metadata"]
        for key_name in ("uid", "creationTimestamp", "deletionTimestamp", "namespace", "name"):
            if key_name in old_meta:
                new_meta[key_name] = old_meta[key_name]
            else:
                new_meta.pop(key_name, None)
        if "generation" in old_meta:
            new_meta["generation"] = old_meta["generation"]
        new_meta["resourceVersion"] = old_meta["resourceVersion"]
        if not apply:
            new_meta["managedFields"] = old_meta.get("managedFields", [])
        new["metadata"] = new_meta
        if opts.subresource == "status":
            merged = {k: v for k, v in old.items() if k != "status"}
            if "status" in new:
                merged["status"] = new["status"]
            merged["metadata"] = {**old_meta, "managedFields": new_meta.get("managedFields", [])}
            new = merged
        elif "status" in rt.subresources:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        if opts.subresource != "status":
            self._admit(rt, new, old)
        if not apply:
            new = fields.track_update(
                old, new, manager=opts.manager, group=rt.group, kind=rt.kind,
                api_version=rt.api_version, now=now_rfc3339(), subresource=opts.subresource,
            )  # fmt: skip
        if _same(old, new):
            return old
        if _tracks_generation(rt) and _spec_changed(old, new):
            new["metadata"]["generation"] = int(old_meta.get("generation", 0)) + 1
        if old_meta.get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if opts.dry_run:
                return new
            return self._remove(rt, key, old)
        if opts.dry_run:
            return new
        return self._commit(rt, key, old, new)

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        dry_run: bool = False,
        propagation: str = "Background",
        preconditions: dict[str, Any] | None = None,
    ) -> Obj:
        """DELETE: finalizers defer it; dependents follow the propagation policy."""
        ns = namespace if rt.namespaced else ""
        old = self.store_of(rt).get((ns, name))
        if old is None:
            raise not_found(rt.plural, rt.group, name)
        meta = old["metadata"]
        for pre_key in ("uid", "resourceVersion"):
            want = (preconditions or {}).get(pre_key)
            if want and want != meta.get(pre_key):
                raise conflict(
                    rt.plural, rt.group, name,
                    f"Precondition failed: {pre_key.capitalize()} in precondition: {want}, "
                    f"{pre_key.capitalize()} in object meta: {meta.get(pre_key)}",
                )  # fmt: skip
        if propagation not in {"Background", "Foreground", "Orphan"}:
            raise bad_request(f"unsupported propagation policy {propagation!r}")
        if dry_run:
            return old
        if rt.group == "" and rt.plural == "namespaces":
            return self._delete_namespace(rt, old)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return old
            new = {**old, "metadata": {**meta, "deletionTimestamp": now_rfc3339(),
                                       "deletionGracePeriodSeconds": 0}}  # fmt: skip
            return self._commit(rt, (ns, name), old, new)
        self._cascade(meta.get("uid", ""), orphan=propagation == "Orphan")
        return self._remove(rt, (ns, name), old)

    def delete_collection(
        self, rt: ResourceType, namespace: str | None, labels: LabelSelector | None,
        fields_: FieldSelector | None, *, dry_run: bool = False,
    ) -> Obj:  # fmt: skip
        """DELETE on a collection: every matching object, one at a time."""
        listing = self.list(rt, namespace, labels=labels, fields_=fields_)
        deleted = []
        for obj in listing["items"]:
            meta = obj["metadata"]
            deleted.append(
                self.delete(rt, meta.get("namespace", ""), meta["name"], dry_run=dry_run)
            )
        listing["items"] = deleted
        return listing

    # -- internals ---------------------------------------------------------------------

    def _check_body(self, rt: ResourceType, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format")
        api_version = body.get("apiVersion")
        kind = body.get("kind")
        if kind is not None and kind != rt.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        if api_version is not None and api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({rt.api_version})"
            )
        meta = body.get("metadata", {})
        if meta is None:
            meta = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        obj: Obj = json.loads(json.dumps(body))  # the server's own copy, never the caller's
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        obj["metadata"] = obj.get("metadata") or {}
        return obj

    def _check_namespace(
        self, rt: ResourceType, namespace: str, meta: Obj, *, must_exist: bool = True
    ) -> str:
        if not rt.namespaced:
            meta.pop("namespace", None)
            return ""
        body_ns = meta.get("namespace")
        if body_ns and namespace and body_ns != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        ns = namespace or body_ns or ""
        if not ns:
            raise bad_request("an empty namespace may not be set during creation")
        meta["namespace"] = ns
        if must_exist:
            ns_obj = self.namespace_exists(ns)
            if ns_obj is None:
                raise not_found("namespaces", "", ns)
            if ns_obj["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    f'{rt.plural} "{meta.get("name", "")}" is forbidden: unable to create new '
                    f"content in namespace {ns} because it is being terminated",
                    reason="Forbidden",
                )
        return ns

    def _admit(self, rt: ResourceType, obj: Obj, old: Obj | None = None) -> None:
        """Defaults, then validation (422 with causes), as the real admission chain.

        ``old`` is the stored object on an update: it keeps what the server allocated and
        makes immutable fields refuse to change.
        """
        apply_defaults(rt.group, rt.kind, obj)
        prepare_write(rt.group, rt.kind, obj, old)
        if rt.group == "" and rt.kind == "Service":
            spec = obj.setdefault("spec", {})
            if spec.get("type", "ClusterIP") != "ExternalName" and not spec.get("clusterIP"):
                ip = f"10.96.{random.randint(1, 254)}.{random.randint(1, 254)}"
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            elif spec.get("clusterIP") and not spec.get("clusterIPs"):
                # normalizeClusterIPs: a client that sets only clusterIP ("None" for a
                # headless Service) gets clusterIPs from it, before validation.
                spec["clusterIPs"] = [spec["clusterIP"]]
        if rt.group == "" and rt.kind == "Namespace":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = obj.get("status") or {"phase": "Active"}
            labels = obj["metadata"].setdefault("labels", {})
            labels.setdefault("kubernetes.io/metadata.name", obj["metadata"].get("name", ""))
        if old is None:
            causes = validate(rt.group, rt.kind, obj, namespaced=rt.namespaced)
        else:
            causes = validate_update(rt.group, rt.kind, obj, old, namespaced=rt.namespaced)
        if causes:
            name = obj["metadata"].get("name", "")
            raise ApiError.from_status(invalid_status(rt.kind, name, causes, group=rt.group))
        if rt.group == "apiextensions.k8s.io" and rt.kind == "CustomResourceDefinition":
            self._check_crd(obj)

    def _check_crd(self, crd: Obj) -> None:
        """Refuse a CRD that the catalog could not serve (bad names, a taken resource)."""
        name = crd["metadata"].get("name", "")
        try:
            types = Catalog.types_from_crd(crd)
        except (KeyError, TypeError, ValueError) as exc:
            raise _invalid_crd(name, f"spec: Invalid value: {exc}") from None
        for rt in types:
            if self.catalog.is_builtin_group(rt.group):
                raise _invalid_crd(
                    name, f"spec.group: Invalid value: {rt.group!r}: is a built-in group"
                )
            other = self.catalog.get(rt.group, rt.version, rt.plural)
            if other is not None and other.crd_name != name:
                raise _invalid_crd(
                    name, f"spec.names.plural: Invalid value: {rt.plural!r}: is already served"
                )

    def _commit(self, rt: ResourceType, key: ObjKey, old: Obj | None, new: Obj) -> Obj:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        store = self.store_of(rt)
        store.put(key, new)
        if old is not None:
            self._unindex_owners(rt, key, old)
        self._index_owners(rt, key, new)
        self._emit(
            rt, Event(self.rv, (rt.group, rt.plural), "MODIFIED" if old else "ADDED", new, old)
        )
        return new

    def _remove(self, rt: ResourceType, key: ObjKey, old: Obj) -> Obj:
        self.rv += 1
        gone = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self.rv)}}
        self.store_of(rt).remove(key)
        self._unindex_owners(rt, key, old)
        self._emit(rt, Event(self.rv, (rt.group, rt.plural), "DELETED", gone, old))
        return gone

    def _emit(self, rt: ResourceType, event: Event) -> None:
        self.history.append(event)
        for watcher in list(self.watchers):
            watcher.offer(event)
        if rt.group == "apiextensions.k8s.io" and rt.kind == "CustomResourceDefinition":
            self._crd_changed(event)
        for listener in self.listeners:
            listener(rt, event.kind, event.obj)

    def _crd_changed(self, event: Event) -> None:
        if event.kind == "DELETED":
            # The custom resources go with their definition, each with a DELETED event.
            for rt in self.catalog.remove_crd(event.obj):
                store = self.types.get((rt.group, rt.plural))
                if store is None:
                    continue
                for obj in list(store.select(None, None)):
                    meta = obj["metadata"]
                    self._remove(rt, (meta.get("namespace", ""), meta["name"]), obj)
                del self.types[(rt.group, rt.plural)]
        else:
            self.catalog.add_crd(event.obj)

    def _index_owners(self, rt: ResourceType, key: ObjKey, obj: Obj) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            if isinstance(ref, dict) and ref.get("uid"):
                self.owners.setdefault(ref["uid"], set()).add(((rt.group, rt.plural), key))

    def _unindex_owners(self, rt: ResourceType, key: ObjKey, obj: Obj) -> None:
        for ref in obj["metadata"].get("ownerReferences") or []:
            if isinstance(ref, dict) and ref.get("uid") in self.owners:
                self.owners[ref["uid"]].discard(((rt.group, rt.plural), key))

    def _cascade(self, uid: str, *, orphan: bool) -> None:
        """Garbage-collect (or orphan) the dependents of the object with ``uid``."""
        for type_key, key in sorted(self.owners.pop(uid, set())):
            store = self.types.get(type_key)
            obj = None if store is None else store.get(key)
            if store is None or obj is None:
                continue
            if orphan:
                refs = [
                    r for r in obj["metadata"].get("ownerReferences", []) if r.get("uid") != uid
                ]
                new = {**obj, "metadata": {**obj["metadata"], "ownerReferences": refs}}
                self._commit(store.rt, key, obj, new)
            else:
                self.delete(store.rt, key[0], key[1])

    def _delete_namespace(self, rt: ResourceType, ns_obj: Obj) -> Obj:
        name = ns_obj["metadata"]["name"]
        if not ns_obj["metadata"].get("deletionTimestamp"):
            terminating = {
                **ns_obj,
                "metadata": {**ns_obj["metadata"], "deletionTimestamp": now_rfc3339()},
                "status": {"phase": "Terminating"},
            }
            ns_obj = self._commit(rt, ("", name), ns_obj, terminating)
        blocked = False
        for store in list(self.types.values()):
            if not store.rt.namespaced:
                continue
            for obj in list(store.by_ns.get(name, {}).values()):
                self.delete(store.rt, name, obj["metadata"]["name"])
            if store.by_ns.get(name):
                blocked = True
        if blocked:
            return ns_obj
        return self._remove(rt, ("", name), ns_obj)

    def finish_namespace_deletions(self) -> None:
        """Remove terminating namespaces whose contents are gone (run after finalizers clear)."""
        ns_store = self.types.get(("", "namespaces"))
        if ns_store is None:
            return
        for ns_obj in list(ns_store.select(None, None)):
            if ns_obj["metadata"].get("deletionTimestamp"):
                self._delete_namespace(ns_store.rt, ns_obj)


def _prepare_namespace_create(rt: ResourceType, obj: Obj) -> None:
    """namespaceStrategy.PrepareForCreate: phase Active and the ``kubernetes`` finalizer,
    even when the client sent ``spec: {}`` (kubectl's generator and its dry-run JSON do)."""
    if (rt.group, rt.kind) != ("", "Namespace"):
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    finalizers = spec.get("finalizers")
    finalizers = list(finalizers) if isinstance(finalizers, list) else []
    if "kubernetes" not in finalizers:
        spec["finalizers"] = [*finalizers, "kubernetes"]
    obj["status"] = {"phase": "Active"}


def _check_fresh(rt: ResourceType, name: str, meta: Obj, old: Obj) -> None:
    """Optimistic concurrency: a resourceVersion in the body must be the current one."""
    rv = meta.get("resourceVersion")
    if rv and rv != old["metadata"]["resourceVersion"]:
        raise conflict(
            rt.plural, rt.group, name,
            "the object has been modified; please apply your changes to the latest "
            "version and try again",
        )  # fmt: skip


def _check_name(meta: Obj, name: str) -> None:
    """The body may omit the name; if it names one, it must be the URL's."""
    if meta.get("name", name) != name:
        raise bad_request(
            f"the name of the object ({meta.get('name')}) does not match the name on the "
            f"URL ({name})"
        )
    meta["name"] = name


def _tracks_generation(rt: ResourceType) -> bool:
    """Kinds whose spec changes bump ``metadata.generation`` (not core ConfigMaps and kin)."""
    return rt.group != ""


def _spec_changed(old: Obj, new: Obj) -> bool:
    ignored = {"metadata", "status", "apiVersion", "kind"}
    return {k: v for k, v in old.items() if k not in ignored} != {
        k: v for k, v in new.items() if k not in ignored
    }


def _same(old: Obj, new: Obj) -> bool:
    """True when a write changes nothing but managed-field timestamps (a no-op write)."""

    def strip(obj: Obj) -> Obj:
        meta = dict(obj.get("metadata") or {})
        meta.pop("resourceVersion", None)
        meta["managedFields"] = [
            {k: v for k, v in entry.items() if k != "time"}
            for entry in meta.get("managedFields") or []
        ]
        return {**obj, "metadata": meta}

    return strip(old) == strip(new)


def _invalid(rt: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    return ApiError(
        422,
        f'{rt.kind}{"." + rt.group if rt.group else ""} "{name}" is invalid: '
        + ", ".join(f"{f}: {m}" for _, f, m in causes),
        details={
            "name": name,
            "group": rt.group,
            "kind": rt.kind,
            "causes": [{"reason": r, "message": m, "field": f} for r, f, m in causes],
        },
    )


def _invalid_crd(name: str, message: str) -> ApiError:
    return ApiError(
        422,
        f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: {message}',
        details={"name": name, "group": "apiextensions.k8s.io",
                 "kind": "CustomResourceDefinition"},
    )  # fmt: skip


def _invalid_options(field_name: str, message: str, *, kind: str) -> ApiError:
    return ApiError(
        422,
        f'{kind}.meta.k8s.io "" is invalid: {field_name}: Required value: {message}',
        details={
            "group": "meta.k8s.io",
            "kind": kind,
            "causes": [{"reason": "FieldValueRequired", "message": f"Required value: {message}",
                        "field": field_name}],
        },
    )  # fmt: skip


def _encode_continue(key: tuple[str, str], rv: int) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": f"{key[0]}/{key[1]}"})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        start = str(json.loads(raw)["start"])
    except (ValueError, KeyError, TypeError):
        raise bad_request("continue key is not valid: illegal base64 data") from None
    ns, _, name = start.partition("/")
    return ns, name
