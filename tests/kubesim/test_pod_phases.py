"""Pod phases over HTTP: run-to-completion Pods finish, long-running Pods keep running.

Sync hooks are Pods with ``restartPolicy: Never`` (Argo CD) whose end decides whether a
sync goes on, so the simulated kubelet must end them ``Succeeded`` or ``Failed`` with the
container statuses and conditions a real node reports, and leave them ``Running`` when the
rollout hangs.  Every wait below polls the API with a deadline.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from kubesim.runtime import SimHandle
from tests.kubesim.conftest import Kubectl

Obj = dict[str, Any]


def wait_for(predicate: Callable[[], Any], *, timeout: float = 15.0) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.02)


def pod(name: str, restart_policy: str | None, mode: str = "") -> Any:
    """A Pod manifest (typed Any: the client's create methods are declared for V1Pod)."""
    spec: Obj = {"containers": [{"name": "hook", "image": "busybox:1.36",
                                 "command": ["sh", "-c", "true"]}]}  # fmt: skip
    if restart_policy is not None:
        spec["restartPolicy"] = restart_policy
    meta: Obj = {"name": name}
    if mode:
        meta["annotations"] = {"kubesim.dev/rollout": mode}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def ns(core: client.CoreV1Api) -> Iterator[str]:
    name = f"ph-{uuid.uuid4().hex[:8]}"
    namespace: Any = {"metadata": {"name": name}}
    core.create_namespace(namespace)
    yield name
    core.delete_namespace(name)


def read(api: client.ApiClient, namespace: str, name: str) -> Obj:
    """The Pod as JSON (camelCase field names, as on the wire)."""
    obj: Obj = api.sanitize_for_serialization(  # type: ignore[no-untyped-call]
        client.CoreV1Api(api).read_namespaced_pod(name, namespace)
    )
    return obj


def phase_is(api: client.ApiClient, namespace: str, name: str, phase: str) -> Obj | None:
    obj = read(api, namespace, name)
    return obj if (obj.get("status") or {}).get("phase") == phase else None


def conditions(obj: Obj) -> dict[str, tuple[str, str | None]]:
    return {c["type"]: (c["status"], c.get("reason")) for c in obj["status"]["conditions"]}


@pytest.mark.parametrize("restart_policy", ["Never", "OnFailure"])
def test_run_to_completion_pod_succeeds(
    api_client: client.ApiClient, core: client.CoreV1Api, ns: str, restart_policy: str
) -> None:
    core.create_namespaced_pod(ns, pod("presync", restart_policy))
    done = wait_for(lambda: phase_is(api_client, ns, "presync", "Succeeded"))
    [status] = done["status"]["containerStatuses"]
    assert status["name"] == "hook" and status["ready"] is False
    terminated = status["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    assert conditions(done)["Ready"] == ("False", "PodCompleted")
    assert conditions(done)["ContainersReady"] == ("False", "PodCompleted")
    assert conditions(done)["PodScheduled"] == ("True", None)


def test_annotation_fail_makes_the_pod_fail(
    api_client: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_pod(ns, pod("presync", "Never", mode="fail"))
    failed = wait_for(lambda: phase_is(api_client, ns, "presync", "Failed"))
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (1, "Error")
    assert conditions(failed)["Ready"] == ("False", "PodFailed")


def test_hang_keeps_the_pod_running_until_released(
    api_client: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_pod(ns, pod("stuck", "Never", mode="hang"))
    running = wait_for(lambda: phase_is(api_client, ns, "stuck", "Running"))
    assert running["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    # A Pod created after it has finished, so the controller has had its turn at "stuck".
    core.create_namespaced_pod(ns, pod("later", "Never"))
    wait_for(lambda: phase_is(api_client, ns, "later", "Succeeded"))
    again = read(api_client, ns, "stuck")
    assert again["status"]["phase"] == "Running"
    assert again["metadata"]["resourceVersion"] == running["metadata"]["resourceVersion"]
    core.patch_namespaced_pod(
        "stuck", ns, {"metadata": {"annotations": {"kubesim.dev/rollout": None}}}
    )
    wait_for(lambda: phase_is(api_client, ns, "stuck", "Succeeded"))


def test_restart_always_pod_stays_running_and_ready(
    api_client: client.ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    core.create_namespaced_pod(ns, pod("server", None))
    running = wait_for(lambda: phase_is(api_client, ns, "server", "Running"))
    assert conditions(running)["Ready"][0] == "True"


def test_kubectl_waits_for_a_hook_to_finish(kubectl: Kubectl, ns: str) -> None:
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hook}\n"
        "spec:\n  restartPolicy: Never\n  containers: [{name: hook, image: busybox}]\n"
    )
    kubectl("apply", "-n", ns, "-f", "-", stdin=manifest)
    out = kubectl("wait", "pod/hook", "-n", ns, "--for=jsonpath={.status.phase}=Succeeded",
                  "--timeout=30s").stdout  # fmt: skip
    assert "condition met" in out


def test_cluster_rollout_fault_fails_hooks(sim: SimHandle, tmp_path: Path) -> None:
    sim.add_cluster("phases")
    kubeconfig = sim.write_kubeconfig(str(tmp_path / "kubeconfig"))
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, context="phases"
    )
    try:
        core = client.CoreV1Api(api)
        sim.set_faults("phases", rollout="fail")
        core.create_namespaced_pod("default", pod("hook", "Never"))
        wait_for(lambda: phase_is(api, "default", "hook", "Failed"))
        core.create_namespaced_pod("default", pod("server", "Always"))
        wait_for(lambda: phase_is(api, "default", "server", "Running"))
    finally:
        sim.set_faults("phases", rollout="")
        api.close()
