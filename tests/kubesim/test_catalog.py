"""The catalog advertises what a real 1.31 server does, and CRDs change it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubesim.catalog import ALL_VERBS, Catalog, Scope, version_priority_key

NO_DC = [v for v in ALL_VERBS if v != "deletecollection"]


def widget_crd(
    *,
    group: str = "example.com",
    plural: str = "widgets",
    kind: str = "Widget",
    versions: tuple[str, ...] = ("v1",),
    scope: str = "Namespaced",
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": ["wd"],
                "categories": ["all"],
            },
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": i == 0,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                }
                for i, v in enumerate(versions)
            ],
        },
    }


def entry(catalog: Catalog, group: str, version: str, name: str) -> dict[str, Any]:
    doc = catalog.resource_list(group, version)
    assert doc is not None
    found = [r for r in doc["resources"] if r["name"] == name]
    assert len(found) == 1, name
    result: dict[str, Any] = found[0]
    return result


# (group, version, resource, kind, namespaced, shortNames, categories, verbs)
DISCOVERY_CASES = [
    ("apps", "v1", "deployments", "Deployment", True, ["deploy"], ["all"], list(ALL_VERBS)),
    ("", "v1", "configmaps", "ConfigMap", True, ["cm"], None, list(ALL_VERBS)),
    ("", "v1", "services", "Service", True, ["svc"], ["all"], list(ALL_VERBS)),
    ("", "v1", "namespaces", "Namespace", False, ["ns"], None, NO_DC),
    ("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], ["all"], list(ALL_VERBS)),
    ("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ["all"], list(ALL_VERBS)),
    ("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["all"], list(ALL_VERBS)),
    ("batch", "v1", "cronjobs", "CronJob", True, ["cj"], ["all"], list(ALL_VERBS)),
    ("batch", "v1", "jobs", "Job", True, None, ["all"], list(ALL_VERBS)),
    ("networking.k8s.io", "v1", "ingresses", "Ingress", True, ["ing"], None, list(ALL_VERBS)),
    ("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ["netpol"], None,
     list(ALL_VERBS)),
    ("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"], None,
     list(ALL_VERBS)),
    ("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ["hpa"],
     ["all"], list(ALL_VERBS)),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition",
     False, ["crd", "crds"], ["api-extensions"], list(ALL_VERBS)),
    ("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"], None, list(ALL_VERBS)),
    ("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"], None,
     list(ALL_VERBS)),
    ("", "v1", "pods", "Pod", True, ["po"], ["all"], list(ALL_VERBS)),
    ("", "v1", "secrets", "Secret", True, None, None, list(ALL_VERBS)),
    ("", "v1", "nodes", "Node", False, ["no"], None, list(ALL_VERBS)),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, None, None,
     list(ALL_VERBS)),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, None, None,
     list(ALL_VERBS)),
    ("coordination.k8s.io", "v1", "leases", "Lease", True, None, None, list(ALL_VERBS)),
    ("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ["sc"], None,
     list(ALL_VERBS)),
]  # fmt: skip


@pytest.mark.parametrize("case", DISCOVERY_CASES, ids=lambda c: f"{c[0]}/{c[2]}")
def test_discovery_entry_matches_real_server(case: tuple[Any, ...]) -> None:
    group, version, name, kind, namespaced, short, categories, verbs = case
    e = entry(Catalog(), group, version, name)
    assert e["kind"] == kind
    assert e["namespaced"] is namespaced
    assert e.get("shortNames") == short
    assert e.get("categories") == categories
    assert e["verbs"] == verbs
    assert e["singularName"] == kind.lower()
    assert "group" not in e and "version" not in e


@pytest.mark.parametrize(
    ("group", "name", "status", "scale"),
    [
        ("apps", "deployments", True, True),
        ("apps", "statefulsets", True, True),
        ("apps", "replicasets", True, True),
        ("apps", "daemonsets", True, False),
        ("batch", "jobs", True, False),
        ("", "configmaps", False, False),
        ("", "pods", True, False),
        ("apiextensions.k8s.io", "customresourcedefinitions", True, False),
    ],
)
def test_subresource_entries(group: str, name: str, status: bool, scale: bool) -> None:
    catalog = Catalog()
    version = catalog.preferred_version(group) if group else "v1"
    assert version is not None
    doc = catalog.resource_list(group, version)
    assert doc is not None
    names = [r["name"] for r in doc["resources"]]
    assert (f"{name}/status" in names) is status
    assert (f"{name}/scale" in names) is scale
    if scale:
        e = entry(catalog, group, version, f"{name}/scale")
        assert (e["group"], e["version"], e["kind"]) == ("autoscaling", "v1", "Scale")
        assert e["verbs"] == ["get", "patch", "update"]
    if status:
        e = entry(catalog, group, version, f"{name}/status")
        assert e["kind"] == entry(catalog, group, version, name)["kind"]
        assert e["verbs"] == ["get", "patch", "update"]
        assert e["singularName"] == ""


def test_resource_list_shapes() -> None:
    catalog = Catalog()
    core = catalog.resource_list("", "v1")
    apps = catalog.resource_list("apps", "v1")
    assert core is not None and apps is not None
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    assert "apiVersion" not in core
    assert apps["apiVersion"] == "v1" and apps["groupVersion"] == "apps/v1"
    names = [r["name"] for r in apps["resources"]]
    assert names == sorted(names)
    assert catalog.resource_list("apps", "v2") is None
    assert catalog.resource_list("nope.example.com", "v1") is None
    assert catalog.api_group("nope.example.com") is None


def test_version_and_core_documents() -> None:
    catalog = Catalog(kubernetes_version="1.31.2")
    info = catalog.version_info()
    assert info["gitVersion"] == "v1.31.2-kubesim"
    assert (info["major"], info["minor"]) == ("1", "31")
    for key in ("platform", "goVersion", "compiler", "buildDate", "gitCommit", "gitTreeState"):
        assert info[key]
    api = catalog.core_api_versions("10.0.0.1:443")
    assert api == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:443"}
        ],
    }


def test_group_list_has_preferred_versions() -> None:
    doc = Catalog().api_group_list()
    assert doc["kind"] == "APIGroupList" and doc["apiVersion"] == "v1"
    groups = {g["name"]: g for g in doc["groups"]}
    assert "" not in groups
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert groups["autoscaling"]["preferredVersion"]["version"] == "v2"
    assert doc["groups"][0]["name"] == "apps"


def test_lookups() -> None:
    catalog = Catalog()
    rt = catalog.get("apps", "v1", "deployments")
    assert rt is not None
    assert rt.api_version == "apps/v1" and rt.list_kind == "DeploymentList"
    assert rt.group_kind == "Deployment.apps"
    assert rt.scale_spec_replicas_path == ".spec.replicas"
    assert catalog.by_group_kind("apps", "Deployment") is rt
    assert catalog.by_gvk("apps", "v1", "Deployment") is rt
    assert catalog.by_api_version_kind("apps/v1", "Deployment") is rt
    pod = catalog.by_api_version_kind("v1", "Pod")
    assert pod is not None and pod.api_version == "v1"
    assert "scale" in rt.subresources and "status" in rt.subresources
    assert catalog.get("apps", "v1", "widgets") is None
    assert catalog.by_group_kind("", "Deployment") is None


def test_crd_add_changes_discovery() -> None:
    catalog = Catalog()
    before = [g["name"] for g in catalog.api_group_list()["groups"]]
    types = catalog.add_crd(widget_crd(versions=("v1", "v1beta1")))
    assert {t.version for t in types} == {"v1", "v1beta1"}
    groups = {g["name"]: g for g in catalog.api_group_list()["groups"]}
    assert "example.com" in groups and "example.com" not in before
    assert [g["name"] for g in catalog.api_group_list()["groups"]][-1] == "example.com"
    assert groups["example.com"]["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in groups["example.com"]["versions"]] == ["v1", "v1beta1"]
    assert catalog.preferred_version("example.com") == "v1"
    e = entry(catalog, "example.com", "v1", "widgets")
    assert e["kind"] == "Widget" and e["namespaced"] is True
    assert e["shortNames"] == ["wd"] and e["categories"] == ["all"]
    assert e["verbs"] == [
        "delete", "deletecollection", "get", "list", "patch", "create", "update", "watch",
    ]  # fmt: skip
    scale = entry(catalog, "example.com", "v1", "widgets/scale")
    assert scale["kind"] == "Scale"
    rt = catalog.get("example.com", "v1", "widgets")
    assert rt is not None and rt.scale_label_selector_path == ".status.selector"
    assert rt.crd_name == "widgets.example.com" and not rt.builtin
    assert catalog.api_group("example.com") is not None
    assert "apis/example.com/v1" in catalog.openapi_v3_root()["paths"]


def test_crd_remove_changes_discovery() -> None:
    catalog = Catalog()
    crd = widget_crd()
    catalog.add_crd(crd)
    removed = catalog.remove_crd(crd)
    assert [t.plural for t in removed] == ["widgets"]
    assert "example.com" not in [g["name"] for g in catalog.api_group_list()["groups"]]
    assert catalog.resource_list("example.com", "v1") is None
    assert catalog.get("example.com", "v1", "widgets") is None
    assert catalog.by_group_kind("example.com", "Widget") is None
    assert "apis/example.com/v1" not in catalog.openapi_v3_root()["paths"]


def test_crd_update_replaces_versions_and_scope() -> None:
    catalog = Catalog()
    catalog.add_crd(widget_crd(versions=("v1alpha1",)))
    catalog.add_crd(widget_crd(versions=("v1",), scope="Cluster"))
    assert catalog.versions("example.com") == ["v1"]
    rt = catalog.get("example.com", "v1", "widgets")
    assert rt is not None and rt.scope is Scope.CLUSTER
    assert catalog.get("example.com", "v1alpha1", "widgets") is None


def test_unserved_versions_are_not_listed() -> None:
    crd = widget_crd(versions=("v1", "v2"))
    crd["spec"]["versions"][1]["served"] = False
    catalog = Catalog()
    catalog.add_crd(crd)
    assert catalog.versions("example.com") == ["v1"]


@pytest.mark.parametrize(
    "crd",
    [
        widget_crd(group="apps", plural="deployments", kind="Deployment"),
        widget_crd(group="apps", plural="gizmos", kind="Gizmo"),
        widget_crd(group="batch"),
    ],
)
def test_crd_colliding_with_builtin_is_refused(crd: dict[str, Any]) -> None:
    catalog = Catalog()
    before = catalog.api_group_list()
    with pytest.raises(ValueError):
        catalog.add_crd(crd)
    assert catalog.api_group_list() == before


def test_crd_colliding_with_other_crd_is_refused() -> None:
    catalog = Catalog()
    catalog.add_crd(widget_crd())
    other = widget_crd()
    other["metadata"]["name"] = "other.example.com"
    with pytest.raises(ValueError):
        catalog.add_crd(other)


def test_version_priority() -> None:
    versions = ["v1beta1", "foo", "v1", "v2alpha1", "v2", "v1alpha1", "v1beta2", "bar"]
    assert sorted(versions, key=version_priority_key) == [
        "v2", "v1", "v1beta2", "v1beta1", "v2alpha1", "v1alpha1", "bar", "foo",
    ]  # fmt: skip


def _patch_ops(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [item["patch"] for item in doc["paths"].values() if "patch" in item]


def _supports_field_validation(doc: dict[str, Any], group: str, version: str, kind: str) -> bool:
    """The decision of kubectl's supportsQueryParamV3, in Python."""
    for op in _patch_ops(doc):
        gvk = op.get("x-kubernetes-group-version-kind") or {}
        if (gvk.get("group"), gvk.get("version"), gvk.get("kind")) != (group, version, kind):
            continue
        return any(p.get("name") == "fieldValidation" for p in op.get("parameters", []))
    return False


