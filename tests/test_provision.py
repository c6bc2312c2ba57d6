"""Redis provisioning: REDIS_URL when it answers, otherwise an embedded server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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


def test_embedded_redis_dies_with_the_process_that_started_it() -> None:
    """A SIGKILLed parent (``reconciler up``, a test run) leaves no redis-server behind."""
    script = (
        "import sys, time\n"
        "from reconciler.store.provision import EmbeddedRedis\n"
        "server = EmbeddedRedis().start()\n"
        "print(server.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # running
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return
            if _zombie(child):
                return
            time.sleep(0.05)
        os.kill(child, signal.SIGKILL)
        raise AssertionError(f"redis-server {child} outlived its SIGKILLed parent")
    finally:
        if parent.poll() is None:
            parent.kill()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")
    except OSError:
        return True
