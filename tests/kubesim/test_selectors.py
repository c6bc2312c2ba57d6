"""Label and field selectors parse, match and fail like the real API server's."""

from __future__ import annotations

from typing import Any

import pytest

from kubesim.selectors import (
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector_object,
    selector_from_set,
)

LABELS = {"app": "web", "tier": "frontend", "env": "prod", "example.com/team": "a", "n": "7"}

# (selector, matches LABELS)
LABEL_CASES = [
    ("", True),
    ("app=web", True),
    ("app=api", False),
    ("app==web", True),
    ("app!=web", False),
    ("app!=api", True),
    ("missing!=x", True),
    ("app in (web,api)", True),
    ("app in (api)", False),
    ("app notin (api,db)", True),
    ("app notin (web)", False),
    ("missing notin (web)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier=frontend", True),
    ("app=web,tier=backend", False),
    ("  app = web ,  tier in ( frontend , x ) ", True),
    ("example.com/team=a", True),
    ("app in (web),!missing,env", True),
    ("missing=", False),
    ("missing in (,x)", False),
    ("n>5", True),
    ("n<5", False),
    ("app>5", False),
]


@pytest.mark.parametrize(("text", "expected"), LABEL_CASES)
def test_label_selector_matches(text: str, expected: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is expected


def test_empty_value_matches_empty_label() -> None:
    assert parse_label_selector("a=").matches({"a": ""})
    assert parse_label_selector("a in (,b)").matches({"a": ""})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a in", "unable to parse requirement: found '' expected: '('"),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b,", "found '', expected: identifier after ','"),
        (",", "found ',', expected: !, identifier, or 'end of string'"),
        ("a in (b,c", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
        ("k<x", "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' "
         "operators, the value must be an integer"),
        ("a=" + "x" * 64, "unable to parse requirement: values[0][a]: Invalid value: \"" + "x" * 64
         + "\": must be no more than 63 characters"),
        ("a/b/c=d", "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified "
         "name must consist of"),
        ("-bad=x", "unable to parse requirement: <nil>: Invalid value: \"-bad\": name part must "
         "consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
         "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
         "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"),
        ("Bad_Prefix/a=b", "prefix part a lowercase RFC 1123 subdomain"),
        ("a=b!", "found '!', expected: ',' or 'end of string'"),
        ("a=b$c", "values[0][a]: Invalid value: \"b$c\": a valid label must be an empty string"),
    ],
)  # fmt: skip
def test_malformed_label_selectors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(message) or message in str(info.value)


def test_equality_requirements_for_the_index() -> None:
    sel = parse_label_selector("tier in (frontend),app=web,env!=dev,x in (a,b),y")
    assert sel.equality_requirements() == {"app": "web", "tier": "frontend"}
    assert sel.equalities() == sel.equality_requirements()
    assert sel.requires_exact_match("app") == "web"
    assert sel.requires_exact_match("env") is None
    assert sel.requires_exact_match("x") is None


def test_selector_string_is_canonical() -> None:
    assert str(parse_label_selector("b=2, a in (y,x), !c")) == "a in (x,y),b=2,!c"
    assert parse_label_selector("").empty
    assert str(selector_from_set({"b": "1", "a": "2"})) == "a=2,b=1"


@pytest.mark.parametrize(
    ("obj", "labels", "expected"),
    [
        ({"matchLabels": {"app": "web"}}, LABELS, True),
        ({"matchLabels": {"app": "api"}}, LABELS, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}, LABELS,
         True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}, LABELS,
         False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, LABELS, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, LABELS, False),
        ({"matchLabels": {"app": "web"},
          "matchExpressions": [{"key": "env", "operator": "In", "values": ["dev"]}]}, LABELS,
         False),
        ({}, {}, True),
        (None, LABELS, False),
    ],
)  # fmt: skip
def test_label_selector_objects(obj: dict[str, Any] | None, labels: dict[str, str],
                                expected: bool) -> None:  # fmt: skip
    assert selector_from_label_selector_object(obj).matches(labels) is expected


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "Bogus"}]},
         '"Bogus" is not a valid label selector operator'),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
         "values set can't be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
         "values set must be empty for exists and does not exist"),
        ({"matchLabels": {"bad key": "x"}}, 'key: Invalid value: "bad key"'),
    ],
)  # fmt: skip
def test_bad_label_selector_objects(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError, match=None) as info:
        selector_from_label_selector_object(obj)
    assert message in str(info.value)


def test_nothing_and_everything() -> None:
    assert LabelSelector.match_nothing().matches({}) is False
    assert LabelSelector.everything().matches({"a": "b"}) is True


POD: dict[str, Any] = {
    "metadata": {"name": "web-1", "namespace": "prod"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always"},
    "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]},
}

# (selector, kind, matches POD)
FIELD_CASES = [
    ("", "Pod", True),
    ("metadata.name=web-1", "Pod", True),
    ("metadata.name==web-1", "Pod", True),
    ("metadata.name!=web-1", "Pod", False),
    ("metadata.name=web-2", "Pod", False),
    ("metadata.namespace=prod", "Pod", True),
    ("metadata.namespace!=prod", "Pod", False),
    ("metadata.name=web-1,metadata.namespace=prod", "Pod", True),
    ("metadata.name=web-1,metadata.namespace=dev", "Pod", False),
    ("status.phase=Running", "Pod", True),
    ("status.phase!=Running", "Pod", False),
    ("spec.nodeName=node-a", "Pod", True),
    ("spec.nodeName=", "Pod", False),
    ("status.podIP=10.0.0.5", "Pod", True),
    ("spec.hostNetwork=false", "Pod", True),
    ("metadata.name=web-1", "ConfigMap", True),
]


@pytest.mark.parametrize(("text", "kind", "expected"), FIELD_CASES)
def test_field_selector_matches(text: str, kind: str, expected: bool) -> None:
    assert parse_field_selector(text, kind=kind).matches(POD) is expected


def test_field_selector_events_and_unset_fields() -> None:
    event = {"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "web-1"}}
    sel = parse_field_selector("involvedObject.kind=Pod,involvedObject.name=web-1", kind="Event")
    assert sel.matches(event)
    assert parse_field_selector("spec.nodeName=", kind="Pod").matches({"metadata": {}})


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("foo=bar", "Pod", "field label not supported: foo"),
        ("status.phase=Running", "ConfigMap", "field label not supported: status.phase"),
        ("metadata.name = x", "Pod", "field label not supported: metadata.name "),
        ("metadata.name", "Pod", "invalid selector: 'metadata.name'; can't understand "
         "'metadata.name'"),
        ("metadata.name=a=b", "Pod", "invalid field selector: unescaped character in value: ="),
        ("metadata.name=a\\x", "Pod", "invalid field selector: invalid escape sequence: \\x"),
    ],
)  # fmt: skip
def test_malformed_field_selectors(text: str, kind: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_field_selector(text, kind=kind)
    assert str(info.value) == message


def test_field_selector_accessors_and_escapes() -> None:
    sel = parse_field_selector("metadata.namespace=prod,metadata.name=web-1")
    assert (sel.name, sel.namespace) == ("web-1", "prod")
    assert parse_field_selector("metadata.name!=x").name is None
    escaped = parse_field_selector("metadata.name=a\\,b")
    assert escaped.name == "a,b"
    assert str(escaped) == "metadata.name=a\\,b"
    # Without a kind every kind's field labels are accepted.
    assert parse_field_selector("status.phase=Running").matches(POD)
