"""The HTTP face of the simulator: the Kubernetes REST API for many clusters on one port.

Each cluster lives under ``/clusters/NAME``; below that prefix the paths, verbs, query
parameters, content types and error bodies are those of a real API server, so kubectl and
the official Python client work unchanged.  ``/admin/...`` (outside every cluster) sets
faults and reads request counters at run time.  All cluster state is touched from the one
event-loop thread, so no locks are needed and a request's effects are atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from aiohttp import web

from kubesim import protobuf
from kubesim.catalog import ResourceType
from kubesim.controllers import Controllers
from kubesim.errors import ApiError, bad_request
from kubesim.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from kubesim.store import Cluster, Watcher, WriteOptions

Obj = dict[str, Any]
log = logging.getLogger("kubesim")
#: The real server's request body limit (3 MiB).
MAX_BODY = 3 * 1024 * 1024

_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}
_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Route:
    """What a request path addresses inside one cluster."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str
    watch_path: bool


class Simulator:
    """The clusters of one simulator process and the aiohttp application serving them."""

    def __init__(self, names: list[str] | None = None, *, controller_delay: float = 0.0) -> None:
        self.clusters: dict[str, Cluster] = {}
        self.controller_delay = controller_delay
        self.base_url = ""
        for name in names or []:
            self.add_cluster(name)

    def add_cluster(self, name: str) -> Cluster:
        """Create (or return) the cluster named ``name``."""
        cluster = self.clusters.get(name)
        if cluster is None:
            cluster = Cluster(name)
            cluster.faults.controller_delay = self.controller_delay
            Controllers(cluster)
            self.clusters[name] = cluster
        return cluster

    def app(self) -> web.Application:
        """The aiohttp application (one catch-all route per area, parsed by hand for speed)."""
        app = web.Application(client_max_size=MAX_BODY + 1)
        app.router.add_route("*", "/clusters/{cluster}/{tail:.*}", self.handle)
        app.router.add_route("*", "/admin/clusters", self.admin_clusters)
        app.router.add_route("*", "/admin/clusters/{cluster}/{what}", self.admin_cluster)
        app.router.add_get("/healthz", self.healthz)
        return app

    # -- admin -------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        """Liveness of the simulator process itself."""
        return web.Response(text="ok")

    async def admin_clusters(self, request: web.Request) -> web.Response:
        """GET: clusters and object counts; POST {"name": ...}: add a cluster."""
        if request.method == "POST":
            body = await request.json()
            name = str(body.get("name", ""))
            if not name:
                return _status(bad_request("name is required"))
            self.add_cluster(name)
        rows = [
            {"name": c.name, "objects": c.object_count(), "resourceVersion": c.rv,
             "faults": c.faults.to_dict()}
            for c in self.clusters.values()
        ]  # fmt: skip
        return _json({"clusters": rows})

    async def admin_cluster(self, request: web.Request) -> web.Response:
        """``faults`` (GET, PUT/PATCH to change), ``requests`` (counters; DELETE resets them
        and the log), ``log`` (every request with its start and end time) and ``watches``
        (GET: how many are open; DELETE ends them all, ``?compact=true`` also answers 410
        Gone to a watch resumed from before)."""
        cluster = self.clusters.get(request.match_info["cluster"])
        if cluster is None:
            return _status(ApiError(404, f"cluster {request.match_info['cluster']!r} not found"))
        what = request.match_info["what"]
        try:
            if what == "faults":
                if request.method in {"PUT", "PATCH", "POST"}:
                    cluster.faults.update(await request.json())
                return _json(cluster.faults.to_dict())
            if what == "log":
                return _json({"requests": list(cluster.request_log)})
            if what == "watches" and request.method == "DELETE":
                compact = request.query.get("compact") in {"true", "1"}
                return _json({"cut": cluster.cut_watches(compact=compact), "compacted": compact})
            if what == "watches":
                return _json({"open": len(cluster.watchers)})
            if what == "requests":
                if request.method == "DELETE":
                    cluster.requests.clear()
                    cluster.request_log.clear()
                counts = [
                    {"verb": verb, "resource": resource, "count": n}
                    for (verb, resource), n in sorted(cluster.requests.items())
                ]
                return _json({"total": sum(cluster.requests.values()), "requests": counts})
        except ApiError as exc:
            return _status(exc)
        except ValueError:
            return _status(bad_request("body must be JSON"))
        return _status(ApiError(404, f"unknown admin resource {what!r}"))

    # -- the API -----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Every API request of every cluster."""
        cluster = self.clusters.get(request.match_info["cluster"])
        if cluster is None:
            return _status(ApiError(404, "the server could not find the requested resource"))
        started = time.time()
        status = 0
        try:
            response = await self._serve(cluster, request)
            status = response.status
            return response
        finally:
            cluster.log_request(started, time.time(), request.method, request.path_qs, status)

    async def _serve(self, cluster: Cluster, request: web.Request) -> web.StreamResponse:
        faults = cluster.faults
        if faults.down:
            # A cluster that is "down" drops the connection without answering, which
            # clients see as a connection error, like a refused or reset connection.
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("cluster is down")
        if faults.latency:
            await asyncio.sleep(faults.latency)
        if faults.error_rate and random.random() < faults.error_rate:
            cluster.requests[("error", str(faults.error_code))] += 1
            response = _status(ApiError(faults.error_code, "simulated server fault"))
            if faults.error_code == 429:
                response.headers["Retry-After"] = "1"
            return response
        try:
            return await self._dispatch(cluster, request)
        except ApiError as exc:
            return _status(exc)
        except Exception as exc:  # a simulator bug must still answer like a server would
            log.exception("internal error on %s %s", request.method, request.path)
            return _status(ApiError(500, f"Internal error occurred: {type(exc).__name__}: {exc}"))

    async def _dispatch(self, cluster: Cluster, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"].strip("/")
        parts = tail.split("/") if tail else []
        method = request.method
        discovery = self._discovery(cluster, parts, request)
        if discovery is not None:
            cluster.requests[("get", "discovery")] += 1
            if method != "GET":
                raise ApiError(405, f"the server does not allow this method on {tail}")
            return discovery
        route = self._route(cluster, parts)
        query = request.query
        verb = _verb(method, route, query)
        cluster.requests[
            (verb, route.rt.plural + (f"/{route.subresource}" if route.subresource else ""))
        ] += 1
        rt = route.rt
        ns = route.namespace or ""
        if verb in {"list", "watch", "deletecollection"}:
            labels, fields_ = _selectors(query, rt)
            if verb == "watch":
                return await self._watch(cluster, request, route, labels, fields_)
            if verb == "deletecollection":
                return _reply(request, cluster.delete_collection(
                    rt, route.namespace, labels, fields_, dry_run=_dry_run(query)))  # fmt: skip
            listing = cluster.list(
                rt, route.namespace, labels=labels, fields_=fields_,
                limit=_int(query.get("limit"), "limit"), continue_=query.get("continue", ""),
            )  # fmt: skip
            return _reply(request, listing, rt=rt)
        name = route.name or ""
        if verb == "get":
            obj = cluster.get(rt, ns, name)
            if route.subresource == "scale":
                return _reply(request, _scale_of(rt, obj))
            return _reply(request, obj, rt=rt)
        if verb == "create":
            body = await _body(request, patch=False)
            opts = _write_options(request, subresource="")
            created = cluster.create(rt, ns, body, opts)
            return _reply(request, created, status=201)
        if verb == "delete":
            options = await _delete_options(request)
            propagation = str(
                query.get("propagationPolicy") or options.get("propagationPolicy") or "Background"
            )
            dry_run = _dry_run(query) or options.get("dryRun") == ["All"]
            deleted = cluster.delete(
                rt, ns, name, dry_run=dry_run, propagation=propagation,
                preconditions=options.get("preconditions"),
            )  # fmt: skip
            code = 202 if deleted["metadata"].get("deletionTimestamp") and not dry_run else 200
            return _reply(request, deleted, status=code)
        subresource = route.subresource
        opts = _write_options(request, subresource=subresource)
        if route.subresource == "scale":
            return await self._scale_write(cluster, request, rt, ns, name, opts)
        if verb == "update":
            body = await _body(request, patch=False)
            return _reply(request, cluster.update(rt, ns, name, body, opts))
        patch_type = _PATCH_TYPES.get(request.content_type)
        if patch_type is None:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(_PATCH_TYPES)}",
                reason="UnsupportedMediaType",
            )
        if patch_type != "apply" and query.get("force"):
            raise bad_request("force is only allowed for apply patches")
        body = await _body(request, patch=True)
        existed = cluster.store_of(rt).get((ns if rt.namespaced else "", name)) is not None
        result = cluster.patch(rt, ns, name, patch_type=patch_type, body=body, opts=opts)
        return _reply(request, result, status=200 if existed or opts.dry_run else 201)

    async def _scale_write(
        self, cluster: Cluster, request: web.Request, rt: ResourceType, ns: str, name: str,
        opts: WriteOptions,
    ) -> web.Response:  # fmt: skip
        """PUT/PATCH on ``/scale``: change ``spec.replicas`` of the object behind it."""
        from kubesim import patch as patching  # noqa: PLC0415 - only scale writes need it

        obj = cluster.get(rt, ns, name)
        scale = _scale_of(rt, obj)
        body = await _body(request, patch=request.method == "PATCH")
        if request.method == "PUT":
            new_scale = body
        else:
            kind = _PATCH_TYPES.get(request.content_type, "")
            try:
                if kind == "json":
                    new_scale = patching.json_patch(scale, body)
                elif kind in {"merge", "strategic"}:
                    new_scale = patching.merge_patch(scale, body)
                else:
                    raise ApiError(415, "unsupported patch type for the scale subresource")
            except patching.PatchError as exc:
                raise ApiError(exc.status_code, str(exc)) from None
        try:
            replicas = int(new_scale["spec"]["replicas"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(
                422, "Scale.autoscaling is invalid: spec.replicas: Required value"
            ) from None
        if replicas < 0:
            raise ApiError(
                422,
                f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                f"{replicas}: must be greater than or equal to 0",
            )
        spec = dict(obj.get("spec") or {})
        spec["replicas"] = replicas
        updated = cluster.update(rt, ns, name, {**obj, "spec": spec}, opts)
        return _reply(request, _scale_of(rt, updated))

    async def _watch(
        self, cluster: Cluster, request: web.Request, route: Route,
        labels: LabelSelector | None, fields_: FieldSelector | None,
    ) -> web.StreamResponse:  # fmt: skip
        """Stream events as newline-delimited JSON, from a resourceVersion or from now."""
        query = request.query
        queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()
        watcher = Watcher(
            (route.rt.group, route.rt.plural),
            route.namespace if route.rt.namespaced else None,
            labels,
            fields_,
            lambda kind, obj: queue.put_nowait((kind, obj)),
            lambda: queue.put_nowait(None),
        )
        if route.name:  # /watch/namespaces/ns/things/NAME (deprecated form)
            name_selector = parse_field_selector(
                f"metadata.name={route.name}", group=route.rt.group, kind=route.rt.kind
            )
            watcher.fields_ = name_selector
        since = query.get("resourceVersion", "")
        initial_events = query.get("sendInitialEvents") == "true"
        bookmarks = query.get("allowWatchBookmarks") == "true"
        if initial_events or since in {"", "0"}:
            # A WatchList (sendInitialEvents) or an unversioned watch starts with the
            # current state as ADDED events; a WatchList ends them with a bookmark.
            listing = cluster.list(
                route.rt, watcher.namespace, labels=labels, fields_=watcher.fields_
            )
            for obj in listing["items"]:
                queue.put_nowait(("ADDED", obj))
            if initial_events:
                queue.put_nowait(("BOOKMARK", _bookmark(route.rt, cluster.rv, initial_end=True)))
        else:
            try:
                for event in cluster.events_since(int(since)):
                    watcher.offer(event)
            except ValueError:
                raise bad_request(f"invalid resourceVersion {since!r}") from None
        cluster.watchers.add(watcher)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        timeout = _int(query.get("timeoutSeconds"), "timeoutSeconds") or 1800
        deadline = time.monotonic() + timeout
        try:
            await response.prepare(request)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), timeout=min(remaining, 10))
                except TimeoutError:
                    if bookmarks:
                        item = ("BOOKMARK", _bookmark(route.rt, cluster.rv, initial_end=False))
                    else:
                        continue
                if item is None:
                    break
                kind, obj = item
                await response.write(_DUMPS({"type": kind, "object": obj}).encode() + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            cluster.watchers.discard(watcher)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    # -- routing -----------------------------------------------------------------------

    def _discovery(
        self, cluster: Cluster, parts: list[str], request: web.Request
    ) -> web.Response | None:
        catalog = cluster.catalog
        doc: Any = None
        if parts == ["version"]:
            doc = catalog.version_info()
        elif parts == ["api"]:
            doc = catalog.core_api_versions(request.host)
        elif parts == ["api", "v1"]:
            doc = catalog.resource_list("", "v1")
        elif parts == ["apis"]:
            doc = catalog.api_group_list()
        elif len(parts) == 2 and parts[0] == "apis":
            doc = catalog.api_group(parts[1])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource")
        elif len(parts) == 3 and parts[0] == "apis":
            doc = catalog.resource_list(parts[1], parts[2])
            if doc is None:
                raise ApiError(404, "the server could not find the requested resource")
        elif parts[:2] == ["openapi", "v3"]:
            if len(parts) == 2:
                doc = catalog.openapi_v3_root()
            else:
                gv = parts[2:]
                group, version = ("", gv[1]) if gv[0] == "api" and len(gv) == 2 else (
                    (gv[1], gv[2]) if gv[0] == "apis" and len(gv) == 3 else ("", ""))  # fmt: skip
                doc = catalog.openapi_v3_group(group, version) if version else None
                if doc is None:
                    raise ApiError(404, "the server could not find the requested resource")
        elif parts[:1] == ["openapi"]:
            raise ApiError(404, "the server could not find the requested resource")
        if doc is None:
            return None
        return _json(doc)

    def _route(self, cluster: Cluster, parts: list[str]) -> Route:
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "the server could not find the requested resource")
        watch_path = False
        if rest[:1] == ["watch"]:
            watch_path, rest = True, rest[1:]
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (group == "" and len(rest) == 3 and rest[2] in {"status", "finalize"})
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource")
        rt = cluster.resource_type(group, version, rest[0])
        if namespace is not None and not rt.namespaced:
            raise ApiError(404, "the server could not find the requested resource")
        name = rest[1] if len(rest) >= 2 else None
        subresource = rest[2] if len(rest) == 3 else ""
        if subresource and subresource not in rt.subresources and subresource != "finalize":
            raise ApiError(404, "the server could not find the requested resource")
        return Route(rt, namespace, name, subresource, watch_path)


