"""Key names: one prefix, checked parts, no raw URLs or credentials."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from reconciler.errors import ConfigError
from reconciler.settings import DEFAULT_PREFIX
from reconciler.store.keys import PREFIX_ENV, Keys, repo_hash, without_userinfo

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


def every_key(keys: Keys) -> list[str]:
    return [
        keys.lock("web", "prod-1"),
        keys.history("web", "prod-1"),
        keys.forced_pending("web", "prod-1"),
        keys.status_index(),
        keys.suspended(),
        keys.fleet(),
        keys.revision("https://git.example.com/org/repo.git", "main"),
        keys.fetch_flight("https://git.example.com/org/repo.git"),
        keys.render(COMMIT, "apps/web|plain"),
        keys.webhook_seen("6e8f2a4c-1d1e-11ef-9f7e-3a1b2c3d4e5f"),
    ]


def test_prefix_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PREFIX_ENV, raising=False)
    assert Keys().prefix == DEFAULT_PREFIX == "reconciler:"
    monkeypatch.setenv(PREFIX_ENV, "staging:")
    assert Keys().prefix == "staging:"
    assert Keys("explicit:").prefix == "explicit:"


@pytest.mark.parametrize("prefix", ["", "has space:", "glob*:", "q?:", "[x]:", "a" * 65])
def test_a_prefix_that_would_break_scan_patterns_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError, match=PREFIX_ENV):
        Keys(prefix)


def test_every_key_is_prefixed_and_distinct() -> None:
    names = every_key(Keys("one:"))
    assert all(name.startswith("one:") for name in names)
    assert len(set(names)) == len(names)
    assert not set(names) & set(every_key(Keys("two:")))


@pytest.mark.parametrize("name", ["", "Web", "web:prod", "web/prod", "we*b", "-web", "a" * 64])
def test_names_must_be_dns_labels(name: str) -> None:
    keys = Keys("t:")
    with pytest.raises(ConfigError, match="DNS-1123"):
        keys.lock(name, "prod")
    with pytest.raises(ConfigError, match="DNS-1123"):
        keys.history("web", name)
    with pytest.raises(ConfigError, match="DNS-1123"):
        keys.target_field(name, "prod")


def test_target_fields_and_app_pattern() -> None:
    assert Keys.target_field("web", "prod-1") == "web/prod-1"
    assert Keys.app_fields("web") == "web/*"


def test_repository_urls_are_hashed_without_credentials() -> None:
    keys = Keys("t:")
    clean = keys.revision("https://git.example.com/org/repo.git", "main")
    with_token = keys.revision("https://user:s3cret@git.example.com/org/repo.git", "main")
    assert clean == with_token
    assert "s3cret" not in with_token and "example" not in with_token
    assert keys.fetch_flight("https://x:tok@h/r") == keys.fetch_flight("https://h/r")
    assert keys.fetch_flight("https://h/r") != keys.fetch_flight("https://h/other")
    assert repo_hash("git@h:org/r") == repo_hash("h:org/r")
    assert without_userinfo("https://u:p@ss@h/r?x=1") == "https://h/r?x=1"


def test_revisions_are_kept_when_safe_and_hashed_otherwise() -> None:
    keys = Keys("t:")
    assert keys.revision("https://h/r", "release/v1.2").endswith(":release/v1.2")
    odd = [keys.revision("https://h/r", rev) for rev in ("a b", "a:b", "a*", "", "x" * 200)]
    assert all(":sha256=" in key for key in odd)
    assert len(set(odd)) == len(odd)
    # A verbatim part can never look like a hashed one.
    assert keys.revision("https://h/r", odd[0].rpartition(":")[2]) != odd[0]


def test_render_keys_need_a_commit_and_hash_the_path() -> None:
    keys = Keys("t:")
    key = keys.render(COMMIT, "apps/../etc passwd|kustomize")
    assert key.startswith(f"t:render:{COMMIT}:") and "passwd" not in key
    assert keys.render(COMMIT, "a") != keys.render(COMMIT, "b")
    with pytest.raises(ValueError, match="commit"):
        keys.render("main", "a")


def test_webhook_delivery_ids_are_bounded() -> None:
    keys = Keys("t:")
    assert keys.webhook_seen("abc-123") == "t:webhook:abc-123"
    hostile = keys.webhook_seen("x" * 10_000 + "\r\n*")
    assert len(hostile) < 100 and "*" not in hostile


def test_scan_pattern_finds_only_this_installation(client: redis.Redis, redis_prefix: str) -> None:
    mine, other = Keys(redis_prefix + "a:"), Keys(redis_prefix + "b:")
    for keys in (mine, other):
        client.set(keys.lock("web", "prod"), "1")
        client.hset(keys.status_index(), keys.target_field("web", "prod"), "{}")
    found = sorted(key.decode() for key in client.scan_iter(match=mine.pattern()))
    assert found == sorted([mine.lock("web", "prod"), mine.status_index()])
