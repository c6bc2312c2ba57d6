"""JSON patch, JSON merge patch and strategic merge patch as the real API server applies them."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesim.patch import PatchError, json_patch, merge_patch, strategic_merge_patch
from kubesim.schema import list_type


def _deployment(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 1,
            **spec,
            "template": {"spec": {"containers": list(containers)}},
        },
    }


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return containers


WEB = {
    "name": "web",
    "image": "nginx:1",
    "args": ["-a", "-b"],
    "env": [{"name": "A", "value": "1"}],
}
SIDECAR = {"name": "sidecar", "image": "envoy:1"}


# -- JSON patch ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([{"op": "replace", "path": "/spec/replicas", "value": 3}], {"replicas": 3}),
        ([{"op": "add", "path": "/spec/paused", "value": True}], {"replicas": 1, "paused": True}),
        ([{"op": "remove", "path": "/spec/replicas"}], {}),
        (
            [
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 2},
            ],
            {"replicas": 2},
        ),
    ],
)
def test_json_patch_applies(ops: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    obj = {"spec": {"replicas": 1}}
    assert json_patch(obj, ops)["spec"] == expected
    assert obj == {"spec": {"replicas": 1}}


@pytest.mark.parametrize(
    ("ops", "status", "message"),
    [
        ([{"op": "test", "path": "/spec/replicas", "value": 9}], 422, "testing value"),
        ([{"op": "remove", "path": "/spec/nothing"}], 422, "nonexistent"),
        ([{"op": "replace", "path": "/spec/nothing/deeper", "value": 1}], 422, "missing"),
        ([{"op": "frobnicate", "path": "/spec"}], 400, ""),
        ([{"op": "add", "path": "/spec/x"}], 400, ""),
        ({"op": "add"}, 400, "cannot unmarshal"),
        (["not an op"], 400, "cannot unmarshal"),
        ([{"op": "replace", "path": "", "value": 5}], 422, "cannot unmarshal"),
    ],
)
def test_json_patch_errors(ops: Any, status: int, message: str) -> None:
    with pytest.raises(PatchError) as info:
        json_patch({"spec": {"replicas": 1}}, ops)
    assert info.value.status_code == status
    assert message in str(info.value)


def test_json_patch_does_not_alias_patch_values() -> None:
    value = {"a": [1]}
    result = json_patch({}, [{"op": "add", "path": "/x", "value": value}])
    result["x"]["a"].append(2)
    assert value == {"a": [1]}


# -- JSON merge patch ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "patch", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": None}, {"b": 2}),
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": None, "d": 3}}, {"a": {"b": 1, "d": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"b": {"c": None, "d": {"e": 1}}}, {"a": 1, "b": {"d": {"e": 1}}}),
        ({"a": {"b": 1}}, {"a": 5}, {"a": 5}),
        ({"a": 5}, {"a": {"b": 1}}, {"a": {"b": 1}}),
        ({"a": 1}, {"missing": None}, {"a": 1}),
    ],
)
def test_merge_patch(obj: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(obj)
    assert merge_patch(obj, patch) == expected
    assert obj == before


@pytest.mark.parametrize("patch", [[1], "x", None, 3])
def test_merge_patch_must_be_an_object(patch: Any) -> None:
    with pytest.raises(PatchError) as info:
        merge_patch({}, patch)
    assert info.value.status_code == 400


# -- strategic merge patch ---------------------------------------------------------------


def _smp(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return strategic_merge_patch(obj, patch, group="apps", kind="Deployment")


def _tpl(*containers: Any, **extra: Any) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": list(containers), **extra}}}}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        pytest.param(
            _tpl({"name": "web", "image": "nginx:2"}),
            [{**WEB, "image": "nginx:2"}, SIDECAR],
            id="merge-by-name-keeps-others",
        ),
        pytest.param(
            _tpl({"name": "new", "image": "busybox"}),
            [WEB, SIDECAR, {"name": "new", "image": "busybox"}],
            id="unknown-key-appended",
        ),
        pytest.param(_tpl({"name": "sidecar", "$patch": "delete"}), [WEB], id="patch-delete-item"),
        pytest.param(
            _tpl({"name": "web", "args": ["-c"]}),
            [{**WEB, "args": ["-c"]}, SIDECAR],
            id="atomic-args-replaced",
        ),
        pytest.param(
            _tpl({"name": "web", "env": [{"name": "B", "value": "2"}]}),
            [{**WEB, "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}, SIDECAR],
            id="env-merged-by-name",
        ),
        pytest.param(
            _tpl({"name": "web", "image": None}),
            [{k: v for k, v in WEB.items() if k != "image"}, SIDECAR],
            id="null-deletes-field",
        ),
        pytest.param(
            _tpl({"name": "solo", "image": "x"}, **{"$patch": "replace"}),
            [{"name": "solo", "image": "x"}],
            id="patch-replace-map",
        ),
        pytest.param(
            _tpl({"$patch": "replace"}, {"name": "solo", "image": "x"}),
            [{"name": "solo", "image": "x"}],
            id="patch-replace-list",
        ),
        pytest.param(
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
                            "containers": [{"name": "web", "image": "nginx:3"}],
                        }
                    }
                }
            },
            [SIDECAR, {**WEB, "image": "nginx:3"}],
            id="set-element-order",
        ),
        pytest.param(
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "new"}, {"name": "web"}],
                            "containers": [{"name": "new", "image": "n"}],
                        }
                    }
                }
            },
            [{"name": "new", "image": "n"}, WEB, SIDECAR],
            id="set-element-order-new-item-first",
        ),
        pytest.param(
            _tpl({"name": "web", "$patch": "merge", "image": "m"}),
            [{**WEB, "image": "m"}, SIDECAR],
            id="patch-merge-is-the-default",
        ),
    ],
)
def test_strategic_merge_patch_containers(
    patch: dict[str, Any], expected: list[dict[str, Any]]
) -> None:
    obj = _deployment(WEB, SIDECAR)
    before = copy.deepcopy(obj)
    result = _smp(obj, patch)
    assert _containers(result) == expected
    assert obj == before
    assert result["metadata"] == before["metadata"]


@pytest.mark.parametrize(
    ("obj", "patch", "expected"),
    [
        pytest.param(
            {"metadata": {"finalizers": ["a", "b"]}},
            {"metadata": {"finalizers": ["c", "a"]}},
            {"metadata": {"finalizers": ["a", "b", "c"]}},
            id="finalizers-merge-as-set",
        ),
        pytest.param(
            {"metadata": {"finalizers": ["b", "a", "c"]}},
            {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
            {"metadata": {"finalizers": ["a", "c"]}},
            id="delete-from-primitive-list",
        ),
        pytest.param(
            {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
            {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
            {"spec": {"strategy": {"type": "Recreate"}}},
            id="retain-keys",
        ),
        pytest.param(
            {"spec": {"template": {"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}}},
            {"spec": {"template": {"spec": {"tolerations": [{"key": "c"}]}}}},
            {"spec": {"template": {"spec": {"tolerations": [{"key": "c"}]}}}},
            id="atomic-tolerations",
        ),
        pytest.param(
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {"name": "w", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
                            ]
                        }
                    }
                }
            },
            {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "w", "ports": [{"containerPort": 443}]}]}
                    }
                }
            },
            {
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "w",
                                    "ports": [
                                        {"containerPort": 80, "protocol": "TCP"},
                                        {"containerPort": 443},
                                    ],
                                }
                            ]
                        }
                    }
                }
            },
            id="ports-merge-by-container-port",
        ),
        pytest.param(
            {"spec": {"selector": {"matchLabels": {"a": "1"}}}},
            {"spec": {"selector": {"$patch": "delete"}}},
            {"spec": {"selector": {}}},
            id="patch-delete-map",
        ),
    ],
)
def test_strategic_merge_patch_directives(
    obj: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert _smp(obj, patch) == expected


def test_strategic_merge_patch_of_custom_resources_replaces_lists() -> None:
    obj = {"spec": {"items": [{"name": "a"}, {"name": "b"}], "m": {"x": 1}}}
    patch = {"spec": {"items": [{"name": "c"}], "m": {"y": 2}}}
    result = strategic_merge_patch(obj, patch, group="example.com", kind="Widget")
    assert result == {"spec": {"items": [{"name": "c"}], "m": {"x": 1, "y": 2}}}


@pytest.mark.parametrize(
    ("patch", "status"),
    [
        (_tpl({"image": "no-name"}), 422),
        (_tpl({"name": "web", "$patch": "explode"}), 400),
        ({"spec": {"$patch": "explode"}}, 400),
        (_tpl({"$patch": "delete", "image": "x"}), 422),
        ({"metadata": {"$retainKeys": "labels"}}, 400),
        ({"metadata": {"$retainKeys": ["name"], "labels": {}}}, 400),
        ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, 400),
        ({"spec": {"template": {"spec": {"$setElementOrder/containers": 5}}}}, 400),
        (
            {
                "spec": {
                    "template": {
                        "spec": {
                            "$setElementOrder/containers": [{"name": "web"}],
                            "containers": [{"name": "other", "image": "x"}],
                        }
                    }
                }
            },
            422,
        ),
        (_tpl([1, 2]), 422),
        ([], 400),
    ],
)
def test_strategic_merge_patch_errors(patch: Any, status: int) -> None:
    with pytest.raises(PatchError) as info:
        _smp(_deployment(WEB, SIDECAR), patch)
    assert info.value.status_code == status


_CONTAINERS = ("spec", "template", "spec", "containers")
_CRONJOB_POD = ("spec", "jobTemplate", "spec", "template", "spec")


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (("apps", "Deployment", _CONTAINERS), ("map", ("name",), "name")),
        (
            ("", "Pod", ("spec", "containers", "ports")),
            ("map", ("containerPort", "protocol"), "containerPort"),
        ),
        (("batch", "CronJob", (*_CRONJOB_POD, "volumes")), ("map", ("name",), "name")),
        (("", "Service", ("spec", "ports")), ("map", ("port", "protocol"), "port")),
        (("", "ConfigMap", ("metadata", "finalizers")), ("set", (), "")),
        (("example.com", "Widget", ("metadata", "ownerReferences")), ("map", ("uid",), "uid")),
        (("apps", "StatefulSet", ("spec", "volumeClaimTemplates")), ("atomic", (), "")),
        (("apps", "Deployment", ("spec", "template", "spec", "tolerations")), ("atomic", (), "")),
        (("apps", "Deployment", (*_CONTAINERS, "args")), ("atomic", (), "")),
        (("example.com", "Widget", ("spec", "items")), ("atomic", (), "")),
        (
            ("apps", "DaemonSet", ("spec", "template", "spec", "topologySpreadConstraints")),
            ("map", ("topologyKey", "whenUnsatisfiable"), "topologyKey"),
        ),
    ],
)
def test_list_types(
    where: tuple[str, str, tuple[str, ...]], expected: tuple[str, tuple[str, ...], str]
) -> None:
    lt = list_type(*where)
    assert (lt.kind, lt.keys, lt.patch_merge_key) == expected


# -- robustness --------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
_keys = st.sampled_from(
    [
        "spec",
        "template",
        "containers",
        "name",
        "image",
        "env",
        "ports",
        "containerPort",
        "metadata",
        "finalizers",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$deleteFromPrimitiveList/finalizers",
        "$setElementOrder/finalizers",
        "delete",
        "replace",
        "merge",
    ]
) | st.text(max_size=4)
_json = st.recursive(
    _scalars | st.sampled_from(["delete", "replace", "merge"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(patch=st.dictionaries(_keys, _json, max_size=4))
def test_patches_fail_only_with_patch_error(patch: dict[str, Any]) -> None:
    obj = _deployment(WEB, SIDECAR)
    obj["metadata"]["finalizers"] = ["a", "b"]
    before = copy.deepcopy(obj)
    attempts: list[Callable[[], dict[str, Any]]] = [
        lambda: merge_patch(obj, patch),
        lambda: strategic_merge_patch(obj, patch, group="apps", kind="Deployment"),
        lambda: strategic_merge_patch(obj, patch, group="example.com", kind="Widget"),
        lambda: strategic_merge_patch(obj, {"spec": patch}, group="apps", kind="Deployment"),
        lambda: strategic_merge_patch(
            obj, {"spec": {"template": {"spec": patch}}}, group="apps", kind="Deployment"
        ),
    ]
    for apply in attempts:
        try:
            result = apply()
        except PatchError as exc:
            assert exc.status_code in (400, 422)
        else:
            assert isinstance(result, dict)
    assert obj == before


@settings(max_examples=200, deadline=None)
@given(patch=_json)
def test_any_json_patch_document_fails_only_with_patch_error(patch: Any) -> None:
    attempts: list[Callable[[], dict[str, Any]]] = [
        lambda: merge_patch({"a": 1}, patch),
        lambda: strategic_merge_patch({"a": 1}, patch, group="", kind="Pod"),
        lambda: json_patch({"a": 1}, patch),
    ]
    for apply in attempts:
        with contextlib.suppress(PatchError):
            apply()
