"""The demo world reconciles cleanly end to end: real Git, real kustomize, kubesim over HTTP.

``reconciler up --demo`` is the first thing a new user runs, so everything it creates must
sync on the first try and stay in sync; these tests drive it through the same engine the
CLI and the workers use and read the result back with the official Kubernetes client.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kubernetes import client, config

import kubesim
from kubesim.runtime import SimHandle
from reconciler.demo import (
    APPS_DIR,
    DEMO_CLUSTERS,
    DemoCluster,
    DemoError,
    commit_change,
    create_demo,
    instructions,
    main,
)
from reconciler.engine import Engine
from reconciler.fleet import Fleet, load_fleet
from reconciler.model import Action, Health, SyncStatus
from reconciler.outcome import Outcome

CLUSTERS = [cluster.name for cluster in DEMO_CLUSTERS]


@dataclass
class Demo:
    """A demo created against a private kubesim, and the engine that reconciles it."""

    sim: SimHandle
    root: Path
    kubeconfig: str
    fleet: Fleet
    engine: Engine
    clients: dict[str, client.ApiClient] = field(default_factory=dict)

    def reconcile_all(self) -> list[Outcome]:
        """One pass over every (application, target cluster) pair, as beat would schedule."""
        return [
            self.engine.reconcile(self.fleet.target(app.name, cluster.name))
            for app in self.fleet.applications
            for cluster in self.fleet.targets(app)
        ]

    def api(self, cluster: str) -> client.ApiClient:
        if cluster not in self.clients:
            self.clients[cluster] = config.new_client_from_config(
                config_file=self.kubeconfig, context=cluster
            )
        return self.clients[cluster]


def _describe(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"{o.application}@{o.cluster}: {o.sync} errors={[p.message for p in o.errors]} "
        f"drift={[d.object for d in o.drift]}"
        for o in outcomes
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The demo, created and reconciled once: the first pass is what every test builds on."""
    root = tmp_path_factory.mktemp("demo")
    # A private simulator: the demo's namespaces are fixed, so it must not share clusters.
    with kubesim.serve(CLUSTERS, controller_delay=0.0) as sim:
        kubeconfig = sim.write_kubeconfig(str(root / "kubeconfig"))
        fleet_path = create_demo(root, kubeconfig=kubeconfig, clusters=DEMO_CLUSTERS)
        engine = Engine.local(root / "cache")
        state = Demo(sim, root, kubeconfig, load_fleet(fleet_path), engine)
        first = state.reconcile_all()
        assert all(o.sync is SyncStatus.SYNCED and not o.errors for o in first), _describe(first)
        yield state
        engine.clients.close()
        for api in state.clients.values():
            api.close()


def test_fleet_file_is_valid_and_targets_by_label(demo: Demo) -> None:
    fleet = demo.fleet
    assert [c.name for c in fleet.clusters] == CLUSTERS
    assert {c.context for c in fleet.clusters} == set(CLUSTERS)
    assert all(c.kubeconfig == demo.kubeconfig for c in fleet.clusters)
    assert [a.name for a in fleet.applications] == ["guestbook", "podinfo", "platform"]
    assert not fleet.warnings
    targets = {app.name: [c.name for c in fleet.targets(app)] for app in fleet.applications}
    assert targets == {"guestbook": CLUSTERS, "podinfo": CLUSTERS, "platform": ["sim-1"]}
    podinfo = fleet.application("podinfo")
    assert fleet.source_path(podinfo, fleet.cluster("sim-1")) == "podinfo/overlays/prod"
    assert fleet.source_path(podinfo, fleet.cluster("sim-3")) == "podinfo/overlays/dev"
    intervals = {app.name: app.sync.interval_seconds for app in fleet.applications}
    assert intervals == {"guestbook": 30.0, "podinfo": 30.0, "platform": 60.0}
    assert fleet.application("platform").sync.prune


def test_second_pass_finds_no_drift(demo: Demo) -> None:
    outcomes = demo.reconcile_all()
    assert len(outcomes) == 7  # guestbook x3, podinfo x3, platform x1
    for outcome in outcomes:
        assert outcome.sync is SyncStatus.SYNCED, _describe([outcome])
        assert not outcome.drift and not outcome.errors, _describe([outcome])
        assert {c.action for c in outcome.changes} == {Action.UNCHANGED}


def test_guestbook_and_platform_become_healthy(demo: Demo) -> None:
    outcomes = demo.reconcile_all()
    assert {(o.application, o.health) for o in outcomes} == {
        ("guestbook", Health.HEALTHY),
        ("platform", Health.HEALTHY),
        ("podinfo", Health.HEALTHY),
    }


def test_podinfo_becomes_healthy(demo: Demo) -> None:
    podinfo = demo.fleet.application("podinfo")
    for cluster in demo.fleet.targets(podinfo):
        outcome = demo.engine.reconcile(demo.fleet.target("podinfo", cluster.name))
        assert outcome.health is Health.HEALTHY


def test_podinfo_replicas_follow_the_env_overlay(demo: Demo) -> None:
    replicas = {
        name: client.AppsV1Api(demo.api(name))
        .read_namespaced_deployment("podinfo", "podinfo")
        .spec.replicas
        for name in CLUSTERS
    }
    assert replicas == {"sim-1": 3, "sim-2": 1, "sim-3": 1}
    policy = {
        name: [p.metadata.name for p in client.PolicyV1Api(demo.api(name))
               .list_namespaced_pod_disruption_budget("podinfo").items]
        for name in CLUSTERS
    }  # fmt: skip
    assert policy == {"sim-1": ["podinfo"], "sim-2": [], "sim-3": []}
    dev_maps = client.CoreV1Api(demo.api("sim-2")).list_namespaced_config_map("podinfo").items
    assert any(m.metadata.name.startswith("podinfo-dev-") for m in dev_maps)


