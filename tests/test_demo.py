"""The demo world reconciles cleanly end to end: real Git, kustomize, Helm's engine and
Jsonnet, kubesim over HTTP.

``reconciler up --demo`` is the first thing a new user runs, so everything it creates must
sync on the first try and stay in sync; these tests drive it through the same engine the
CLI and the workers use and read the result back with the official Kubernetes client.
The first pass is kept: what it created and which hooks it ran is what a user sees once.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

import kubesim
from cli.demo import (
    APPS_DIR,
    DEMO_CLUSTERS,
    DemoCluster,
    DemoError,
    commit_change,
    create_demo,
    instructions,
    main,
)
from kubesim.runtime import SimHandle
from reconciler.engine import Engine
from reconciler.fleet import Fleet, load_fleet
from reconciler.model import Action, Health, SyncStatus
from reconciler.outcome import Outcome

CLUSTERS = [cluster.name for cluster in DEMO_CLUSTERS]
#: The demo's applications, in the fleet file's order.
APPS = ("guestbook", "podinfo", "platform", "api", "status-page")


@dataclass
class Demo:
    """A demo created against a private kubesim, and the engine that reconciles it."""

    sim: SimHandle
    root: Path
    kubeconfig: str
    fleet: Fleet
    engine: Engine
    #: The first pass, by (application, cluster).
    first: dict[tuple[str, str], Outcome] = field(default_factory=dict)
    #: What the first pass wrote to each cluster, in order: paths of the applies and creates.
    first_writes: dict[str, list[str]] = field(default_factory=dict)
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

    def plain(self, cluster: str, model: object) -> dict[str, Any]:
        """A client model as the JSON the server sent: the keys kubectl shows, no None."""
        data: dict[str, Any] = self.api(cluster).sanitize_for_serialization(model)
        return data

    def items(self, cluster: str, listed: object) -> list[dict[str, Any]]:
        """The items of a client list model, as plain JSON."""
        items: list[dict[str, Any]] = self.plain(cluster, listed).get("items", [])
        return items

    def first_pass(self, app: str) -> dict[str, Outcome]:
        """The first pass of ``app``, by cluster."""
        return {c: o for (a, c), o in self.first.items() if a == app}

    def writes(self, cluster: str) -> int:
        """Mutating requests kubesim served for ``cluster`` since its last reset."""
        return sum(
            n for (verb, _), n in self.sim.requests(cluster).items()
            if verb in {"create", "update", "patch", "delete", "deletecollection"}
        )  # fmt: skip


def _describe(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"{o.application}@{o.cluster}: {o.sync} errors={[p.message for p in o.errors]} "
        f"drift={[d.object for d in o.drift]}"
        for o in outcomes
    )


def _applied_paths(log: list[dict[str, Any]]) -> list[str]:
    """Paths (no cluster prefix, no query) of the writes that took effect, in order.

    Dry-runs and refused requests are left out: they change nothing in the cluster.
    """
    paths = []
    for entry in log:
        path, _, query = str(entry["path"]).partition("?")
        writes = entry["method"] in {"POST", "PUT", "PATCH"} and "dryRun" not in query
        if writes and 200 <= int(entry["status"]) < 300:
            paths.append("/" + path.split("/", 3)[3])  # drop /clusters/NAME
    return paths


def _hooks(outcome: Outcome) -> list[tuple[str, str, str]]:
    """``(object, phase, result)`` of each hook of a run, in the order the run reports them."""
    return [(h.object, h.phase, h.result) for h in outcome.hooks]


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
        state.first = {(o.application, o.cluster): o for o in first}
        state.first_writes = {name: _applied_paths(sim.request_log(name)) for name in CLUSTERS}
        yield state
        engine.clients.close()
        for api in state.clients.values():
            api.close()


def test_fleet_file_is_valid_and_targets_by_label(demo: Demo) -> None:
    fleet = demo.fleet
    assert [c.name for c in fleet.clusters] == CLUSTERS
    assert {c.context for c in fleet.clusters} == set(CLUSTERS)
    assert all(c.kubeconfig == demo.kubeconfig for c in fleet.clusters)
    assert [a.name for a in fleet.applications] == [*APPS]
    assert not fleet.warnings
    targets = {app.name: [c.name for c in fleet.targets(app)] for app in fleet.applications}
    assert targets == {name: CLUSTERS for name in APPS} | {"platform": ["sim-1"]}
    podinfo = fleet.application("podinfo")
    assert fleet.source_path(podinfo, fleet.cluster("sim-1")) == "podinfo/overlays/prod"
    assert fleet.source_path(podinfo, fleet.cluster("sim-3")) == "podinfo/overlays/dev"
    api = {name: fleet.target("api", name) for name in CLUSTERS}
    assert {name: t.path for name, t in api.items()} == dict.fromkeys(CLUSTERS, "charts/api")
    assert {name: t.value_files for name, t in api.items()} == {
        "sim-1": ("charts/api/values.yaml", "charts/api/values-prod.yaml"),
        "sim-2": ("charts/api/values.yaml", "charts/api/values-dev.yaml"),
        "sim-3": ("charts/api/values.yaml", "charts/api/values-dev.yaml"),
    }
    jsonnet = fleet.application("status-page").source.jsonnet
    assert jsonnet is not None
    assert (set(jsonnet.tlas), set(jsonnet.ext_vars), jsonnet.libs) == (
        {"namespace", "replicas"}, {"team"}, ("lib",),
    )  # fmt: skip
    assert jsonnet.tlas["replicas"].code and not jsonnet.ext_vars["team"].code
    intervals = {app.name: app.sync.interval_seconds for app in fleet.applications}
    assert intervals == {"guestbook": 30.0, "podinfo": 30.0, "platform": 60.0, "api": 30.0,
                         "status-page": 60.0}  # fmt: skip
    assert fleet.application("platform").sync.prune


def test_second_pass_writes_nothing_and_runs_no_hook(demo: Demo) -> None:
    """Nothing drifted, so nothing is written and no hook runs again (a migration would)."""
    for name in CLUSTERS:
        demo.sim.reset_requests(name)
    outcomes = demo.reconcile_all()
    assert len(outcomes) == 13  # platform on prod only; the others on all three
    for outcome in outcomes:
        assert outcome.sync is SyncStatus.SYNCED, _describe([outcome])
        assert not outcome.drift and not outcome.errors, _describe([outcome])
        assert {c.action for c in outcome.changes} == {Action.UNCHANGED}
        assert outcome.hooks == [], _hooks(outcome)
    assert {name: demo.writes(name) for name in CLUSTERS} == dict.fromkeys(CLUSTERS, 0)


def test_every_application_becomes_healthy(demo: Demo) -> None:
    outcomes = demo.reconcile_all()
    assert {(o.application, o.health) for o in outcomes} == {
        (name, Health.HEALTHY) for name in APPS
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


def test_api_chart_runs_its_hooks_around_the_first_sync(demo: Demo) -> None:
    """The migration before the Deployment is written, the smoke test after; ``helm test``
    never.

    Delete policies decide what is left: the migration (hook-succeeded) is gone, the
    smoke test (before-hook-creation) stays until the next sync replaces it.
    """
    first = demo.first_pass("api")
    assert sorted(first) == CLUSTERS
    for name, outcome in first.items():
        assert _hooks(outcome) == [
            ("Pod/api/api-test-connection", "test", "Skipped"),
            ("Job.batch/api/api-db-migrate", "PreSync", "Succeeded"),
            ("Job.batch/api/api-smoke-test", "PostSync", "Succeeded"),
        ], name
        created = {c.object for c in outcome.changes if c.action is Action.CREATED}
        assert created >= {
            "Namespace/api", "ServiceAccount/api/api", "ConfigMap/api/api", "Service/api/api",
            "Deployment.apps/api/api",
        }  # fmt: skip
        assert not any("db-migrate" in c.object or "smoke" in c.object for c in outcome.changes)
        writes = demo.first_writes[name]
        migrate = writes.index("/apis/batch/v1/namespaces/api/jobs/api-db-migrate")
        deployment = writes.index("/apis/apps/v1/namespaces/api/deployments/api")
        smoke = writes.index("/apis/batch/v1/namespaces/api/jobs/api-smoke-test")
        assert migrate < deployment < smoke, writes
        jobs = demo.items(name, client.BatchV1Api(demo.api(name)).list_namespaced_job("api"))
        assert [j["metadata"]["name"] for j in jobs] == ["api-smoke-test"], name
        assert jobs[0]["status"]["succeeded"] == 1
        pods = demo.items(name, client.CoreV1Api(demo.api(name)).list_namespaced_pod("api"))
        assert "api-test-connection" not in {p["metadata"]["name"] for p in pods}


def test_api_values_follow_the_cluster_env(demo: Demo) -> None:
    """values-<env>.yaml over values.yaml, the fleet file's helm.values over both."""
    expected = {
        "prod": {"replicas": 3, "APP_ENV": "prod", "LOG_LEVEL": "warn", "cpu": "1",
                 "db": "orders-db.prod-data.svc", "pdb": ["api"]},
        "dev": {"replicas": 1, "APP_ENV": "dev", "LOG_LEVEL": "debug", "cpu": "200m",
                "db": "postgres.dev-data.svc", "pdb": []},
    }  # fmt: skip
    checksums = set()
    for cluster in DEMO_CLUSTERS:
        name, want = cluster.name, expected[cluster.labels["env"]]
        api = demo.api(name)
        deployment = demo.plain(
            name, client.AppsV1Api(api).read_namespaced_deployment("api", "api")
        )
        assert deployment["spec"]["replicas"] == want["replicas"], name
        assert deployment["status"]["readyReplicas"] == want["replicas"]
        template = deployment["spec"]["template"]
        checksums.add(template["metadata"]["annotations"]["checksum/config"])
        container = template["spec"]["containers"][0]
        assert container["image"] == "hashicorp/http-echo:1.0.0"  # the chart's appVersion
        assert container["resources"]["limits"]["cpu"] == want["cpu"]
        assert f"-text=orders api ({want['APP_ENV']})" in container["args"]
        labels = deployment["metadata"]["labels"]
        assert labels["environment"] == want["APP_ENV"]
        assert labels["app.kubernetes.io/part-of"] == "reconciler-demo"  # helm.values
        assert labels["helm.sh/chart"] == "api-0.3.0"
        assert labels["reconciler.dev/app"] == "api"
        config = client.CoreV1Api(api).read_namespaced_config_map("api", "api")
        data = demo.plain(name, config)["data"]
        assert (data["APP_ENV"], data["LOG_LEVEL"]) == (want["APP_ENV"], want["LOG_LEVEL"])
        assert want["db"] in data["DATABASE_URL"]
        budgets = client.PolicyV1Api(api).list_namespaced_pod_disruption_budget("api")
        assert [b["metadata"]["name"] for b in demo.items(name, budgets)] == want["pdb"]
    assert len(checksums) == 2  # one per environment's settings


