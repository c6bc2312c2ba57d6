"""The worker's render path: Secrets come from the process, never from Redis (real Redis).

A stub engine stands in for Git and the renderers so a test can count renders; the
render cache, the keys and Redis are the real ones.
"""

from __future__ import annotations

import base64
import copy
import zlib
from collections.abc import Iterator
from typing import Any, cast

import pytest
import redis

from reconciler.engine import RenderInput
from reconciler.render import HelmOptions, RenderedObject
from reconciler.store.cache import RenderCache
from reconciler.store.keys import Keys
from workers.runtime import CachedRenderer, RenderMemory

COMMIT = "4" * 40
PASSWORD = "s3cr3t-runtime-password"
ENCODED = base64.b64encode(PASSWORD.encode()).decode()


def secret() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": ENCODED}}  # fmt: skip


def configmap() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
            "data": {"k": "v"}}  # fmt: skip


class StubEngine:
    """The uncached render stage: fixed objects, and how often it was asked."""

    def __init__(self, manifests: list[dict[str, Any]]) -> None:
        self.manifests = manifests
        self.renders = 0

    def __call__(self, spec: RenderInput, commit: str) -> list[RenderedObject]:
        self.renders += 1
        fresh = copy.deepcopy(self.manifests)  # as a real render: new objects each time
        return [RenderedObject(m, "app/all.yaml", 1 + 5 * i, i) for i, m in enumerate(fresh)]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def runtime(client: redis.Redis, keys: Keys, engine: StubEngine) -> CachedRenderer:
    """A worker process's render stage; a new one is a new worker process."""
    return CachedRenderer(cast(Any, engine), RenderCache(client, keys), RenderMemory(entries=2))


SPEC = RenderInput(repo="/srv/git/apps", path="app", chart=HelmOptions(release_name="app"))


def stored(client: redis.Redis, keys: Keys) -> str:
    raw = client.get(keys.render(COMMIT, SPEC.key()))
    assert isinstance(raw, bytes)
    return zlib.decompress(raw).decode()


def test_secrets_are_applied_whole_but_never_reach_redis(
    client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    engine = StubEngine([configmap(), secret()])
    first = runtime(client, keys, engine)
    objects = first(SPEC, COMMIT)
    assert [o.manifest for o in objects] == [configmap(), secret()]
    assert PASSWORD not in stored(client, keys) and ENCODED not in stored(client, keys)
    assert '"redacted":true' in stored(client, keys)

    # The same process: from its own memory, a copy each time.
    objects[1].manifest["data"]["password"] = "changed by a run"
    assert first(SPEC, COMMIT)[1].manifest == secret()
    assert engine.renders == 1

    # Another process finds the Secret redacted in Redis and renders again.
    second = runtime(client, keys, engine)
    again = second(SPEC, COMMIT)
    assert engine.renders == 2
    assert [o.manifest for o in again] == [configmap(), secret()]
    assert [(o.source, o.line, o.index) for o in again] == [(o.source, o.line, o.index)
                                                           for o in objects]  # fmt: skip
    assert PASSWORD not in stored(client, keys)


def test_renders_without_secrets_are_shared_through_redis(
    client: redis.Redis, redis_prefix: str
) -> None:
    keys = Keys(redis_prefix)
    engine = StubEngine([configmap()])
    runtime(client, keys, engine)(SPEC, COMMIT)
    objects = runtime(client, keys, engine)(SPEC, COMMIT)
    assert engine.renders == 1
    assert [o.manifest for o in objects] == [configmap()]


def test_render_memory_keeps_the_most_recently_used() -> None:
    memory = RenderMemory(entries=2)
    render = [RenderedObject(secret(), "a.yaml", 1, 0)]
    memory.put("a" * 40, "k", render)
    memory.put("b" * 40, "k", render)
    assert memory.get("a" * 40, "k") is not None  # now the most recent
    memory.put("c" * 40, "k", render)
    assert memory.get("b" * 40, "k") is None
    assert memory.get("a" * 40, "k") is not None
