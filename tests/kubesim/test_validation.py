"""Validation refuses what the real API server refuses, with its field paths and messages."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kubesim.validation import (
    Cause,
    invalid_status,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    validate,
)

Obj = dict[str, Any]

DEPLOYMENT: Obj = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "namespace": "default",
        "labels": {"app": "web", "app.kubernetes.io/part-of": "shop"},
        "annotations": {"reconciler.example.com/source": "git@example.com:shop.git"},
    },
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate"},
        "template": {
            "metadata": {"labels": {"app": "web", "version": "v1"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"}],
                    },
                    {"name": "sidecar", "image": "busybox:1.36"},
                ],
                "restartPolicy": "Always",
            },
        },
    },
}

SERVICE: Obj = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "type": "ClusterIP",
        "selector": {"app": "web"},
        "ports": [
            {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
        ],
    },
}

CONFIGMAP: Obj = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "web-config", "namespace": "default"},
    "data": {"nginx.conf": "events {}", "MODE": "prod", "log_level": "info"},
    "binaryData": {"logo.png": "iVBORw0KGgo="},
}

CRD: Obj = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"], "listKind": "WidgetList"},
        "versions": [
            {"name": "v1", "served": True, "storage": True,
             "schema": {"openAPIV3Schema": {"type": "object"}},
             "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                       "statusReplicasPath": ".status.replicas"}}},
            {"name": "v1beta1", "served": True, "storage": False,
             "schema": {"openAPIV3Schema": {"type": "object"}}},
        ],
    },
}  # fmt: skip

JOB: Obj = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "migrate", "namespace": "default"},
    "spec": {
        "backoffLimit": 2,
        "template": {
            "spec": {
                "containers": [{"name": "migrate", "image": "shop/migrate:1"}],
                "restartPolicy": "Never",
            }
        },
    },
}

# (group, kind, namespaced, object)
VALID = [
    ("apps", "Deployment", True, DEPLOYMENT),
    ("", "Service", True, SERVICE),
    ("", "ConfigMap", True, CONFIGMAP),
    ("apiextensions.k8s.io", "CustomResourceDefinition", False, CRD),
    ("batch", "Job", True, JOB),
    ("", "Namespace", False, {"metadata": {"name": "team-a"}}),
    ("", "Secret", True, {"metadata": {"name": "s", "namespace": "default"},
                          "data": {"password": "aHVudGVyMg=="}, "stringData": {"user": "admin"}}),
    ("rbac.authorization.k8s.io", "ClusterRole", False,
     {"metadata": {"name": "system:reader"},
      "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
    ("rbac.authorization.k8s.io", "RoleBinding", True,
     {"metadata": {"name": "read", "namespace": "default"},
      "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                  "name": "system:reader"},
      "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}),
    ("example.com", "Widget", True, {"metadata": {"name": "w1", "namespace": "default"}}),
    ("apps", "Deployment", True, {**DEPLOYMENT, "metadata": {"generateName": "web-",
                                                            "namespace": "default"}}),
]  # fmt: skip


@pytest.mark.parametrize(("group", "kind", "namespaced", "obj"), VALID)
def test_valid_objects_pass(group: str, kind: str, namespaced: bool, obj: Obj) -> None:
    assert validate(group, kind, obj, namespaced=namespaced) == []


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    """A mutation setting a dotted path (``[n]`` indexes lists); value None deletes."""

    def mutate(obj: Obj) -> None:
        parts: list[str | int] = []
        for part in path.split("."):
            name, _, index = part.partition("[")
            parts.append(name)
            if index:
                parts.append(int(index.rstrip("]")))
        cur: Any = obj
        for key in parts[:-1]:
            cur = cur[key]
        if value is None:
            del cur[parts[-1]]
        else:
            cur[parts[-1]] = value

    return mutate


# (id, base object, group, kind, namespaced, mutation, expected (reason, field) causes)
BROKEN = [
    ("no-name", DEPLOYMENT, _set("metadata.name", None),
     [("FieldValueRequired", "metadata.name")]),
    ("bad-name", DEPLOYMENT, _set("metadata.name", "Bad_Name"),
     [("FieldValueInvalid", "metadata.name")]),
    ("no-namespace", DEPLOYMENT, _set("metadata.namespace", None),
     [("FieldValueRequired", "metadata.namespace")]),
    ("bad-namespace", DEPLOYMENT, _set("metadata.namespace", "a.b"),
     [("FieldValueInvalid", "metadata.namespace")]),
    ("bad-label-key", DEPLOYMENT, _set("metadata.labels", {"bad key": "x"}),
     [("FieldValueInvalid", "metadata.labels")]),
    ("bad-label-value", DEPLOYMENT, _set("metadata.labels", {"app": "x" * 64}),
     [("FieldValueInvalid", "metadata.labels")]),
    ("huge-annotations", DEPLOYMENT, _set("metadata.annotations", {"a": "x" * 262144}),
     [("FieldValueTooLong", "metadata.annotations")]),
    ("bad-generate-name", DEPLOYMENT, _set("metadata.generateName", "Web-"),
     [("FieldValueInvalid", "metadata.generateName")]),
    ("no-selector", DEPLOYMENT, _set("spec.selector", None),
     [("FieldValueRequired", "spec.selector")]),
    ("empty-selector", DEPLOYMENT, _set("spec.selector", {}),
     [("FieldValueInvalid", "spec.selector")]),
    ("selector-mismatch", DEPLOYMENT, _set("spec.selector.matchLabels", {"app": "api"}),
     [("FieldValueInvalid", "spec.template.metadata.labels")]),
    ("bad-selector-op", DEPLOYMENT,
     _set("spec.selector.matchExpressions", [{"key": "app", "operator": "Is"}]),
     [("FieldValueInvalid", "spec.selector.matchExpressions[0].operator"),
      ("FieldValueInvalid", "spec.selector")]),
    ("negative-replicas", DEPLOYMENT, _set("spec.replicas", -1),
     [("FieldValueInvalid", "spec.replicas")]),
    ("no-containers", DEPLOYMENT, _set("spec.template.spec.containers", []),
     [("FieldValueRequired", "spec.template.spec.containers")]),
    ("no-image", DEPLOYMENT, _set("spec.template.spec.containers[0].image", None),
     [("FieldValueRequired", "spec.template.spec.containers[0].image")]),
    ("no-container-name", DEPLOYMENT, _set("spec.template.spec.containers[1].name", None),
     [("FieldValueRequired", "spec.template.spec.containers[1].name")]),
    ("bad-container-name", DEPLOYMENT, _set("spec.template.spec.containers[1].name", "Side_Car"),
     [("FieldValueInvalid", "spec.template.spec.containers[1].name")]),
    ("duplicate-container", DEPLOYMENT, _set("spec.template.spec.containers[1].name", "web"),
     [("FieldValueDuplicate", "spec.template.spec.containers[1].name")]),
    ("port-out-of-range", DEPLOYMENT,
     _set("spec.template.spec.containers[0].ports[0].containerPort", 70000),
     [("FieldValueInvalid", "spec.template.spec.containers[0].ports[0].containerPort")]),
    ("bad-protocol", DEPLOYMENT,
     _set("spec.template.spec.containers[0].ports[0].protocol", "HTTP"),
     [("FieldValueNotSupported", "spec.template.spec.containers[0].ports[0].protocol")]),
    ("restart-never", DEPLOYMENT, _set("spec.template.spec.restartPolicy", "Never"),
     [("FieldValueNotSupported", "spec.template.spec.restartPolicy")]),
    ("bad-strategy", DEPLOYMENT, _set("spec.strategy.type", "BlueGreen"),
     [("FieldValueNotSupported", "spec.strategy.type")]),
    ("svc-digit-name", SERVICE, _set("metadata.name", "1web"),
     [("FieldValueInvalid", "metadata.name")]),
    ("svc-bad-type", SERVICE, _set("spec.type", "Internal"),
     [("FieldValueNotSupported", "spec.type")]),
    ("svc-port-zero", SERVICE, _set("spec.ports[0].port", 0),
     [("FieldValueInvalid", "spec.ports[0].port")]),
    ("svc-port-high", SERVICE, _set("spec.ports[1].port", 65536),
     [("FieldValueInvalid", "spec.ports[1].port")]),
    ("svc-dup-port", SERVICE, _set("spec.ports[1].port", 80),
     [("FieldValueDuplicate", "spec.ports[1]")]),
    ("svc-dup-name", SERVICE, _set("spec.ports[1].name", "http"),
     [("FieldValueDuplicate", "spec.ports[1].name")]),
    ("svc-unnamed", SERVICE, _set("spec.ports[1].name", None),
     [("FieldValueRequired", "spec.ports[1].name")]),
    ("svc-no-ports", SERVICE, _set("spec.ports", []),
     [("FieldValueRequired", "spec.ports")]),
    ("svc-nodeport-on-clusterip", SERVICE, _set("spec.ports[0].nodePort", 30080),
     [("FieldValueForbidden", "spec.ports[0].nodePort")]),
    ("cm-bad-key", CONFIGMAP, _set("data", {"bad/key": "x"}),
     [("FieldValueInvalid", "data[bad/key]")]),
    ("cm-dotdot-key", CONFIGMAP, _set("data", {"..x": "x"}),
     [("FieldValueInvalid", "data[..x]")]),
    ("cm-dup-key", CONFIGMAP, _set("binaryData", {"MODE": "eA=="}),
     [("FieldValueInvalid", "data[MODE]"), ("FieldValueInvalid", "binaryData[MODE]")]),
    ("crd-no-group", CRD, _set("spec.group", None),
     [("FieldValueInvalid", "metadata.name"), ("FieldValueRequired", "spec.group")]),
    ("crd-wrong-name", CRD, _set("metadata.name", "widgets.other.com"),
     [("FieldValueInvalid", "metadata.name")]),
    ("crd-no-plural", CRD, _set("spec.names.plural", None),
     [("FieldValueInvalid", "metadata.name"), ("FieldValueRequired", "spec.names.plural")]),
    ("crd-no-kind", CRD, _set("spec.names.kind", None),
     [("FieldValueRequired", "spec.names.kind")]),
    ("crd-no-names", CRD, _set("spec.names", None),
     [("FieldValueInvalid", "metadata.name"), ("FieldValueRequired", "spec.names.plural"),
      ("FieldValueRequired", "spec.names.singular"), ("FieldValueRequired", "spec.names.kind"),
      ("FieldValueRequired", "spec.names.listKind")]),
    ("crd-bad-scope", CRD, _set("spec.scope", "Global"),
     [("FieldValueNotSupported", "spec.scope")]),
    ("crd-two-storage", CRD, _set("spec.versions[1].storage", True),
     [("FieldValueInvalid", "spec.versions")]),
    ("crd-no-schema", CRD, _set("spec.versions[1].schema", None),
     [("FieldValueRequired", "spec.versions[1].schema.openAPIV3Schema")]),
    ("job-restart-always", JOB, _set("spec.template.spec.restartPolicy", "Always"),
     [("FieldValueNotSupported", "spec.template.spec.restartPolicy")]),
    ("job-restart-default", JOB, _set("spec.template.spec.restartPolicy", None),
     [("FieldValueNotSupported", "spec.template.spec.restartPolicy")]),
]  # fmt: skip

KINDS = {
    id(DEPLOYMENT): ("apps", "Deployment", True),
    id(SERVICE): ("", "Service", True),
    id(CONFIGMAP): ("", "ConfigMap", True),
    id(CRD): ("apiextensions.k8s.io", "CustomResourceDefinition", False),
    id(JOB): ("batch", "Job", True),
}


@pytest.mark.parametrize(
    ("base", "mutate", "expected"),
    [pytest.param(base, mutate, expected, id=name) for name, base, mutate, expected in BROKEN],
)
def test_broken_variants_are_rejected(
    base: Obj, mutate: Callable[[Obj], None], expected: list[tuple[str, str]]
) -> None:
    group, kind, namespaced = KINDS[id(base)]
    obj = copy.deepcopy(base)
    mutate(obj)
    causes = validate(group, kind, obj, namespaced=namespaced)
    assert [(c.reason, c.field) for c in causes] == expected


@pytest.mark.parametrize(
    ("group", "kind", "name", "ok"),
    [
        ("", "Namespace", "team-a", True),
        ("", "Namespace", "team.a", False),
        ("", "ConfigMap", "team.a", True),
        ("", "Service", "a1", True),
        ("", "Service", "1a", False),
        ("rbac.authorization.k8s.io", "ClusterRole", "system:Aggregate_Me", True),
        ("rbac.authorization.k8s.io", "Role", "a/b", False),
        ("rbac.authorization.k8s.io", "Role", "..", False),
        ("example.com", "Widget", "UPPER", False),
    ],
)
def test_name_formats_per_kind(group: str, kind: str, name: str, ok: bool) -> None:
    namespaced = kind not in ("Namespace", "ClusterRole")
    meta: Obj = {"name": name}
    if namespaced:
        meta["namespace"] = "default"
    causes = validate(group, kind, {"metadata": meta}, namespaced=namespaced)
    name_causes = [c for c in causes if c.field == "metadata.name"]
    assert (not name_causes) is ok


def test_messages_are_the_real_servers() -> None:
    obj = copy.deepcopy(CONFIGMAP)
    obj["metadata"]["name"] = "Bad_Name"
    obj["data"] = {"bad key": "x"}
    causes = validate("", "ConfigMap", obj, namespaced=True)
    assert causes[0] == Cause(
        "FieldValueInvalid",
        'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
        "character (e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        "metadata.name",
    )
    assert causes[1].message == (
        'Invalid value: "bad key": a valid config key must consist of alphanumeric '
        "characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex "
        "used for validation is '[-._a-zA-Z0-9]+')"
    )
    dep = copy.deepcopy(DEPLOYMENT)
    dep["spec"]["selector"]["matchLabels"] = {"app": "api"}
    (mismatch,) = validate("apps", "Deployment", dep, namespaced=True)
    assert mismatch.message == (
        'Invalid value: map[string]string{"app":"web", "version":"v1"}: '
        "`selector` does not match template `labels`"
    )
    svc = copy.deepcopy(SERVICE)
    svc["spec"]["type"] = "Internal"
    (unsupported,) = validate("", "Service", svc, namespaced=True)
    assert unsupported.message == (
        'Unsupported value: "Internal": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"'
    )
    assert validate("", "Pod", {"metadata": {"namespace": "d"}, "spec": {"containers": [
        {"name": "a", "image": "x"}]}}, namespaced=True)[0].message == (
        "Required value: name or generateName is required"
    )  # fmt: skip


def test_invalid_status_matches_the_api_server() -> None:
    dep = copy.deepcopy(DEPLOYMENT)
    del dep["spec"]["template"]["spec"]["containers"][0]["image"]
    causes = validate("apps", "Deployment", dep, namespaced=True)
    status = invalid_status("Deployment", "web", causes, group="apps")
    assert status == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Deployment.apps "web" is invalid: '
        "spec.template.spec.containers[0].image: Required value",
        "reason": "Invalid",
        "details": {
            "name": "web",
            "group": "apps",
            "kind": "Deployment",
            "causes": [
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value",
                    "field": "spec.template.spec.containers[0].image",
                }
            ],
        },
        "code": 422,
    }
    two = [Cause("FieldValueRequired", "Required value", "a"), Cause("FieldValueRequired",
           "Required value", "b")]  # fmt: skip
    core = invalid_status("ConfigMap", "cm", two)
    assert core["message"] == 'ConfigMap "cm" is invalid: [a: Required value, b: Required value]'
    assert "group" not in core["details"]


def test_template_image_optional_like_real_server() -> None:
    dep = copy.deepcopy(DEPLOYMENT)
    del dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert validate("apps", "Deployment", dep, namespaced=True, template_image_required=False) == []


@pytest.mark.parametrize(
    ("fn", "value", "ok"),
    [
        (is_dns1123_subdomain, "example.com", True),
        (is_dns1123_subdomain, "Example.com", False),
        (is_dns1123_subdomain, "a" * 254, False),
        (is_dns1123_label, "my-name", True),
        (is_dns1123_label, "my.name", False),
        (is_dns1123_label, "a" * 64, False),
        (is_dns1123_label, "-a", False),
        (is_dns1035_label, "abc-123", True),
        (is_dns1035_label, "123-abc", False),
    ],
)
def test_name_validators(fn: Callable[[str], list[str]], value: str, ok: bool) -> None:
    assert (fn(value) == []) is ok


def test_label_message_says_no_dots() -> None:
    assert is_dns1123_label("my.name") == ["must not contain dots"]
