"""The webhook under replay and burst: what a replayed push queues, and /healthz meanwhile.

A real ``reconciler webhook`` process (started by the command line, as ``up`` starts it)
serves a fleet of two applications following one GitHub repository's ``main``, against a
real Redis (``REDIS_URL`` when it answers, else an embedded one) under a key prefix of its
own.  Nothing consumes the queue, so every ``reconcile_app`` message the server sends is
still in the forced queue when counted.  Per round:

* **replay**: one signed push sent ``--replays`` times, each under a fresh delivery id
  (the signature covers the body only, so anyone who saw it can do this), rate limit
  off: the messages queued, and the answers;
* **burst**: ``--burst`` such requests at once from one address (200 connections) while
  ``/healthz`` is polled on a connection of its own, with the default rate limit
  (``RECONCILER_WEBHOOK_RATE_LIMIT`` unset) and with it off: the answers, the messages
  queued, and the 50th/95th percentile and maximum of ``/healthz``.

    .venv/bin/python bench/webhook_bench.py [--rounds 3] [--replays 100] [--burst 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis

from reconciler.store.keys import Keys
from reconciler.store.provision import provide_redis
from workers.app import FORCED_QUEUE

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-webhook-secret-" + uuid.uuid4().hex
FLEET = """\
clusters:
  - name: prod
  - name: staging
applications:
  - name: web
    source: {repo: "https://github.com/Acme/Platform-Apps.git", revision: main}
  - name: api
    source: {repo: "git@github.com:acme/platform-apps", revision: main}
"""
PUSH = json.dumps({
    "ref": "refs/heads/main",
    "after": "9a3f1c2b7d8e4f5a6b0c1d2e3f4a5b6c7d8e9f01",
    "repository": {"clone_url": "https://github.com/Acme/Platform-Apps.git",
                   "default_branch": "main"},
}).encode()  # fmt: skip
SIGNATURE = "sha256=" + hmac.new(SECRET.encode(), PUSH, hashlib.sha256).hexdigest()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def headers() -> dict[str, str]:
    return {"X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": SIGNATURE, "Content-Type": "application/json"}  # fmt: skip


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    prefix: str


def start(redis_url: str, fleet: Path, *, rate_limit: int | None) -> Server:
    """``reconciler webhook`` on a free port, under a fresh prefix; waits for /healthz."""
    port = free_port()
    prefix = f"bench-webhook-{uuid.uuid4().hex[:8]}:"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    env.update(REDIS_URL=redis_url, RECONCILER_REDIS_PREFIX=prefix,
               RECONCILER_CONFIG=str(fleet), RECONCILER_WEBHOOK_GITHUB_SECRET=SECRET,
               RECONCILER_LOG_LEVEL="ERROR")  # fmt: skip
    if rate_limit is not None:
        env["RECONCILER_WEBHOOK_RATE_LIMIT"] = str(rate_limit)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "webhook", "--port", str(port)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the webhook server did not start") from None
            time.sleep(0.05)  # polling under a deadline
    return Server(process, url, prefix)


def stop(server: Server, client: redis.Redis) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
    keys = list(client.scan_iter(match=f"{server.prefix}*", count=1000))
    if keys:
        client.delete(*keys)


def queued(client: redis.Redis, server: Server) -> int:
    return int(client.llen(Keys(server.prefix).celery() + FORCED_QUEUE))


async def replay(server: Server, n: int) -> Counter[int]:
    async with aiohttp.ClientSession() as session:
        statuses: Counter[int] = Counter()
        for _ in range(n):
            async with session.post(f"{server.url}/hooks/git", data=PUSH, headers=headers()) as r:
                await r.read()
                statuses[r.status] += 1
        return statuses


async def burst(server: Server, n: int) -> tuple[Counter[int], list[float]]:
    hooks = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    health = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    latencies: list[float] = []
    done = asyncio.Event()

    async def deliver() -> int:
        async with hooks.post(f"{server.url}/hooks/git", data=PUSH, headers=headers()) as r:
            await r.read()
            return r.status

    async def poll() -> None:
        while not done.is_set() or len(latencies) < 20:
            started = time.perf_counter()
            async with health.get(f"{server.url}/healthz") as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"/healthz answered {r.status} during the burst")
            latencies.append(time.perf_counter() - started)

    async with hooks, health:
        poller = asyncio.create_task(poll())
        statuses = Counter(await asyncio.gather(*(deliver() for _ in range(n))))
        done.set()
        await poller
    return statuses, latencies


def ms(value: float) -> str:
    return f"{value * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    results: dict[str, list[Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, provide_redis() as url:
        fleet = Path(tmp) / "fleet.yaml"
        fleet.write_text(FLEET)
        client = redis.Redis.from_url(url)
        for round_ in range(1, args.rounds + 1):
            server = start(url, fleet, rate_limit=0)
            try:
                statuses = asyncio.run(replay(server, args.replays))
                messages = queued(client, server)
            finally:
                stop(server, client)
            print(f"round {round_} replay x{args.replays}: answers {dict(statuses)}, "
                  f"reconcile_app queued {messages} (2 applications match)")  # fmt: skip
            results.setdefault("replay", []).append(messages)
            for label, limit in (("rate limit default", None), ("rate limit off", 0)):
                server = start(url, fleet, rate_limit=limit)
                try:
                    statuses, latencies = asyncio.run(burst(server, args.burst))
                    messages = queued(client, server)
                finally:
                    stop(server, client)
                p50 = statistics.median(latencies)
                p95 = statistics.quantiles(latencies, n=20)[-1]
                print(f"round {round_} burst x{args.burst} ({label}): answers {dict(statuses)}, "
                      f"queued {messages}; /healthz {len(latencies)} polls, p50 {ms(p50)}, "
                      f"p95 {ms(p95)}, max {ms(max(latencies))}")  # fmt: skip
                results.setdefault(label, []).append(p95)
        client.close()
    print(f"replay: reconcile_app queued per round {results['replay']}")
    for label in ("rate limit default", "rate limit off"):
        p95s = results[label]
        print(f"burst ({label}): /healthz p95 median {ms(statistics.median(p95s))}, "
              f"worst {ms(max(p95s))} over {len(p95s)} rounds")  # fmt: skip


if __name__ == "__main__":
    main()
