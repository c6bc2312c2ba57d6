"""The one YAML loader: plain JSON-like data, file:line errors, hostile input refused."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.errors import ConfigError, RenderError
from reconciler.yamlio import MAX_FILE_BYTES, load_documents


def test_documents_keep_their_start_line_and_index() -> None:
    docs = load_documents("a: 1\n---\n---\n# c\nb: 2\n", source="x.yaml")
    assert [(d.data, d.line, d.index, d.where) for d in docs] == [
        ({"a": 1}, 1, 0, "x.yaml:1"),
        ({"b": 2}, 5, 2, "x.yaml:5"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("d: 2024-01-01\n", {"d": "2024-01-01"}),  # dates stay strings, as in Kubernetes
        ("1: a\nfalse: b\n", {"1": "a", "false": "b"}),  # scalar keys become strings
        ('{"json": [1, 2.5, null]}', {"json": [1, 2.5, None]}),
        ("a: &x {k: v}\nb: *x\n", {"a": {"k": "v"}, "b": {"k": "v"}}),
    ],
)
def test_plain_data(text: str, expected: object) -> None:
    assert load_documents(text, source="f.yaml")[0].data == expected


def billion_laughs(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb: 2\na: 3\n", "f.yaml:3: duplicate key 'a' (first at line 1)"),
        ("1: a\n'1': b\n", "duplicate key '1' once keys are made strings"),
        ("1: a\ntrue: b\n", "duplicate key True"),
        ("a: [1\n", "f.yaml:2:"),
        (billion_laughs(9), "expands to more than"),
        ("a: !!binary aGVsbG8=\n", "unsupported YAML value"),
        ("a: !!python/object:os.system ls\n", "f.yaml:1:"),
        ("[" * 200 + "]" * 200, "nested"),
        ("n: " + "9" * 5000 + "\n", "f.yaml"),
        (b"\xff\xfe bad", "not UTF-8"),
    ],
)
def test_hostile_or_malformed_input_names_the_file(text: str | bytes, message: str) -> None:
    with pytest.raises(RenderError) as err:
        load_documents(text, source="f.yaml")
    assert message in str(err.value)


def test_oversized_file_refused() -> None:
    with pytest.raises(RenderError, match="over the"):
        load_documents("a: " + "x" * MAX_FILE_BYTES, source="big.yaml")


def test_error_class_is_the_callers() -> None:
    with pytest.raises(ConfigError, match=r"fleet\.yaml:2"):
        load_documents("a: [", source="fleet.yaml", error=ConfigError)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300))
def test_arbitrary_text_raises_only_our_error(text: str) -> None:
    with contextlib.suppress(RenderError):
        load_documents(text, source="any.yaml")


YAML_TOKENS = st.sampled_from(
    ["a", ":", " ", "\n", "-", "[", "]", "{", "}", ",", "&x", "*x", "!!str", "'", '"', "#",
     "---", "? ", "|", ">", "1", "null", "~", "\t", "  "]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(YAML_TOKENS, max_size=60).map("".join))
def test_yaml_shaped_noise_raises_only_our_error(text: str) -> None:
    with contextlib.suppress(RenderError):
        load_documents(text, source="any.yaml")
