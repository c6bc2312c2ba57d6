"""Apply and prune order: waves first, then the kind table, then names for stability."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.errors import RenderError
from reconciler.model import Manifest, ObjectKey
from reconciler.order import (
    BUILTIN_KIND_ORDER,
    apply_order_key,
    phases,
    sort_for_apply,
    sort_for_prune,
    sync_wave,
)
from reconciler.yamlio import load_documents

#: A small application as it would come out of render, deliberately out of order.
APP = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: widgets-validator}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: gear, namespace: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: shop}
"""


def load(text: str) -> list[Manifest]:
    """Manifests through the platform's one YAML loader, as render would produce them."""
    return [doc.data for doc in load_documents(text, source="app.yaml")]


def names(objs: list[Manifest]) -> list[str]:
    return [str(ObjectKey.of(obj)) for obj in objs]


def obj(kind: str, name: str, *, api: str = "v1", ns: str = "") -> Manifest:
    """A bare manifest; ``api`` decides the group, which the kind table looks at."""
    meta: dict[str, Any] = {"name": name}
    if ns:
        meta["namespace"] = ns
    return {"apiVersion": api, "kind": kind, "metadata": meta}


def wave(kind: str, name: str, value: str, *, argo: bool = False) -> Manifest:
    """A manifest carrying a sync wave in our annotation, or in Argo CD's."""
    key = "argocd.argoproj.io/sync-wave" if argo else "reconciler.dev/sync-wave"
    made = obj(kind, name)
    made["metadata"]["annotations"] = {key: value}
    return made


def test_apply_order_of_an_application() -> None:
    assert names(sort_for_apply(load(APP))) == [
        "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com",
        "Namespace/shop",
        "ServiceAccount/shop/web",
        "ConfigMap/shop/settings",
        "RoleBinding.rbac.authorization.k8s.io/shop/web",
        "Service/shop/web",
        "Deployment.apps/shop/web",
        "Ingress.networking.k8s.io/shop/web",
        "Widget.example.com/shop/gear",
        "ValidatingWebhookConfiguration.admissionregistration.k8s.io/widgets-validator",
    ]


def test_crd_before_its_custom_resource() -> None:
    ordered = names(sort_for_apply(load(APP)))
    crd = ordered.index("CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com")
    assert crd < ordered.index("Widget.example.com/shop/gear")


def test_namespace_before_everything_in_it() -> None:
    ordered = sort_for_apply(load(APP))
    position = names(ordered).index("Namespace/shop")
    inside = [i for i, o in enumerate(ordered) if ObjectKey.of(o).namespace == "shop"]
    assert inside
    assert all(i > position for i in inside)


def test_prune_order_is_reverse_of_apply() -> None:
    objs = load(APP)
    assert sort_for_prune(objs) == sort_for_apply(objs)[::-1]
    pruned = names(sort_for_prune(objs))
    assert pruned[0].startswith("ValidatingWebhookConfiguration")
    assert pruned[-2:] == [
        "Namespace/shop",
        "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com",
    ]


def test_builtin_kind_table_is_followed() -> None:
    """Every kind of the table, fed in reverse, comes out in table order."""
    objs = [
        obj(kind, "x", api=f"{sorted(groups)[0]}/v1" if sorted(groups)[0] else "v1")
        for kind, groups in reversed(BUILTIN_KIND_ORDER)
    ]
    assert [o["kind"] for o in sort_for_apply(objs)] == [k for k, _ in BUILTIN_KIND_ORDER]


def test_mutating_webhook_comes_after_custom_resources() -> None:
    webhook = obj("MutatingWebhookConfiguration", "m", api="admissionregistration.k8s.io/v1")
    custom = obj("Zebra", "z", api="zoo.example.com/v1", ns="shop")
    service = obj("APIService", "v1.zoo", api="apiregistration.k8s.io/v1")
    assert sort_for_apply([webhook, custom, service]) == [service, custom, webhook]


def test_custom_kind_named_like_a_builtin_is_custom() -> None:
    """A Knative ``Service`` needs its CRD; it must not jump ahead with core Services."""
    knative = obj("Service", "hello", api="serving.knative.dev/v1", ns="shop")
    deployment = obj("Deployment", "web", api="apps/v1", ns="shop")
    assert sort_for_apply([knative, deployment]) == [deployment, knative]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["5", "0", "-1"], ["-1", "0", "5"]),
        (["+3", "-10", "2"], ["-10", "2", "+3"]),
        (["0", "-1"], ["-1", "0"]),
    ],
)
def test_waves_come_first(values: list[str], expected: list[str]) -> None:
    objs = [wave("ConfigMap", f"cm{v}", v) for v in values]
    ordered = sort_for_apply(objs)
    got = [o["metadata"]["annotations"]["reconciler.dev/sync-wave"] for o in ordered]
    assert got == expected


def test_wave_beats_kind_rank() -> None:
    """A CRD in wave 5 is applied after a ConfigMap in wave 0 (waves first, as Argo CD)."""
    crd = wave("CustomResourceDefinition", "late.example.com", "5")
    crd["apiVersion"] = "apiextensions.k8s.io/v1"
    early = obj("ConfigMap", "early")
    negative = wave("Secret", "first", "-1")
    assert sort_for_apply([crd, early, negative]) == [negative, early, crd]


