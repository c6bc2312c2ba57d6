"""Fuzzing the loaders of untrusted input: only our own errors, never a crash.

The YAML loader reads every manifest and the fleet file; the fleet loader turns any YAML
into a validated fleet; the webhook parser reads bodies from the internet.  Each is given
random and mutated input by hypothesis (derandomized, so a CI run is repeatable), and may
only return a result of its type or raise the one error its callers handle: RenderError,
ConfigError, WebhookMalformed.  Anything else (a TypeError from an odd value, a
RecursionError, a ValueError from a huge integer) would be a traceback in production.
About 11,000 cases in all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.errors import ConfigError, RenderError
from reconciler.fleet import Fleet, parse_fleet
from reconciler.webhook import Provider, PushEvent, WebhookMalformed, parse
from reconciler.yamlio import Document, load_documents

VALID_FLEETS = sorted((Path(__file__).parent / "data" / "config" / "valid").glob("*.yaml"))
FLEET_TEXTS = [path.read_text() for path in VALID_FLEETS]


def fuzz(examples: int) -> settings:
    """Repeatable runs of ``examples`` cases, with no per-case deadline on a busy CI host."""
    return settings(
        max_examples=examples, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )  # fmt: skip


#: Pieces YAML is made of, so random strings reach anchors, tags, flows and merges.
_YAML_TOKENS = [
    "a", "b", ": ", ":", "- ", "-", "\n", "\n  ", "\n    ", "&x ", "*x", "&y ", "*y", "<<: ",
    "[", "]", "{", "}", ", ", "'", '"', "#", "---\n", "...\n", "!!str ", "!!python/object ",
    "!!binary ", "? ", "|\n  ", ">\n  ", "1", "1e309", "0x1F", "2024-01-01", "~", "null",
    "true", "yes", "\t", "%YAML 1.1\n", "\\u0000", "9" * 30, "\ufeff",
]  # fmt: skip
_yaml_text = st.lists(st.sampled_from(_YAML_TOKENS), max_size=40).map("".join)

_json_scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json_value = st.recursive(
    _json_scalar,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _check_documents(documents: list[Document]) -> None:
    for document in documents:
        json.dumps(document.data)  # plain JSON data: no dates, sets, bytes or objects
        assert document.line >= 1


@fuzz(2500)
@given(st.text(max_size=300))
def test_yaml_loader_on_any_text(text: str) -> None:
    try:
        documents = load_documents(text, source="fuzz.yaml")
    except RenderError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    _check_documents(documents)


@fuzz(2500)
@given(_yaml_text)
def test_yaml_loader_on_yaml_shaped_text(text: str) -> None:
    try:
        documents = load_documents(text, source="fuzz.yaml")
    except RenderError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    _check_documents(documents)


@fuzz(1000)
@given(st.binary(max_size=200))
def test_yaml_loader_on_bytes(data: bytes) -> None:
    try:
        documents = load_documents(data, source="fuzz.yaml")
    except RenderError as exc:
        assert str(exc).startswith("fuzz.yaml")
        return
    _check_documents(documents)


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    for position, length, insert in edits:
        at = position % (len(text) + 1)
        text = text[:at] + insert + text[at + length :]
    return text


@fuzz(1500)
@given(
    st.sampled_from(FLEET_TEXTS),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 8),
                  st.sampled_from(_YAML_TOKENS) | st.text(max_size=4)),
        min_size=1, max_size=4,
    ),
)  # fmt: skip
def test_fleet_loader_on_mutated_fleets(text: str, edits: list[tuple[int, int, str]]) -> None:
    mutated = _mutate(text, edits)
    try:
        fleet = parse_fleet(mutated, source="fleet.yaml", base_dir="/fleet")
    except ConfigError as exc:
        assert str(exc).startswith("fleet.yaml")
        return
    assert isinstance(fleet, Fleet)


@fuzz(1000)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "clusters": st.lists(
                st.dictionaries(st.sampled_from(["name", "labels", "context", "kubeconfig"]),
                                _json_value, max_size=4), max_size=3),
            "applications": st.lists(
                st.dictionaries(
                    st.sampled_from(["name", "source", "destination", "sync", "interval",
                                     "clusters", "project"]),
                    _json_value | st.dictionaries(
                        st.sampled_from(["repo", "path", "revision", "helm", "jsonnet"]),
                        _json_value, max_size=3),
                    max_size=5),
                max_size=3),
            "projects": _json_value,
        },
    )
)  # fmt: skip
def test_fleet_loader_on_random_structures(data: dict[str, Any]) -> None:
    try:
        fleet = parse_fleet(json.dumps(data), source="fleet.yaml", base_dir="/fleet")
    except ConfigError as exc:
        assert str(exc).startswith("fleet.yaml")
        return
    assert isinstance(fleet, Fleet)


_PAYLOAD_KEYS = [
    "ref", "after", "before", "deleted", "repository", "project", "checkout_sha",
    "clone_url", "ssh_url", "html_url", "url", "git_http_url", "git_ssh_url",
    "default_branch", "repo", "commit", "web_url",
]  # fmt: skip
_payload_value = st.recursive(
    _json_scalar | st.sampled_from(["refs/heads/main", "refs/tags/v1", "0" * 40, "a" * 40,
                                    "https://github.com/org/repo", "git@h:org/r.git"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(_PAYLOAD_KEYS), children, max_size=5),
    max_leaves=15,
)  # fmt: skip
_HEADERS: dict[Provider, dict[str, str]] = {
    Provider.GITHUB: {"X-GitHub-Event": "push", "Content-Type": "application/json"},
    Provider.GITLAB: {"X-Gitlab-Event": "Push Hook"},
    Provider.PLAIN: {},
}


@fuzz(2000)
@given(
    st.sampled_from(list(_HEADERS)),
    st.dictionaries(st.sampled_from(_PAYLOAD_KEYS), _payload_value, max_size=6),
)
def test_webhook_parser_on_random_payloads(provider: Provider, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    try:
        event = parse(provider, _HEADERS[provider], body)
    except WebhookMalformed:
        return
    assert event is None or isinstance(event, PushEvent)


@fuzz(1000)
@given(st.sampled_from(list(_HEADERS)), st.binary(max_size=300) | _yaml_text.map(str.encode))
def test_webhook_parser_on_random_bodies(provider: Provider, body: bytes) -> None:
    try:
        event = parse(provider, _HEADERS[provider], body)
    except WebhookMalformed:
        return
    assert event is None or isinstance(event, PushEvent)
