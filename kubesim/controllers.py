"""Simulated controllers: the status a real cluster's controllers would write.

Health checks, ``kubectl rollout status`` and ``kubectl wait`` only mean something if
workloads get a realistic status after a change.  A short (configurable) delay after each
spec change, the controller writes the status through the ``status`` subresource, as
kube-controller-manager does, so resourceVersions move and watches see MODIFIED events.
A rollout fails (``ProgressDeadlineExceeded``) or hangs when the cluster's ``rollout``
fault says so, or when the object carries the annotation ``kubesim.dev/rollout: fail|hang``.

Pods that run to completion (``restartPolicy`` ``Never`` or ``OnFailure``: sync hooks, the
pods of Jobs) end ``Succeeded`` with their containers terminated with exit code 0, or
``Failed`` with exit code 1 under ``fail``, and stay ``Running`` under ``hang``; tools that
wait for a hook Pod to finish (Argo CD, Helm) can only be tested against that.  Pods that
restart forever become ``Running`` and ready, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Any

from kubesim.catalog import ResourceType
from kubesim.errors import ApiError
from kubesim.store import Cluster, WriteOptions, now_rfc3339

Obj = dict[str, Any]
ROLLOUT_ANNOTATION = "kubesim.dev/rollout"
MANAGER = "kube-controller-manager"
Scheduler = Callable[[float, Callable[[], None]], None]

_WATCHED = {
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("", "PersistentVolumeClaim"),
    ("", "Pod"),
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("policy", "PodDisruptionBudget"),
}


def immediate(delay: float, action: Callable[[], None]) -> None:
    """Schedule on the running event loop, or run at once when there is none (pure tests)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        action()
        return
    loop.call_later(delay, action)


