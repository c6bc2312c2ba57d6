"""Health of workload controllers (apps and batch) and Pods.

The rules mirror gitops-engine's ``health_deployment.go``, ``health_statefulset.go`` and
friends, which in turn follow ``kubectl rollout status``: a rollout is finished only when
the controller has observed the newest spec and every replica runs it and is available.
Reading counters before ``observedGeneration`` catches up would report the previous
rollout's numbers, so every rule checks that first.
"""

from __future__ import annotations

from reconciler.health.base import (
    HealthResult,
    condition,
    condition_is,
    degraded,
    entries,
    explain,
    field,
    flag,
    generation_pending,
    healthy,
    integer,
    progressing,
    suspended,
    text,
)
from reconciler.model import Health, Manifest

#: Counters in ``status`` describe the previous spec until the controller catches up.
NOT_OBSERVED = progressing(
    "Waiting for rollout to be observed: the controller has not seen the latest spec yet"
)


def deployment_health(obj: Manifest) -> HealthResult:
    """Deployment: paused, stale, past its deadline, or how far the rollout has come."""
    if flag(obj, "spec", "paused"):
        return suspended("Deployment is paused")
    if generation_pending(obj):
        return NOT_OBSERVED
    progress = condition(obj, "Progressing")
    if progress is not None and progress.get("reason") == "ProgressDeadlineExceeded":
        return degraded(
            "Deployment exceeded its progress deadline: "
            + explain(progress, "new replicas did not become available in time")
        )
    wanted = integer(obj, "spec", "replicas", default=1)
    replicas = integer(obj, "status", "replicas")
    updated = integer(obj, "status", "updatedReplicas")
    available = integer(obj, "status", "availableReplicas")
    if updated < wanted:
        return progressing(
            f"Waiting for rollout to finish: {updated} of {wanted} replicas have been updated"
        )
    if replicas > updated:
        return progressing(
            f"Waiting for rollout to finish: {replicas - updated} old replicas are pending "
            "termination"
        )
    if available < updated:
        return progressing(
            f"Waiting for rollout to finish: {available} of {updated} updated replicas are "
            "available"
        )
    return healthy(f"Rollout complete: {available} of {wanted} replicas updated and available")


def statefulset_health(obj: Manifest) -> HealthResult:
    """StatefulSet: readiness, then the update strategy decides what "done" means.

    With ``OnDelete`` the controller never replaces pods on its own, so old pods are the
    user's choice, not a stuck rollout: Healthy, with the count in the message.  With a
    ``RollingUpdate`` partition only ordinals at or above the partition are updated.
    """
    if generation_pending(obj):
        return NOT_OBSERVED
    wanted = integer(obj, "spec", "replicas", default=1)
    ready = integer(obj, "status", "readyReplicas")
    updated = integer(obj, "status", "updatedReplicas")
    if ready < wanted:
        return progressing(f"Waiting for pods to be ready: {ready} of {wanted} are ready")
    strategy = text(obj, "spec", "updateStrategy", "type", default="RollingUpdate")
    if strategy == "OnDelete":
        stale = max(wanted - updated, 0)
        note = f"; {stale} still run the old revision until deleted (OnDelete)" if stale else ""
        return healthy(f"StatefulSet has {ready} ready pods{note}")
    partition = integer(obj, "spec", "updateStrategy", "rollingUpdate", "partition")
    if partition > 0:
        target = max(wanted - partition, 0)
        if updated < target:
            return progressing(
                f"Waiting for partitioned rollout to finish: {updated} of {target} pods "
                "have been updated"
            )
        return healthy(f"Partitioned rollout complete: {updated} pods have been updated")
    current = text(obj, "status", "currentRevision")
    update = text(obj, "status", "updateRevision")
    if update and current != update:
        return progressing(
            f"Waiting for rolling update to finish: {updated} of {wanted} pods are at "
            f"revision {update}"
        )
    revision = f" at revision {current}" if current else ""
    return healthy(f"Rolling update complete: {ready} pods ready{revision}")


def daemonset_health(obj: Manifest) -> HealthResult:
    """DaemonSet: every scheduled node runs the new pod and it is available."""
    if generation_pending(obj):
        return NOT_OBSERVED
    desired = integer(obj, "status", "desiredNumberScheduled")
    updated = integer(obj, "status", "updatedNumberScheduled")
    available = integer(obj, "status", "numberAvailable")
    if text(obj, "spec", "updateStrategy", "type") == "OnDelete":
        return healthy(
            f"{updated} of {desired} pods run the new revision (OnDelete: old pods are "
            "replaced only when deleted)"
        )
    if updated < desired:
        return progressing(
            f"Waiting for rollout to finish: {updated} of {desired} new pods have been updated"
        )
    if available < desired:
        return progressing(
            f"Waiting for rollout to finish: {available} of {desired} updated pods are available"
        )
    return healthy(f"Rollout complete: {available} of {desired} pods updated and available")


