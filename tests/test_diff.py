"""Tables of diff cases, pairing, quantities, and properties of the pure diff.

Each ``tests/data/diff/*.yaml`` file is one case: ``desired``, ``live`` (null to create),
optional ``ignore`` rules (``group``, ``kind``, ``name``, ``namespace``, ``jsonPointers``),
and ``expect: {changed, paths, diff_contains}``.  Adding a case is adding a file.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.diff import (
    ObjectDiff,
    diff,
    pair,
    parse_pointer,
    render_yaml,
)
from reconciler.model import ObjectKey
from reconciler.quantity import is_quantity, parse_quantity, quantities_equal
from reconciler.yamlio import load_documents

CASES_DIR = Path(__file__).parent / "data" / "diff"
CASE_FILES = sorted(CASES_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Rule:
    """A stand-in for ``config.IgnoreRule``: diff accepts anything with these attributes."""

    kind: str
    group: str | None = None
    name: str | None = None
    namespace: str | None = None
    json_pointers: tuple[str, ...] = ()


def _load_case(path: Path) -> dict[str, Any]:
    docs = load_documents(path.read_text(encoding="utf-8"), source=str(path))
    assert len(docs) == 1, f"{path}: one document per case"
    case: dict[str, Any] = docs[0].data
    return case


def _rules(raw: list[dict[str, Any]] | None) -> list[Rule]:
    return [
        Rule(
            kind=item["kind"],
            group=item.get("group"),
            name=item.get("name"),
            namespace=item.get("namespace"),
            json_pointers=tuple(item.get("jsonPointers", ())),
        )
        for item in raw or []
    ]


def test_enough_cases() -> None:
    assert len(CASE_FILES) >= 25


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case(path: Path) -> None:
    case = _load_case(path)
    desired, live = case["desired"], case["live"]
    before = (copy.deepcopy(desired), copy.deepcopy(live))
    result = diff(desired, live, ignore=_rules(case.get("ignore")))
    expect = case["expect"]

    assert result.changed is expect["changed"], result.diff
    assert list(result.changed_paths) == expect["paths"]
    assert result.key == ObjectKey.of(desired)
    if result.changed:
        assert result.diff.startswith("--- live/"), result.diff
        for line in expect.get("diff_contains", []):
            assert line in result.diff.splitlines(), f"{line!r} not in\n{result.diff}"
    else:
        assert result.diff == ""
    assert (desired, live) == before, "diff must not mutate its inputs"


def test_diff_text_shows_only_drift() -> None:
    """Equal-but-differently-written values produce no +/- lines next to real drift."""
    desired: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "containers": [
                {"name": "a", "image": "x", "resources": {"limits": {"memory": "1024Mi"}}},
                {"name": "b", "image": "img-y"},
            ]
        },
    }
    live = copy.deepcopy(desired)
    live["spec"]["containers"] = [
        {"name": "b", "image": "img-z", "imagePullPolicy": "Always"},
        {"name": "a", "image": "x", "resources": {"limits": {"memory": "1Gi"}}},
    ]
    result = diff(desired, live)
    changes = [
        line
        for line in result.diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("---", "+++"))
    ]
    assert changes == ["-  - image: img-z", "+  - image: img-y"]


def test_creation_shows_whole_object_added() -> None:
    desired = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}
    result = diff(desired, None)
    assert result.changed
    assert result.changed_paths == ("/",)
    lines = result.diff.splitlines()
    assert lines[:2] == ["--- live/v1/Namespace/shop", "+++ desired/v1/Namespace/shop"]
    assert "+apiVersion: v1" in lines
    assert all(line.startswith(("+", "@@", "---", "+++")) for line in lines)


def test_empty_pointer_ignores_whole_object() -> None:
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}
    live = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}}
    desired["data"] = {"a": 2}
    assert diff(desired, live, ignore=[Rule(kind="*", json_pointers=("",))]).changed is False
    assert diff(desired, live, ignore=[Rule(kind="*", json_pointers=("bad",))]).changed is True


def test_pointer_parsing() -> None:
    assert parse_pointer("") == ()
    assert parse_pointer("/a~1b/c~0d/~01") == ("a/b", "c~d", "~1")
    assert parse_pointer("spec") is None


# --------------------------------------------------------------------------- pairing


def _obj(api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


def test_pair_ignores_api_version() -> None:
    desired = [_obj("apps/v1", "Deployment", "web", "shop")]
    live = [_obj("apps/v1beta1", "Deployment", "web", "shop")]
    result = pair(desired, live)
    assert result.pairs == ((desired[0], live[0]),)
    assert result.orphans == ()


def test_pair_distinguishes_group_namespace_and_kind() -> None:
    desired = [
        _obj("v1", "ConfigMap", "cfg", "a"),
        _obj("v1", "Namespace", "shop"),
        _obj("rbac.authorization.k8s.io/v1", "ClusterRole", "reader"),
        _obj("example.com/v1", "Deployment", "web", "shop"),
    ]
    live = [
        _obj("v1", "ConfigMap", "cfg", "b"),  # other namespace: not the same object
        _obj("v1", "Namespace", "shop"),  # cluster-scoped: no namespace on either side
        _obj("rbac.authorization.k8s.io/v1", "Role", "reader", "shop"),
        _obj("apps/v1", "Deployment", "web", "shop"),  # other group
    ]
    result = pair(desired, live)
    assert [twin for _, twin in result.pairs] == [None, live[1], None, None]
    assert [obj for obj, _ in result.pairs] == desired  # desired order kept
    assert result.orphans == (live[0], live[2], live[3])


def test_pair_lists_orphans_once_and_tolerates_duplicates() -> None:
    web_v1 = _obj("apps/v1", "Deployment", "web", "shop")
    web_old = _obj("extensions/v1beta1", "Deployment", "web", "shop")
    old = _obj("v1", "Service", "old", "shop")
    result = pair([], [old, old, web_v1])
    assert result.pairs == ()
    assert result.orphans == (old, web_v1)
    # The same object listed through two groups' versions is two keys: both are orphans.
    assert pair([], [web_v1, web_old]).orphans == (web_v1, web_old)


def test_pair_with_empty_metadata_namespace_is_cluster_scoped() -> None:
    desired = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}]
    live = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "namespace": ""}}]
    assert pair(desired, live).pairs[0][1] is live[0]


# --------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("1000m", "1"),
        ("1Gi", "1024Mi"),
        ("0.5", "500m"),
        ("1e3", "1k"),
        ("1E3", "1k"),
        (1, "1"),
        (0.5, "500m"),
        ("1.5Gi", "1536Mi"),
        ("1Ki", "1024"),
        (".5", "0.5"),
        ("+1", "1"),
        ("100u", "0.1m"),
        ("1n", "0.000000001"),
        ("1E", "1e18"),
        ("1Ei", 2**60),
    ],
)
def test_quantities_equal(left: object, right: object) -> None:
    assert quantities_equal(left, right)
    assert quantities_equal(right, left)


@pytest.mark.parametrize(
    "text", ["", "abc", "1e", "1 Gi", " 1", "1Gib", "--1", "1.2.3", "1ki", "Gi", "1e1.5", "x" * 99]
)
def test_invalid_strings_are_not_quantities(text: str) -> None:
    assert parse_quantity(text) is None
    assert not is_quantity(text)


def test_quantity_edge_values() -> None:
    assert parse_quantity(True) is None
    assert parse_quantity(None) is None
    assert parse_quantity(float("nan")) is None
    assert parse_quantity(0.1) == Decimal("0.1")
    assert parse_quantity("-1.5k") == Decimal(-1500)
    assert parse_quantity("123456789012345678901234567890Ei") == Decimal(
        123456789012345678901234567890 * 2**60
    )
    assert not quantities_equal("500m", "1")
    assert not quantities_equal("abc", "abc")


# --------------------------------------------------------------------------- properties

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["1000m", "1", "1Gi", "1024Mi", "web", "TCP", "UDP", "name"])
)
_keys = st.text(max_size=8) | st.sampled_from(
    ["name", "port", "protocol", "type", "spec", "metadata", "labels", "requests", "limits"]
)
_json = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_keys, children, max_size=4),
    max_leaves=25,
)
_manifests = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["v1", "apps/v1"]) | _json,
        "kind": st.sampled_from(["Deployment"]) | _json,
        "metadata": st.fixed_dictionaries(
            {}, optional={"name": _json, "labels": _json, "annotations": _json}
        )
        | _json,
        "spec": _json,
        "status": _json,
    },
)
_rules_strategy = st.lists(
    st.builds(
        Rule,
        kind=st.sampled_from(["*", "Deployment"]),
        json_pointers=st.lists(
            st.sampled_from(["", "/spec", "/spec/0", "/spec/name", "/metadata/labels", "x"])
            | st.text(max_size=10).map(lambda s: "/" + s),
            max_size=3,
        ).map(tuple),
    ),
    max_size=2,
)


def _roundtrip(value: Any) -> Any:
    return json.loads(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(desired=_manifests | _json, live=_manifests | _json | st.none(), rules=_rules_strategy)
def test_diff_never_raises(desired: Any, live: Any, rules: list[Rule]) -> None:
    result = diff(desired, live, ignore=rules)
    assert isinstance(result, ObjectDiff)
    assert result.changed == bool(result.diff) or result.changed_paths == ("/",)


@settings(max_examples=300, deadline=None)
@given(obj=_manifests | _json.filter(lambda v: v is not None), rules=_rules_strategy)
def test_diff_with_itself_is_unchanged(obj: Any, rules: list[Rule]) -> None:
    # live None means "create", so None is the one value that differs from itself.
    result = diff(_roundtrip(obj), _roundtrip(obj), ignore=rules)
    assert not result.changed, result.changed_paths
    assert result.diff == ""


@settings(max_examples=300, deadline=None)
@given(value=_json)
def test_rendered_yaml_reads_back_as_the_same_data(value: Any) -> None:
    value = _roundtrip(value)
    docs = load_documents(render_yaml(value), source="rendered")
    loaded = docs[0].data if docs else None
    assert loaded == value, render_yaml(value)


def test_render_yaml_quotes_ambiguous_strings() -> None:
    text = render_yaml(
        {"a": "yes", "b": "1Gi", "c": "1e3", "d": "a: b", "e": "x\ny\n", "f": "", "g": 1e16}
    )
    assert text == ('a: "yes"\nb: 1Gi\nc: "1e3"\nd: "a: b"\ne: |\n  x\n  y\nf: ""\ng: 1.0e+16\n')


def test_many_containers_with_server_additions_have_no_drift() -> None:
    desired: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web", "tier": "fe"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": f"c{i}",
                            "image": "nginx:1.25",
                            "env": [{"name": f"E{j}", "value": str(j)} for j in range(10)],
                            "ports": [{"containerPort": 8080 + i}],
                            "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                        }
                        for i in range(3)
                    ]
                },
            },
        },
    }
    live = copy.deepcopy(desired)
    live["metadata"]["uid"] = "u"
    live["status"] = {"replicas": 3}
    assert not diff(desired, live).changed
    live["spec"]["template"]["spec"]["containers"].reverse()
    assert not diff(desired, live).changed