def test_status_page_declares_its_namespace_and_takes_jsonnet_arguments(demo: Demo) -> None:
    """Its Namespace comes from Git and is applied before anything that goes in it.

    ``replicas`` is a top-level argument given as code, ``namespace`` one given as a
    string, ``team`` an external variable; each shows in the live objects.
    """
    for name, outcome in demo.first_pass("status-page").items():
        created = [c.object for c in outcome.changes if c.action is Action.CREATED]
        assert created[0] == "Namespace/status-page", name
        assert set(created) == {
            "Namespace/status-page",
            "ConfigMap/status-page/status-page",
            "Deployment.apps/status-page/status-page",
            "Service/status-page/status-page",
        }
        assert not [c for c in outcome.changes if c.reason == "createNamespace"]
        assert outcome.hooks == []
        core = client.CoreV1Api(demo.api(name))
        namespace = demo.plain(name, core.read_namespace("status-page"))["metadata"]["labels"]
        assert namespace["team"] == "platform"
        assert namespace["reconciler.dev/app"] == "status-page"  # owned, in the inventory
        apps = client.AppsV1Api(demo.api(name))
        deployment = demo.plain(name, apps.read_namespaced_deployment("status-page", "status-page"))
        assert deployment["spec"]["replicas"] == 2
        assert deployment["metadata"]["labels"]["team"] == "platform"
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "louislam/uptime-kuma:1.23.16"
        config = core.read_namespaced_config_map("status-page", "status-page")
        data = demo.plain(name, config)["data"]
        assert data["TEAM"] == "platform"
        assert [c["name"] for c in json.loads(data["checks.json"])] == [
            "guestbook", "podinfo", "api",
        ]  # fmt: skip


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