# -- request and response helpers ------------------------------------------------------


def _verb(method: str, route: Route, query: Any) -> str:
    watching = route.watch_path or query.get("watch") in {"true", "1"}
    if route.name is None:
        verbs = {"GET": "watch" if watching else "list", "POST": "create",
                 "DELETE": "deletecollection"}  # fmt: skip
    else:
        verbs = {"GET": "watch" if watching else "get", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}  # fmt: skip
    verb = verbs.get(method)
    if verb is None:
        raise ApiError(405, "the server does not allow this method on the requested resource")
    if route.name is None and verb == "create" and route.rt.namespaced and route.namespace is None:
        raise ApiError(405, "the server does not allow this method on the requested resource")
    return verb


def _selectors(query: Any, rt: ResourceType) -> tuple[LabelSelector | None, FieldSelector | None]:
    labels = fields_ = None
    try:
        if query.get("labelSelector"):
            labels = parse_label_selector(query["labelSelector"])
        if query.get("fieldSelector"):
            fields_ = parse_field_selector(query["fieldSelector"], group=rt.group, kind=rt.kind)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None
    return labels, fields_


def _int(value: str | None, name: str) -> int:
    if not value:
        return 0
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"invalid {name} {value!r}: must be an integer") from None
    if number < 0:
        raise bad_request(f"invalid {name} {value!r}: must not be negative")
    return number


