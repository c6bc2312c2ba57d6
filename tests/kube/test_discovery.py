"""Discovery shared by clusters that serve the same APIs, and clients dropped and rebuilt.

Against kubesim over HTTP: every simulated cluster serves the same built-in discovery
documents until a CRD is installed on one of them.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.runtime import SimHandle
from reconciler.errors import NotFound
from reconciler.kube import ClientFactory, KubeClient
from reconciler.kube.discovery import SHARED

#: Seconds a CRD may take to be served (kubesim establishes it after its controller delay).
DEADLINE = 10.0


def crd(kind: str, *, group: str = "example.com", version: str = "v1") -> dict[str, Any]:
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [{"name": version, "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": {
                              "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }  # fmt: skip


def served(kube: KubeClient, group: str, kind: str) -> bool:
    """Whether the cluster serves the kind now (what it knew of it forgotten first, as the
    engine does after applying a CRD)."""
    kube.forget_kind(group, kind)
    return kube.kind(group, kind) is not None


def poll(what: str, check: Callable[[], bool], *, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def library_resource(kube: KubeClient, group: str, kind: str) -> Any:
    """The kubernetes client's own parsed ``Resource`` of a kind on this cluster."""
    found = kube.dynamic.resources.search(group=group, kind=kind)
    assert len(found) == 1, found
    return found[0]


def discovery_requests(sim: SimHandle, name: str) -> int:
    return sim.requests(name).get(("get", "discovery"), 0)


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[ClientFactory]:
    clients = ClientFactory(cache_dir=tmp_path / "cache", max_clients=10)
    yield clients
    clients.close()


def client(factory: ClientFactory, kubeconfig: str, name: str) -> KubeClient:
    return factory.for_cluster(name=name, context=name, kubeconfig=kubeconfig)


def test_clusters_serving_the_same_discovery_share_one_parsed_copy(
    factory: ClientFactory, kubeconfig: str
) -> None:
    one, two = client(factory, kubeconfig, "sim-1"), client(factory, kubeconfig, "sim-2")
    assert one is not two
    for kube in (one, two):
        assert kube.kind("apps", "Deployment") is not None
        assert kube.kind("", "ConfigMap") is not None
    # The same Resource objects, not equal copies: one parsed copy for both clusters.
    deployment = library_resource(one, "apps", "Deployment")
    assert library_resource(two, "apps", "Deployment") is deployment
    assert library_resource(two, "", "ConfigMap") is library_resource(one, "", "ConfigMap")
    # Bound to no client, so one cluster's discovery keeps no other cluster's pool alive.
    assert deployment.client is None
    assert one.kind("apps", "Deployment") is two.kind("apps", "Deployment")


def test_a_crd_on_one_cluster_is_not_seen_on_another(
    sim: SimHandle, factory: ClientFactory, kubeconfig: str
) -> None:
    one, two = client(factory, kubeconfig, "sim-1"), client(factory, kubeconfig, "sim-2")
    # Both serve example.com/v1 with Widget: that group/version is shared too.
    for kube in (one, two):
        kube.apply(crd("Widget"))
    poll("Widget served on both", lambda: all(served(k, "example.com", "Widget")
                                              for k in (one, two)))  # fmt: skip
    assert library_resource(one, "example.com", "Widget") is library_resource(
        two, "example.com", "Widget"
    )
    # Gadget joins example.com/v1 on sim-1 alone: the same groups and versions on both
    # clusters, different documents.
    one.apply(crd("Gadget"))
    poll("Gadget served on sim-1", lambda: served(one, "example.com", "Gadget"))
    assert not served(two, "example.com", "Gadget")  # sim-2 read its own discovery again
    assert two.kind("example.com", "Widget") is not None
    with pytest.raises(NotFound, match="not served"):
        two.require_kind("example.com", "Gadget")
    # What still is the same stays shared.
    assert library_resource(one, "apps", "Deployment") is library_resource(
        two, "apps", "Deployment"
    )
    # And a third cluster, never told of either, serves neither.
    three = client(factory, kubeconfig, "sim-3")
    assert three.kind("example.com", "Widget") is None
    assert three.kind("example.com", "Gadget") is None
    assert sim.names == ["sim-1", "sim-2", "sim-3"]


def test_a_dropped_client_is_rebuilt_without_a_discovery_request_and_works(
    sim: SimHandle, tmp_path: Path, kubeconfig: str
) -> None:
    factory = ClientFactory(cache_dir=tmp_path / "cache", max_clients=2)
    try:
        first = client(factory, kubeconfig, "sim-1")
        assert first.kind("", "ConfigMap") is not None
        version = first.capabilities()
        client(factory, kubeconfig, "sim-2")
        assert client(factory, kubeconfig, "sim-1") is first  # used last: kept
        client(factory, kubeconfig, "sim-3")  # sim-2 is the least recently used
        assert len(factory) == 2
        assert client(factory, kubeconfig, "sim-1") is first
        client(factory, kubeconfig, "sim-2")  # now sim-3 goes, then sim-1
        client(factory, kubeconfig, "sim-3")
        assert len(factory) == 2

        before = discovery_requests(sim, "sim-1")
        again = client(factory, kubeconfig, "sim-1")
        assert again is not first
        assert again.capabilities() == version  # kept by the factory, not asked again
        assert again.kind("", "ConfigMap") is not None  # from the discovery cache file
        assert discovery_requests(sim, "sim-1") == before
        applied = again.apply({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "rebuilt", "namespace": "default"},
                               "data": {"k": "v"}})  # fmt: skip
        assert applied["data"] == {"k": "v"}
        found = again.get("", "ConfigMap", "default", "rebuilt")
        assert found is not None and found["data"] == {"k": "v"}
        # The client dropped still answers whoever held it (its pool was only emptied).
        assert first.get("", "ConfigMap", "default", "rebuilt") is not None
    finally:
        factory.close()


def test_discovery_no_client_uses_any_more_is_let_go(tmp_path: Path, kubeconfig: str) -> None:
    factory = ClientFactory(cache_dir=tmp_path / "cache", max_clients=10)

    def install() -> None:
        kube = client(factory, kubeconfig, "sim-1")
        kube.apply(crd("Widget", group="gone.example.com"))
        poll("Widget served", lambda: served(kube, "gone.example.com", "Widget"))

    install()
    alive = len(SHARED)
    factory.close()
    gc.collect()
    assert len(SHARED) < alive  # the group/versions of sim-1's client went with it