def test_create_demo_adds_the_applications_an_older_repository_lacks(tmp_path: Path) -> None:
    """A repository from before the chart and the Jsonnet app joined gets them committed.

    The user's history and staged work are kept, and nothing that is there is rewritten.
    """
    create_demo(tmp_path, kubeconfig="kc", clusters=DEMO_CLUSTERS)
    repo = tmp_path / APPS_DIR
    _git(repo, "rm", "-r", "-q", "--", "charts", "lib", "status-page")
    _git(repo, "-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-q",
         "-m", "as an older demo made it")  # fmt: skip
    older = _git(repo, "rev-parse", "HEAD")
    guestbook = repo / "guestbook" / "service.yaml"
    guestbook.write_text(guestbook.read_text() + "# staged by the user\n")
    _git(repo, "add", "--", "guestbook/service.yaml")

    create_demo(tmp_path, kubeconfig="kc", clusters=DEMO_CLUSTERS)
    assert _git(repo, "rev-parse", "HEAD~1") == older
    assert _git(repo, "log", "-1", "--format=%s") == "Add the demo's charts/api, lib, status-page"
    assert (repo / "charts" / "api" / "templates" / "_helpers.tpl").is_file()
    assert (repo / "status-page" / "main.jsonnet").is_file()
    assert _git(repo, "status", "--porcelain") == "M  guestbook/service.yaml"

    _git(repo, "checkout", "-q", "-b", "experiment")
    _git(repo, "rm", "-r", "-q", "--", "status-page")
    with pytest.raises(DemoError, match="is on experiment, not main"):
        create_demo(tmp_path, kubeconfig="kc", clusters=DEMO_CLUSTERS)


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
    assert "-m cli.demo change" in instructions(tmp_path)
    assert main(["change", str(tmp_path), "-m", "from the command line"]) == 0
    commit = capsys.readouterr().out.strip()
    assert commit == _git(tmp_path / APPS_DIR, "rev-parse", "HEAD")
    assert _git(tmp_path / APPS_DIR, "log", "-1", "--format=%s") == "from the command line"
    assert main(["change", str(tmp_path / "nowhere")]) == 2


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
