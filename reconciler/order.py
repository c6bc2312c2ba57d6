"""The order in which objects are applied and pruned, as plain data.

Applying in the wrong order fails or flaps: a custom resource before its CRD is rejected,
a Deployment before its namespace is rejected, a webhook registered before the service
behind it blocks every later write.  Like fluxcd/pkg ``ssa/sort.go`` the order is a table
of kinds, not logic; like Argo CD, sync waves (an annotation) come first, so a repository
can put anything before anything.  Pruning runs the same order backwards, so webhooks go
first and namespaces (which would cascade-delete their contents) and CRDs go last.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import groupby
from types import MappingProxyType

from reconciler.errors import RenderError
from reconciler.model import SYNC_WAVE_ANNOTATIONS, Manifest, ObjectKey, annotations_of

#: Built-in kinds in apply order, each with the API groups it is served from.  The group
#: matters: a custom resource called ``Service`` is still a custom resource, whose CRD
#: must exist first.
BUILTIN_KIND_ORDER: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (kind, frozenset(groups))
    for kind, groups in (
        ("CustomResourceDefinition", {"apiextensions.k8s.io"}),
        ("Namespace", {""}),
        ("ResourceQuota", {""}),
        ("LimitRange", {""}),
        ("PodSecurityPolicy", {"policy", "extensions"}),
        ("PriorityClass", {"scheduling.k8s.io"}),
        ("ServiceAccount", {""}),
        ("Secret", {""}),
        ("ConfigMap", {""}),
        ("StorageClass", {"storage.k8s.io"}),
        ("PersistentVolume", {""}),
        ("PersistentVolumeClaim", {""}),
        ("ClusterRole", {"rbac.authorization.k8s.io"}),
        ("ClusterRoleBinding", {"rbac.authorization.k8s.io"}),
        ("Role", {"rbac.authorization.k8s.io"}),
        ("RoleBinding", {"rbac.authorization.k8s.io"}),
        ("Service", {""}),
        ("Endpoints", {""}),
        ("EndpointSlice", {"discovery.k8s.io"}),
        ("DaemonSet", {"apps", "extensions"}),
        ("Pod", {""}),
        ("ReplicationController", {""}),
        ("ReplicaSet", {"apps", "extensions"}),
        ("Deployment", {"apps", "extensions"}),
        ("HorizontalPodAutoscaler", {"autoscaling"}),
        ("StatefulSet", {"apps"}),
        ("Job", {"batch"}),
        ("CronJob", {"batch"}),
        ("Ingress", {"networking.k8s.io", "extensions"}),
        ("APIService", {"apiregistration.k8s.io"}),
    )
)

#: Kinds applied after everything else, custom resources included: an admission webhook
#: registered before its backing service is up would reject the rest of the apply.
LAST_KIND_ORDER: tuple[str, ...] = (
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
_WEBHOOK_GROUP = "admissionregistration.k8s.io"

_RANKS: MappingProxyType[tuple[str, str], int] = MappingProxyType(
    {
        **{
            (group, kind): rank
            for rank, (kind, groups) in enumerate(BUILTIN_KIND_ORDER)
            for group in groups
        },
        **{
            (_WEBHOOK_GROUP, kind): len(BUILTIN_KIND_ORDER) + 1 + offset
            for offset, kind in enumerate(LAST_KIND_ORDER)
        },
    }
)
#: Rank of every kind not in the tables above: custom resources and unlisted built-ins.
OTHER_KIND_RANK = len(BUILTIN_KIND_ORDER)
_CRD_RANK = 0

# Argo CD parses waves with Go's Atoi: an optional sign and decimal digits, nothing else.
_WAVE = re.compile(r"[+-]?[0-9]+")

ApplyOrderKey = tuple[int, int, str, str, str]


def sync_wave(obj: Manifest) -> int:
    """The object's sync wave: ours if set, else Argo CD's, else 0.

    Only the annotation that decides is parsed, so a stale Argo CD value next to a valid
    one of ours does not fail the render.  Raises ``RenderError`` for a non-integer.
    """
    annotations = annotations_of(obj)
    for name in SYNC_WAVE_ANNOTATIONS:
        if name not in annotations:
            continue
        value = annotations[name]
        if isinstance(value, str) and _WAVE.fullmatch(value):
            return int(value)
        unquoted = isinstance(value, int) and not isinstance(value, bool)
        hint = "; quote it in YAML" if unquoted else ""
        raise RenderError(
            f"{ObjectKey.of(obj)}: annotation {name} must be an integer string such as "
            f'"-1" or "5", got {value!r}{hint}'
        )
    return 0


def kind_rank(obj: Manifest) -> int:
    """Position of the object's (group, kind) in the apply table; custom kinds share one."""
    key = ObjectKey.of(obj)
    return _RANKS.get((key.group, key.kind), OTHER_KIND_RANK)


def apply_order_key(obj: Manifest) -> ApplyOrderKey:
    """Sort key: wave, kind rank, then kind, namespace and name so the order is total."""
    key = ObjectKey.of(obj)
    return (sync_wave(obj), kind_rank(obj), key.kind, key.namespace, key.name)


def sort_for_apply(objs: Iterable[Manifest]) -> list[Manifest]:
    """Objects in apply order (stable: equal keys keep their input order)."""
    return sorted(objs, key=apply_order_key)


def sort_for_prune(objs: Iterable[Manifest]) -> list[Manifest]:
    """Objects in delete order: exactly the reverse of the apply order."""
    return sort_for_apply(objs)[::-1]


def phases(objs: Iterable[Manifest]) -> list[list[Manifest]]:
    """Objects in apply order, cut into groups the engine applies one after another.

    Each sync wave is one group, waves ascending.  A wave that holds CRDs and other
    objects is cut in two: its CRDs alone first, the rest after.  Between groups the engine
    waits for what it just applied (at least for CRDs to be Established, see
    ``reconciler.health.apis.crd_health``), so a custom resource is never sent before the API
    server serves its kind, even when the CRD and the resource share a wave.  Only CRDs go
    in the first half so that waiting on them never waits on a slow Deployment rollout.
    Empty groups are never returned.
    """
    result: list[list[Manifest]] = []
    keyed = [(apply_order_key(obj), obj) for obj in objs]
    keyed.sort(key=lambda pair: pair[0])
    for _, wave in groupby(keyed, key=lambda pair: pair[0][0]):
        members = list(wave)
        crds = [obj for key, obj in members if key[1] == _CRD_RANK]
        rest = [obj for key, obj in members if key[1] != _CRD_RANK]
        result.extend(group for group in (crds, rest) if group)
    return result