class Controllers:
    """Attaches to one cluster and writes status after every relevant change."""

    def __init__(self, cluster: Cluster, *, schedule: Scheduler = immediate) -> None:
        self.cluster = cluster
        self.schedule = schedule
        self._pending: set[tuple[str, str, str, str]] = set()
        cluster.listeners.append(self._changed)

    def _changed(self, rt: ResourceType, event: str, obj: Obj) -> None:
        if event == "DELETED" or (rt.group, rt.kind) not in _WATCHED:
            return
        meta = obj["metadata"]
        if not self._needs_status(rt, obj):
            return
        key = (rt.group, rt.plural, meta.get("namespace", ""), meta["name"])
        if key in self._pending:
            return
        self._pending.add(key)

        def run() -> None:
            self._pending.discard(key)
            self._reconcile(rt, key[2], key[3])

        self.schedule(self.cluster.faults.controller_delay, run)

    def _needs_status(self, rt: ResourceType, obj: Obj) -> bool:
        status = obj.get("status") or {}
        if rt.kind == "CustomResourceDefinition":
            return not _condition_true(status, "Established")
        if rt.kind == "PersistentVolumeClaim":
            return status.get("phase") != "Bound"
        if rt.kind == "Pod":
            phase = status.get("phase")
            if _runs_to_completion(obj):
                # A hanging run stays Running; changing the annotation lets it finish.
                return phase not in {"Succeeded", "Failed"} and not (
                    phase == "Running" and self.mode(obj) == "hang"
                )
            return phase not in {"Running", "Succeeded", "Failed"}
        generation = obj["metadata"].get("generation", 1)
        return bool(status.get("observedGeneration") != generation)

    def _reconcile(self, rt: ResourceType, namespace: str, name: str) -> None:
        try:
            obj = self.cluster.get(rt, namespace, name)
        except ApiError:
            return  # deleted meanwhile
        status = self.status_for(rt, obj)
        if status is None:
            return
        body = {**obj, "status": status}
        opts = WriteOptions(manager=MANAGER, subresource="status")
        try:
            self.cluster.update(rt, namespace, name, body, opts)
        except ApiError:
            return

    def mode(self, obj: Obj) -> str:
        """ "fail", "hang" or "" for this object's rollout."""
        annotations = obj["metadata"].get("annotations") or {}
        return str(annotations.get(ROLLOUT_ANNOTATION) or self.cluster.faults.rollout)

    def status_for(self, rt: ResourceType, obj: Obj) -> Obj | None:
        """The status a controller would report for ``obj`` now."""
        spec = obj.get("spec") or {}
        generation = obj["metadata"].get("generation", 1)
        mode = self.mode(obj)
        now = now_rfc3339()
        if rt.kind == "CustomResourceDefinition":
            names = spec.get("names") or {}
            return {
                "acceptedNames": names,
                "conditions": [
                    _condition("NamesAccepted", "True", "NoConflicts", "no conflicts found", now),
                    _condition("Established", "True", "InitialNamesAccepted",
                               "the initial names have been accepted", now),
                ],
                "storedVersions": [v["name"] for v in spec.get("versions", [])
                                   if isinstance(v, dict) and v.get("storage")],
            }  # fmt: skip
        if rt.kind == "PersistentVolumeClaim":
            request = (spec.get("resources") or {}).get("requests") or {}
            return {
                "phase": "Bound",
                "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                "capacity": {"storage": request.get("storage", "1Gi")},
            }
        if rt.kind == "Pod":
            if _runs_to_completion(obj):
                return _completing_pod_status(obj, mode, now)
            return {
                "phase": "Running",
                "conditions": [_condition("Ready", "True", "", "", now)],
                "podIP": "10.244.0.10",
                "startTime": now,
            }
        if rt.kind == "Job":
            return _job_status(spec, mode, now)
        if rt.kind == "HorizontalPodAutoscaler":
            replicas = int(spec.get("minReplicas", 1))
            return {
                "observedGeneration": generation,
                "currentReplicas": replicas,
                "desiredReplicas": replicas,
                "conditions": [
                    _condition("AbleToScale", "True", "ReadyForNewScale",
                               "recommended size matches current size", now),
                    _condition("ScalingActive", "True", "ValidMetricFound",
                               "the HPA was able to successfully calculate a replica count", now),
                    _condition("ScalingLimited", "False", "DesiredWithinRange",
                               "the desired count is within the acceptable range", now),
                ],
            }  # fmt: skip
        if rt.kind == "PodDisruptionBudget":
            return {
                "observedGeneration": generation,
                "currentHealthy": 1,
                "desiredHealthy": 1,
                "disruptionsAllowed": 0,
                "expectedPods": 1,
                # metav1.Condition: message and reason are required, even when empty.
                "conditions": [
                    {
                        "type": "DisruptionAllowed",
                        "status": "False",
                        "reason": "InsufficientPods",
                        "message": "",
                        "observedGeneration": generation,
                        "lastTransitionTime": now,
                    }
                ],
            }
        replicas = int(spec.get("replicas", 1)) if rt.kind != "DaemonSet" else 1
        if rt.kind == "Deployment":
            return _deployment_status(spec, generation, replicas, mode, now)
        ready = 0 if mode else replicas
        if rt.kind == "StatefulSet":
            revision = f"{obj['metadata']['name']}-{_template_hash(spec)}"
            return {
                "observedGeneration": generation,
                "replicas": replicas,
                "readyReplicas": ready,
                "currentReplicas": replicas,
                "updatedReplicas": ready,
                "availableReplicas": ready,
                "currentRevision": revision,
                "updateRevision": revision,
                "collisionCount": 0,
            }
        if rt.kind == "DaemonSet":
            return {
                "observedGeneration": generation,
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": 1,
                "numberMisscheduled": 0,
                "numberReady": ready,
                "updatedNumberScheduled": ready,
                "numberAvailable": ready,
            }
        if rt.kind == "ReplicaSet":
            return {
                "observedGeneration": generation,
                "replicas": replicas,
                "fullyLabeledReplicas": replicas,
                "readyReplicas": ready,
                "availableReplicas": ready,
            }
        return None


def _deployment_status(spec: Obj, generation: int, replicas: int, mode: str, now: str) -> Obj:
    status: Obj = {"observedGeneration": generation}
    if mode == "fail":
        status.update(replicas=replicas, updatedReplicas=replicas, unavailableReplicas=replicas)
        status["conditions"] = [
            _condition("Available", "False", "MinimumReplicasUnavailable",
                       "Deployment does not have minimum availability.", now),
            _condition("Progressing", "False", "ProgressDeadlineExceeded",
                       "ReplicaSet has timed out progressing.", now),
        ]  # fmt: skip
        return status
    if mode == "hang":
        status.update(replicas=replicas, updatedReplicas=0, unavailableReplicas=replicas)
        status["conditions"] = [
            _condition("Progressing", "True", "ReplicaSetUpdated",
                       "ReplicaSet is progressing.", now),
        ]  # fmt: skip
        return status
    if replicas:
        status.update(
            replicas=replicas,
            updatedReplicas=replicas,
            readyReplicas=replicas,
            availableReplicas=replicas,
        )
    status["conditions"] = [
        _condition("Available", "True", "MinimumReplicasAvailable",
                   "Deployment has minimum availability.", now),
        _condition("Progressing", "True", "NewReplicaSetAvailable",
                   "ReplicaSet has successfully progressed.", now),
    ]  # fmt: skip
    return status


