"""Immutable fields over HTTP: every write verb is refused as kube-apiserver refuses it.

GitOps tools decide to delete and recreate an object from the server's answer to an update
of an immutable field (422 Invalid, ``details.causes`` naming the field, ``field is
immutable``), so these tests pin the status code, reason, causes and messages for PUT, the
three PATCH kinds and server-side apply, with and without dry-run, and check that a refused
write leaves the stored object as it was and that delete-then-create still replaces it.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from kubesim.runtime import SimHandle
from tests.kubesim.conftest import Kubectl
from tests.kubesim.test_pod_phases import wait_for

Obj = dict[str, Any]

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


def call(
    sim: SimHandle, method: str, path: str, body: Any = None, *,
    content_type: str = "application/json", query: dict[str, str] | None = None,
) -> tuple[int, Obj]:  # fmt: skip
    """One request to sim-1; the status code and the decoded body (an object or a Status)."""
    url = sim.cluster_url("sim-1") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def ns(sim: SimHandle) -> Iterator[str]:
    name = f"imm-{uuid.uuid4().hex[:8]}"
    code, _ = call(sim, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert code == 201
    yield name
    call(sim, "DELETE", f"/api/v1/namespaces/{name}")


def job(image: str = "migrate:1", **spec: Any) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate"},
        "spec": {
            **spec,
            "template": {
                "metadata": {"labels": {"app": "migrate"}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": image}],
                },
            },
        },
    }


def stateful_set(storage: str = "1Gi", replicas: int = 1) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": "postgres:16"}]},
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": storage}},
                    },
                }
            ],
        },
    }


def writes(
    path: str, live: Obj, changed: Obj, patches: dict[str, Any]
) -> list[tuple[str, str, Any, str, dict[str, str]]]:
    """Every way to send the change: PUT, three PATCH kinds and apply, each also as dry-run."""
    put_body = copy.deepcopy(changed)
    put_body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    apply_body = copy.deepcopy(changed)
    apply_body["metadata"] = {"name": changed["metadata"]["name"]}
    ways: list[tuple[str, str, Any, str, dict[str, str]]] = [
        ("put", "PUT", put_body, "application/json", {}),
        ("merge", "PATCH", patches["merge"], MERGE, {}),
        ("strategic", "PATCH", patches["strategic"], STRATEGIC, {}),
        ("json", "PATCH", patches["json"], JSON_PATCH, {}),
        ("apply", "PATCH", apply_body, APPLY, {"fieldManager": "gitops", "force": "true"}),
    ]
    return [
        (f"{name}{suffix}", method, body, content_type, {**query, **extra})
        for name, method, body, content_type, query in ways
        for suffix, extra in (("", {}), ("+dry-run", {"dryRun": "All"}))
    ]


def assert_refused(
    sim: SimHandle, path: str, live: Obj, changed: Obj, patches: dict[str, Any],
    check: Callable[[Obj], None],
) -> None:  # fmt: skip
    """Each write verb answers 422 Invalid (``check`` looks at the Status); nothing changes."""
    for name, method, body, content_type, query in writes(path, live, changed, patches):
        code, status = call(sim, method, path, body, content_type=content_type, query=query)
        assert (code, status.get("reason")) == (422, "Invalid"), (name, status)
        assert status["kind"] == "Status" and status["code"] == 422, name
        check(status)
    code, stored = call(sim, "GET", path)
    assert code == 200
    assert stored["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert stored["spec"] == live["spec"]


def test_job_template_is_immutable_for_every_write_verb(sim: SimHandle, ns: str) -> None:
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    code, live = call(sim, "POST", path, job())
    assert code == 201
    image_path = "/spec/template/spec/containers/0/image"
    patches = {
        "merge": {"spec": {"template": {"spec": {"containers": [
            {"name": "migrate", "image": "migrate:2"}]}}}},
        "strategic": {"spec": {"template": {"spec": {"containers": [
            {"name": "migrate", "image": "migrate:2"}]}}}},
        "json": [{"op": "replace", "path": image_path, "value": "migrate:2"}],
    }  # fmt: skip

    def check(status: Obj) -> None:
        assert status["message"].startswith(
            'Job.batch "migrate" is invalid: spec.template: Invalid value: '
        )
        assert status["message"].endswith(": field is immutable")
        assert '"image":"migrate:2"' in status["message"]
        assert status["details"]["name"] == "migrate"
        assert status["details"]["group"] == "batch"
        assert status["details"]["kind"] == "Job"
        [cause] = status["details"]["causes"]
        assert cause["reason"] == "FieldValueInvalid"
        assert cause["field"] == "spec.template"
        assert cause["message"].startswith("Invalid value: {")
        assert cause["message"].endswith("}: field is immutable")

    assert_refused(sim, f"{path}/migrate", live, job("migrate:2"), patches, check)


def test_job_completions_and_selector_are_immutable(sim: SimHandle, ns: str) -> None:
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    code, _ = call(sim, "POST", path, job(completions=1))
    assert code == 201
    code, status = call(sim, "PATCH", f"{path}/migrate", {"spec": {"completions": 3}},
                        content_type=MERGE)  # fmt: skip
    assert code == 422
    assert status["message"] == (
        'Job.batch "migrate" is invalid: spec.completions: Invalid value: 3: field is immutable'
    )
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": "Invalid value: 3: field is immutable",
         "field": "spec.completions"},
    ]  # fmt: skip
    selector = {"matchLabels": {"app": "migrate"}}
    code, status = call(sim, "PATCH", f"{path}/migrate", {"spec": {"selector": selector}},
                        content_type=MERGE)  # fmt: skip
    assert code == 422
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.selector"]
    assert status["details"]["causes"][0]["message"] == (
        "Invalid value: &LabelSelector{MatchLabels:map[string]string{app: migrate,},"
        "MatchExpressions:[]LabelSelectorRequirement{},}: field is immutable"
    )
    # Fields that are not immutable still change.
    code, patched = call(sim, "PATCH", f"{path}/migrate", {"spec": {"backoffLimit": 2}},
                         content_type=MERGE)  # fmt: skip
    assert code == 200 and patched["spec"]["backoffLimit"] == 2


def test_suspended_job_may_change_scheduling_directives(sim: SimHandle, ns: str) -> None:
    path = f"/apis/batch/v1/namespaces/{ns}/jobs"
    code, _ = call(sim, "POST", path, job(suspend=True))
    assert code == 201
    directives = {"spec": {"template": {
        "metadata": {"labels": {"app": "migrate", "queue": "batch"}},
        "spec": {"nodeSelector": {"pool": "batch"},
                 "tolerations": [{"key": "batch", "operator": "Exists"}]}}}}  # fmt: skip
    code, patched = call(sim, "PATCH", f"{path}/migrate", directives, content_type=STRATEGIC)
    assert code == 200, patched
    assert patched["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "batch"}
    image = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x:2"}]
    code, status = call(sim, "PATCH", f"{path}/migrate", image, content_type=JSON_PATCH)
    assert code == 422
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.template"]


def test_service_cluster_ip_is_set_once_and_kept(sim: SimHandle, ns: str, kubectl: Kubectl) -> None:
    path = f"/api/v1/namespaces/{ns}/services"
    service: Obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}  # fmt: skip
    code, live = call(sim, "POST", path, service)
    assert code == 201
    ip = live["spec"]["clusterIP"]
    assert live["spec"]["clusterIPs"] == [ip]
    changed = copy.deepcopy(service)
    changed["spec"]["clusterIP"] = "10.0.0.5"
    patches = {
        "merge": {"spec": {"clusterIP": "10.0.0.5"}},
        "strategic": {"spec": {"clusterIP": "10.0.0.5"}},
        "json": [{"op": "replace", "path": "/spec/clusterIP", "value": "10.0.0.5"}],
    }

    def check(status: Obj) -> None:
        # kube-apiserver 1.20+: clusterIPs follows clusterIP, and the pair may not change.
        assert status["message"] == (
            'Service "web" is invalid: spec.clusterIPs[0]: Invalid value: '
            '[]string{"10.0.0.5"}: may not change once set'
        )
        assert status["details"] == {
            "name": "web",
            "kind": "Service",
            "causes": [{"reason": "FieldValueInvalid", "field": "spec.clusterIPs[0]",
                        "message": 'Invalid value: []string{"10.0.0.5"}: may not change once set'}],
        }  # fmt: skip

    assert_refused(sim, f"{path}/web", live, changed, patches, check)

    # Writes that omit the allocated addresses keep them: PUT, apply, kubectl apply.
    put = copy.deepcopy(service)
    put["spec"]["selector"] = {"app": "web", "track": "canary"}
    code, replaced = call(sim, "PUT", f"{path}/web", put)
    assert code == 200, replaced
    assert (replaced["spec"]["clusterIP"], replaced["spec"]["clusterIPs"]) == (ip, [ip])
    code, applied = call(
        sim,
        "PATCH",
        f"{path}/web",
        {**service, "metadata": {"name": "web"}},
        content_type=APPLY,
        query={"fieldManager": "gitops", "force": "true"},
    )
    assert code == 200, applied
    assert applied["spec"]["clusterIP"] == ip
    manifest = yaml.safe_dump({**service, "metadata": {"name": "web", "namespace": ns}})
    for _ in range(2):
        kubectl("apply", "-f", "-", stdin=manifest)
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest)
    assert call(sim, "GET", f"{path}/web")[1]["spec"]["clusterIP"] == ip


def test_stateful_set_volume_claim_templates_are_forbidden(
    sim: SimHandle, ns: str, kubectl: Kubectl
) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    code, live = call(sim, "POST", path, stateful_set())
    assert code == 201
    storage = "/spec/volumeClaimTemplates/0/spec/resources/requests/storage"
    bigger = stateful_set(storage="2Gi")
    patches = {
        "merge": {"spec": {"volumeClaimTemplates": bigger["spec"]["volumeClaimTemplates"]}},
        "strategic": {"spec": {"volumeClaimTemplates": bigger["spec"]["volumeClaimTemplates"]}},
        "json": [{"op": "replace", "path": storage, "value": "2Gi"}],
    }
    forbidden = (
        "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', "
        "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
        "'minReadySeconds' are forbidden"
    )

    def check(status: Obj) -> None:
        assert status["message"] == f'StatefulSet.apps "db" is invalid: spec: {forbidden}'
        assert status["details"]["causes"] == [
            {"reason": "FieldValueForbidden", "message": forbidden, "field": "spec"}
        ]

    assert_refused(sim, f"{path}/db", live, bigger, patches, check)
    manifest = yaml.safe_dump({**bigger, "metadata": {"name": "db", "namespace": ns}})
    proc = kubectl("apply", "-f", "-", stdin=manifest, check=False)
    assert proc.returncode == 1
    assert f'The StatefulSet "db" is invalid: spec: {forbidden}' in proc.stderr
    # The listed fields stay mutable.
    scaled = yaml.safe_dump(
        {**stateful_set(replicas=3), "metadata": {"name": "db", "namespace": ns}}
    )
    assert "configured" in kubectl("apply", "-f", "-", stdin=scaled).stdout


@pytest.mark.parametrize(
    ("plural", "kind"),
    [("deployments", "Deployment"), ("replicasets", "ReplicaSet"), ("daemonsets", "DaemonSet")],
)
def test_workload_selector_is_immutable(sim: SimHandle, ns: str, plural: str, kind: str) -> None:
    path = f"/apis/apps/v1/namespaces/{ns}/{plural}"
    body = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]},
            },
        },
    }
    code, _ = call(sim, "POST", path, body)
    assert code == 201
    selector = {"matchLabels": {"app": "web", "tier": "front"}}
    code, status = call(sim, "PATCH", f"{path}/web", {"spec": {"selector": selector}},
                        content_type=MERGE)  # fmt: skip
    assert code == 422
    rendered = (
        "&LabelSelector{MatchLabels:map[string]string{app: web,tier: front,},"
        "MatchExpressions:[]LabelSelectorRequirement{},}"
    )
    assert status["message"] == (
        f'{kind}.apps "web" is invalid: spec.selector: Invalid value: {rendered}: '
        "field is immutable"
    )
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "spec.selector",
         "message": f"Invalid value: {rendered}: field is immutable"}
    ]  # fmt: skip
    image = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x:2"}]
    code, _ = call(sim, "PATCH", f"{path}/web", image, content_type=JSON_PATCH)
    assert code == 200


def test_persistent_volume_claim_spec_is_immutable_but_may_grow(sim: SimHandle, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/persistentvolumeclaims"
    body = {"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    code, _ = call(sim, "POST", path, body)
    assert code == 201
    wait_for(lambda: call(sim, "GET", f"{path}/data")[1].get("status", {}).get("phase") == "Bound")
    code, status = call(sim, "PATCH", f"{path}/data", {"spec": {"storageClassName": "fast"}},
                        content_type=MERGE)  # fmt: skip
    assert code == 422
    [cause] = status["details"]["causes"]
    assert cause["field"] == "spec" and cause["reason"] == "FieldValueForbidden"
    assert cause["message"].startswith(
        "Forbidden: spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims\n"
    )
    assert status["message"].startswith('PersistentVolumeClaim "data" is invalid: spec: Forbidden')
    grow = {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}
    code, grown = call(sim, "PATCH", f"{path}/data", grow, content_type=MERGE)
    assert code == 200 and grown["spec"]["resources"]["requests"]["storage"] == "2Gi"
    shrink = {"spec": {"resources": {"requests": {"storage": "1024Mi"}}}}
    code, status = call(sim, "PATCH", f"{path}/data", shrink, content_type=MERGE)
    assert code == 422
    assert status["details"]["causes"] == [
        {"reason": "FieldValueForbidden", "field": "spec.resources.requests.storage",
         "message": "Forbidden: field can not be less than previous value"}
    ]  # fmt: skip


def test_immutable_config_map_and_secret(sim: SimHandle, ns: str) -> None:
    forbidden = "Forbidden: field is immutable when `immutable` is set"
    for plural, kind, body in (
        ("configmaps", "ConfigMap", {"data": {"mode": "fast"}}),
        ("secrets", "Secret", {"stringData": {"token": "s3cret"}}),
    ):
        path = f"/api/v1/namespaces/{ns}/{plural}"
        code, live = call(sim, "POST", path,
                          {"metadata": {"name": "frozen"}, "immutable": True, **body})  # fmt: skip
        assert code == 201, live
        code, status = call(sim, "PATCH", f"{path}/frozen", {"data": {"mode": "c2xvdw=="}},
                            content_type=MERGE, query={"dryRun": "All"})  # fmt: skip
        assert code == 422
        assert status["message"] == f'{kind} "frozen" is invalid: data: {forbidden}'
        assert status["details"]["causes"] == [
            {"reason": "FieldValueForbidden", "message": forbidden, "field": "data"}
        ]
        code, status = call(sim, "PATCH", f"{path}/frozen", {"immutable": False},
                            content_type=MERGE)  # fmt: skip
        assert code == 422
        assert [c["field"] for c in status["details"]["causes"]] == ["immutable"]
        # Metadata stays writable, and the data did not move.
        code, labelled = call(
            sim,
            "PATCH",
            f"{path}/frozen",
            {"metadata": {"labels": {"team": "core"}}},
            content_type=MERGE,
        )
        assert code == 200
        assert labelled.get("data") == live.get("data")
    path = f"/api/v1/namespaces/{ns}/secrets"
    code, _ = call(sim, "POST", path, {"metadata": {"name": "typed"}, "stringData": {"a": "b"}})
    assert code == 201
    code, status = call(sim, "PATCH", f"{path}/typed", {"type": "kubernetes.io/basic-auth"},
                        content_type=MERGE)  # fmt: skip
    assert code == 422
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "field": "type",
         "message": 'Invalid value: "kubernetes.io/basic-auth": field is immutable'}
    ]  # fmt: skip


def test_pod_spec_is_mostly_immutable(sim: SimHandle, ns: str) -> None:
    path = f"/api/v1/namespaces/{ns}/pods"
    body = {"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}}  # fmt: skip
    code, _ = call(sim, "POST", path, body)
    assert code == 201
    code, status = call(sim, "PATCH", f"{path}/p", {"spec": {"hostname": "other"}},
                        content_type=MERGE)  # fmt: skip
    assert code == 422
    [cause] = status["details"]["causes"]
    assert (cause["field"], cause["reason"]) == ("spec", "FieldValueForbidden")
    assert cause["message"].startswith(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
        "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to "
        "be set to 1 if it was previously negative)\n"
    )
    assert '+ \tHostname: "other",' in cause["message"]
    sidecar = {"spec": {"containers": [{"name": "app", "image": "app:1"},
                                       {"name": "sidecar", "image": "envoy"}]}}  # fmt: skip
    code, status = call(sim, "PATCH", f"{path}/p", sidecar, content_type=MERGE)
    assert code == 422
    assert status["details"]["causes"] == [
        {"reason": "FieldValueForbidden", "field": "spec.containers",
         "message": "Forbidden: pod updates may not add or remove containers"}
    ]  # fmt: skip
    image = {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}
    code, patched = call(sim, "PATCH", f"{path}/p", image, content_type=STRATEGIC)
    assert code == 200 and patched["spec"]["containers"][0]["image"] == "app:2"


def test_delete_then_create_replaces_an_immutable_object(
    sim: SimHandle, ns: str, kubectl: Kubectl
) -> None:
    manifest = yaml.safe_dump({**job(), "metadata": {"name": "migrate", "namespace": ns}})
    kubectl("apply", "-f", "-", stdin=manifest)
    changed = manifest.replace("migrate:1", "migrate:2")
    proc = kubectl("apply", "-f", "-", stdin=changed, check=False)
    assert proc.returncode == 1
    assert 'The Job "migrate" is invalid: spec.template: Invalid value: ' in proc.stderr
    assert "field is immutable" in proc.stderr
    old_uid = call(sim, "GET", f"/apis/batch/v1/namespaces/{ns}/jobs/migrate")[1]["metadata"]["uid"]
    kubectl("replace", "--force", "-f", "-", stdin=changed)
    code, replaced = call(sim, "GET", f"/apis/batch/v1/namespaces/{ns}/jobs/migrate")
    assert code == 200
    assert replaced["metadata"]["uid"] != old_uid
    assert replaced["spec"]["template"]["spec"]["containers"][0]["image"] == "migrate:2"
    # The same through the API: DELETE, then POST of the new version.
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    assert call(sim, "POST", path, stateful_set())[0] == 201
    assert call(sim, "DELETE", f"{path}/db")[0] == 200
    code, created = call(sim, "POST", path, stateful_set(storage="5Gi"))
    assert code == 201, created
    claim = created["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
    assert claim["storage"] == "5Gi"
