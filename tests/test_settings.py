"""The one reader of the environment: defaults, types, and secrets that never print."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.settings import DEFAULT_PREFIX, DEFAULT_REDIS_URL, load


def test_defaults_when_nothing_is_set() -> None:
    env = load({})
    assert env.redis_url is None and env.redis == DEFAULT_REDIS_URL
    assert env.prefix == DEFAULT_PREFIX
    assert env.config is None
    assert env.routes == ()
    assert env.lock_ttl == 60.0
    assert env.cache_path == Path("~/.cache/reconciler").expanduser()


def test_values_are_typed_and_empty_means_unset() -> None:
    env = load({
        "REDIS_URL": "", "RECONCILER_ROUTES": "eu, us,,", "RECONCILER_LOCK_TTL": "12.5",
        "RECONCILER_WORKER_CONCURRENCY": "3", "RECONCILER_CONFIG": "/etc/fleet.yaml",
        "RECONCILER_CONTEXT": "/tmp/ctx.yaml",
    })  # fmt: skip
    assert env.redis_url is None
    assert env.routes == ("eu", "us")
    assert env.lock_ttl == 12.5 and env.worker_concurrency == 3
    assert env.config == "/etc/fleet.yaml"
    assert env.context_path == Path("/tmp/ctx.yaml")


def test_a_malformed_number_names_the_variable() -> None:
    with pytest.raises(ValidationError, match="RECONCILER_LOCK_TTL"):
        load({"RECONCILER_LOCK_TTL": "soon"})


def test_secrets_never_print() -> None:
    env = load({
        "RECONCILER_GIT_TOKEN": "tok-123", "RECONCILER_GIT_TOKEN_GITHUB_COM": "gh-456",
        "FLOWER_BASIC_AUTH": "admin:pw-789", "RECONCILER_WEBHOOK_GITHUB_SECRET": "hook-000",
    })  # fmt: skip
    shown = repr(env) + str(env) + env.model_dump_json()
    for secret in ("tok-123", "gh-456", "pw-789", "hook-000"):
        assert secret not in shown
    token = env.git_host_token("GITHUB_COM")
    assert token is not None and token.get_secret_value() == "gh-456"
    assert env.git_host_token("GITLAB_COM") is None
