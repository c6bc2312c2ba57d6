"""Fixtures for the reconcile engine against kubesim over HTTP and real Git repositories."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

import kubesim
from kubesim.runtime import SimHandle
from reconciler.engine import Engine
from reconciler.fleet import Fleet, parse_fleet
from tests.gitrepo import GitRepo


@dataclass
class World:
    """kubesim, a kubeconfig, a Git repository, and an engine with its own cache."""

    sim: SimHandle
    kubeconfig: str
    repo: GitRepo
    engine: Engine
    tmp: Path
    namespace: str
    clients: dict[str, client.ApiClient] = field(default_factory=dict)

    def fleet(self, applications: str, *, clusters: str | None = None) -> Fleet:
        """A fleet of sim-1 (prod), sim-2 (dev), sim-3 (dev) and the given applications."""
        clusters = clusters or textwrap.dedent(f"""\
            - {{name: sim-1, kubeconfig: {self.kubeconfig}, labels: {{env: prod}}}}
            - {{name: sim-2, kubeconfig: {self.kubeconfig}, labels: {{env: dev}}}}
            - {{name: sim-3, kubeconfig: {self.kubeconfig}, labels: {{env: dev}}}}
            """)
        text = "clusters:\n" + textwrap.indent(clusters, "  ")
        text += "applications:\n" + textwrap.indent(textwrap.dedent(applications), "  ")
        path = self.tmp / "fleet.yaml"
        path.write_text(text)
        return parse_fleet(text, source=str(path), base_dir=str(self.tmp))

    def api(self, cluster: str = "sim-1") -> client.ApiClient:
        if cluster not in self.clients:
            self.clients[cluster] = config.new_client_from_config(
                config_file=self.kubeconfig, context=cluster
            )
        return self.clients[cluster]

    def core(self, cluster: str = "sim-1") -> client.CoreV1Api:
        return client.CoreV1Api(self.api(cluster))

    def apps(self, cluster: str = "sim-1") -> client.AppsV1Api:
        return client.AppsV1Api(self.api(cluster))

    def writes(self, cluster: str = "sim-1") -> int:
        """Mutating requests kubesim served for ``cluster`` since the last reset."""
        return sum(
            n for (verb, _), n in self.sim.requests(cluster).items()
            if verb in {"create", "update", "patch", "delete", "deletecollection"}
        )  # fmt: skip


@pytest.fixture(scope="session")
def sim() -> Iterator[SimHandle]:
    with kubesim.serve(3, controller_delay=0.0) as handle:
        yield handle


@pytest.fixture
def world(sim: SimHandle, tmp_path: Path) -> Iterator[World]:
    repo = GitRepo(tmp_path / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    kubeconfig = sim.write_kubeconfig(str(tmp_path / "kubeconfig"))
    engine = Engine.local(tmp_path / "cache")
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    state = World(sim, kubeconfig, repo, engine, tmp_path, namespace)
    yield state
    engine.clients.close()
    for api in state.clients.values():
        api.close()