def test_default_wave_is_zero() -> None:
    assert sync_wave(obj("ConfigMap", "x")) == 0
    assert sync_wave({"kind": "ConfigMap", "metadata": {"annotations": None}}) == 0
    assert sync_wave({"kind": "ConfigMap"}) == 0


def test_argocd_wave_is_honoured() -> None:
    argo = wave("ConfigMap", "argo", "-2", argo=True)
    plain = obj("ConfigMap", "plain")
    assert sync_wave(argo) == -2
    assert sort_for_apply([plain, argo]) == [argo, plain]


def test_our_wave_wins_over_argocd() -> None:
    both = obj("ConfigMap", "both")
    both["metadata"]["annotations"] = {
        "argocd.argoproj.io/sync-wave": "-5",
        "reconciler.dev/sync-wave": "3",
    }
    assert sync_wave(both) == 3


def test_ignored_argocd_wave_is_not_validated() -> None:
    both = obj("ConfigMap", "both")
    both["metadata"]["annotations"] = {
        "argocd.argoproj.io/sync-wave": "soon",
        "reconciler.dev/sync-wave": "1",
    }
    assert sync_wave(both) == 1


@pytest.mark.parametrize("value", ["one", "1.5", "", " 1", "1e3", "0x10", "--1"])
def test_invalid_wave_names_object_and_annotation(value: str) -> None:
    bad = wave("ConfigMap", "settings", value)
    bad["metadata"]["namespace"] = "shop"
    with pytest.raises(RenderError) as caught:
        sort_for_apply([obj("ConfigMap", "fine"), bad])
    message = str(caught.value)
    assert message.startswith("ConfigMap/shop/settings: ")
    assert "reconciler.dev/sync-wave" in message
    assert repr(value) in message


def test_invalid_argocd_wave_names_argocd_annotation() -> None:
    bad = wave("Deployment", "web", "later", argo=True)
    bad["apiVersion"] = "apps/v1"
    with pytest.raises(RenderError, match=r"^Deployment\.apps/web: .*argocd\.argoproj\.io"):
        apply_order_key(bad)


def test_unquoted_wave_gets_a_hint() -> None:
    bad = load(
        "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: x\n  annotations:\n"
        "    reconciler.dev/sync-wave: 2\n"
    )[0]
    with pytest.raises(RenderError, match="quote it in YAML"):
        sync_wave(bad)


def test_sort_is_stable_and_total() -> None:
    """Ties break on kind, namespace, name; exact duplicates keep input order."""
    a = obj("ConfigMap", "a", ns="two")
    b = obj("ConfigMap", "b", ns="one")
    c = obj("ConfigMap", "a", ns="one")
    first = obj("ConfigMap", "same", ns="x")
    second = obj("ConfigMap", "same", ns="x")
    first["data"] = {"n": "1"}
    second["data"] = {"n": "2"}
    ordered = sort_for_apply([a, b, first, c, second])
    assert ordered == [c, b, a, first, second]
    assert ordered[3] is first
    assert ordered[4] is second


def test_phases_split_crds_from_custom_resources_of_the_same_wave() -> None:
    objs = load(APP)
    groups = phases(objs)
    assert [names(g)[0] for g in groups] == [
        "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com",
        "Namespace/shop",
    ]
    assert len(groups[0]) == 1
    assert "Widget.example.com/shop/gear" in names(groups[1])
    assert [o for g in groups for o in g] == sort_for_apply(objs)


def test_phases_follow_waves() -> None:
    crd = obj("CustomResourceDefinition", "w.example.com", api="apiextensions.k8s.io/v1")
    crd["metadata"]["annotations"] = {"reconciler.dev/sync-wave": "-1"}
    widget = obj("Widget", "gear", api="example.com/v1", ns="shop")
    late = wave("ConfigMap", "late", "5")
    cm = obj("ConfigMap", "now")
    assert phases([late, widget, cm, crd]) == [[crd], [cm, widget], [late]]


def test_phases_without_crds_is_one_group_per_wave() -> None:
    one, two = obj("ConfigMap", "a"), wave("Secret", "b", "2")
    assert phases([two, one]) == [[one], [two]]
    assert phases([]) == []


def test_phases_of_only_crds_has_no_empty_group() -> None:
    crd = obj("CustomResourceDefinition", "w.example.com", api="apiextensions.k8s.io/v1")
    assert phases([crd]) == [[crd]]


KINDS = st.sampled_from(
    [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("apps/v1", "Deployment"),
        ("example.com/v1", "Widget"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ]
)


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    api, kind = draw(KINDS)
    made = obj(kind, draw(st.sampled_from("abc")), api=api, ns=draw(st.sampled_from(["", "s"])))
    if draw(st.booleans()):
        made["metadata"]["annotations"] = {
            "reconciler.dev/sync-wave": str(draw(st.integers(-3, 3)))
        }
    return made


@given(st.lists(manifests(), max_size=12))
def test_order_properties(objs: list[Manifest]) -> None:
    ordered = sort_for_apply(objs)
    keys = [apply_order_key(o) for o in ordered]
    assert keys == sorted(keys)
    assert sort_for_prune(objs) == ordered[::-1]
    assert [apply_order_key(o) for o in sort_for_apply(reversed(objs))] == keys
    flat = [o for group in phases(objs) for o in group]
    assert flat == ordered
    for group in phases(objs):
        assert group
        assert len({apply_order_key(o)[0] for o in group}) == 1
        crds = [o["kind"] == "CustomResourceDefinition" for o in group]
        assert all(crds) or not any(crds)
