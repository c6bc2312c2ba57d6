"""The Kubernetes adapter: reused clients of the clusters, and the few calls the engine makes.

The official ``kubernetes`` client does the talking (a ``DynamicClient`` whose discovery is
cached on disk, so a worker that starts does not rediscover every cluster, and shared in
memory by the clusters that serve the same APIs: ``reconciler.kube.discovery``).  A
process keeps the clients it used last (``RECONCILER_KUBE_CLIENTS``); one dropped is
rebuilt from the kubeconfig and the shared discovery without a request.  Results are
read as plain JSON, never wrapped in ``ResourceInstance``, because the engine's pure core
works on dicts and wrapping costs more than the request.  Every failure becomes one of our
errors: 5xx, 429, timeouts and refused connections are ``ClusterUnavailable`` (retryable),
4xx answers are ``ClusterRejected`` (``NotFound``, ``Conflict``, ``Invalid`` by status) with the
server's reason, message and causes, prefixed once by the object concerned.  URLs and
credentials of the kubeconfig never appear in messages.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import ssl
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError

from reconciler import settings
from reconciler.errors import (
    Cause,
    ClusterError,
    ClusterRejected,
    ClusterUnavailable,
    ConfigError,
    Conflict,
    Invalid,
    NotFound,
    ReconcilerError,
)
from reconciler.kube.discovery import SharedDiscoverer
from reconciler.model import (
    APP_LABEL,
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Manifest,
    ObjectKey,
    group_of,
)
from reconciler.yamlio import load_documents

T = TypeVar("T")

#: (connect, read) seconds for every request; a slow cluster must not hold a worker forever.
DEFAULT_TIMEOUT = (5.0, 30.0)
#: Requests of one step (a wave's dry-runs, one list per kind) in flight at once.
OVERLAP = 6


@dataclass(frozen=True)
class Kind:
    """What discovery says of one kind on one cluster."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return group_of(self.api_version)

    def path(self, namespace: str = "", name: str = "") -> str:
        """REST path of the collection (all namespaces when ``namespace`` is "") or item."""
        base = (
            "/api/" + self.api_version
            if "/" not in self.api_version
            else "/apis/" + self.api_version
        )
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


def _default_request_timeout(api_client: k8s.ApiClient, timeout: tuple[float, float]) -> None:
    """Give every request of ``api_client`` a deadline, also those we do not make.

    Our calls pass ``_request_timeout``; the DynamicClient's discovery does not, and
    urllib3 then waits forever: a cluster that accepts connections and never answers
    would hold a worker slot until the task's hard time limit.
    """
    rest = api_client.rest_client
    # Weakly: the client's own attribute holding it strongly would be a reference cycle,
    # freed only by the cyclic collector once the client is dropped.
    request = weakref.WeakMethod(rest.request)

    def with_deadline(*args: Any, **kwargs: Any) -> Any:
        if len(args) < 8:  # not passed positionally (it is the eighth parameter)
            kwargs["_request_timeout"] = kwargs.get("_request_timeout") or timeout
        method = request()
        assert method is not None  # called through the client, which is alive
        return method(*args, **kwargs)

    rest.request = with_deadline  # type: ignore[method-assign]


#: Every ``Kind`` discovery found, once per process (clusters mostly serve the same).
_KINDS: dict[Kind, Kind] = {}
#: Every set of capabilities read, once per process, likewise.
_CAPABILITIES: dict[tuple[str | None, tuple[str, ...]], tuple[str | None, tuple[str, ...]]] = {}


@dataclass
class ClusterFacts:
    """What a cluster told a client that its factory keeps when it drops the client: a
    few hundred bytes, where a client with its pool and discovery is tens of KiB."""

    capabilities: tuple[str | None, tuple[str, ...]] | None = None
#: SSL contexts of watches by their files and verification, while a watch holds one.
_SSL_CONTEXTS: weakref.WeakValueDictionary[tuple[Any, ...], ssl.SSLContext] = (
    weakref.WeakValueDictionary()
)
_SSL_LOCK = threading.Lock()


