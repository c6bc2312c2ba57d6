"""Per-kind health rules: is a live object doing what its manifest asked for?

Shaped like gitops-engine's ``pkg/health``: one pure function per kind, found by
(API group, kind) so that a custom resource that happens to be called ``Service`` is not
judged by the core Service rule, and a generic rule for everything else.  A target's
health is the worst of its objects' (``aggregate``).  No I/O and no clocks here: the same
object always gives the same answer, which is what makes the rules table-testable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from reconciler.health.apis import apiservice_health, crd_health
from reconciler.health.autoscaling import hpa_health
from reconciler.health.base import HealthResult, field, progressing
from reconciler.health.core import (
    namespace_health,
    persistent_volume_claim_health,
    service_health,
)
from reconciler.health.generic import generic_health
from reconciler.health.networking import ingress_health
from reconciler.health.workloads import (
    cronjob_health,
    daemonset_health,
    deployment_health,
    job_health,
    pod_health,
    replicaset_health,
    statefulset_health,
)
from reconciler.model import Health, Manifest, group_of, worst_health

__all__ = ["HEALTH_RULES", "HealthResult", "HealthRule", "aggregate", "health_of"]

HealthRule = Callable[[Manifest], HealthResult]

#: The rule for each (API group, kind); ``extensions`` keeps very old manifests judged right.
HEALTH_RULES: Mapping[tuple[str, str], HealthRule] = MappingProxyType(
    {
        ("apps", "Deployment"): deployment_health,
        ("extensions", "Deployment"): deployment_health,
        ("apps", "StatefulSet"): statefulset_health,
        ("apps", "DaemonSet"): daemonset_health,
        ("extensions", "DaemonSet"): daemonset_health,
        ("apps", "ReplicaSet"): replicaset_health,
        ("extensions", "ReplicaSet"): replicaset_health,
        ("batch", "Job"): job_health,
        ("batch", "CronJob"): cronjob_health,
        ("", "Pod"): pod_health,
        ("", "Service"): service_health,
        ("", "PersistentVolumeClaim"): persistent_volume_claim_health,
        ("", "Namespace"): namespace_health,
        ("networking.k8s.io", "Ingress"): ingress_health,
        ("extensions", "Ingress"): ingress_health,
        ("apiextensions.k8s.io", "CustomResourceDefinition"): crd_health,
        ("apiregistration.k8s.io", "APIService"): apiservice_health,
        ("autoscaling", "HorizontalPodAutoscaler"): hpa_health,
    }
)


def health_of(obj: Manifest | None) -> HealthResult:
    """Health of one live object; ``None`` (not found in the cluster) is Missing.

    An object being deleted is Progressing whatever its kind: its status describes
    something that is going away (gitops-engine does the same).
    """
    if obj is None:
        return HealthResult(Health.MISSING, "Object does not exist in the cluster")
    if field(obj, "metadata", "deletionTimestamp") is not None:
        return progressing("Pending deletion: waiting for finalizers to finish")
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    group = group_of(api_version) if isinstance(api_version, str) else ""
    rule = HEALTH_RULES.get((group, kind if isinstance(kind, str) else ""), generic_health)
    return rule(obj)


def aggregate(results: Iterable[HealthResult]) -> Health:
    """Health of a set of objects: the worst of theirs; Healthy when there are none."""
    return worst_health([result.status for result in results])
