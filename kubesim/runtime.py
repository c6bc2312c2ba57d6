"""Running a simulator: in a background thread for tests, or in the foreground.

``serve()`` gives tests a live simulator and a handle to steer it (faults, request
counters, a kubeconfig) without a second process; ``run()`` is the foreground server
behind ``reconciler sim`` and ``python -m kubesim``, stopped cleanly by SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import yaml
from aiohttp import web

from kubesim.server import Simulator
from kubesim.store import Cluster

T = TypeVar("T")


def cluster_names(clusters: int | Sequence[str], prefix: str = "sim-") -> list[str]:
    """``3`` -> ``["sim-1", "sim-2", "sim-3"]``; explicit names are kept as given."""
    if isinstance(clusters, int):
        return [f"{prefix}{i}" for i in range(1, clusters + 1)]
    return list(clusters)


def kubeconfig_for(base_url: str, names: Sequence[str]) -> dict[str, Any]:
    """A kubeconfig with one cluster, user-less context per simulated cluster."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {"name": name, "cluster": {"server": f"{base_url}/clusters/{name}"}} for name in names
        ],
        "users": [{"name": "kubesim", "user": {}}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": "kubesim"}} for name in names
        ],
        "current-context": names[0] if names else "",
    }


def write_kubeconfig(path: str, base_url: str, names: Sequence[str]) -> None:
    """Write the kubeconfig atomically (readers never see half a file), mode 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kubeconfig-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        yaml.safe_dump(kubeconfig_for(base_url, names), out, sort_keys=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


class SimHandle:
    """A simulator running in a background thread, and the means to steer it."""

    def __init__(self, simulator: Simulator, loop: asyncio.AbstractEventLoop, url: str) -> None:
        self.simulator = simulator
        self.loop = loop
        self.url = url

    @property
    def names(self) -> list[str]:
        """Names of the simulated clusters."""
        return list(self.simulator.clusters)

    def cluster_url(self, name: str) -> str:
        """API server URL of one cluster."""
        return f"{self.url}/clusters/{name}"

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the simulator's loop thread (where all state lives) and return."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def cluster(self, name: str) -> Cluster:
        """The cluster's state object; touch it only through ``call``."""
        return self.simulator.clusters[name]

    def add_cluster(self, name: str) -> None:
        """Add a cluster at run time."""
        self.call(lambda: self.simulator.add_cluster(name))

    def set_faults(self, name: str, **values: Any) -> None:
        """Change faults of one cluster; keys as the admin endpoint's (errorRate, down...)."""
        self.call(lambda: self.cluster(name).faults.update(values))

    def requests(self, name: str) -> dict[tuple[str, str], int]:
        """Requests served by one cluster so far, by (verb, resource)."""
        return self.call(lambda: dict(self.cluster(name).requests))

    def request_log(self, name: str) -> list[dict[str, Any]]:
        """Recent requests of one cluster: start, end (epoch seconds), method, path, status."""
        return self.call(lambda: list(self.cluster(name).request_log))

    def reset_requests(self, name: str | None = None) -> None:
        """Zero the request counters of one cluster, or of all."""
        targets = [name] if name else self.names

        def reset() -> None:
            for target in targets:
                self.cluster(target).requests.clear()
                self.cluster(target).request_log.clear()

        self.call(reset)

    def kubeconfig(self) -> dict[str, Any]:
        """The kubeconfig for every cluster, as data."""
        return kubeconfig_for(self.url, self.names)

    def write_kubeconfig(self, path: str) -> str:
        """Write the kubeconfig for every cluster to ``path``; returns the path."""
        write_kubeconfig(path, self.url, self.names)
        return path


async def _start(simulator: Simulator, host: str, port: int) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(simulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    url = f"http://{host}:{bound}"
    simulator.base_url = url
    return runner, url


@contextlib.contextmanager
def serve(
    clusters: int | Sequence[str] = 1,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    name_prefix: str = "sim-",
    controller_delay: float = 0.0,
) -> Iterator[SimHandle]:
    """Run a simulator in a background thread for the duration of the ``with`` block."""
    simulator = Simulator(cluster_names(clusters, name_prefix), controller_delay=controller_delay)
    loop = asyncio.new_event_loop()
    started: Future[tuple[web.AppRunner, str]] = Future()

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.set_result(loop.run_until_complete(_start(simulator, host, port)))
        except BaseException as exc:
            started.set_exception(exc)
            return
        loop.run_forever()

    thread = threading.Thread(target=thread_main, name="kubesim", daemon=True)
    thread.start()
    runner, url = started.result(timeout=30)
    try:
        yield SimHandle(simulator, loop, url)
    finally:
        asyncio.run_coroutine_threadsafe(_stop(simulator, runner), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def run(
    clusters: int | Sequence[str] = 3,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    kubeconfig: str | None = None,
    name_prefix: str = "sim-",
    controller_delay: float = 0.0,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM; write the kubeconfig once bound."""
    simulator = Simulator(cluster_names(clusters, name_prefix), controller_delay=controller_delay)

    async def main() -> None:
        runner, url = await _start(simulator, host, port)
        if kubeconfig:
            write_kubeconfig(kubeconfig, url, list(simulator.clusters))
        if ready is not None:
            ready(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await _stop(simulator, runner)

    asyncio.run(main())


async def _stop(simulator: Simulator, runner: web.AppRunner) -> None:
    """End every open watch, then the server: a watch waiting for its next event would
    otherwise hold the shutdown until its client's connection is found gone (seconds)."""
    for cluster in simulator.clusters.values():
        cluster.cut_watches()
    await runner.cleanup()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's command-line options (shared by ``reconciler sim``)."""
    parser.add_argument("--clusters", type=int, default=3, help="number of clusters (default 3)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--kubeconfig", help="write a kubeconfig with a context per cluster")
    parser.add_argument("--name-prefix", default="sim-", help="cluster name prefix (sim-)")
    parser.add_argument(
        "--controller-delay", type=float, default=0.5,
        help="seconds before simulated controllers report status (default 0.5)",
    )  # fmt: skip


def run_from_args(args: argparse.Namespace) -> int:
    """Run with parsed ``add_arguments`` options; prints where it listens."""
    if args.clusters < 1:
        print("--clusters must be at least 1", file=sys.stderr)
        return 2

    def ready(url: str) -> None:
        names = cluster_names(args.clusters, args.name_prefix)
        print(f"kubesim serving {len(names)} clusters at {url}/clusters/NAME", flush=True)
        if args.kubeconfig:
            print(f"kubeconfig: {args.kubeconfig} (contexts {', '.join(names)})", flush=True)

    run(
        args.clusters, host=args.host, port=args.port, kubeconfig=args.kubeconfig,
        name_prefix=args.name_prefix, controller_delay=args.controller_delay, ready=ready,
    )  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kubesim``."""
    parser = argparse.ArgumentParser(prog="kubesim", description=__doc__)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