def test_openapi_documents_let_kubectl_detect_field_validation() -> None:
    catalog = Catalog()
    catalog.add_crd(widget_crd())
    root = catalog.openapi_v3_root()
    assert set(root["paths"]) == {
        ("api/" if g == "" else f"apis/{g}/") + v for g, v in catalog.group_versions()
    }
    for group, version in catalog.group_versions():
        path = f"api/{version}" if group == "" else f"apis/{group}/{version}"
        url = root["paths"][path]["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{path}?hash=")
        doc = catalog.openapi_v3_group(group, version)
        assert doc is not None and doc["openapi"].startswith("3.")
        for rt in catalog.resources(group, version):
            assert _supports_field_validation(doc, group, version, rt.kind), rt
            schema = doc["components"]["schemas"][catalog.schema_name(rt)]
            assert schema["type"] == "object"
            assert schema["x-kubernetes-group-version-kind"] == [
                {"group": group, "kind": rt.kind, "version": version}
            ]
        for op in _patch_ops(doc):
            # no strategic merge patch: kubectl must fall back to its compiled-in types
            assert "application/strategic-merge-patch+json" not in op["requestBody"]["content"]
    assert catalog.openapi_v3_group("apps", "v9") is None
    assert catalog.schema_name(catalog.get("apps", "v1", "deployments")) == (  # type: ignore[arg-type]
        "io.k8s.api.apps.v1.Deployment"
    )


def test_openapi_hash_is_stable_and_changes_with_crds() -> None:
    catalog = Catalog()
    first = catalog.openapi_v3_root()
    assert Catalog().openapi_v3_root() == first
    crd = widget_crd()
    catalog.add_crd(crd)
    with_crd = catalog.openapi_v3_root()
    assert with_crd["paths"]["apis/apps/v1"] == first["paths"]["apis/apps/v1"]
    changed = copy.deepcopy(crd)
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] = "new"
    catalog.add_crd(changed)
    after = catalog.openapi_v3_root()
    assert after["paths"]["apis/example.com/v1"] != with_crd["paths"]["apis/example.com/v1"]
    catalog.remove_crd(changed)
    assert catalog.openapi_v3_root() == first