def _ssl_context(conf: k8s.Configuration) -> ssl.SSLContext:
    """One SSL context per distinct CA, client certificate and verification.

    A context holds its CA store (the system's, when the kubeconfig names none: hundreds
    of KiB); the watches of clusters signed by the same CA, with the same credentials,
    share one, and so can share the connector's pooled connections.  A file is known by
    its path and its stamp, so a certificate rotated in place gets a new context.
    """

    def stamp(path: str | None) -> tuple[str, int, int] | None:
        if not path:
            return None
        stat = os.stat(path)
        return (path, stat.st_mtime_ns, stat.st_size)

    key = (stamp(conf.ssl_ca_cert), stamp(conf.cert_file), stamp(conf.key_file),
           bool(conf.verify_ssl))  # fmt: skip
    with _SSL_LOCK:
        found = _SSL_CONTEXTS.get(key)
        if found is not None:
            return found
        context = ssl.create_default_context(cafile=conf.ssl_ca_cert or None)
        if conf.cert_file:
            context.load_cert_chain(conf.cert_file, conf.key_file or None)
        if not conf.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _SSL_CONTEXTS[key] = context
        return context


@dataclass(frozen=True)
class StreamSettings:
    """A cluster's API server as a plain HTTP client reaches it (see ``stream_settings``)."""

    base: str
    headers: dict[str, str]
    ssl: ssl.SSLContext | None

    def __repr__(self) -> str:  # the headers carry the token
        return f"StreamSettings(base={self.base!r})"