def _dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


def _write_options(request: web.Request, *, subresource: str) -> WriteOptions:
    query = request.query
    manager = query.get("fieldManager", "")
    if len(manager) > 128:
        raise ApiError(422, "fieldManager: Too long: may not be more than 128 bytes")
    if not manager and _PATCH_TYPES.get(request.content_type) != "apply":
        agent = request.headers.get("User-Agent", "unknown")
        manager = agent.split("/", 1)[0][:128] or "unknown"
    force = query.get("force", "") in {"true", "1"}
    return WriteOptions(dry_run=_dry_run(query), manager=manager, force=force,
                        subresource=subresource)  # fmt: skip


async def _read(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"Request entity too large: limit is {MAX_BODY}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"Request entity too large: limit is {MAX_BODY}") from None
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"Request entity too large: limit is {MAX_BODY}")
    return raw


async def _body(request: web.Request, *, patch: bool) -> Any:
    raw = await _read(request)
    # Like the real server, a request without Content-Type is read as JSON.
    content_type = request.content_type if "Content-Type" in request.headers else "application/json"
    if not raw.strip():
        raise bad_request("the body of the request was empty")
    if content_type == protobuf.MEDIA_TYPE and not patch:
        # kubectl's typed generators and client-go's typed clients write protobuf.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("protobuf body of %s %s: %s", request.method, request.path, raw.hex())
        try:
            return protobuf.decode(raw)
        except protobuf.UnsupportedKind as exc:
            raise ApiError(415, str(exc), reason="UnsupportedMediaType") from None
        except protobuf.ProtobufError as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from None
    try:
        if content_type in {"application/yaml", "application/apply-patch+yaml"}:
            return yaml.load(raw, Loader=_YAML_LOADER)
        if content_type == "application/json" or (patch and content_type in _PATCH_TYPES):
            return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the body of the request was in an unknown format: {exc}") from None
    raise ApiError(
        415,
        f"the body of the request was in an unknown format ({content_type}) - accepted media "
        f"types include: application/json, application/yaml, {protobuf.MEDIA_TYPE}",
        reason="UnsupportedMediaType",
    )


