"""Secrets in the shared render cache: kept by identity, never by value (real Redis)."""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from reconciler.store.cache import REDACTED, RenderCache, has_redacted
from reconciler.store.keys import Keys

COMMIT = "3" * 40
PLAIN = "hunter2-plain-value"
ENCODED = base64.b64encode(b"b64-only-value").decode()
SECRET: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "creds",
        "namespace": "web",
        "labels": {"team": PLAIN},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": ENCODED},
    },
    "type": "Opaque",
    "data": {"password": ENCODED},
    "stringData": {"token": PLAIN},
}
CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"},
}  # fmt: skip


def item(manifest: dict[str, Any], index: int) -> dict[str, Any]:
    return {"manifest": manifest, "source": "app/all.yaml", "line": 1 + index * 10,
            "index": index, "item": None}  # fmt: skip


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def test_a_secret_is_cached_by_identity_only(client: redis.Redis, redis_prefix: str) -> None:
    keys = Keys(redis_prefix)
    renders = RenderCache(client, keys, ttl=60)
    renders.put(COMMIT, "app", [item(CONFIGMAP, 0), item(SECRET, 1)])

    raw = client.get(keys.render(COMMIT, "app"))
    assert isinstance(raw, bytes)
    stored = zlib.decompress(raw).decode()
    for value in (PLAIN, ENCODED, base64.b64encode(PLAIN.encode()).decode(), "hunter2"):
        assert value not in stored

    cached = renders.get(COMMIT, "app")
    assert cached is not None
    assert cached[0] == item(CONFIGMAP, 0)  # everything else is kept whole
    identity = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "web"},
    }
    assert cached[1] == {**item(identity, 1), REDACTED: True}
    assert has_redacted(cached)
    assert SECRET["data"] == {"password": ENCODED}  # the caller's objects are untouched


def test_a_render_without_secrets_is_not_marked(client: redis.Redis, redis_prefix: str) -> None:
    renders = RenderCache(client, Keys(redis_prefix), ttl=60)
    lookalike = {**CONFIGMAP, "kind": "Secret", "apiVersion": "example.com/v1"}
    renders.put(COMMIT, "app", [item(CONFIGMAP, 0), item(lookalike, 1)])
    cached = renders.get(COMMIT, "app")
    assert cached == [item(CONFIGMAP, 0), item(lookalike, 1)]
    assert not has_redacted(cached)