def replicaset_health(obj: Manifest) -> HealthResult:
    """ReplicaSet: a ReplicaFailure (quota, admission) is Degraded; else count available."""
    if generation_pending(obj):
        return NOT_OBSERVED
    failure = condition(obj, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return degraded(explain(failure, "ReplicaSet cannot create its pods"))
    wanted = integer(obj, "spec", "replicas", default=1)
    available = integer(obj, "status", "availableReplicas")
    if available < wanted:
        return progressing(
            f"Waiting for rollout to finish: {available} of {wanted} replicas are available"
        )
    return healthy(f"{available} of {wanted} replicas are available")


def job_health(obj: Manifest) -> HealthResult:
    """Job: Failed beats everything, then Complete, then a deliberate suspend."""
    failed = condition(obj, "Failed")
    if failed is not None and failed.get("status") == "True":
        return degraded("Job failed: " + explain(failed, "it reached its failure limit"))
    if condition_is(obj, "Complete", "True"):
        succeeded = integer(obj, "status", "succeeded")
        return healthy(f"Job completed: {succeeded} pods succeeded")
    if flag(obj, "spec", "suspend") or condition_is(obj, "Suspended", "True"):
        return suspended("Job is suspended")
    active = integer(obj, "status", "active")
    return progressing(f"Job is running: {active} active pods")


def cronjob_health(obj: Manifest) -> HealthResult:
    """CronJob: only a suspend is worth reporting; each run is judged by its Job."""
    if flag(obj, "spec", "suspend"):
        return suspended("CronJob is suspended: no new jobs will be scheduled")
    schedule = text(obj, "spec", "schedule")
    return healthy(f"CronJob is scheduled ({schedule})" if schedule else "CronJob is scheduled")


def _is_failing_wait(reason: str) -> bool:
    """Waiting reasons that will not fix themselves: ErrImagePull, *BackOff, *Error."""
    return reason.startswith("Err") or reason.endswith(("BackOff", "Error"))


def _failing_containers(obj: Manifest) -> list[str]:
    """One sentence per container (init or regular) stuck in a failing waiting state."""
    found: list[str] = []
    for key in ("initContainerStatuses", "containerStatuses"):
        for status in entries(obj, "status", key):
            reason = text(status, "state", "waiting", "reason")
            if not _is_failing_wait(reason):
                continue
            name = text(status, "name", default="?")
            message = text(status, "state", "waiting", "message")
            found.append(f"container {name} is {reason}" + (f": {message}" if message else ""))
    return found


def _termination_message(obj: Manifest) -> str:
    """Why a failed pod stopped: its own message, else its containers' last words."""
    message = text(obj, "status", "message")
    if message:
        return message
    for status in entries(obj, "status", "containerStatuses"):
        terminated = field(status, "state", "terminated")
        if isinstance(terminated, dict) and integer(terminated, "exitCode") != 0:
            name = text(status, "name", default="?")
            detail = text(terminated, "message") or text(terminated, "reason")
            code = integer(terminated, "exitCode")
            return f"container {name} exited with code {code}" + (f": {detail}" if detail else "")
    return text(obj, "status", "reason", default="pod failed")


def pod_health(obj: Manifest) -> HealthResult:
    """Pod: phase first, with crash loops and image pull errors turned into Degraded.

    Those waiting reasons count only for ``restartPolicy: Always`` pods, as in
    gitops-engine: a run-to-completion pod (a hook, a job's pod) waiting on an image may
    still succeed, and calling it Degraded would fail a sync that later works out.
    """
    phase = text(obj, "status", "phase")
    always = text(obj, "spec", "restartPolicy", default="Always") == "Always"
    if phase == "Succeeded":
        return healthy("Pod completed successfully")
    if phase == "Failed":
        return degraded("Pod failed: " + _termination_message(obj))
    if always:
        failing = _failing_containers(obj)
        if failing:
            return degraded("Pod is failing: " + "; ".join(failing))
    if phase == "Pending" or not phase:
        detail = text(obj, "status", "message") or explain(
            condition(obj, "PodScheduled") if condition_is(obj, "PodScheduled", "False") else None,
            "waiting to be scheduled and for containers to start",
        )
        return progressing(f"Pod is pending: {detail}")
    if phase == "Running":
        if not always:
            return progressing("Pod is running to completion")
        if condition_is(obj, "Ready", "True"):
            return healthy("Pod is running and ready")
        ready = condition(obj, "ContainersReady") or condition(obj, "Ready")
        return progressing(
            "Pod is running but not ready: " + explain(ready, "readiness probes have not passed")
        )
    return HealthResult(Health.UNKNOWN, f"Pod phase is {phase}: the node may be unreachable")