async def _delete_options(request: web.Request) -> Obj:
    if not request.can_read_body:
        return {}
    raw = await _read(request)
    if not raw.strip():
        return {}
    try:
        options = json.loads(raw)
    except ValueError:
        raise bad_request("the body of the request was in an unknown format") from None
    if not isinstance(options, dict):
        raise bad_request("DeleteOptions must be an object")
    return options


def _bookmark(rt: ResourceType, rv: int, *, initial_end: bool) -> Obj:
    """A BOOKMARK event's object: only kind, apiVersion and a resourceVersion."""
    meta: Obj = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}


def _scale_of(rt: ResourceType, obj: Obj) -> Obj:
    if "scale" not in rt.subresources:
        raise ApiError(404, "the server could not find the requested resource")
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    selector = spec.get("selector") or {}
    match = selector.get("matchLabels") if isinstance(selector, dict) else None
    selector_text = ",".join(f"{k}={v}" for k, v in sorted((match or {}).items()))
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                           "creationTimestamp") if k in meta},
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {"replicas": status.get("replicas", 0), "selector": selector_text},
    }  # fmt: skip


def _reply(
    request: web.Request, obj: Obj, *, status: int = 200, rt: ResourceType | None = None
) -> web.Response:
    accept = request.headers.get("Accept", "")
    if rt is not None and "as=Table" in accept:
        return _json(_table(obj, rt), status=status)
    return _json(obj, status=status)


