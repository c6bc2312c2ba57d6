"""List and map merge strategies of built-in Kubernetes kinds, as plain data.

A real API server knows, from the OpenAPI schema of every built-in type, how each list
merges: atomically (replaced whole), as a set of primitives, or as an associative list
keyed by some fields.  Strategic merge patch (``patchStrategy``/``patchMergeKey``) and
server-side apply (``x-kubernetes-list-type``/``x-kubernetes-list-map-keys``) both depend
on it, and they do not always agree (e.g. container ports merge by ``containerPort`` in
strategic merge patch but are keyed by ``containerPort`` + ``protocol`` in server-side
apply).  kubesim has no OpenAPI documents, so this module encodes the part of that
knowledge the simulator needs, addressed by ``(group, kind)`` and a path of field names
(list indices and keys are skipped: ``("spec", "template", "spec", "containers")``).

Anything not listed here, including every custom resource, has atomic lists and granular
maps, which is what the real server does for schemaless data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

FieldNames = tuple[str, ...]
ListKind = Literal["atomic", "set", "map"]
PatchStrategy = Literal["replace", "merge"]
KeyValue = str | int


@dataclass(frozen=True)
class ListType:
    """How one list field merges.

    ``kind``/``keys``/``key_defaults`` drive server-side apply (structured-merge-diff);
    ``patch_strategy``/``patch_merge_key`` drive strategic merge patch.  A ``merge``
    strategy with an empty merge key means a list of primitives merged as a set.
    """

    kind: ListKind = "atomic"
    keys: tuple[str, ...] = ()
    key_defaults: tuple[tuple[str, KeyValue], ...] = ()
    patch_strategy: PatchStrategy = "replace"
    patch_merge_key: str = ""

    def key_default(self, field: str) -> KeyValue | None:
        """The schema default of key field ``field``, if it has one."""
        for name, value in self.key_defaults:
            if name == field:
                return value
        return None


ATOMIC = ListType()
SET = ListType(kind="set", patch_strategy="merge")


def _keyed(*keys: str, merge_key: str | None = None, **defaults: KeyValue) -> ListType:
    """An associative list keyed by ``keys``; SMP merges it by ``merge_key`` (first key)."""
    return ListType(
        kind="map",
        keys=keys,
        key_defaults=tuple(sorted(defaults.items())),
        patch_strategy="merge",
        patch_merge_key=merge_key if merge_key is not None else keys[0],
    )


BUILTIN_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "networking.k8s.io",
        "rbac.authorization.k8s.io",
        "storage.k8s.io",
        "scheduling.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "node.k8s.io",
        "certificates.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
    }
)

# -- PodSpec, shared by every kind that embeds one -------------------------------------

_CONTAINER_LISTS: dict[FieldNames, ListType] = {
    ("env",): _keyed("name"),
    ("envFrom",): ATOMIC,
    ("ports",): _keyed("containerPort", "protocol", protocol="TCP"),
    ("volumeMounts",): _keyed("mountPath"),
    ("volumeDevices",): _keyed("devicePath"),
    ("command",): ATOMIC,
    ("args",): ATOMIC,
    ("resizePolicy",): ATOMIC,
    ("resources", "claims"): _keyed("name"),
}

_CONTAINER_ATOMIC_MAPS: frozenset[FieldNames] = frozenset(
    {
        ("env", "valueFrom", "configMapKeyRef"),
        ("env", "valueFrom", "secretKeyRef"),
        ("env", "valueFrom", "fieldRef"),
        ("env", "valueFrom", "resourceFieldRef"),
    }
)

_POD_SPEC_LISTS: dict[FieldNames, ListType] = {
    ("volumes",): _keyed("name"),
    ("imagePullSecrets",): _keyed("name"),
    ("tolerations",): ATOMIC,
    ("hostAliases",): _keyed("ip"),
    ("topologySpreadConstraints",): _keyed(
        "topologyKey", "whenUnsatisfiable", merge_key="topologyKey"
    ),
    ("resourceClaims",): _keyed("name"),
    ("schedulingGates",): _keyed("name"),
    ("readinessGates",): ATOMIC,
}
for _containers in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC_LISTS[(_containers,)] = _keyed("name")
    for _sub, _lt in _CONTAINER_LISTS.items():
        _POD_SPEC_LISTS[(_containers, *_sub)] = _lt

_POD_SPEC_ATOMIC_MAPS: frozenset[FieldNames] = frozenset(
    {("nodeSelector",)}
    | {
        (containers, *sub)
        for containers in ("containers", "initContainers", "ephemeralContainers")
        for sub in _CONTAINER_ATOMIC_MAPS
    }
)

# Where each built-in kind embeds a PodSpec.
_POD_SPEC_AT: dict[tuple[str, str], FieldNames] = {
    ("", "Pod"): ("spec",),
    ("", "PodTemplate"): ("template", "spec"),
    ("", "ReplicationController"): ("spec", "template", "spec"),
    ("apps", "Deployment"): ("spec", "template", "spec"),
    ("apps", "StatefulSet"): ("spec", "template", "spec"),
    ("apps", "DaemonSet"): ("spec", "template", "spec"),
    ("apps", "ReplicaSet"): ("spec", "template", "spec"),
    ("batch", "Job"): ("spec", "template", "spec"),
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}

# -- Everything else ---------------------------------------------------------------------

_METADATA_LISTS: dict[FieldNames, ListType] = {
    ("metadata", "finalizers"): SET,
    ("metadata", "ownerReferences"): _keyed("uid"),
    ("metadata", "managedFields"): ATOMIC,
}

_CONDITIONS = _keyed("type")

_KIND_LISTS: dict[tuple[str, str], dict[FieldNames, ListType]] = {
    ("", "Service"): {
        ("spec", "ports"): _keyed("port", "protocol", protocol="TCP"),
        ("spec", "clusterIPs"): ATOMIC,
        ("spec", "ipFamilies"): ATOMIC,
        ("spec", "externalIPs"): ATOMIC,
        ("status", "conditions"): _CONDITIONS,
        ("status", "loadBalancer", "ingress"): ATOMIC,
    },
    ("", "Pod"): {("status", "conditions"): _CONDITIONS},
    ("", "Node"): {
        ("spec", "taints"): ATOMIC,
        ("spec", "podCIDRs"): SET,
        ("status", "conditions"): _CONDITIONS,
        ("status", "addresses"): _keyed("type"),
    },
    ("", "Namespace"): {
        ("spec", "finalizers"): ATOMIC,
        ("status", "conditions"): _CONDITIONS,
    },
    ("", "Endpoints"): {("subsets",): ATOMIC},
    ("", "ReplicationController"): {("status", "conditions"): _CONDITIONS},
    ("", "PersistentVolumeClaim"): {
        ("spec", "accessModes"): ATOMIC,
        ("status", "conditions"): _CONDITIONS,
    },
    ("apps", "Deployment"): {("status", "conditions"): _CONDITIONS},
    ("apps", "ReplicaSet"): {("status", "conditions"): _CONDITIONS},
    ("apps", "DaemonSet"): {("status", "conditions"): _CONDITIONS},
    ("apps", "StatefulSet"): {
        ("spec", "volumeClaimTemplates"): ATOMIC,
        ("status", "conditions"): _CONDITIONS,
    },
    ("batch", "Job"): {("status", "conditions"): ATOMIC},
    ("batch", "CronJob"): {("status", "active"): ATOMIC},
    ("policy", "PodDisruptionBudget"): {("status", "conditions"): _CONDITIONS},
    ("networking.k8s.io", "Ingress"): {
        ("spec", "rules"): ATOMIC,
        ("spec", "tls"): ATOMIC,
    },
    ("networking.k8s.io", "NetworkPolicy"): {
        ("spec", "ingress"): ATOMIC,
        ("spec", "egress"): ATOMIC,
        ("spec", "policyTypes"): ATOMIC,
    },
    ("rbac.authorization.k8s.io", "Role"): {("rules",): ATOMIC},
    ("rbac.authorization.k8s.io", "ClusterRole"): {("rules",): ATOMIC},
    ("rbac.authorization.k8s.io", "RoleBinding"): {("subjects",): ATOMIC},
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): {("subjects",): ATOMIC},
}
# Job conditions are `+listType=atomic` in SSA but SMP still merges them by type.
_KIND_LISTS[("batch", "Job")][("status", "conditions")] = ListType(
    kind="atomic", patch_strategy="merge", patch_merge_key="type"
)

_LABEL_SELECTOR_KINDS = {
    ("apps", "Deployment"),
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("batch", "Job"),
    ("policy", "PodDisruptionBudget"),
    ("", "PersistentVolumeClaim"),
}

_KIND_ATOMIC_MAPS: dict[tuple[str, str], frozenset[FieldNames]] = {
    gk: frozenset({("spec", "selector")}) for gk in _LABEL_SELECTOR_KINDS
}
_KIND_ATOMIC_MAPS[("networking.k8s.io", "NetworkPolicy")] = frozenset({("spec", "podSelector")})

# Fields present (as non-pointer Go structs or null slices) even in an empty object of the
# kind; the real server's field tracking does not mark them as "added" on create, so they
# get no "." member in fieldsV1.
_TEMPLATE_STRUCTS: dict[tuple[str, str], frozenset[FieldNames]] = {
    ("apps", "Deployment"): frozenset({("spec", "strategy")}),
    ("apps", "StatefulSet"): frozenset({("spec", "updateStrategy")}),
    ("apps", "DaemonSet"): frozenset({("spec", "updateStrategy")}),
}


@dataclass(frozen=True)
class KindSchema:
    """Merge strategies of one (group, kind)."""

    group: str
    kind: str
    lists: dict[FieldNames, ListType]
    atomic_maps: frozenset[FieldNames]
    structs: frozenset[FieldNames]

    @property
    def builtin(self) -> bool:
        """Whether this kind is served from a built-in API group (not a custom resource)."""
        return self.group in BUILTIN_GROUPS

    def list_type(self, path: FieldNames) -> ListType:
        """The list type of the list at ``path``; unknown lists are atomic."""
        return self.lists.get(path, ATOMIC)

    def map_atomic(self, path: FieldNames) -> bool:
        """Whether the map at ``path`` is owned and replaced as a whole."""
        return path in self.atomic_maps

    def is_struct(self, path: FieldNames) -> bool:
        """Whether ``path`` (outside list items) exists even in an empty object of the kind."""
        return path in self.structs


@cache
def schema_for(group: str, kind: str) -> KindSchema:
    """Build (once) the merge strategies of ``group``/``kind``."""
    gk = (group, kind)
    lists: dict[FieldNames, ListType] = dict(_METADATA_LISTS)
    atomic_maps: set[FieldNames] = set(_KIND_ATOMIC_MAPS.get(gk, frozenset()))
    structs: set[FieldNames] = set()
    if group in BUILTIN_GROUPS:
        structs |= {("metadata",), ("spec",), ("status",)}
    pod_spec = _POD_SPEC_AT.get(gk)
    if pod_spec is not None:
        for sub, lt in _POD_SPEC_LISTS.items():
            lists[(*pod_spec, *sub)] = lt
        atomic_maps |= {(*pod_spec, *sub) for sub in _POD_SPEC_ATOMIC_MAPS}
        for i in range(1, len(pod_spec) + 1):
            structs.add(pod_spec[:i])
        structs.add((*pod_spec[:-1], "metadata"))
        structs.add((*pod_spec, "containers"))  # `json:"containers"`, no omitempty: null
        if gk == ("batch", "CronJob"):
            structs.add(("spec", "jobTemplate", "metadata"))
    lists.update(_KIND_LISTS.get(gk, {}))
    structs |= _TEMPLATE_STRUCTS.get(gk, frozenset())
    return KindSchema(group, kind, lists, frozenset(atomic_maps), frozenset(structs))


def list_type(group: str, kind: str, path: FieldNames) -> ListType:
    """How the list at field-name ``path`` of ``group``/``kind`` merges."""
    return schema_for(group, kind).list_type(tuple(path))


def map_atomic(group: str, kind: str, path: FieldNames) -> bool:
    """Whether the map at field-name ``path`` of ``group``/``kind`` is atomic."""
    return schema_for(group, kind).map_atomic(tuple(path))
