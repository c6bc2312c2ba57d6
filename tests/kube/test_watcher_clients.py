"""The watcher's per-cluster state: what it saw of the objects, not the cluster's client.

``ClusterWatch`` against kubesim over HTTP, in an asyncio loop of the test's own, with
one HTTP session for every cluster as the watcher has.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from kubesim.runtime import SimHandle
from reconciler import inventory as inv
from reconciler.kube import ClientFactory, KubeClient
from reconciler.model import APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ObjectKey
from workers.watcher import ClusterWatch, Sink

DEADLINE = 15.0
CLUSTERS = ("sim-1", "sim-2")


def managed(data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": "default",
                         "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, APP_LABEL: "a"}},
            "data": {"v": data}}  # fmt: skip


def deploy(kube: KubeClient) -> None:
    """What a reconcile of application ``a`` leaves: its object and its inventory."""
    obj = kube.apply(managed("1"))
    kube.apply(inv.namespace_manifest())
    kube.apply(inv.to_configmap("a", inv.Inventory(entries=inv.entries_of([obj]))))


async def until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_watches_hold_no_client_and_go_on_seeing_changes(
    sim: SimHandle, kubeconfig: str, tmp_path: Path
) -> None:
    writer = ClientFactory(cache_dir=tmp_path / "writer")
    for name in CLUSTERS:
        deploy(writer.for_cluster(name=name, context=name, kubeconfig=kubeconfig))
    factory = ClientFactory(cache_dir=tmp_path / "watcher", max_clients=1)
    made: list[weakref.ref[KubeClient]] = []

    def client_of(name: str) -> Callable[[], KubeClient]:
        def get() -> KubeClient:
            kube = factory.for_cluster(name=name, context=name, kubeconfig=kubeconfig)
            made.append(weakref.ref(kube))
            return kube

        return get

    key = ObjectKey("", "ConfigMap", "default", "web")

    async def scenario() -> None:
        sink = Sink()
        async with aiohttp.ClientSession() as session:
            watches = [ClusterWatch(name, client_of(name), session, sink) for name in CLUSTERS]
            for watch in watches:
                watch.start()
            try:
                await until("both clusters watched", lambda: all(
                    w.since is not None and key in w.objects for w in watches))  # fmt: skip
                # Every client the watches were given can go: none is held by them.
                factory.clear()
                gc.collect()
                assert made and all(ref() is None for ref in made)
                sink.take()
                await asyncio.to_thread(
                    lambda: writer.for_cluster(name="sim-2", context="sim-2",
                                               kubeconfig=kubeconfig).apply(managed("2"))
                )  # fmt: skip
                await until("the change on sim-2 seen", lambda: ("a", "sim-2") in sink.changes)
                assert ("a", "sim-1") not in sink.changes
            finally:
                for watch in watches:
                    await watch.stop()

    try:
        asyncio.run(scenario())
    finally:
        factory.close()
        writer.close()
