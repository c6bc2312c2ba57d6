"""Shared fixtures: the real services the tests talk to, provisioned once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from reconciler.store.provision import provide_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis that answers: ``REDIS_URL`` when it does, else an embedded server."""
    with provide_redis() as url:
        yield url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"reconciler-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