def _json(doc: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=_DUMPS(doc).encode(), status=status, content_type="application/json")


def _status(error: ApiError) -> web.Response:
    return _json(error.status(), status=error.code)


# -- server-side printing (what ``kubectl get`` shows) ---------------------------------


def _age(obj: Obj) -> str:
    created = obj.get("metadata", {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    seconds = int((datetime.now(UTC) - datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
                   .replace(tzinfo=UTC)).total_seconds())  # fmt: skip
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _extra_columns(kind: str) -> list[tuple[str, str, Callable[[Obj], Any]]]:
    def status(obj: Obj) -> Obj:
        return obj.get("status") or {}

    def spec(obj: Obj) -> Obj:
        return obj.get("spec") or {}

    if kind == "Deployment":
        return [
            (
                "Ready",
                "string",
                lambda o: f"{status(o).get('readyReplicas', 0)}/{spec(o).get('replicas', 1)}",
            ),
            ("Up-to-date", "integer", lambda o: status(o).get("updatedReplicas", 0)),
            ("Available", "integer", lambda o: status(o).get("availableReplicas", 0)),
        ]
    if kind == "Service":
        return [
            ("Type", "string", lambda o: spec(o).get("type", "ClusterIP")),
            ("Cluster-IP", "string", lambda o: spec(o).get("clusterIP", "<none>")),
            ("Ports", "string", lambda o: ",".join(
                f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in spec(o).get("ports", [])
                if isinstance(p, dict)) or "<none>"),
        ]  # fmt: skip
    if kind == "Namespace":
        return [("Status", "string", lambda o: status(o).get("phase", "Active"))]
    if kind == "ConfigMap":
        return [
            ("Data", "integer", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}))
        ]
    return []


def _table(obj: Obj, rt: ResourceType) -> Obj:
    """A ``meta.k8s.io/v1`` Table, so ``kubectl get`` prints real columns."""
    items = obj.get("items") if "items" in obj and obj.get("kind", "").endswith("List") else None
    rows_of = items if items is not None else [obj]
    extra = _extra_columns(rt.kind)
    columns = [
        {"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}
    ]
    columns += [
        {"name": n, "type": t, "format": "", "description": n, "priority": 0} for n, t, _ in extra
    ]
    columns.append(
        {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}
    )
    rows = []
    for item in rows_of:
        meta = item.get("metadata", {})
        cells = [meta.get("name", "")] + [fn(item) for _, _, fn in extra] + [_age(item)]
        rows.append({
            "cells": cells,
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                       "metadata": meta},
        })  # fmt: skip
    table_meta = {"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")}
    if items is not None and obj.get("metadata", {}).get("continue"):
        table_meta["continue"] = obj["metadata"]["continue"]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": table_meta,
            "columnDefinitions": columns, "rows": rows}  # fmt: skip
