"""Redis provisioning: REDIS_URL when it answers, otherwise an embedded server."""

from __future__ import annotations

import redis

from reconciler.store.provision import EmbeddedRedis, free_port, provide_redis, redis_answers


def test_unreachable_url_starts_embedded_server_and_stops_it() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert not redis_answers(dead)
    with provide_redis(dead) as url:
        assert url != dead
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    assert not redis_answers(url)


def test_answering_url_is_used_as_is() -> None:
    with EmbeddedRedis() as server, provide_redis(server.url) as url:
        assert url == server.url


def test_garbage_url_does_not_answer() -> None:
    assert not redis_answers("not-a-url")


def test_redis_url_fixture_answers(redis_url: str, redis_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set(f"{redis_prefix}x", "1")
    assert client.get(f"{redis_prefix}x") == b"1"
    client.close()
