"""Server-side apply and managed-fields tracking, checked against the real server's behaviour."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubesim.fields import (
    ApplyConflict,
    Conflict,
    decode_fields_v1,
    encode_fields_v1,
    server_side_apply,
    strip_status,
    track_update,
)
from kubesim.patch import PatchError

T0, T1, T2, T3 = (f"2024-01-0{i}T00:00:00Z" for i in range(1, 5))
DEPLOY: dict[str, str] = {"group": "apps", "kind": "Deployment", "api_version": "apps/v1"}


def _deployment(
    replicas: int | None = 2,
    containers: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": containers
                if containers is not None
                else [{"name": "web", "image": "nginx:1"}]
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    metadata: dict[str, Any] = {"name": "web", "namespace": "default"}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def _apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    *,
    force: bool = False,
    now: str = T0,
) -> dict[str, Any]:
    return server_side_apply(live, applied, manager=manager, force=force, now=now, **DEPLOY)


def _update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, now: str = T1) -> Any:
    return track_update(old, new, manager=manager, now=now, **DEPLOY)


def _entries(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


def _owns(obj: dict[str, Any], manager: str, operation: str = "Apply") -> set[str]:
    """The dotted paths (leaves and items) the manager owns, for readable assertions."""
    from kubesim.fields import path_string  # noqa: PLC0415

    entry = _entries(obj).get((manager, operation))
    if entry is None:
        return set()
    return {path_string(p) for p in decode_fields_v1(entry["fieldsV1"])}


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    containers: list[dict[str, Any]] = obj["spec"]["template"]["spec"]["containers"]
    return containers


# -- wire format ---------------------------------------------------------------------------


def test_create_by_apply_wire_format() -> None:
    applied = _deployment(
        containers=[{"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]}],
        labels={"app": "web"},
    )
    obj = _apply(None, applied, "kubectl")
    assert obj["metadata"]["managedFields"] == [
        {
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {
                            "f:containers": {
                                'k:{"name":"web"}': {
                                    ".": {},
                                    "f:image": {},
                                    "f:name": {},
                                    "f:ports": {
                                        'k:{"containerPort":80,"protocol":"TCP"}': {
                                            ".": {},
                                            "f:containerPort": {},
                                        }
                                    },
                                }
                            }
                        },
                    },
                },
            },
        }
    ]
    assert obj["spec"] == applied["spec"]


def test_create_by_update_marks_new_maps_and_items() -> None:
    obj = _update(None, _deployment(labels={"app": "web"}), "kubectl-create", now=T0)
    (entry,) = obj["metadata"]["managedFields"]
    assert entry["manager"] == "kubectl-create"
    assert entry["operation"] == "Update"
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"web"}': {".": {}, "f:image": {}, "f:name": {}},
                    }
                },
            },
        },
    }


@pytest.mark.parametrize(
    ("fields_v1", "paths"),
    [
        ({"f:a": {}}, {".a"}),
        ({"f:a": {".": {}, "f:b": {}}}, {".a", ".a.b"}),
        ({"f:a": {"f:b": {}}}, {".a.b"}),
        ({"f:fin": {'v:"x"': {}}}, {'.fin[="x"]'}),
        (
            {"f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}}},
            {'.ports[port=80,protocol="TCP"]', '.ports[port=80,protocol="TCP"].port'},
        ),
    ],
)
def test_fields_v1_round_trip(fields_v1: dict[str, Any], paths: set[str]) -> None:
    from kubesim.fields import path_string  # noqa: PLC0415

    decoded = decode_fields_v1(fields_v1)
    assert {path_string(p) for p in decoded} == paths
    assert encode_fields_v1(decoded) == fields_v1


def test_server_controlled_metadata_is_never_owned() -> None:
    applied = _deployment()
    applied["metadata"].update(uid="u", resourceVersion="7", generation=3, creationTimestamp=T0)
    obj = _apply(None, applied, "kubectl")
    assert all(not p.startswith(".metadata") for p in _owns(obj, "kubectl"))
    assert ".apiVersion" not in _owns(obj, "kubectl")
    assert "uid" not in obj["metadata"]


# -- conflicts and ownership ---------------------------------------------------------------


def test_second_manager_conflicts_on_replicas() -> None:
    live = _apply(None, _deployment(replicas=2), "kubectl-client-side-apply")
    with pytest.raises(ApplyConflict) as info:
        _apply(live, _deployment(replicas=5), "argo", now=T1)
    assert [(c.manager, c.field) for c in info.value.conflicts] == [
        ("kubectl-client-side-apply", ".spec.replicas")
    ]
    assert info.value.conflicts[0] == Conflict(
        "kubectl-client-side-apply", ".spec.replicas", "Apply", "apps/v1"
    )
    assert str(info.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply": .spec.replicas'
    )


def test_conflict_with_update_manager_message() -> None:
    live = _update(None, _deployment(replicas=2), "kubectl-client-side-apply", now=T0)
    with pytest.raises(ApplyConflict) as info:
        _apply(live, _deployment(replicas=5), "argo", now=T1)
    assert str(info.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: '
        ".spec.replicas"
    )
    assert (
        info.value.conflicts[0].message == 'conflict with "kubectl-client-side-apply" using apps/v1'
    )


def test_several_conflicts_are_all_listed() -> None:
    live = _apply(None, _deployment(replicas=2), "a")
    changed = _deployment(replicas=3, containers=[{"name": "web", "image": "nginx:2"}])
    with pytest.raises(ApplyConflict) as info:
        _apply(live, changed, "b", now=T1)
    fields = [c.field for c in info.value.conflicts]
    assert fields == [".spec.replicas", '.spec.template.spec.containers[name="web"].image']
    assert str(info.value).startswith('Apply failed with 2 conflicts: conflicts with "a":\n- ')


def test_force_moves_ownership() -> None:
    live = _apply(None, _deployment(replicas=2), "a")
    obj = _apply(live, _deployment(replicas=5), "b", force=True, now=T1)
    assert obj["spec"]["replicas"] == 5
    assert ".spec.replicas" in _owns(obj, "b")
    assert ".spec.replicas" not in _owns(obj, "a")
    assert ".spec.selector" in _owns(obj, "a") & _owns(obj, "b")


def test_equal_values_are_shared_without_conflict() -> None:
    live = _apply(None, _deployment(replicas=2), "a")
    obj = _apply(live, _deployment(replicas=2), "b", now=T1)
    assert ".spec.replicas" in _owns(obj, "a") & _owns(obj, "b")
    assert _entries(obj)[("a", "Apply")]["time"] == T0
    assert _entries(obj)[("b", "Apply")]["time"] == T1


@pytest.mark.parametrize(
    ("other_owns_replicas", "expected"),
    [(False, None), (True, 2)],
    ids=["unowned-removed", "kept-when-shared"],
)
def test_field_dropped_from_config(other_owns_replicas: bool, expected: int | None) -> None:
    live = _apply(None, _deployment(replicas=2), "a")
    if other_owns_replicas:
        replicas_only = {**_deployment(replicas=2), "spec": {"replicas": 2}}
        live = _apply(live, replicas_only, "b")
    obj = _apply(live, _deployment(replicas=None), "a", now=T1)
    assert obj["spec"].get("replicas") == expected
    assert ".spec.replicas" not in _owns(obj, "a")


def test_field_dropped_from_config_kept_when_an_updater_owns_it() -> None:
    live = _apply(None, _deployment(replicas=2), "a")
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 7
    live = _update(live, scaled, "hpa", now=T1)
    obj = _apply(live, _deployment(replicas=None), "a", now=T2)
    assert obj["spec"]["replicas"] == 7
    assert _owns(obj, "hpa", "Update") == {".spec.replicas"}


def test_containers_from_two_managers_coexist_and_are_pruned_separately() -> None:
    web = {"name": "web", "image": "nginx:1"}
    side = {"name": "sidecar", "image": "envoy:1"}
    live = _apply(None, _deployment(containers=[web]), "a")
    sidecar_only = {**_deployment(), "spec": {"template": {"spec": {"containers": [side]}}}}
    live = _apply(live, sidecar_only, "b", now=T1)
    assert _containers(live) == [web, side]
    assert '.spec.template.spec.containers[name="sidecar"]' in _owns(live, "b")
    assert '.spec.template.spec.containers[name="web"]' in _owns(live, "a")
    # a stops applying its container: only that item goes
    obj = _apply(live, _deployment(containers=[]), "a", now=T2)
    assert _containers(obj) == [side]


def test_item_kept_while_another_manager_owns_a_field_in_it() -> None:
    live = _apply(None, _deployment(containers=[{"name": "web", "image": "nginx:1"}]), "a")
    changed = copy.deepcopy(live)
    _containers(changed)[0]["resources"] = {"limits": {"cpu": "1"}}
    live = _update(live, changed, "vpa", now=T1)
    obj = _apply(live, _deployment(containers=[]), "a", now=T2)
    assert _containers(obj) == [{"name": "web", "resources": {"limits": {"cpu": "1"}}}]


def test_sets_merge_element_wise() -> None:
    base = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    kw: dict[str, Any] = {"group": "", "kind": "ConfigMap", "api_version": "v1", "now": T0}
    live = server_side_apply(None, {**base, "metadata": {"name": "c", "finalizers": ["x/a"]}},
                             manager="a", force=False, **kw)  # fmt: skip
    obj = server_side_apply(live, {**base, "metadata": {"name": "c", "finalizers": ["x/b"]}},
                            manager="b", force=False, **kw)  # fmt: skip
    assert obj["metadata"]["finalizers"] == ["x/a", "x/b"]
    assert _entries(obj)[("b", "Apply")]["fieldsV1"] == {
        "f:metadata": {"f:finalizers": {'v:"x/b"': {}}}
    }


def test_atomic_lists_are_replaced_whole() -> None:
    live = _apply(None, _deployment(containers=[{"name": "web", "args": ["a", "b"]}]), "a")
    obj = _apply(live, _deployment(containers=[{"name": "web", "args": ["c"]}]), "a", now=T1)
    assert _containers(obj)[0]["args"] == ["c"]
    assert '.spec.template.spec.containers[name="web"].args' in _owns(obj, "a")


def test_labels_are_granular() -> None:
    live = _apply(None, _deployment(labels={"a": "1"}), "x")
    obj = _apply(live, {"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web", "labels": {"b": "2"}}}, "y")  # fmt: skip
    assert obj["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert _owns(obj, "y") == {".metadata.labels.b"}


def test_track_update_moves_ownership_away_from_applier() -> None:
    live = _apply(None, _deployment(replicas=2), "a")
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 4
    obj = _update(live, scaled, "kubectl-scale", now=T1)
    assert _owns(obj, "kubectl-scale", "Update") == {".spec.replicas"}
    assert ".spec.replicas" not in _owns(obj, "a")
    assert _entries(obj)[("kubectl-scale", "Update")]["time"] == T1
    # the applier gets a conflict next time, and force takes it back
    with pytest.raises(ApplyConflict):
        _apply(obj, _deployment(replicas=2), "a", now=T2)
    back = _apply(obj, _deployment(replicas=2), "a", force=True, now=T2)
    assert ("kubectl-scale", "Update") not in _entries(back)


def test_track_update_without_changes_keeps_entries() -> None:
    live = _apply(None, _deployment(), "a")
    assert _update(live, copy.deepcopy(live), "other") == live


def test_track_update_removed_fields_leave_every_set() -> None:
    live = _apply(None, _deployment(labels={"app": "web"}), "a")
    changed = copy.deepcopy(live)
    del changed["metadata"]["labels"]
    obj = _update(live, changed, "editor")
    assert not any(p.startswith(".metadata.labels") for p in _owns(obj, "a"))
    assert ("editor", "Update") not in _entries(obj)


def test_status_subresource_has_its_own_entry() -> None:
    live = _apply(None, _deployment(), "a")
    with_status = {**copy.deepcopy(live), "status": {"replicas": 2}}
    obj = track_update(live, with_status, manager="controller", now=T1, subresource="status",
                       **DEPLOY)  # fmt: skip
    (entry,) = [e for e in obj["metadata"]["managedFields"] if e["manager"] == "controller"]
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_untracked_objects_start_with_before_first_apply() -> None:
    live = _deployment(replicas=3)
    obj = _apply(live, _deployment(replicas=3), "a")
    assert ".spec.replicas" in _owns(obj, "before-first-apply", "Update")
    assert ".spec.replicas" in _owns(obj, "a")
    with pytest.raises(ApplyConflict):
        _apply(live, _deployment(replicas=9), "a")


def test_managed_fields_reset() -> None:
    live = _apply(None, _deployment(), "a")
    reset = copy.deepcopy(live)
    reset["metadata"]["managedFields"] = [{}]
    assert "managedFields" not in _update(live, reset, "x")["metadata"]


@pytest.mark.parametrize(
    ("applied", "status"),
    [
        (_deployment(containers=[{"image": "no-name"}]), 422),
        (_deployment(containers=[{"name": "a"}, {"name": "a"}]), 422),
        ({**_deployment(), "metadata": {"name": "web", "managedFields": []}}, 400),
    ],
)
def test_invalid_apply_configurations(applied: dict[str, Any], status: int) -> None:
    with pytest.raises(PatchError) as info:
        _apply(None, applied, "a")
    assert info.value.status_code == status


def test_inputs_are_not_mutated() -> None:
    live = _apply(None, _deployment(replicas=2, labels={"app": "web"}), "a")
    applied = _deployment(replicas=None, containers=[{"name": "x", "image": "y"}])
    live_before, applied_before = copy.deepcopy(live), copy.deepcopy(applied)
    _apply(live, applied, "a", force=True, now=T1)
    with pytest.raises(ApplyConflict):
        _apply(live, _deployment(replicas=8), "b", now=T1)
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 3
    new_before = copy.deepcopy(new)
    _update(live, new, "c")
    assert (live, applied, new) == (live_before, applied_before, new_before)


def test_strip_status() -> None:
    obj = {"spec": {"a": 1}, "status": {"b": 2}}
    assert strip_status(obj) == {"spec": {"a": 1}}
    assert obj == {"spec": {"a": 1}, "status": {"b": 2}}
