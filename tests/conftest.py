"""Shared fixtures: the real services the tests talk to, provisioned once per session."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest
import redis

from reconciler.store.provision import provide_redis


@pytest.fixture(scope="session", autouse=True)
def installation_context() -> Iterator[str]:
    """Where this session's ``reconciler up`` runs write their installation context.

    A context file of the session's own, inherited by every process the tests start:
    ``up`` in a test never overwrites the context of a stack the developer is running,
    and a CLI test never reads that stack by accident.
    """
    with tempfile.TemporaryDirectory(prefix="reconciler-context-") as directory:
        path = os.path.join(directory, "context.yaml")
        previous = os.environ.get("RECONCILER_CONTEXT")
        os.environ["RECONCILER_CONTEXT"] = path
        try:
            yield path
        finally:
            if previous is None:
                os.environ.pop("RECONCILER_CONTEXT", None)
            else:
                os.environ["RECONCILER_CONTEXT"] = previous


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