def test_guestbook_runs_everywhere(demo: Demo) -> None:
    for name in CLUSTERS:
        core = client.CoreV1Api(demo.api(name))
        deployment = client.AppsV1Api(demo.api(name)).read_namespaced_deployment(
            "guestbook-ui", "guestbook"
        )
        assert deployment.spec.replicas == 2
        assert deployment.metadata.labels["reconciler.dev/app"] == "guestbook"
        assert core.read_namespaced_service("guestbook-ui", "guestbook").spec.ports[0].port == 80


def test_platform_only_on_prod(demo: Demo) -> None:
    crds = {
        name: [c.metadata.name for c in client.ApiextensionsV1Api(demo.api(name))
               .list_custom_resource_definition().items]
        for name in CLUSTERS
    }  # fmt: skip
    assert crds == {"sim-1": ["widgets.demo.reconciler.dev"], "sim-2": [], "sim-3": []}
    widget = client.CustomObjectsApi(demo.api("sim-1")).get_namespaced_custom_object(
        "demo.reconciler.dev", "v1alpha1", "platform", "widgets", "sample-widget"
    )
    assert widget["spec"] == {"size": 3, "color": "green"}
    rbac = client.RbacAuthorizationV1Api(demo.api("sim-1"))
    assert rbac.read_namespaced_role_binding("widget-operator", "platform").role_ref.name == (
        "widget-operator"
    )
    namespaces = {
        n.metadata.name for n in client.CoreV1Api(demo.api("sim-2")).list_namespace().items
    }
    assert "platform" not in namespaces


def test_commit_change_is_applied_on_next_reconcile(demo: Demo) -> None:
    repo = demo.root / APPS_DIR
    before = _git(repo, "rev-parse", "HEAD")
    commit = commit_change(demo.root, "Say hello from the test")
    assert commit != before and len(commit) == 40
    assert _git(repo, "rev-parse", "HEAD") == commit
    assert _git(repo, "status", "--porcelain") == ""

    guestbook = demo.fleet.application("guestbook")
    for cluster in demo.fleet.targets(guestbook):
        outcome = demo.engine.reconcile(demo.fleet.target("guestbook", cluster.name))
        assert outcome.sync is SyncStatus.SYNCED and not outcome.errors, _describe([outcome])
        assert outcome.revision == commit
        changed = {c.object: c.action for c in outcome.changes if c.action is not Action.UNCHANGED}
        assert changed == {"ConfigMap/guestbook/guestbook-ui": Action.CONFIGURED}
        data = (
            client.CoreV1Api(demo.api(cluster.name))
            .read_namespaced_config_map("guestbook-ui", "guestbook")
            .data
        )
        assert data["GUESTBOOK_MESSAGE"] == "Say hello from the test"
        assert int(data["GUESTBOOK_REVISION"]) >= 2


def test_create_demo_twice_reuses_the_repository(tmp_path: Path) -> None:
    kubeconfig = str(tmp_path / "kubeconfig")
    first = create_demo(tmp_path, kubeconfig=kubeconfig, clusters=DEMO_CLUSTERS)
    commit = commit_change(tmp_path, "keep me")
    second = create_demo(tmp_path, kubeconfig=kubeconfig, clusters=DEMO_CLUSTERS[:1])
    assert first == second == tmp_path.resolve() / "fleet.yaml"
    repo = tmp_path / APPS_DIR
    assert _git(repo, "rev-parse", "HEAD") == commit  # history kept, nothing re-created
    assert _git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert [c.name for c in load_fleet(second).clusters] == ["sim-1"]


def test_create_demo_refuses_foreign_content(tmp_path: Path) -> None:
    (tmp_path / APPS_DIR).mkdir()
    (tmp_path / APPS_DIR / "precious.txt").write_text("not ours")
    with pytest.raises(DemoError, match="refusing to overwrite"):
        create_demo(tmp_path, kubeconfig="kc", clusters=DEMO_CLUSTERS)
    assert (tmp_path / APPS_DIR / "precious.txt").read_text() == "not ours"
    assert not (tmp_path / "fleet.yaml").exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "fleet.yaml").write_text("clusters: []\n")
    with pytest.raises(DemoError, match="not written by the demo"):
        create_demo(other, kubeconfig="kc", clusters=DEMO_CLUSTERS)
    assert not (other / APPS_DIR).exists()


def test_create_demo_in_an_empty_apps_folder(tmp_path: Path) -> None:
    (tmp_path / APPS_DIR).mkdir()
    create_demo(tmp_path, kubeconfig="kc", clusters=DEMO_CLUSTERS)
    assert (tmp_path / APPS_DIR / "guestbook" / "deployment.yaml").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_every_cluster_needs_an_env_with_an_overlay(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="label env"):
        create_demo(tmp_path, kubeconfig="kc", clusters=[DemoCluster("x", {"env": "qa"})])
    assert not (tmp_path / APPS_DIR).exists()


def test_change_command_commits_and_prints_the_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_demo(tmp_path, kubeconfig="kc", clusters=DEMO_CLUSTERS)
    assert "-m reconciler.demo change" in instructions(tmp_path)
    assert main(["change", str(tmp_path), "-m", "from the command line"]) == 0
    commit = capsys.readouterr().out.strip()
    assert commit == _git(tmp_path / APPS_DIR, "rev-parse", "HEAD")
    assert _git(tmp_path / APPS_DIR, "log", "-1", "--format=%s") == "from the command line"
    assert main(["change", str(tmp_path / "nowhere")]) == 2


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
