"""kubectl's typed generators (``kubectl create KIND ...``) against kubesim.

They send protobuf, unlike ``create -f``/``apply``.  Each generator must give the object a
real cluster would store: the fields kubectl set, the server's defaults, dry-run and
validation honoured.  The strongest check is that the protobuf path and the JSON path agree:
the same command with ``--dry-run=client -o json`` piped to ``kubectl create -f -`` goes
through kubesim's JSON path, and both objects must read back the same.
"""

from __future__ import annotations

import base64
import copy
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.runtime import SimHandle
from tests.kubesim.conftest import Kubectl
from tests.kubesim.test_protobuf import envelope, field

Obj = dict[str, Any]


@pytest.fixture
def other_namespace(kubectl: Kubectl) -> Iterator[str]:
    """A second namespace, for the JSON-path twin of each object."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def get(kubectl: Kubectl, *args: str) -> Obj:
    return json.loads(kubectl("get", *args, "-o", "json", "--show-managed-fields").stdout)  # type: ignore[no-any-return]


def comparable(obj: Obj) -> Obj:
    """The object without what differs between any two creations (ids, times, IPs)."""
    out = copy.deepcopy(obj)
    meta = out["metadata"]
    for key in ("uid", "resourceVersion", "creationTimestamp", "namespace"):
        meta.pop(key, None)
    # Controllers write status whenever they get to it: only the client's entry is compared.
    meta["managedFields"] = [
        {k: v for k, v in entry.items() if k != "time"}
        for entry in meta.get("managedFields", [])
        if entry.get("subresource") != "status"
    ]
    spec = out.get("spec") or {}
    for key in ("clusterIP", "clusterIPs"):
        if spec.get(key) not in (None, "None", ["None"]):
            spec.pop(key)
    out.pop("status", None)
    return out


def split_dashes(args: list[str]) -> tuple[list[str], list[str]]:
    if "--" in args:
        i = args.index("--")
        return args[:i], args[i:]
    return args, []


GENERATORS: dict[str, list[str]] = {
    "configmap": ["configmap", "settings", "--from-literal=mode=fast", "--from-literal=empty="],
    "secret": ["secret", "generic", "creds", "--from-literal=user=admin",
               "--from-literal=password=s3cr=t"],
    "docker-registry": ["secret", "docker-registry", "pull", "--docker-server=r.example.com",
                        "--docker-username=bot", "--docker-password=pw"],
    "serviceaccount": ["serviceaccount", "builder"],
    "deployment": ["deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=8080"],
    "deployment-zero": ["deployment", "idle", "--image=nginx", "--replicas=0"],
    "job": ["job", "once", "--image=busybox:1.36", "--", "sh", "-c", "echo hi"],
    "cronjob": ["cronjob", "tick", "--image=busybox:1.36", "--schedule=*/5 * * * *"],
    "service-clusterip": ["service", "clusterip", "web", "--tcp=80:8080", "--tcp=443:8443"],
    "service-headless": ["service", "clusterip", "headless", "--clusterip=None"],
    "service-nodeport": ["service", "nodeport", "np", "--tcp=80:8080"],
    "service-externalname": ["service", "externalname", "ext", "--external-name=db.example.com"],
    "role": ["role", "reader", "--verb=get,list", "--resource=pods,configmaps"],
    "rolebinding": ["rolebinding", "reader", "--role=reader", "--user=alice"],
    "pdb": ["poddisruptionbudget", "web", "--selector=app=web", "--min-available=50%"],
    "ingress": ["ingress", "web", "--class=nginx", "--rule=web.example.com/api*=web:80,tls=t",
                "--rule=web.example.com/=web:http", "--default-backend=web:80"],
}  # fmt: skip
#: kind/name kubectl reads back for each generator.
READ_BACK = {
    "configmap": "configmap/settings", "secret": "secret/creds", "docker-registry": "secret/pull",
    "serviceaccount": "serviceaccount/builder", "deployment": "deployment/web",
    "deployment-zero": "deployment/idle", "job": "job/once", "cronjob": "cronjob/tick",
    "service-clusterip": "service/web", "service-headless": "service/headless",
    "service-nodeport": "service/np", "service-externalname": "service/ext",
    "role": "role/reader", "rolebinding": "rolebinding/reader", "pdb": "pdb/web",
    "ingress": "ingress/web",
}  # fmt: skip


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_protobuf_path_stores_what_the_json_path_stores(
    kubectl: Kubectl, namespace: str, other_namespace: str, generator: str
) -> None:
    before, after = split_dashes(GENERATORS[generator])
    kubectl("create", *before, "-n", namespace, *after)
    manifest = kubectl("create", *before, "-n", other_namespace, "--dry-run=client", "-o",
                       "json", *after).stdout  # fmt: skip
    kubectl("create", "-f", "-", stdin=manifest)
    via_protobuf = get(kubectl, READ_BACK[generator], "-n", namespace)
    via_json = get(kubectl, READ_BACK[generator], "-n", other_namespace)
    assert comparable(via_protobuf) == comparable(via_json)


def test_namespace_created_by_generator(kubectl: Kubectl) -> None:
    name = f"t-{uuid.uuid4().hex[:8]}"
    out = kubectl("create", "namespace", name).stdout
    try:
        assert out.strip() == f"namespace/{name} created"
        ns = get(kubectl, "namespace", name)
        assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": name}
        assert ns["spec"] == {"finalizers": ["kubernetes"]}
        assert ns["status"] == {"phase": "Active"}
    finally:
        kubectl("delete", "namespace", name, "--wait=false")


def test_configmap_from_literals_and_files(
    kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    (tmp_path / "app.conf").write_text("listen 8080\n")
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    kubectl("create", "configmap", "mixed", "-n", namespace, "--from-literal=mode=fast",
            f"--from-file={tmp_path / 'app.conf'}",
            f"--from-file=blob={tmp_path / 'blob.bin'}")  # fmt: skip
    cm = get(kubectl, "configmap", "mixed", "-n", namespace)
    assert cm["data"] == {"mode": "fast", "app.conf": "listen 8080\n"}
    assert set(cm["binaryData"]) == {"blob"}
    assert base64.b64decode(cm["binaryData"]["blob"]) == bytes(range(256))


def test_secret_generic_from_literal(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=user=admin")
    secret = get(kubectl, "secret", "creds", "-n", namespace)
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"user": "YWRtaW4="}
    value = kubectl("get", "secret", "creds", "-n", namespace,
                    "-o", "jsonpath={.data.user}").stdout  # fmt: skip
    assert value == "YWRtaW4="


def test_deployment_has_fields_and_server_defaults(kubectl: Kubectl, namespace: str) -> None:
    out = kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx:1.27",
                  "--replicas=3", "--port=8080").stdout  # fmt: skip
    assert out.strip() == "deployment.apps/web created"
    dep = get(kubectl, "deployment", "web", "-n", namespace)
    spec = dep["spec"]
    assert dep["metadata"]["labels"] == {"app": "web"}
    assert spec["replicas"] == 3
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }  # fmt: skip
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["revisionHistoryLimit"] == 10
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Always"
    assert pod["dnsPolicy"] == "ClusterFirst"
    (container,) = pod["containers"]
    assert container == {
        "name": "nginx", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}], "resources": {},
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }  # fmt: skip
    managers = {(m["manager"], m["operation"]) for m in dep["metadata"]["managedFields"]}
    assert ("kubectl-create", "Update") in managers
    kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=30s")


def test_deployment_with_zero_replicas_keeps_zero(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "deployment", "idle", "-n", namespace, "--image=nginx", "--replicas=0")
    assert get(kubectl, "deployment", "idle", "-n", namespace)["spec"]["replicas"] == 0


def test_job_with_command_and_job_from_cronjob(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "job", "once", "-n", namespace, "--image=busybox:1.36", "--",
            "sh", "-c", "echo hi")  # fmt: skip
    job = get(kubectl, "job", "once", "-n", namespace)
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == ["sh", "-c", "echo hi"]
    assert job["spec"]["backoffLimit"] == 6
    kubectl("create", "cronjob", "tick", "-n", namespace, "--image=busybox:1.36",
            "--schedule=*/5 * * * *")  # fmt: skip
    cron = get(kubectl, "cronjob", "tick", "-n", namespace)
    kubectl("create", "job", "manual", "-n", namespace, "--from=cronjob/tick")
    manual = get(kubectl, "job", "manual", "-n", namespace)
    assert manual["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    (owner,) = manual["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "batch/v1", "kind": "CronJob", "name": "tick",
                     "uid": cron["metadata"]["uid"], "controller": True}  # fmt: skip
    cron_pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert manual["spec"]["template"]["spec"]["containers"] == cron_pod["containers"]


def test_service_clusterip_ports(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "service", "clusterip", "web", "-n", namespace, "--tcp=80:8080")
    svc = get(kubectl, "service", "web", "-n", namespace)
    assert svc["spec"]["ports"] == [
        {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}
    ]
    assert svc["spec"]["selector"] == {"app": "web"}
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]]
    kubectl("create", "service", "clusterip", "headless", "-n", namespace, "--clusterip=None")
    headless = get(kubectl, "service", "headless", "-n", namespace)["spec"]
    assert (headless["clusterIP"], headless["clusterIPs"]) == ("None", ["None"])


def test_server_dry_run_returns_the_object_and_stores_nothing(
    kubectl: Kubectl, namespace: str
) -> None:
    out = kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx",
                  "--dry-run=server", "-o", "json").stdout  # fmt: skip
    dep = json.loads(out)
    assert dep["spec"]["progressDeadlineSeconds"] == 600
    assert dep["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"
    out = kubectl("create", "configmap", "c", "-n", namespace, "--from-literal=a=b",
                  "--dry-run=server").stdout  # fmt: skip
    assert out.strip() == "configmap/c created (server dry run)"
    assert kubectl("get", "deploy,cm", "-n", namespace, "-o", "name").stdout.strip() == ""


def test_validation_errors_match_the_json_path(
    kubectl: Kubectl, namespace: str, other_namespace: str
) -> None:
    cases = [
        ["configmap", "Bad_Name", "--from-literal=a=b"],
        ["service", "nodeport", "np", "--tcp=80:8080", "--node-port=99"],
        ["deployment", "web", "--image=nginx", "--port=70000"],
    ]
    for args in cases:
        proto = kubectl("create", *args, "-n", namespace, check=False)
        assert proto.returncode == 1, args
        assert "is invalid" in proto.stderr, proto.stderr
        manifest = kubectl("create", *args, "-n", other_namespace, "--dry-run=client",
                           "-o", "json").stdout  # fmt: skip
        via_json = kubectl("create", "-f", "-", stdin=manifest, check=False)
        assert via_json.returncode == 1
        # kubectl words the two failures differently ("error: failed to create configmap:"
        # against "The ConfigMap ..."); what the server said must be the same.
        proto_cause = proto.stderr.replace(namespace, "NS").split(" is invalid: ", 1)[1]
        json_cause = via_json.stderr.replace(other_namespace, "NS").split(" is invalid: ", 1)[1]
        assert proto_cause == json_cause


def test_second_create_is_already_exists(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "serviceaccount", "builder", "-n", namespace)
    again = kubectl("create", "serviceaccount", "builder", "-n", namespace, check=False)
    assert again.returncode == 1
    assert 'serviceaccounts "builder" already exists' in again.stderr


def test_ingress_rules_and_backends(kubectl: Kubectl, namespace: str) -> None:
    kubectl("create", "ingress", "web", "-n", namespace, "--class=nginx",
            "--rule=web.example.com/api*=web:80,tls=web-tls")  # fmt: skip
    spec = get(kubectl, "ingress", "web", "-n", namespace)["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["web.example.com"], "secretName": "web-tls"}]
    assert spec["rules"] == [{
        "host": "web.example.com",
        "http": {"paths": [{"path": "/api", "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]},
    }]  # fmt: skip


def test_cluster_scoped_rbac_generators(kubectl: Kubectl, namespace: str) -> None:
    role, binding = f"viewer-{namespace}", f"viewer-{namespace}"
    try:
        kubectl("create", "clusterrole", role, "--verb=get", "--resource=nodes")
        kubectl("create", "clusterrolebinding", binding, f"--clusterrole={role}",
                f"--serviceaccount={namespace}:default")  # fmt: skip
        rules = get(kubectl, "clusterrole", role)["rules"]
        assert rules == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
        crb = get(kubectl, "clusterrolebinding", binding)
        assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                  "kind": "ClusterRole", "name": role}  # fmt: skip
        assert crb["subjects"] == [
            {"kind": "ServiceAccount", "name": "default", "namespace": namespace}
        ]
    finally:
        kubectl("delete", "clusterrolebinding", binding, check=False)
        kubectl("delete", "clusterrole", role, check=False)


# -- the raw HTTP answers ----------------------------------------------------------------


def post(url: str, body: bytes) -> tuple[int, str, Obj]:
    request = urllib.request.Request(
        url, data=body, method="POST",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf",
                 "Accept": "application/vnd.kubernetes.protobuf,application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def test_protobuf_create_answers_json(sim: SimHandle, namespace: str) -> None:
    raw = field(1, field(1, "plain")) + field(2, field(1, "a") + field(2, "b"))
    url = f"{sim.cluster_url('sim-1')}/api/v1/namespaces/{namespace}/configmaps"
    status, content_type, obj = post(url, envelope("v1", "ConfigMap", raw))
    assert (status, content_type) == (201, "application/json")
    assert obj["metadata"]["namespace"] == namespace
    assert obj["data"] == {"a": "b"}


def test_unsupported_and_malformed_bodies_get_a_status(sim: SimHandle, namespace: str) -> None:
    url = f"{sim.cluster_url('sim-1')}/apis/apps/v1/namespaces/{namespace}/statefulsets"
    status, content_type, obj = post(url, envelope("apps/v1", "StatefulSet", field(1, b"")))
    assert (status, content_type) == (415, "application/json")
    assert obj["reason"] == "UnsupportedMediaType"
    assert "apps/v1 StatefulSet" in obj["message"]
    url = f"{sim.cluster_url('sim-1')}/api/v1/namespaces/{namespace}/configmaps"
    status, _, obj = post(url, b"k8s\x00\x0a\xff")
    assert status == 400
    assert obj["reason"] == "BadRequest"
    assert "runtime.Unknown: truncated varint" in obj["message"]