class KubeClient:
    """One cluster, as the engine sees it: discovery, list, get, apply, delete.

    ``name`` is the fleet's cluster name; it prefixes messages instead of the server URL.
    """

    def __init__(
        self,
        *,
        name: str,
        api_client: k8s.ApiClient,
        cache_dir: Path,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        pool: ThreadPoolExecutor | None = None,
        facts: ClusterFacts | None = None,
    ) -> None:
        self.name = name
        self.api_client = api_client
        self.timeout = timeout
        _default_request_timeout(api_client, timeout)
        host = api_client.configuration.host.encode()
        # Plain strings: pathlib would intern the name of each cluster's file for ever.
        directory = os.path.join(cache_dir, "discovery")
        os.makedirs(directory, exist_ok=True)
        self._cache_file = os.path.join(directory, f"{hashlib.sha256(host).hexdigest()[:16]}.json")
        self._dynamic: DynamicClient | None = None
        self._kinds: dict[tuple[str, str], Kind | None] = {}
        #: What outlives this client in its factory (its capabilities).
        self._facts = facts or ClusterFacts()
        self._lock = threading.Lock()
        #: Held around the discovery library (its lazy cache is not thread-safe); RLock:
        #: a search may build the DynamicClient first.
        self._discovery = threading.RLock()
        #: Threads the requests of one step share (``apply_all``); None: one at a time.
        self._pool = pool

    def stream_settings(self) -> StreamSettings:
        """Where and how to open a long-lived request (a watch) with another HTTP client.

        The kubeconfig is read in one place: here, by the official client.  Its server,
        token (refreshed by an exec plugin's hook when it has one), client certificate and
        CA become a base URL, headers and an SSL context.
        """
        conf = self.api_client.configuration
        if conf.refresh_api_key_hook is not None:
            conf.refresh_api_key_hook(conf)
        headers = {"Accept": "application/json", "User-Agent": "reconciler-watcher"}
        # Where the kubeconfig loader puts a token (``auth_settings`` reads it so too).
        token = conf.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        elif conf.username and conf.password:
            headers["Authorization"] = conf.get_basic_auth_token()
        context = _ssl_context(conf) if conf.host.startswith("https://") else None
        return StreamSettings(base=conf.host.rstrip("/"), headers=headers, ssl=context)

    # -- discovery ---------------------------------------------------------------------

    @property
    def dynamic(self) -> DynamicClient:
        """The DynamicClient, created on first use (its discovery may make requests)."""
        if self._dynamic is None:
            with self._discovery:
                if self._dynamic is None:
                    self._dynamic = self._make_dynamic()
        return self._dynamic

    def _make_dynamic(self) -> DynamicClient:
        return self._call(
            "discovery",
            lambda: DynamicClient(
                self.api_client, cache_file=self._cache_file, discoverer=SharedDiscoverer
            ),
        )

    def kind(self, group: str, kind: str) -> Kind | None:
        """Discovery of ``kind`` in ``group`` (preferred version), or None when not served."""
        key = (group, kind)
        with self._lock:
            if key in self._kinds:
                return self._kinds[key]
        search: dict[str, str] = {"kind": kind}
        if group:
            search["group"] = group
        else:
            search["api_version"] = "v1"
        # The library's lazy discovery cache is not thread-safe: one search at a time.
        with self._discovery:
            try:
                found = self._call("discovery", lambda: self.dynamic.resources.search(**search))
            except (ResourceNotFoundError, ResourceNotUniqueError):
                found = []
            except (KeyError, AttributeError, TypeError) as exc:
                # A request that failed in the middle of a lazy discovery leaves its cache
                # half filled: start discovery afresh, and fail this run as passing.
                self._dynamic = None
                raise ClusterUnavailable(
                    f"cluster {self.name}: discovery failed midway ({type(exc).__name__}); "
                    "it is read again on the next run"
                ) from None
        found = [r for r in found if "/" not in r.name]  # not subresources
        result = None
        if found:
            preferred = [r for r in found if getattr(r, "preferred", False)] or found
            res = preferred[0]
            made = Kind(res.group_version, res.kind, res.name, bool(res.namespaced))
            result = _KINDS.setdefault(made, made)  # one copy per process, as discovery
        with self._lock:
            self._kinds[key] = result
        return result

    def namespaced(self, group: str, kind: str) -> bool | None:
        """True/False from discovery, None when the cluster does not serve the kind."""
        found = self.kind(group, kind)
        return None if found is None else found.namespaced

    def forget_kind(self, group: str, kind: str) -> None:
        """Drop what we know of a kind (after its CRD appeared or went)."""
        with self._lock:
            self._kinds.pop((group, kind), None)
            self._facts.capabilities = None

    def require_kind(self, group: str, kind: str) -> Kind:
        """Like ``kind`` but an unknown kind is an error naming it."""
        found = self.kind(group, kind)
        if found is None:
            shown = f"{kind}.{group}" if group else kind
            raise NotFound(f"cluster {self.name}: kind {shown} is not served", status=404)
        return found

    # -- verbs -------------------------------------------------------------------------

    def list_owned(self, group: str, kind: str, app: str) -> list[Manifest]:
        """Every object of ``kind`` owned by ``app`` (both ownership labels), all namespaces."""
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{APP_LABEL}={app}"
        return self.list_selected(group, kind, selector)

    def list_selected(
        self, group: str, kind: str, selector: str, *, namespace: str = ""
    ) -> list[Manifest]:
        """Every object of ``kind`` matching a label selector, in one namespace or all."""
        found = self.require_kind(group, kind)
        items: list[Manifest] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"label_selector": selector, "limit": 500}
            if token:
                params["_continue"] = token
            path = found.path(namespace)
            page = self._json(f"{_shown(group, kind)} (list)", path, "get", **params)
            for item in page.get("items") or []:
                # Lists omit kind/apiVersion on items; put them back for pairing.
                item.setdefault("apiVersion", found.api_version)
                item.setdefault("kind", found.kind)
                items.append(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    def list_owned_all(self, kinds: Sequence[tuple[str, str]], app: str) -> list[list[Manifest]]:
        """``list_owned`` of each kind, the requests overlapping; results in order.

        The first error is raised once every request has ended.
        """
        calls = [functools.partial(self.list_owned, group, kind, app) for group, kind in kinds]
        results = self._overlap(calls)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if not isinstance(r, BaseException)]

    def apply_all(
        self, objs: Sequence[Manifest], *, dry_run: bool = False, force: bool = False
    ) -> list[Manifest | ReconcilerError]:
        """``apply`` of each object, the requests overlapping; in order, each the server's
        object or the error it raised (a caller judges them one by one, as if in turn)."""
        calls = [functools.partial(self.apply, obj, dry_run=dry_run, force=force) for obj in objs]
        results = self._overlap(calls)
        out: list[Manifest | ReconcilerError] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ReconcilerError):
                raise result
            out.append(result)
        return out

    def _overlap(self, calls: Sequence[Callable[[], T]]) -> list[T | BaseException]:
        """Run ``calls`` on the factory's threads (in turn when it has none, or for one)."""
        if len(calls) < 2 or self._pool is None:
            results: list[T | BaseException] = []
            for call in calls:
                try:
                    results.append(call())
                except Exception as exc:  # returned, judged by the caller in order
                    results.append(exc)
            return results
        futures = [self._pool.submit(call) for call in calls]
        done: list[T | BaseException] = []
        for future in futures:
            try:
                done.append(future.result())
            except Exception as exc:  # as above
                done.append(exc)
        return done

    def get(self, group: str, kind: str, namespace: str, name: str) -> Manifest | None:
        """One object, or None when it does not exist."""
        found = self.require_kind(group, kind)
        what = str(ObjectKey(group, kind, namespace if found.namespaced else "", name))
        try:
            return self._json(what, found.path(namespace, name), "get")
        except NotFound:
            return None

    def apply(self, obj: Manifest, *, dry_run: bool = False, force: bool = False) -> Manifest:
        """Server-side apply with our field manager; the server's resulting object."""
        key = ObjectKey.of(obj)
        found = self.require_kind(key.group, key.kind)
        params: dict[str, Any] = {
            "body": obj,
            "content_type": "application/apply-patch+yaml",
            "field_manager": FIELD_MANAGER,
            "force_conflicts": "true" if force else None,
        }
        if dry_run:
            params["dry_run"] = "All"
        return self._json(str(key), found.path(key.namespace, key.name), "patch", **params)

    def create(self, obj: Manifest, *, dry_run: bool = False) -> Manifest:
        """POST a new object (hooks named by ``generateName`` cannot be applied)."""
        key = ObjectKey.of(obj)
        found = self.require_kind(key.group, key.kind)
        what = str(key) if key.name else f"{_shown(key.group, key.kind)}/{_generate_name(obj)}*"
        params: dict[str, Any] = {"body": obj, "field_manager": FIELD_MANAGER}
        if dry_run:
            params["dry_run"] = "All"
        return self._json(what, found.path(key.namespace), "post", **params)

    def delete(
        self, group: str, kind: str, namespace: str, name: str, *, propagation: str = "Background"
    ) -> bool:
        """Delete (in the background unless told); False when it was already gone."""
        found = self.require_kind(group, kind)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        what = str(ObjectKey(group, kind, namespace if found.namespaced else "", name))
        try:
            self._json(f"{what}: delete", found.path(namespace, name), "delete", body=body)
        except NotFound:
            return False
        return True

    def capabilities(self) -> tuple[str | None, tuple[str, ...]]:
        """The cluster's ``gitVersion`` (``v1.31.0``) and every group/version it serves.

        What Helm calls ``.Capabilities``; read once per cluster (three requests) and kept,
        also by a client rebuilt after its factory dropped one (a run that needs no read
        of the cluster makes no request), until a kind is forgotten, as discovery is.
        """
        with self._lock:
            if self._facts.capabilities is not None:
                return self._facts.capabilities
        data = self._json("version", "/version", "get")
        version = str(data["gitVersion"]) if data.get("gitVersion") else None
        made = (version, self._api_versions())
        found = _CAPABILITIES.setdefault(made, made)  # one copy of each set per process
        with self._lock:
            self._facts.capabilities = found
        return found

    def _api_versions(self) -> tuple[str, ...]:
        versions: set[str] = set()
        core = self._json("discovery", "/api", "get")
        versions.update(str(v) for v in core.get("versions") or [])
        groups = self._json("discovery", "/apis", "get")
        for group in groups.get("groups") or []:
            for version in group.get("versions") or []:
                if version.get("groupVersion"):
                    versions.add(str(version["groupVersion"]))
        return tuple(sorted(sys.intern(v) for v in versions))  # the same strings everywhere

    # -- plumbing ----------------------------------------------------------------------

    def _json(self, what: str, path: str, method: str, **params: Any) -> Manifest:
        def request() -> Manifest:
            response = self.dynamic.request(
                method, path, serialize=False, _request_timeout=self.timeout, **params
            )
            data: Manifest = json.loads(response.data)
            return data

        return self._call(what, request)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` and translate the client's exceptions to ours."""
        try:
            return fn()
        except ApiException as exc:
            raise self._api_error(what, exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ClusterUnavailable(
                f"cluster {self.name}: {what}: cannot reach the API server ({_reason(exc)})"
            ) from None

    def _api_error(self, what: str, exc: ApiException) -> ClusterError:
        status = int(exc.status or 0)
        reason, message = str(exc.reason or ""), ""
        causes: tuple[Cause, ...] = ()
        try:
            body = json.loads(exc.body or b"{}")
            if isinstance(body, dict):
                message = str(body.get("message") or "")
                reason = str(body.get("reason") or reason)
                causes = _causes(body)
        except ValueError:
            message = ""
        text = f"{what}: {message or reason} ({status} {reason})"
        if status >= 500 or status in {429, 0}:
            error = ClusterUnavailable(f"cluster {self.name}: {text}", status=status, reason=reason)
            retry_after = (exc.headers or {}).get("Retry-After") if exc.headers else None
            if retry_after and str(retry_after).isdigit():
                error.delay = float(retry_after)
            return error
        kind: type[ClusterRejected] = {404: NotFound, 409: Conflict, 422: Invalid}.get(
            status, ClusterRejected
        )
        return kind(text, status=status, reason=reason, causes=causes)

    def close(self) -> None:
        """Close the connection pool, and let the discovery go (a caller still using this
        client reads it again, from the cache file)."""
        with self._discovery:
            dynamic, self._dynamic = self._dynamic, None
        if dynamic is not None:
            # The library's DynamicClient and its discoverer refer to each other: broken,
            # they are freed as soon as dropped, not at the next full collection.
            dynamic.resources.client = None
        self.api_client.close()


def _shown(group: str, kind: str) -> str:
    return f"{kind}.{group}" if group else kind


def _generate_name(obj: Manifest) -> str:
    return str((obj.get("metadata") or {}).get("generateName") or "")


def _causes(status: Manifest) -> tuple[Cause, ...]:
    """``details.causes`` of a Status body, as the server gave them."""
    details = status.get("details")
    raw = details.get("causes") if isinstance(details, dict) else None
    if not isinstance(raw, list):
        return ()
    return tuple(
        Cause(str(c.get("field") or ""), str(c.get("message") or ""), str(c.get("reason") or ""))
        for c in raw
        if isinstance(c, dict)
    )


def _reason(exc: BaseException) -> str:
    """A short cause without URLs (they may carry credentials or internal hosts)."""
    inner = getattr(exc, "reason", None) or exc
    name = type(inner).__name__
    text = str(inner)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower() or "Timeout" in name:
        return "timed out"
    if "RemoteDisconnected" in text or "Connection aborted" in text or "reset" in text.lower():
        return "connection closed by the server"
    if "Name or service not known" in text or "NameResolution" in name:
        return "host name not resolved"
    return name


class ClientFactory:
    """One ``KubeClient`` per (kubeconfig, context), created on first use and reused, for
    the ``max_clients`` clusters used last.

    A worker serves many targets on the same clusters; building a client (TLS context,
    connection pool, discovery) per reconcile would cost more than the reconcile.  But a
    process of a large fleet speaks to each cluster now and then, and a client kept for
    ever per cluster made its memory grow with the fleet: beyond ``max_clients`` the least
    recently used is closed and forgotten.  Rebuilding it costs no request: the kubeconfig
    is parsed once, discovery is read from its cache file into the process's shared copy.
    A caller still holding a client that was dropped may go on using it (its connection
    pool is only emptied), so drop none that a step in flight needs: keep ``max_clients``
    above the clusters one process speaks to at once.
    """

    def __init__(self, *, cache_dir: Path, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 overlap: int = OVERLAP, max_clients: int | None = None) -> None:  # fmt: skip
        self.cache_dir = cache_dir
        self.timeout = timeout
        #: Clients kept at most (``RECONCILER_KUBE_CLIENTS`` unless told).
        self.max_clients = max(1, settings.load().kube_clients if max_clients is None
                               else max_clients)  # fmt: skip
        #: The least recently used first.
        self._clients: OrderedDict[tuple[str, str], KubeClient] = OrderedDict()
        #: By (kubeconfig, context, server): a context moved to another server starts afresh.
        self._facts: dict[tuple[str, str, str], ClusterFacts] = {}
        self._kubeconfigs: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        # One small pool for every cluster: a step's requests (a wave's dry-runs, the
        # lists of each kind) overlap instead of queueing behind each other.  Made
        # after a fork, like the clients: threads do not survive one.
        self._pool = (ThreadPoolExecutor(max_workers=overlap, thread_name_prefix="kube")
                      if overlap > 1 else None)  # fmt: skip

    def for_cluster(self, *, name: str, context: str, kubeconfig: str | None) -> KubeClient:
        """The client of one fleet cluster (its kubeconfig context)."""
        path = resolve_kubeconfig(kubeconfig)
        key = (path, context)
        with self._lock:
            existing = self._clients.get(key)
            if existing is not None:
                self._clients.move_to_end(key)
                return existing
            try:
                configuration = k8s.Configuration()
                k8s_config.load_kube_config_from_dict(
                    config_dict=self._kubeconfig(path), context=context,
                    client_configuration=configuration, persist_config=False,
                    temp_file_path=os.path.dirname(path),
                )  # fmt: skip
            except (ConfigException, OSError, ValueError, TypeError) as exc:
                raise ConfigError(
                    f"cluster {name}: kubeconfig {path} context {context!r}: {_config_reason(exc)}"
                ) from None
            configuration.retries = False  # our retry policy decides, not urllib3's
            api_client = k8s.ApiClient(configuration)
            api_client.user_agent = "reconciler"
            created = KubeClient(
                name=name, api_client=api_client, cache_dir=self.cache_dir, timeout=self.timeout,
                pool=self._pool,
                facts=self._facts.setdefault((*key, configuration.host), ClusterFacts()),
            )
            self._clients[key] = created
            while len(self._clients) > self.max_clients:
                _, dropped = self._clients.popitem(last=False)
                dropped.close()
            return created

    def __len__(self) -> int:
        """Clients kept now."""
        with self._lock:
            return len(self._clients)

    def clear(self) -> None:
        """Close and forget every client; the factory stays usable (beat, after a pass
        over the fleet that it will not make again for a while)."""
        with self._lock:
            dropped = list(self._clients.values())
            self._clients.clear()
        for kube in dropped:
            kube.close()

    def _kubeconfig(self, path: str) -> dict[str, Any]:
        """The kubeconfig at ``path``, parsed once while the file does not change.

        A fleet of a thousand clusters is often one kubeconfig of a thousand contexts:
        parsing it again for each client would cost the square of the fleet.
        """
        stat = os.stat(path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = self._kubeconfigs.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with open(path, "rb") as handle:
            documents = load_documents(handle.read(), source=path, error=ConfigError)
        data = documents[0].data if documents else None
        if not isinstance(data, dict):
            raise ConfigError(f"kubeconfig {path}: not a mapping")
        self._kubeconfigs[path] = (stamp, data)
        return data

    def close(self) -> None:
        """Close every client, and the threads of their requests."""
        self.clear()
        self._facts.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def resolve_kubeconfig(kubeconfig: str | None) -> str:
    """The kubeconfig file as kubectl finds it: explicit, ``$KUBECONFIG``, ``~/.kube/config``."""
    if kubeconfig:
        return os.path.expanduser(kubeconfig)
    env = settings.load().kubeconfig or ""
    first = env.split(os.pathsep)[0] if env else ""
    return os.path.expanduser(first or "~/.kube/config")


def _config_reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, FileNotFoundError) or "No such file" in text:
        return "file not found"
    if "context" in text.lower() and "not" in text.lower():
        return "no such context"
    return text.splitlines()[0][:200] if text else type(exc).__name__
