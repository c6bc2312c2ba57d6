"""The resource catalog of one simulated cluster and the discovery documents derived from it.

kubectl and the official Python client decide what a cluster can do from what the API server
advertises: ``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/GROUP/VERSION`` and the
OpenAPI v3 documents under ``/openapi/v3``.  Every one of those answers must be shaped exactly
like a real server's, and they must change when CustomResourceDefinitions come and go.  This
module holds the table of built-in resource types of a Kubernetes 1.30+ server, registers the
types that CRDs add, answers O(1) lookups for the HTTP server and the object store, and renders
the discovery and OpenAPI documents.  It is pure: no I/O, no clocks.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "ALL_VERBS",
    "BUILTIN_RESOURCES",
    "SUBRESOURCE_VERBS",
    "Catalog",
    "ResourceType",
    "Scope",
    "Subresource",
    "storage_version_hash",
    "version_priority_key",
]

JSON = dict[str, Any]


class Scope(StrEnum):
    """The ``spec.scope`` of a CRD and the scope of a built-in type."""

    NAMESPACED = "Namespaced"
    CLUSTER = "Cluster"


class Subresource(StrEnum):
    """Subresources the simulator serves generically."""

    STATUS = "status"
    SCALE = "scale"


#: Verbs of a built-in resource that supports everything, in the server's (sorted) order.
ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
#: Namespaces cannot be deleted as a collection.
_NO_DELETECOLLECTION: tuple[str, ...] = tuple(v for v in ALL_VERBS if v != "deletecollection")
#: The order in which apiextensions-apiserver lists the verbs of a custom resource.
_CR_VERBS: tuple[str, ...] = (
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
)
#: Verbs of the status and scale subresources.
SUBRESOURCE_VERBS: tuple[str, ...] = ("get", "patch", "update")

_SCALE_GROUP = "autoscaling"
_SCALE_VERSION = "v1"
_SCALE_KIND = "Scale"

# Group priorities of the kube-aggregator (higher first); CRD groups get 1000.
_GROUP_PRIORITY: dict[str, int] = {
    "apps": 17800,
    "autoscaling": 17500,
    "batch": 17400,
    "networking.k8s.io": 17200,
    "policy": 17100,
    "rbac.authorization.k8s.io": 17000,
    "storage.k8s.io": 16800,
    "coordination.k8s.io": 16500,
    "apiextensions.k8s.io": 16400,
}
_CRD_GROUP_PRIORITY = 1000


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """The ``storageVersionHash`` a real server advertises for a storage GVK."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode("ascii")


_KUBE_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority_key(version: str) -> tuple[int, int, int, str]:
    """Sort key implementing Kubernetes' version priority (v2 > v1 > v1beta2 > v1alpha1 > x).

    GA versions come first (higher major first), then betas, then alphas, then any
    non-Kubernetes-looking version in alphabetical order.
    """
    m = _KUBE_VERSION_RE.match(version)
    if m is None:
        return (3, 0, 0, version)
    major = int(m.group(1))
    stage = m.group(2)
    minor = int(m.group(3)) if m.group(3) else 0
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, version)