def _runs_to_completion(pod: Obj) -> bool:
    """Pods that are not restarted forever (hooks, Jobs' pods) end Succeeded or Failed."""
    return (pod.get("spec") or {}).get("restartPolicy", "Always") in {"Never", "OnFailure"}


def _completing_pod_status(pod: Obj, mode: str, now: str) -> Obj:
    """What the kubelet reports for a run-to-completion Pod: its containers ran and exited
    (0, or 1 when the rollout fails), or are still running when it hangs."""
    spec = pod.get("spec") or {}
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    base: Obj = {"hostIP": "10.0.0.2", "podIP": "10.244.0.10", "startTime": now,
                 "qosClass": "BestEffort"}  # fmt: skip
    if mode == "hang":
        return {
            **base,
            "phase": "Running",
            "conditions": [
                _condition("Initialized", "True", "", "", now),
                _condition("Ready", "True", "", "", now),
                _condition("ContainersReady", "True", "", "", now),
                _condition("PodScheduled", "True", "", "", now),
            ],
            "containerStatuses": [
                {"name": c.get("name", ""), "image": c.get("image", ""), "imageID": "",
                 "ready": True, "restartCount": 0, "started": True,
                 "state": {"running": {"startedAt": now}}}
                for c in containers
            ],
        }  # fmt: skip
    failed = mode == "fail"
    reason = "PodFailed" if failed else "PodCompleted"
    exit_code, exit_reason = (1, "Error") if failed else (0, "Completed")
    return {
        **base,
        "phase": "Failed" if failed else "Succeeded",
        "conditions": [
            _condition("Initialized", "True", "PodCompleted", "", now),
            _condition("Ready", "False", reason, "", now),
            _condition("ContainersReady", "False", reason, "", now),
            _condition("PodScheduled", "True", "", "", now),
        ],
        "containerStatuses": [
            {"name": c.get("name", ""), "image": c.get("image", ""), "imageID": "",
             "ready": False, "restartCount": 0, "started": False,
             "state": {"terminated": {"exitCode": exit_code, "reason": exit_reason,
                                      "startedAt": now, "finishedAt": now}}}
            for c in containers
        ],
    }  # fmt: skip


def _job_status(spec: Obj, mode: str, now: str) -> Obj | None:
    if spec.get("suspend"):
        return None
    if mode == "hang":
        return {"active": 1, "startTime": now, "ready": 0}
    if mode == "fail":
        return {
            "failed": int(spec.get("backoffLimit", 6)) + 1,
            "startTime": now,
            "conditions": [
                _condition("FailureTarget", "True", "BackoffLimitExceeded",
                           "Job has reached the specified backoff limit", now),
                _condition("Failed", "True", "BackoffLimitExceeded",
                           "Job has reached the specified backoff limit", now),
            ],
        }  # fmt: skip
    return {
        "succeeded": int(spec.get("completions", 1)),
        "startTime": now,
        "completionTime": now,
        "ready": 0,
        "conditions": [
            _condition("SuccessCriteriaMet", "True", "CompletionsReached",
                       "Reached expected number of succeeded pods", now),
            _condition("Complete", "True", "CompletionsReached",
                       "Reached expected number of succeeded pods", now),
        ],
    }  # fmt: skip


def _condition(kind: str, status: str, reason: str, message: str, now: str) -> Obj:
    cond: Obj = {"type": kind, "status": status, "lastTransitionTime": now}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _condition_true(status: Obj, kind: str) -> bool:
    return any(
        isinstance(c, dict) and c.get("type") == kind and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _template_hash(spec: Obj) -> str:
    raw = json.dumps(spec.get("template") or {}, sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:10]
