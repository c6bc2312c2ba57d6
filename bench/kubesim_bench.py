"""How fast is kubesim? GETs, lists and server-side applies per second over HTTP.

The simulator runs in its own process pinned to one core; this process is the client,
pinned to the other, sending requests over keep-alive connections with a fixed number
in flight.  The fleet: ``--clusters`` clusters with ``--objects`` ConfigMaps in all.

    .venv/bin/python bench/kubesim_bench.py [--clusters 100] [--objects 10000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable

import aiohttp

APPLY = "application/apply-patch+yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_simulator(clusters: int, port: int) -> subprocess.Popen[bytes]:
    """kubesim in a child process, pinned to CPU 0 when the machine has two or more."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubesim", "--clusters", str(clusters), "--port", str(port),
         "--controller-delay", "0"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(proc.pid, {0})
        os.sched_setaffinity(0, {1})
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("kubesim did not start") from None
            time.sleep(0.05)


def configmap(name: str, value: str) -> bytes:
    return json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "bench", "labels": {"bench": "yes"}},
        "data": {"value": value, "other": "x" * 64},
    }).encode()  # fmt: skip


async def run_for(
    seconds: float, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[int, float]:
    """Call ``one(i)`` from ``concurrency`` workers for ``seconds``; (calls, elapsed)."""
    done = 0
    stop = time.monotonic() + seconds
    started = time.monotonic()

    async def worker(seed: int) -> None:
        nonlocal done
        i = seed
        while time.monotonic() < stop:
            await one(i)
            done += 1
            i += concurrency

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done, time.monotonic() - started


async def bench(args: argparse.Namespace, base: str) -> dict[str, float]:
    names = [f"sim-{i}" for i in range(1, args.clusters + 1)]
    per_cluster = max(1, args.objects // args.clusters)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    results: dict[str, float] = {}
    async with aiohttp.ClientSession(connector=connector) as http:

        async def check(response: aiohttp.ClientResponse) -> None:
            body = await response.read()
            if response.status >= 400:
                raise RuntimeError(f"{response.status}: {body[:200]!r}")

        def url(cluster: str, name: str = "") -> str:
            path = f"{base}/clusters/{cluster}/api/v1/namespaces/bench/configmaps"
            return f"{path}/{name}" if name else path

        for cluster in names:
            body = json.dumps({"metadata": {"name": "bench"}}).encode()
            async with http.post(f"{base}/clusters/{cluster}/api/v1/namespaces", data=body,
                                 headers={"Content-Type": "application/json"}) as r:  # fmt: skip
                await check(r)
        targets = [(c, f"cm-{j}") for c in names for j in range(per_cluster)]

        async def apply_value(cluster: str, name: str, value: str) -> None:
            async with http.patch(
                url(cluster, name) + "?fieldManager=bench",
                data=configmap(name, value),
                headers={"Content-Type": APPLY},
            ) as r:
                await check(r)

        async def every_target(value: str) -> None:
            step = args.concurrency
            for chunk in range(0, len(targets), step):
                batch = targets[chunk : chunk + step]
                await asyncio.gather(*(apply_value(c, n, value) for c, n in batch))

        started = time.monotonic()
        await every_target("0")
        results["objects"] = len(targets)
        results["create_applies_per_s"] = len(targets) / (time.monotonic() - started)

        async def get(i: int) -> None:
            cluster, name = random.choice(targets)
            async with http.get(url(cluster, name)) as r:
                await check(r)

        n, elapsed = await run_for(args.seconds, args.concurrency, get)
        results["gets_per_s"] = n / elapsed

        async def list_(i: int) -> None:
            async with http.get(
                url(random.choice(names)), params={"labelSelector": "bench=yes"}
            ) as r:
                await check(r)

        n, elapsed = await run_for(args.seconds, args.concurrency, list_)
        results["lists_per_s"] = n / elapsed
        results["items_per_list"] = per_cluster

        async def apply(i: int) -> None:
            cluster, name = random.choice(targets)
            await apply_value(cluster, name, str(i))

        n, elapsed = await run_for(args.seconds, args.concurrency, apply)
        results["applies_per_s"] = n / elapsed

        async def noop_apply(i: int) -> None:
            cluster, name = targets[i % len(targets)]
            await apply_value(cluster, name, "same")

        await every_target("same")  # every object at the value the no-op phase applies
        n, elapsed = await run_for(args.seconds, args.concurrency, noop_apply)
        results["noop_applies_per_s"] = n / elapsed
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    port = free_port()
    proc = start_simulator(args.clusters, port)
    try:
        results = asyncio.run(bench(args, f"http://127.0.0.1:{port}"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"kubesim: {args.clusters} clusters, {int(results['objects'])} ConfigMaps, "
              f"{args.concurrency} requests in flight, server pinned to one core")  # fmt: skip
        for key, value in results.items():
            print(f"  {key:24} {value:10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
