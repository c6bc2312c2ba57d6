"""Defaults a real API server fills in when an object is written.

They matter to the platform above: a serious diff must not report ``protocol: TCP`` or
``progressDeadlineSeconds: 600`` as drift, and that can only be tested against a server
that adds them.  The list follows the real defaulting functions of the common kinds; it is
not exhaustive, and it never changes a field the client set.
"""

from __future__ import annotations

import base64
from typing import Any

Obj = dict[str, Any]

_POD_TEMPLATE_KINDS = {
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
}


def apply_defaults(group: str, kind: str, obj: Obj) -> None:
    """Fill in server defaults in place (``obj`` is already the server's own copy)."""
    if (group, kind) == ("", "Secret"):
        _secret(obj)
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if (group, kind) in _POD_TEMPLATE_KINDS:
        _workload(kind, spec)
    elif (group, kind) == ("batch", "CronJob"):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job = _dict(_dict(spec, "jobTemplate"), "spec")
        _workload("Job", job)
    elif (group, kind) == ("", "Pod"):
        _pod_spec(spec)
    elif (group, kind) == ("", "Service"):
        _service(spec)
    elif (group, kind) == ("", "PersistentVolumeClaim"):
        spec.setdefault("volumeMode", "Filesystem")


def _secret(obj: Obj) -> None:
    """``stringData`` is write-only: the server folds it into ``data`` (base64)."""
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = obj.get("data")
        if not isinstance(data, dict):
            data = obj["data"] = {}
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _dict(parent: Obj, key: str) -> Obj:
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def _workload(kind: str, spec: Obj) -> None:
    if kind in {"Deployment", "StatefulSet", "ReplicaSet"}:
        spec.setdefault("replicas", 1)
    if kind in {"Deployment", "StatefulSet", "DaemonSet"}:
        spec.setdefault("revisionHistoryLimit", 10)
    if kind == "Deployment":
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = _dict(spec, "strategy")
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = _dict(strategy, "rollingUpdate")
            rolling.setdefault("maxSurge", "25%")
            rolling.setdefault("maxUnavailable", "25%")
    elif kind == "StatefulSet":
        spec.setdefault("podManagementPolicy", "OrderedReady")
        update = _dict(spec, "updateStrategy")
        update.setdefault("type", "RollingUpdate")
        if update["type"] == "RollingUpdate":
            _dict(update, "rollingUpdate").setdefault("partition", 0)
    elif kind == "DaemonSet":
        update = _dict(spec, "updateStrategy")
        update.setdefault("type", "RollingUpdate")
        if update["type"] == "RollingUpdate":
            rolling = _dict(update, "rollingUpdate")
            rolling.setdefault("maxUnavailable", 1)
            rolling.setdefault("maxSurge", 0)
    elif kind == "Job":
        spec.setdefault("backoffLimit", 6)
        spec.setdefault("completions", 1)
        spec.setdefault("parallelism", 1)
        spec.setdefault("completionMode", "NonIndexed")
        spec.setdefault("suspend", False)
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec = template.get("spec")
        if isinstance(pod_spec, dict):
            _pod_spec(pod_spec, restart_policy="Never" if kind == "Job" else "Always")


def _pod_spec(spec: Obj, restart_policy: str = "Always") -> None:
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for field in ("containers", "initContainers"):
        containers = spec.get(field)
        if not isinstance(containers, list):
            continue
        for container in containers:
            if isinstance(container, dict):
                _container(container)


def _container(container: Obj) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    latest = "@" not in tag and (":" not in tag or tag.endswith(":latest"))
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    ports = container.get("ports")
    if isinstance(ports, list):
        for port in ports:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _service(spec: Obj) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    ports = spec.get("ports")
    if isinstance(ports, list):
        for port in ports:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
