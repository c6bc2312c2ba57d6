"""The REST API through the official Python client and raw HTTP: semantics and bad input."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from kubesim.runtime import SimHandle


def raw(
    sim: SimHandle, method: str, path: str, body: bytes | None = None,
    content_type: str = "application/json", cluster: str = "sim-1",
) -> tuple[int, Any]:  # fmt: skip
    request = urllib.request.Request(
        sim.cluster_url(cluster) + path, data=body, method=method,
        headers={"Content-Type": content_type},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    name = f"py-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def cm(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}  # fmt: skip


def test_typed_client_crud_and_metadata(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_config_map(ns, cm("a"))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.resource_version
    got = core.read_namespaced_config_map("a", ns)
    assert got.data == {"k": "v"}
    patched = core.patch_namespaced_config_map("a", ns, {"data": {"k": "w"}})
    assert int(patched.metadata.resource_version) > int(meta.resource_version)
    core.delete_namespaced_config_map("a", ns)
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("a", ns)
    assert err.value.status == 404
    assert json.loads(err.value.body)["reason"] == "NotFound"


def test_resource_versions_are_monotonic_per_cluster(core: client.CoreV1Api, ns: str) -> None:
    versions = [int(core.create_namespaced_config_map(ns, cm(f"m{i}")).metadata.resource_version)
                for i in range(5)]  # fmt: skip
    assert versions == sorted(versions)
    assert len(set(versions)) == 5


def test_generate_name(core: client.CoreV1Api, ns: str) -> None:
    body = {"metadata": {"generateName": "job-"}, "data": {}}
    first = core.create_namespaced_config_map(ns, body).metadata.name
    second = core.create_namespaced_config_map(ns, body).metadata.name
    assert first.startswith("job-") and second.startswith("job-") and first != second


def test_stale_update_conflicts(core: client.CoreV1Api, ns: str) -> None:
    obj = core.create_namespaced_config_map(ns, cm("a"))
    core.patch_namespaced_config_map("a", ns, {"data": {"k": "new"}})
    obj.data = {"k": "stale"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("a", ns, obj)
    assert err.value.status == 409
    assert core.read_namespaced_config_map("a", ns).data == {"k": "new"}


def test_generation_moves_only_with_spec(api_client: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api_client)
    body = {
        "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "x:1"}]}}},
    }  # fmt: skip
    assert apps.create_namespaced_deployment(ns, body).metadata.generation == 1
    assert apps.patch_namespaced_deployment("d", ns, {"metadata": {"labels": {"x": "y"}}}
                                            ).metadata.generation == 1  # fmt: skip
    assert apps.patch_namespaced_deployment("d", ns, {"spec": {"replicas": 3}}
                                            ).metadata.generation == 2  # fmt: skip


def test_list_selectors_and_paging(core: client.CoreV1Api, ns: str) -> None:
    for i in range(7):
        core.create_namespaced_config_map(ns, cm(f"c{i}", parity="even" if i % 2 == 0 else "odd"))
    even = core.list_namespaced_config_map(ns, label_selector="parity=even")
    assert [i.metadata.name for i in even.items] == ["c0", "c2", "c4", "c6"]
    assert even.metadata.resource_version
    some = core.list_namespaced_config_map(ns, label_selector="parity in (odd),parity!=even")
    assert [i.metadata.name for i in some.items] == ["c1", "c3", "c5"]
    named = core.list_namespaced_config_map(ns, field_selector="metadata.name=c3")
    assert [i.metadata.name for i in named.items] == ["c3"]
    names: list[str] = []
    token = None
    while True:
        page = core.list_namespaced_config_map(ns, label_selector="parity", limit=3,
                                               _continue=token)  # fmt: skip
        names += [i.metadata.name for i in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"c{i}" for i in range(7)]


def test_bad_selector_is_400(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map(ns, label_selector="a in (b")
    assert err.value.status == 400
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map(ns, field_selector="spec.foo=1")
    assert err.value.status == 400


def test_finalizers_defer_deletion(core: client.CoreV1Api, ns: str) -> None:
    body = cm("f")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_config_map(ns, body)
    core.delete_namespaced_config_map("f", ns)
    held = core.read_namespaced_config_map("f", ns)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("f", ns)
    assert err.value.status == 404


def test_owner_references_cascade(core: client.CoreV1Api, ns: str) -> None:
    owner = core.create_namespaced_config_map(ns, cm("owner"))
    dependent = cm("dep")
    dependent["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    core.create_namespaced_config_map(ns, dependent)
    core.delete_namespaced_config_map("owner", ns)
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dep", ns)


def test_namespaced_object_needs_namespace(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("no-such-ns", cm("a"))
    assert err.value.status == 404


def test_invalid_object_is_422_with_causes(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, cm("Bad_Name"))
    status = json.loads(err.value.body)
    assert err.value.status == 422
    assert status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"


def test_dynamic_client_server_side_apply(dyn: DynamicClient, ns: str) -> None:
    api = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = cm("ssa")
    body["metadata"]["namespace"] = ns
    created = api.server_side_apply(body=body, name="ssa", namespace=ns, field_manager="t")
    assert created.data.k == "v"
    entry = created.metadata.managedFields[0]
    assert entry.manager == "t" and entry.operation == "Apply"
    again = api.server_side_apply(body=body, name="ssa", namespace=ns, field_manager="t")
    assert again.metadata.resourceVersion == created.metadata.resourceVersion


def test_service_gets_cluster_ip_and_defaults(core: client.CoreV1Api, ns: str) -> None:
    svc = core.create_namespaced_service(ns, {"metadata": {"name": "s"},
                                              "spec": {"ports": [{"port": 80}]}})  # fmt: skip
    assert svc.spec.cluster_ip
    assert svc.spec.ports[0].protocol == "TCP"
    assert svc.spec.type == "ClusterIP"


def test_watch_streams_changes(core: client.CoreV1Api, ns: str) -> None:
    start = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, cm("w1"))
    core.patch_namespaced_config_map("w1", ns, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("w1", ns)
    seen = []
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_config_map, ns, resource_version=start,
                               timeout_seconds=5):  # fmt: skip
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            stream.stop()
    assert seen == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_watch_sees_live_events(core: client.CoreV1Api, ns: str) -> None:
    seen: list[str] = []
    stream = watch.Watch()

    def later() -> None:
        core.create_namespaced_config_map(ns, cm("live"))

    timer = threading.Timer(0.3, later)
    timer.start()
    for event in stream.stream(core.list_namespaced_config_map, ns, timeout_seconds=10):
        seen.append(event["type"])
        stream.stop()
    timer.join()
    assert seen == ["ADDED"]


def test_malformed_bodies_and_unknown_paths(
    sim: SimHandle, core: client.CoreV1Api, ns: str
) -> None:
    path = f"/api/v1/namespaces/{ns}/configmaps"
    assert raw(sim, "POST", path, b"{not json")[0] == 400
    assert raw(sim, "POST", path, b"kind: [", "application/yaml")[0] == 400
    assert raw(sim, "POST", path, b"<xml/>", "application/xml")[0] == 415
    assert raw(sim, "GET", "/api/v1/widgets")[0] == 404
    assert raw(sim, "GET", "/apis/nope.example.com/v1")[0] == 404
    big = json.dumps({"metadata": {"name": "big"}, "data": {"k": "x" * (4 * 1024 * 1024)}})
    code, body = raw(sim, "POST", path, big.encode())
    assert code == 413
    assert body["reason"] == "RequestEntityTooLarge"
    code, _ = raw(sim, "PATCH", f"{path}/none", b"{}", "text/plain")
    assert code in (404, 415)
    # Nothing of the failed requests was stored.
    assert core.list_namespaced_config_map(ns).items == [] or all(
        i.metadata.name == "kube-root-ca.crt" for i in core.list_namespaced_config_map(ns).items
    )


def test_discovery_documents(sim: SimHandle) -> None:
    code, version = raw(sim, "GET", "/version")
    assert code == 200 and version["major"] == "1"
    code, groups = raw(sim, "GET", "/apis")
    names = {g["name"] for g in groups["groups"]}
    assert {"apps", "batch", "networking.k8s.io", "rbac.authorization.k8s.io"} <= names
    code, apps = raw(sim, "GET", "/apis/apps/v1")
    deploy = next(r for r in apps["resources"] if r["name"] == "deployments")
    assert deploy["namespaced"] and "deploy" in deploy["shortNames"]
    assert any(r["name"] == "deployments/scale" for r in apps["resources"])


def test_faults_errors_latency_and_down(sim: SimHandle, kubeconfig: str) -> None:
    api = config.new_client_from_config(config_file=kubeconfig, context="sim-3")
    core = client.CoreV1Api(api)
    try:
        sim.set_faults("sim-3", errorRate=1.0, errorCode=503)
        with pytest.raises(ApiException) as err:
            core.list_namespace()
        assert err.value.status == 503
        sim.set_faults("sim-3", errorRate=0.0, down=True)
        with pytest.raises((urllib3.exceptions.HTTPError, OSError)):
            core.list_namespace(_request_timeout=5)
        sim.set_faults("sim-3", down=False)
        assert core.list_namespace().items
        counts = sim.requests("sim-3")
        assert counts[("list", "namespaces")] >= 1
        assert counts[("error", "503")] >= 1
    finally:
        sim.set_faults("sim-3", errorRate=0.0, down=False, latency=0.0)
        api.close()


def test_status_subresource_is_separate_from_the_main_resource(
    api_client: client.ApiClient, ns: str
) -> None:
    apps = client.AppsV1Api(api_client)
    body = {
        "metadata": {"name": "s"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "x:1"}]}}},
        "status": {"replicas": 99},
    }  # fmt: skip
    created = apps.create_namespaced_deployment(ns, body)
    assert created.status is None or created.status.replicas != 99  # reset on create
    apps.patch_namespaced_deployment_status("s", ns, {"status": {"replicas": 7}})
    # A main-resource write cannot change status; a status write cannot change spec.
    apps.patch_namespaced_deployment("s", ns, {"spec": {"replicas": 2}, "status": {"replicas": 1}})
    apps.patch_namespaced_deployment_status("s", ns, {"spec": {"replicas": 5}})
    live = apps.read_namespaced_deployment("s", ns)
    assert live.spec.replicas == 2
    assert live.status.replicas in (7, 2)  # 2 once the simulated controller reported


def test_update_dry_run_and_orphan_propagation(core: client.CoreV1Api, ns: str) -> None:
    owner = core.create_namespaced_config_map(ns, cm("owner"))
    dependent = cm("dep")
    dependent["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    ]
    core.create_namespaced_config_map(ns, dependent)
    changed = core.read_namespaced_config_map("dep", ns)
    changed.data = {"k": "dry"}
    result = core.replace_namespaced_config_map("dep", ns, changed, dry_run="All")
    assert result.data == {"k": "dry"}
    assert core.read_namespaced_config_map("dep", ns).data == {"k": "v"}
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Orphan")
    orphan = core.read_namespaced_config_map("dep", ns)
    assert not orphan.metadata.owner_references


def test_request_log_records_each_request(sim: SimHandle, core: client.CoreV1Api, ns: str) -> None:
    sim.reset_requests("sim-1")
    core.create_namespaced_config_map(ns, cm("logged"))
    core.read_namespaced_config_map("logged", ns)
    entries = sim.request_log("sim-1")
    assert [(e["method"], e["status"]) for e in entries] == [("POST", 201), ("GET", 200)]
    assert all(e["end"] >= e["start"] for e in entries)
    assert entries[1]["path"].endswith(f"/namespaces/{ns}/configmaps/logged")