@dataclass(frozen=True)
class ResourceType:
    """One resource (plural) of one group-version, as discovery describes it.

    The ``scale_*_path`` fields are JSON paths (``.spec.replicas``) used by the scale
    subresource.  For built-in types ``scale_label_selector_path`` points at a
    ``LabelSelector`` object (``.spec.selector``) that the server renders to a string; for
    custom resources it is the CRD's ``labelSelectorPath`` and points at a string.
    """

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[Subresource] = frozenset()
    scale_spec_replicas_path: str = ""
    scale_status_replicas_path: str = ""
    scale_label_selector_path: str = ""
    custom_list_kind: str = ""
    #: Name of the CRD that defined this type; "" for built-ins.
    crd_name: str = ""
    #: Whether this version is the storage version (always True for built-ins).
    storage: bool = True

    @property
    def list_kind(self) -> str:
        return self.custom_list_kind or f"{self.kind}List"

    @property
    def api_version(self) -> str:
        return self.version if self.group == "" else f"{self.group}/{self.version}"

    @property
    def group_version(self) -> tuple[str, str]:
        return (self.group, self.version)

    @property
    def builtin(self) -> bool:
        return self.crd_name == ""

    @property
    def has_status(self) -> bool:
        return Subresource.STATUS in self.subresources

    @property
    def has_scale(self) -> bool:
        return Subresource.SCALE in self.subresources

    @property
    def scope(self) -> Scope:
        return Scope.NAMESPACED if self.namespaced else Scope.CLUSTER

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` style name (just ``pods`` for the core group)."""
        return self.plural if self.group == "" else f"{self.plural}.{self.group}"

    @property
    def group_kind(self) -> str:
        """``Deployment.apps`` style qualified kind used in error messages."""
        return self.kind if self.group == "" else f"{self.kind}.{self.group}"


def _rt(
    group: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    version: str = "v1",
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    status: bool = False,
    scale: bool = False,
    verbs: tuple[str, ...] = ALL_VERBS,
) -> ResourceType:
    subs: set[Subresource] = set()
    if status:
        subs.add(Subresource.STATUS)
    if scale:
        subs.add(Subresource.SCALE)
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        verbs=verbs,
        short_names=short,
        categories=categories,
        subresources=frozenset(subs),
        scale_spec_replicas_path=".spec.replicas" if scale else "",
        scale_status_replicas_path=".status.replicas" if scale else "",
        scale_label_selector_path=".spec.selector" if scale else "",
    )


_ALL = ("all",)

#: Built-in resource types of a Kubernetes 1.31 server (the subset the simulator serves).
BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    # core/v1
    _rt("", "Namespace", "namespaces", namespaced=False, short=("ns",), status=True,
        verbs=_NO_DELETECOLLECTION),
    _rt("", "ConfigMap", "configmaps", short=("cm",)),
    _rt("", "Secret", "secrets"),
    _rt("", "Service", "services", short=("svc",), categories=_ALL, status=True),
    _rt("", "ServiceAccount", "serviceaccounts", short=("sa",)),
    _rt("", "Pod", "pods", short=("po",), categories=_ALL, status=True),
    _rt("", "PersistentVolumeClaim", "persistentvolumeclaims", short=("pvc",), status=True),
    _rt("", "Event", "events", short=("ev",)),
    _rt("", "Endpoints", "endpoints", short=("ep",)),
    _rt("", "Node", "nodes", namespaced=False, short=("no",), status=True),
    # apps/v1
    _rt("apps", "Deployment", "deployments", short=("deploy",), categories=_ALL, status=True,
        scale=True),
    _rt("apps", "StatefulSet", "statefulsets", short=("sts",), categories=_ALL, status=True,
        scale=True),
    _rt("apps", "DaemonSet", "daemonsets", short=("ds",), categories=_ALL, status=True),
    _rt("apps", "ReplicaSet", "replicasets", short=("rs",), categories=_ALL, status=True,
        scale=True),
    # batch/v1
    _rt("batch", "Job", "jobs", categories=_ALL, status=True),
    _rt("batch", "CronJob", "cronjobs", short=("cj",), categories=_ALL, status=True),
    # networking.k8s.io/v1
    _rt("networking.k8s.io", "Ingress", "ingresses", short=("ing",), status=True),
    _rt("networking.k8s.io", "NetworkPolicy", "networkpolicies", short=("netpol",)),
    _rt("networking.k8s.io", "IngressClass", "ingressclasses", namespaced=False),
    # rbac.authorization.k8s.io/v1
    _rt("rbac.authorization.k8s.io", "Role", "roles"),
    _rt("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
    _rt("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", namespaced=False),
    _rt("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings",
        namespaced=False),
    # policy/v1
    _rt("policy", "PodDisruptionBudget", "poddisruptionbudgets", short=("pdb",), status=True),
    # autoscaling/v2
    _rt("autoscaling", "HorizontalPodAutoscaler", "horizontalpodautoscalers", version="v2",
        short=("hpa",), categories=_ALL, status=True),
    # apiextensions.k8s.io/v1
    _rt("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions",
        namespaced=False, short=("crd", "crds"), categories=("api-extensions",), status=True),
    # coordination.k8s.io/v1
    _rt("coordination.k8s.io", "Lease", "leases"),
    # storage.k8s.io/v1
    _rt("storage.k8s.io", "StorageClass", "storageclasses", namespaced=False, short=("sc",)),
)

# Prefix of the OpenAPI schema names of built-in kinds, by group.
_BUILTIN_SCHEMA_PREFIX: dict[str, str] = {
    "": "io.k8s.api.core",
    "apps": "io.k8s.api.apps",
    "batch": "io.k8s.api.batch",
    "networking.k8s.io": "io.k8s.api.networking",
    "rbac.authorization.k8s.io": "io.k8s.api.rbac",
    "policy": "io.k8s.api.policy",
    "autoscaling": "io.k8s.api.autoscaling",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions",
    "coordination.k8s.io": "io.k8s.api.coordination",
    "storage.k8s.io": "io.k8s.api.storage",
}
_PATCH_SCHEMA = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
_STATUS_SCHEMA = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
_OBJECT_META_SCHEMA = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_LIST_META_SCHEMA = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"


def _get(obj: Mapping[str, Any], *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value)


def _canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[.\-]", text) if part)


class Catalog:
    """The mutable registry of resource types of one simulated cluster.

    Built-in types are registered at construction; CRDs add and remove types with
    :meth:`add_crd` and :meth:`remove_crd`.  Every lookup is a dict access.
    """

    def __init__(
        self,
        *,
        kubernetes_version: str = "1.31.0",
        server_address: str = "127.0.0.1:6443",
        builtins: Iterable[ResourceType] = BUILTIN_RESOURCES,
    ) -> None:
        self.kubernetes_version = kubernetes_version
        self.server_address = server_address
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self._by_gvk: dict[tuple[str, str, str], ResourceType] = {}
        # (group, kind) -> {version: type}; (group, plural) -> {version: type}
        self._by_gk: dict[tuple[str, str], dict[str, ResourceType]] = {}
        self._by_gr: dict[tuple[str, str], dict[str, ResourceType]] = {}
        # (group, version) -> {plural: type}
        self._by_gv: dict[tuple[str, str], dict[str, ResourceType]] = {}
        # group -> versions in priority order
        self._group_versions: dict[str, list[str]] = {}
        self._builtin_groups: set[str] = set()
        self._crds: dict[str, tuple[ResourceType, ...]] = {}
        # (crd name, version) -> the version's openAPIV3Schema, published in OpenAPI v3
        self._crd_schemas: dict[tuple[str, str], JSON] = {}
        self._openapi_cache: dict[tuple[str, str], tuple[JSON, str]] = {}
        for rt in builtins:
            self._register(rt)
            self._builtin_groups.add(rt.group)
        for group in self._builtin_groups:
            self._reorder_group(group)

    # ------------------------------------------------------------------ registry

    def _register(self, rt: ResourceType) -> None:
        self._by_gvr[(rt.group, rt.version, rt.plural)] = rt
        self._by_gvk[(rt.group, rt.version, rt.kind)] = rt
        self._by_gk.setdefault((rt.group, rt.kind), {})[rt.version] = rt
        self._by_gr.setdefault((rt.group, rt.plural), {})[rt.version] = rt
        self._by_gv.setdefault((rt.group, rt.version), {})[rt.plural] = rt
        self._openapi_cache.pop((rt.group, rt.version), None)

    def _unregister(self, rt: ResourceType) -> None:
        self._by_gvr.pop((rt.group, rt.version, rt.plural), None)
        self._by_gvk.pop((rt.group, rt.version, rt.kind), None)
        pairs = ((self._by_gk, (rt.group, rt.kind)), (self._by_gr, (rt.group, rt.plural)))
        for index, key in pairs:
            versions = index.get(key)
            if versions is not None:
                versions.pop(rt.version, None)
                if not versions:
                    del index[key]
        gv = self._by_gv.get((rt.group, rt.version))
        if gv is not None:
            gv.pop(rt.plural, None)
            if not gv:
                del self._by_gv[(rt.group, rt.version)]
        self._openapi_cache.pop((rt.group, rt.version), None)

    def _reorder_group(self, group: str) -> None:
        versions = [v for (g, v) in self._by_gv if g == group]
        if versions:
            self._group_versions[group] = sorted(versions, key=version_priority_key)
        else:
            self._group_versions.pop(group, None)

    # ------------------------------------------------------------------ lookups

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at ``/apis/group/version/plural`` (or ``/api/v1/plural``)."""
        return self._by_gvr.get((group, version, plural))

    def by_gvk(self, group: str, version: str, kind: str) -> ResourceType | None:
        return self._by_gvk.get((group, version, kind))

    def by_group_kind(self, group: str, kind: str) -> ResourceType | None:
        """The type of ``kind`` in ``group`` at the group's most preferred served version."""
        versions = self._by_gk.get((group, kind))
        return self._preferred_of(group, versions)

    def by_group_resource(self, group: str, plural: str) -> ResourceType | None:
        versions = self._by_gr.get((group, plural))
        return self._preferred_of(group, versions)

    def _preferred_of(
        self, group: str, versions: dict[str, ResourceType] | None
    ) -> ResourceType | None:
        if not versions:
            return None
        for version in self._group_versions.get(group, ()):
            rt = versions.get(version)
            if rt is not None:
                return rt
        return next(iter(versions.values()))

    def by_api_version_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """Look a type up from an object's ``apiVersion`` and ``kind``."""
        group, _, version = api_version.rpartition("/")
        return self._by_gvk.get((group, version, kind))

    def resources(self, group: str, version: str) -> list[ResourceType]:
        """Types of one group-version sorted by plural, or [] if it is not served."""
        gv = self._by_gv.get((group, version))
        if gv is None:
            return []
        return [gv[p] for p in sorted(gv)]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_gvr.values()))

    def __len__(self) -> int:
        return len(self._by_gvr)

    def groups(self) -> list[str]:
        """Named groups (not the core group) in the order ``/apis`` lists them."""
        named = [g for g in self._group_versions if g != ""]
        return sorted(
            named,
            key=lambda g: (-_GROUP_PRIORITY.get(g, _CRD_GROUP_PRIORITY), g),
        )

    def versions(self, group: str) -> list[str]:
        """Served versions of a group, most preferred first."""
        return list(self._group_versions.get(group, ()))

    def preferred_version(self, group: str) -> str | None:
        versions = self._group_versions.get(group)
        return versions[0] if versions else None

    def group_versions(self) -> list[tuple[str, str]]:
        """Every served (group, version), the core group first."""
        out: list[tuple[str, str]] = [("", v) for v in self.versions("")]
        for group in self.groups():
            out.extend((group, v) for v in self.versions(group))
        return out

    def is_builtin_group(self, group: str) -> bool:
        return group in self._builtin_groups

    def crd_names(self) -> list[str]:
        return sorted(self._crds)

    def crd_types(self, crd_name: str) -> tuple[ResourceType, ...]:
        return self._crds.get(crd_name, ())

    # ------------------------------------------------------------------ CRDs

    @staticmethod
    def types_from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
        """Build the served ResourceTypes a CustomResourceDefinition describes.

        Raises ValueError when the CRD lacks what the types need (group, names, scope).
        """
        spec = crd.get("spec")
        if not isinstance(spec, Mapping):
            raise ValueError("CustomResourceDefinition has no spec")
        group = spec.get("group")
        names = spec.get("names")
        if not isinstance(group, str) or not group:
            raise ValueError("CustomResourceDefinition spec.group is required")
        if not isinstance(names, Mapping):
            raise ValueError("CustomResourceDefinition spec.names is required")
        plural = names.get("plural")
        kind = names.get("kind")
        if not isinstance(plural, str) or not plural:
            raise ValueError("CustomResourceDefinition spec.names.plural is required")
        if not isinstance(kind, str) or not kind:
            raise ValueError("CustomResourceDefinition spec.names.kind is required")
        singular = names.get("singular") or kind.lower()
        list_kind = names.get("listKind") or f"{kind}List"
        scope = spec.get("scope", Scope.NAMESPACED.value)
        if scope not in (Scope.NAMESPACED.value, Scope.CLUSTER.value):
            raise ValueError(f"CustomResourceDefinition spec.scope {scope!r} is not supported")
        crd_name = _get(crd, "metadata", "name") or f"{plural}.{group}"
        versions = spec.get("versions")
        if not isinstance(versions, list) or not versions:
            raise ValueError("CustomResourceDefinition spec.versions is required")
        # Deprecated top-level subresources (v1beta1) apply to all versions.
        top_subresources = spec.get("subresources")
        out: list[ResourceType] = []
        for ver in versions:
            if not isinstance(ver, Mapping) or not ver.get("served", False):
                continue
            vname = ver.get("name")
            if not isinstance(vname, str) or not vname:
                raise ValueError("CustomResourceDefinition version without a name")
            subs_obj = ver.get("subresources", top_subresources)
            subs: set[Subresource] = set()
            scale_spec = scale_status = scale_selector = ""
            if isinstance(subs_obj, Mapping):
                if subs_obj.get("status") is not None:
                    subs.add(Subresource.STATUS)
                scale = subs_obj.get("scale")
                if isinstance(scale, Mapping):
                    subs.add(Subresource.SCALE)
                    scale_spec = str(scale.get("specReplicasPath", ""))
                    scale_status = str(scale.get("statusReplicasPath", ""))
                    scale_selector = str(scale.get("labelSelectorPath") or "")
            out.append(
                ResourceType(
                    group=group,
                    version=vname,
                    kind=kind,
                    plural=plural,
                    singular=str(singular),
                    namespaced=scope == Scope.NAMESPACED.value,
                    verbs=_CR_VERBS,
                    short_names=_str_tuple(names.get("shortNames")),
                    categories=_str_tuple(names.get("categories")),
                    subresources=frozenset(subs),
                    scale_spec_replicas_path=scale_spec,
                    scale_status_replicas_path=scale_status,
                    scale_label_selector_path=scale_selector,
                    custom_list_kind=str(list_kind),
                    crd_name=str(crd_name),
                    storage=bool(ver.get("storage", False)),
                )
            )
        return out

    def add_crd(self, crd: Mapping[str, Any]) -> list[ResourceType]:
        """Register (or re-register, on update) the types of a CRD; returns them.

        A CRD whose group is a built-in group, or whose group/plural or group/kind is
        already served by another CRD, is refused with ValueError and changes nothing.
        """
        types = self.types_from_crd(crd)
        spec = crd["spec"]
        group = spec["group"]
        plural = spec["names"]["plural"]
        kind = spec["names"]["kind"]
        crd_name = _get(crd, "metadata", "name") or f"{plural}.{group}"
        if group in self._builtin_groups:
            raise ValueError(
                f"CustomResourceDefinition {crd_name!r} collides with the built-in "
                f"group {group!r}"
            )
        for other_name, other_types in self._crds.items():
            if other_name == crd_name or not other_types:
                continue
            other = other_types[0]
            if other.group == group and (other.plural == plural or other.kind == kind):
                raise ValueError(
                    f"CustomResourceDefinition {crd_name!r} collides with {other_name!r}: "
                    f"{plural}.{group} / {kind} is already served"
                )
        old = self._crds.pop(crd_name, ())
        touched = {rt.group for rt in old} | {group}
        for rt in old:
            self._unregister(rt)
            self._crd_schemas.pop((crd_name, rt.version), None)
        for ver in spec.get("versions") or []:
            schema = _get(ver, "schema", "openAPIV3Schema")
            if isinstance(schema, Mapping) and isinstance(ver.get("name"), str):
                self._crd_schemas[(crd_name, ver["name"])] = copy.deepcopy(dict(schema))
        for rt in types:
            self._register(rt)
        self._crds[crd_name] = tuple(types)
        for g in touched:
            self._reorder_group(g)
        return types

    def remove_crd(self, crd: Mapping[str, Any] | str) -> list[ResourceType]:
        """Unregister the types a CRD (object or name) added; returns them."""
        if isinstance(crd, str):
            crd_name = crd
        else:
            crd_name = _get(crd, "metadata", "name") or ""
            if not crd_name:
                plural = _get(crd, "spec", "names", "plural")
                group = _get(crd, "spec", "group")
                crd_name = f"{plural}.{group}"
        old = self._crds.pop(crd_name, ())
        for rt in old:
            self._unregister(rt)
            self._crd_schemas.pop((crd_name, rt.version), None)
        for g in {rt.group for rt in old}:
            self._reorder_group(g)
        return list(old)

    # ------------------------------------------------------------------ discovery

    def version_info(self) -> JSON:
        """The body of ``GET /version``."""
        major, minor, *_ = [*self.kubernetes_version.split("."), "0", "0"]
        return {
            "major": major,
            "minor": minor,
            "emulationMajor": major,
            "emulationMinor": minor,
            "minCompatibilityMajor": major,
            "minCompatibilityMinor": str(max(int(minor) - 1, 0)) if minor.isdigit() else minor,
            "gitVersion": f"v{self.kubernetes_version}-kubesim",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2024-08-13T07:28:49Z",
            "goVersion": "go1.22.5",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def core_api_versions(self, server_address: str | None = None) -> JSON:
        """The body of ``GET /api``."""
        return {
            "kind": "APIVersions",
            "versions": self.versions(""),
            "serverAddressByClientCIDRs": [
                {
                    "clientCIDR": "0.0.0.0/0",
                    "serverAddress": server_address or self.server_address,
                }
            ],
        }

    def _group_entry(self, group: str) -> JSON:
        versions = [
            {"groupVersion": f"{group}/{v}", "version": v} for v in self.versions(group)
        ]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    def api_group_list(self) -> JSON:
        """The body of ``GET /apis``."""
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_entry(g) for g in self.groups()],
        }

    def api_group(self, group: str) -> JSON | None:
        """The body of ``GET /apis/GROUP``; None for an unknown group."""
        if group == "" or group not in self._group_versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_entry(group)}

    @staticmethod
    def _resource_entries(rt: ResourceType) -> list[JSON]:
        main: JSON = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": list(rt.verbs),
        }
        if rt.short_names:
            main["shortNames"] = list(rt.short_names)
        if rt.categories:
            main["categories"] = list(rt.categories)
        main["storageVersionHash"] = storage_version_hash(rt.group, rt.version, rt.kind)
        entries = [main]
        if rt.has_scale:
            entries.append(
                {
                    "name": f"{rt.plural}/scale",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "group": _SCALE_GROUP,
                    "version": _SCALE_VERSION,
                    "kind": _SCALE_KIND,
                    "verbs": list(SUBRESOURCE_VERBS),
                }
            )
        if rt.has_status:
            entries.append(
                {
                    "name": f"{rt.plural}/status",
                    "singularName": "",
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": list(SUBRESOURCE_VERBS),
                }
            )
        return entries

    def resource_list(self, group: str, version: str) -> JSON | None:
        """The body of ``GET /api/v1`` or ``GET /apis/G/V``; None if not served."""
        types = self.resources(group, version)
        if not types:
            return None
        resources: list[JSON] = []
        for rt in types:
            resources.extend(self._resource_entries(rt))
        doc: JSON = {"kind": "APIResourceList"}
        if group:
            doc["apiVersion"] = "v1"
            doc["groupVersion"] = f"{group}/{version}"
        else:
            doc["groupVersion"] = version
        doc["resources"] = resources
        return doc

    # ------------------------------------------------------------------ OpenAPI v3

    @staticmethod
    def _gv_path(group: str, version: str) -> str:
        return f"api/{version}" if group == "" else f"apis/{group}/{version}"

    def openapi_v3_root(self) -> JSON:
        """The body of ``GET /openapi/v3``: one entry per served group-version."""
        paths: JSON = {}
        for group, version in self.group_versions():
            gv_path = self._gv_path(group, version)
            paths[gv_path] = {
                "serverRelativeURL": (
                    f"/openapi/v3/{gv_path}?hash={self.openapi_v3_hash(group, version)}"
                )
            }
        return {"paths": paths}

    def openapi_v3_hash(self, group: str, version: str) -> str | None:
        """The cache-busting hash of a group-version's OpenAPI document (SHA-512, hex)."""
        entry = self._openapi_entry(group, version)
        return entry[1] if entry else None

    def openapi_v3_group(self, group: str, version: str) -> JSON | None:
        """The OpenAPI v3 document of one group-version; None if not served.

        The returned dict is shared with the cache: serialize it, do not mutate it.
        """
        entry = self._openapi_entry(group, version)
        return entry[0] if entry else None

    def _openapi_entry(self, group: str, version: str) -> tuple[JSON, str] | None:
        cached = self._openapi_cache.get((group, version))
        if cached is not None:
            return cached
        types = self.resources(group, version)
        if not types:
            return None
        doc = self._build_openapi(group, version, types)
        digest = hashlib.sha512(_canonical_json(doc)).hexdigest().upper()
        self._openapi_cache[(group, version)] = (doc, digest)
        return doc, digest

    def schema_name(self, rt: ResourceType) -> str:
        """The ``components.schemas`` key of a kind (``io.k8s.api.apps.v1.Deployment``)."""
        prefix = _BUILTIN_SCHEMA_PREFIX.get(rt.group) if rt.builtin else None
        if prefix is None:
            prefix = ".".join(reversed(rt.group.split(".")))
        return f"{prefix}.{rt.version}.{rt.kind}"

    def _build_openapi(self, group: str, version: str, types: list[ResourceType]) -> JSON:
        gv_path = self._gv_path(group, version)
        op_prefix = _camel(group.removesuffix(".k8s.io")) if group else "Core"
        op_prefix += _camel(version)
        paths: JSON = {}
        schemas: JSON = {
            _PATCH_SCHEMA: {
                "description": (
                    "Patch is provided to give a concrete name and type to the Kubernetes "
                    "PATCH request body."
                ),
                "type": "object",
            },
            _STATUS_SCHEMA: {
                "description": "Status is a return value for calls that don't return objects.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
                "x-kubernetes-group-version-kind": [
                    {"group": "", "kind": "Status", "version": "v1"}
                ],
            },
            _OBJECT_META_SCHEMA: {
                "description": "ObjectMeta is metadata that all persisted resources must have.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            _LIST_META_SCHEMA: {
                "description": "ListMeta describes metadata that synthetic resources must have.",
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        }
        for rt in types:
            gvk = {"group": rt.group, "kind": rt.kind, "version": rt.version}
            schema_name = self.schema_name(rt)
            list_schema_name = f"{schema_name}List"
            schemas[schema_name] = self._kind_schema(rt, gvk)
            schemas[list_schema_name] = {
                "description": f"{rt.list_kind} is a list of {rt.kind}",
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "items": {
                        "type": "array",
                        "items": {"$ref": f"#/components/schemas/{schema_name}"},
                    },
                    "kind": {"type": "string"},
                    "metadata": {"$ref": f"#/components/schemas/{_LIST_META_SCHEMA}"},
                },
                "x-kubernetes-group-version-kind": [{**gvk, "kind": rt.list_kind}],
            }
            ns_word = "Namespaced" if rt.namespaced else ""
            op_kind = f"{op_prefix}{ns_word}{rt.kind}"
            if rt.namespaced:
                collection = f"/{gv_path}/namespaces/{{namespace}}/{rt.plural}"
            else:
                collection = f"/{gv_path}/{rt.plural}"
            item = f"{collection}/{{name}}"
            ref = {"$ref": f"#/components/schemas/{schema_name}"}
            obj_response = {"content": {"application/json": {"schema": ref}}}
            common_params: list[JSON] = [
                _param("name", "path", f"name of the {rt.kind}", required=True)
            ]
            if rt.namespaced:
                common_params.append(
                    _param("namespace", "path", "object name and auth scope", required=True)
                )
            common_params.append(_param("pretty", "query", "If 'true', then the output is "
                                        "pretty printed."))
            write_params = [
                _param("dryRun", "query", "When present, indicates that modifications should "
                       "not be persisted."),
                _param("fieldManager", "query", "fieldManager is a name associated with the "
                       "actor or entity that is making these changes."),
                _param("fieldValidation", "query", "fieldValidation instructs the server on "
                       "how to handle objects in the request containing unknown or duplicate "
                       "fields. Valid values are: Ignore, Warn, Strict."),
            ]
            paths[collection] = {
                "get": _operation(f"list{op_kind}", "list", gvk, {
                    "200": {"description": "OK", "content": {"application/json": {
                        "schema": {"$ref": f"#/components/schemas/{list_schema_name}"}}}}},
                ),
                "post": {
                    **_operation(f"create{op_kind}", "post", gvk, {
                        "200": {"description": "OK", **obj_response},
                        "201": {"description": "Created", **obj_response},
                        "202": {"description": "Accepted", **obj_response},
                    }),
                    "parameters": list(write_params),
                    "requestBody": {
                        "content": {"*/*": {"schema": ref}},
                        "required": True,
                    },
                },
                "parameters": [p for p in common_params if p["name"] != "name"],
            }
            paths[item] = {
                "get": _operation(f"read{op_kind}", "get", gvk, {
                    "200": {"description": "OK", **obj_response}}),
                "put": {
                    **_operation(f"replace{op_kind}", "put", gvk, {
                        "200": {"description": "OK", **obj_response},
                        "201": {"description": "Created", **obj_response},
                    }),
                    "parameters": list(write_params),
                    "requestBody": {
                        "content": {"*/*": {"schema": ref}},
                        "required": True,
                    },
                },
                "delete": _operation(f"delete{op_kind}", "delete", gvk, {
                    "200": {"description": "OK", "content": {"application/json": {
                        "schema": {"$ref": f"#/components/schemas/{_STATUS_SCHEMA}"}}}},
                }),
                "patch": {
                    **_operation(f"patch{op_kind}", "patch", gvk, {
                        "200": {"description": "OK", **obj_response},
                        "201": {"description": "Created", **obj_response},
                    }),
                    "parameters": [
                        *write_params,
                        _param("force", "query", "Force is going to \"force\" Apply "
                               "requests.", schema={"type": "boolean", "uniqueItems": True}),
                    ],
                    # No application/strategic-merge-patch+json on purpose: kubectl then
                    # computes client-side apply patches from its compiled-in types (built-ins)
                    # or as JSON merge patches (CRDs) instead of from these minimal schemas.
                    "requestBody": {
                        "content": {
                            "application/apply-patch+yaml": {
                                "schema": {"$ref": f"#/components/schemas/{_PATCH_SCHEMA}"}
                            },
                            "application/json-patch+json": {
                                "schema": {"$ref": f"#/components/schemas/{_PATCH_SCHEMA}"}
                            },
                            "application/merge-patch+json": {
                                "schema": {"$ref": f"#/components/schemas/{_PATCH_SCHEMA}"}
                            },
                        },
                        "required": True,
                    },
                },
                "parameters": common_params,
            }
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": f"v{self.kubernetes_version}"},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    def _kind_schema(self, rt: ResourceType, gvk: dict[str, str]) -> JSON:
        base: JSON = {}
        if not rt.builtin:
            base = self._crd_schema(rt)
        schema: JSON = copy.deepcopy(base) if base else {}
        schema.setdefault("description", f"{rt.kind} ({rt.api_version})")
        schema["type"] = "object"
        props = schema.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string", "description": "APIVersion "
                         "defines the versioned schema of this representation of an object."})
        props.setdefault("kind", {"type": "string", "description": "Kind is a string value "
                         "representing the REST resource this object represents."})
        props["metadata"] = {"$ref": f"#/components/schemas/{_OBJECT_META_SCHEMA}"}
        if not base:
            schema["x-kubernetes-preserve-unknown-fields"] = True
        schema["x-kubernetes-group-version-kind"] = [gvk]
        return schema

    def _crd_schema(self, rt: ResourceType) -> JSON:
        return self._crd_schemas.get((rt.crd_name, rt.version), {})


def _param(
    name: str,
    location: str,
    description: str,
    *,
    required: bool = False,
    schema: JSON | None = None,
) -> JSON:
    param: JSON = {
        "name": name,
        "in": location,
        "description": description,
        "schema": schema or {"type": "string", "uniqueItems": True},
    }
    if required:
        param["required"] = True
    return param


def _operation(op_id: str, action: str, gvk: dict[str, str], responses: JSON) -> JSON:
    return {
        "operationId": op_id,
        "responses": {**responses, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": dict(gvk),
    }

