"""Repositories as platform teams keep them, reconciled end to end.

Each corpus repository under ``tests/data/repos/`` is a whole Git tree of one common
layout (a Helm chart with a vendored library and hooks, Kustomize overlays that declare
their own namespaces, plain and nested directories, Jsonnet with a vendored library,
Argo CD hooks and waves, an immutable Job).  Table tests of the renderers prove each
piece; these prove the pieces together against kubesim over HTTP, judged by the real
kubectl: the first sync leaves the rendered objects on every cluster, a dry-run right
after shows no drift (no noise from server defaults), and the next sync writes nothing
and runs no hook.  Bad input fails naming the file or object, and leaves the other
applications of the fleet untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.engine import Options
from reconciler.fleet import Fleet
from reconciler.model import Action, Health, SyncStatus
from reconciler.outcome import Outcome
from tests.integration.conftest import World

REPOS = Path(__file__).resolve().parents[1] / "data" / "repos"
#: The kubectl wheel beside this interpreter: the one the platform itself runs.
KUBECTL = str(Path(sys.executable).parent / "kubectl")
CLUSTERS = ("sim-1", "sim-2")
#: How long a target may take to report Healthy after its first sync.
SETTLE_SECONDS = 15.0


# -- the repository, the fleet ------------------------------------------------------------


def seed(world: World, *names: str, rename: Mapping[str, str] | None = None) -> str:
    """Copy corpus repositories into the world's repository as one commit; its hash.

    ``rename`` rewrites text in every file (a namespace a repository declares, made
    unique so tests sharing one kubesim never meet).  Several repositories can share one
    tree: their top folders differ.
    """
    for name in names:
        root = REPOS / name
        for source in sorted(root.rglob("*")):
            if not source.is_file():
                continue
            text = source.read_text()
            for old, new in (rename or {}).items():
                text = text.replace(old, new)
            target = world.repo.path / source.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return world.repo.commit(f"import {', '.join(names)}")


def edit(world: World, path: str, old: str, new: str) -> None:
    """Replace ``old`` (which must be there) by ``new`` in a file of the world's repository."""
    target = world.repo.path / path
    text = target.read_text()
    assert old in text, f"{path} has no {old!r}"
    target.write_text(text.replace(old, new, 1))


def application(
    world: World, source: Mapping[str, Any], *, name: str | None = None,
    namespace: str | None = None, **sync: Any,
) -> str:  # fmt: skip
    """A fleet file entry on sim-1 and sim-2, as JSON (which is YAML), one line."""
    entry = {
        "name": name or world.namespace,
        "source": {"repo": str(world.repo.path), "revision": "main", **source},
        "destination": {
            "namespace": namespace or world.namespace,
            "clusters": {"names": list(CLUSTERS)},
        },
        "sync": sync,
    }
    return f"- {json.dumps(entry)}\n"


def companion_name(world: World) -> str:
    return f"{world.namespace}-ok"


def companion(world: World) -> str:
    """A healthy application beside a broken one: the shop's top folder (one ConfigMap).

    Its repository is ``nested-dirs``, seeded into the same tree as the broken one.
    """
    return application(
        world, {"path": "apps/shop", "directory": {"recurse": False}}, name=companion_name(world)
    )


def reconcile(
    world: World, fleet: Fleet, cluster: str, app: str | None = None, **options: Any
) -> Outcome:
    target = fleet.target(app or world.namespace, cluster)
    return world.engine.reconcile(target, options=Options(**options))


# -- what the cluster holds, as kubectl shows it --------------------------------------------


def kubectl(world: World, cluster: str, *args: str) -> dict[str, Any]:
    """``kubectl get ... -o json`` against one cluster of the world."""
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", world.kubeconfig, "--context", cluster, "get", *args,
         "-o", "json"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def names(world: World, cluster: str, kind: str, namespace: str | None = None) -> set[str]:
    """Names of the objects of ``kind`` in ``namespace`` (cluster-scoped kinds: None)."""
    listed = kubectl(world, cluster, kind, *(("-n", namespace) if namespace else ()))
    return {item["metadata"]["name"] for item in listed["items"]}


def changes(outcome: Outcome) -> dict[str, str]:
    return {c.object: c.action.value for c in outcome.changes}


def hooks(outcome: Outcome) -> list[tuple[str, str, str]]:
    """``(name, phase, result)`` of each hook run, names without kind and namespace."""
    return [(h.object.rsplit("/", 1)[-1], h.phase, h.result) for h in outcome.hooks]


def synced(outcome: Outcome) -> Outcome:
    assert outcome.sync is SyncStatus.SYNCED, (outcome.reason, outcome.errors)
    return outcome


def settle(world: World, fleet: Fleet, cluster: str, app: str | None = None) -> Outcome:
    """Dry-runs right after a sync until the target reports Healthy: never any drift.

    Workloads turn Healthy a moment after their sync (kubesim's controllers write their
    status), so the health is polled with a deadline; every dry-run on the way must
    already find nothing to change, or the diff is noisy.
    """
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        report = reconcile(world, fleet, cluster, app, dry_run=True)
        assert report.drift == [], [(d.object, d.paths, d.diff) for d in report.drift]
        synced(report)
        if report.health is Health.HEALTHY or time.monotonic() > deadline:
            assert report.health is Health.HEALTHY, report
            return report
        time.sleep(0.05)


def converge(world: World, fleet: Fleet, cluster: str, app: str | None = None) -> Outcome:
    """First sync, no drift right after, then a sync that writes nothing; the first outcome.

    The second sync must find every object unchanged, run no hook, and send kubesim no
    mutating request at all (resourceVersions do not churn, nothing is re-created).
    """
    first = synced(reconcile(world, fleet, cluster, app))
    assert first.errors == []
    settle(world, fleet, cluster, app)
    world.sim.reset_requests(cluster)
    again = synced(reconcile(world, fleet, cluster, app))
    assert again.drift == []
    assert set(changes(again).values()) == {"unchanged"}, changes(again)
    assert again.hooks == []
    assert again.health is Health.HEALTHY
    assert world.writes(cluster) == 0
    return first


# -- the corpus: each repository syncs, then holds still --------------------------------------


def test_helm_chart_with_vendored_library_hooks_and_environment_values(world: World) -> None:
    """Value files chosen by the cluster's env label, Helm hooks run, test hooks never.

    The vendored ``common`` library chart's labels on the Deployment prove the dependency
    rendered from ``charts/``; NOTES.txt would show up in the change set were it applied.
    """
    seed(world, "helm-web")
    helm = {
        "releaseName": "web",
        "valueFiles": ["values.yaml", "values-{{ cluster.labels.env }}.yaml"],
    }
    fleet = world.fleet(application(world, {"path": "charts/web", "helm": helm}))
    ns = world.namespace
    expected = {
        "prod": {"replicas": 3, "LOG_LEVEL": "warn", "ENVIRONMENT": "production", "cpu": "1"},
        "dev": {"replicas": 1, "LOG_LEVEL": "debug", "ENVIRONMENT": "development",
                "cpu": "500m"},
    }  # fmt: skip
    for cluster, env in zip(CLUSTERS, ("prod", "dev"), strict=True):
        first = converge(world, fleet, cluster)
        assert changes(first) == {
            f"Namespace/{ns}": "created",
            f"ServiceAccount/{ns}/web": "created",
            f"ConfigMap/{ns}/web": "created",
            f"Service/{ns}/web": "created",
            f"Deployment.apps/{ns}/web": "created",
        }
        assert sorted(hooks(first)) == [
            ("web-cache-warmup", "PostSync", "Succeeded"),
            ("web-db-migrate", "PreSync", "Succeeded"),
            ("web-test-connection", "test", "Skipped"),
        ]
        want = expected[env]
        deployment = kubectl(world, cluster, "deployment", "web", "-n", ns)
        assert deployment["spec"]["replicas"] == want["replicas"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "nginx:1.27.3"  # the chart's appVersion
        assert container["resources"]["limits"]["cpu"] == want["cpu"]
        labels = deployment["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "storefront"  # from the library chart
        assert labels["helm.sh/chart"] == "web-1.4.2"
        assert labels["reconciler.dev/app"] == ns
        config = kubectl(world, cluster, "configmap", "web", "-n", ns)["data"]
        assert (config["LOG_LEVEL"], config["ENVIRONMENT"]) == (want["LOG_LEVEL"],
                                                                want["ENVIRONMENT"])  # fmt: skip
        assert "listen 8080;" in config["nginx.conf"]
        assert "web" in names(world, cluster, "serviceaccounts", ns)
        # hook-succeeded removed the migration; the warm-up Job stays; the test Pod never ran.
        assert names(world, cluster, "jobs", ns) == {"web-cache-warmup"}
        assert "web-test-connection" not in names(world, cluster, "pods", ns)


def test_kustomize_overlays_that_declare_their_own_namespace(world: World) -> None:
    """Each overlay creates its namespace in the same sync that fills it.

    The overlay sets ``namespace:`` for everything, its own Namespace included, so the
    Namespace must be applied before anything is dry-run in it.
    """
    ns = world.namespace
    seed(world, "kustomize-overlays",
         rename={"storefront-prod": f"{ns}-prod", "storefront-dev": f"{ns}-dev"})  # fmt: skip
    fleet = world.fleet(application(world, {"path": "overlays/{{ cluster.labels.env }}"}))
    for cluster, env, replicas in (("sim-1", "prod", 3), ("sim-2", "dev", 1)):
        first = converge(world, fleet, cluster)
        target_ns = f"{ns}-{env}"
        assert changes(first)[f"Namespace/{target_ns}"] == "created"
        assert f"Namespace/{ns}" not in changes(first)  # nothing lands in the default
        namespace = kubectl(world, cluster, "namespace", target_ns)
        assert namespace["metadata"]["labels"]["environment"] == env
        deployment = kubectl(world, cluster, "deployment", "storefront", "-n", target_ns)
        assert deployment["spec"]["replicas"] == replicas
        assert deployment["metadata"]["labels"]["app.kubernetes.io/part-of"] == "storefront"
        generated = [
            item for item in kubectl(world, cluster, "configmaps", "-n", target_ns)["items"]
            if item["metadata"]["name"].startswith("storefront-config-")
        ]  # fmt: skip
        assert len(generated) == 1
        assert generated[0]["data"]["ENVIRONMENT"] == env
        env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert env_from == [{"configMapRef": {"name": generated[0]["metadata"]["name"]}}]
        other = f"{ns}-{'dev' if env == 'prod' else 'prod'}"
        assert other not in names(world, cluster, "namespaces")


def test_plain_directory_declaring_its_namespace(world: World) -> None:
    """A team's directory: its Namespace, settings and service, in one sync."""
    team = f"{world.namespace}-team-a"
    seed(world, "plain-namespace", rename={"team-a": team})
    fleet = world.fleet(application(world, {"path": "team-a"}))
    for cluster in CLUSTERS:
        first = converge(world, fleet, cluster)
        assert changes(first) == {
            f"Namespace/{team}": "created",
            f"ConfigMap/{team}/invoice-settings": "created",
            f"Deployment.apps/{team}/invoices": "created",
        }
        namespace = kubectl(world, cluster, "namespace", team)["metadata"]
        assert namespace["labels"]["cost-center"] == "cc-1042"
        assert namespace["annotations"]["owner"] == f"{team}@example.com"
        deployment = kubectl(world, cluster, "deployment", "invoices", "-n", team)
        assert deployment["spec"]["replicas"] == 2
        assert deployment["status"]["readyReplicas"] == 2
        settings = kubectl(world, cluster, "configmap", "invoice-settings", "-n", team)
        assert settings["data"]["PAYMENT_TERMS_DAYS"] == "30"


def test_nested_directories_with_exclude_and_without_recursion(world: World) -> None:
    """``exclude: test/*`` keeps the fixtures out; ``recurse: false`` reads the top only."""
    seed(world, "nested-dirs")
    ns, top = world.namespace, f"{world.namespace}-top"
    fleet = world.fleet(
        application(world, {"path": "apps/shop", "directory": {"exclude": "test/*"}})
        + application(world, {"path": "apps/shop", "directory": {"recurse": False}},
                      name=top, namespace=top)
    )  # fmt: skip
    for cluster in CLUSTERS:
        first = converge(world, fleet, cluster)
        assert changes(first) == {
            f"Namespace/{ns}": "created",
            f"ConfigMap/{ns}/shop-settings": "created",
            f"Deployment.apps/{ns}/shop-frontend": "created",
            f"Service/{ns}/shop-frontend": "created",
            f"Deployment.apps/{ns}/shop-backend": "created",
            f"Service/{ns}/shop-backend": "created",
            f"PodDisruptionBudget.policy/{ns}/shop-backend": "created",
        }
        assert "shop-settings-fixture" not in names(world, cluster, "configmaps", ns)
        assert "shop-smoke" not in names(world, cluster, "pods", ns)
        backend = kubectl(world, cluster, "deployment", "shop-backend", "-n", ns)
        assert backend["spec"]["template"]["spec"]["containers"][0]["image"] == (
            "ghcr.io/example/shop-orders:1.19.4"
        )
        flat = converge(world, fleet, cluster, top)
        assert changes(flat) == {
            f"Namespace/{top}": "created",
            f"ConfigMap/{top}/shop-settings": "created",
        }
        assert names(world, cluster, "deployments", top) == set()


def test_jsonnet_with_top_level_arguments_external_variables_and_a_library(
    world: World,
) -> None:
    """TLAs (a string and code), an extVar, and ``import 'k.libsonnet'`` through ``vendor``."""
    seed(world, "jsonnet-app")
    jsonnet = {
        "tlas": {"name": "guestbook", "replicas": {"code": "2"}},
        "extVars": {"env": "prod"},
        "libs": ["vendor"],
    }
    fleet = world.fleet(application(world, {"path": "apps/guestbook", "jsonnet": jsonnet}))
    ns = world.namespace
    for cluster in CLUSTERS:
        first = converge(world, fleet, cluster)
        assert changes(first) == {
            f"Namespace/{ns}": "created",
            f"ConfigMap/{ns}/guestbook-settings": "created",
            f"Deployment.apps/{ns}/guestbook": "created",
            f"Service/{ns}/guestbook": "created",
        }
        deployment = kubectl(world, cluster, "deployment", "guestbook", "-n", ns)
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "guestbook", "app.kubernetes.io/component": "frontend",
        }  # fmt: skip
        settings = kubectl(world, cluster, "configmap", "guestbook-settings", "-n", ns)["data"]
        assert settings == {
            "ENVIRONMENT": "prod",
            "GUESTBOOK_TITLE": "Sign the prod guestbook",
            "REDIS_HOST": "guestbook-redis",
        }


def test_hooks_of_every_phase_and_delete_policy(world: World) -> None:
    """PreSync, Sync and PostSync run in order; SyncFail waits for a failure; Skip never runs.

    Delete policies decide what stays: BeforeHookCreation and HookFailed (on success)
    keep the Job, HookSucceeded removes the backup Job and the smoke-test Pod.
    """
    seed(world, "hooks-all")
    fleet = world.fleet(application(world, {"path": "deploy"}))
    ns = world.namespace
    for cluster in CLUSTERS:
        first = converge(world, fleet, cluster)
        assert changes(first) == {
            f"Namespace/{ns}": "created",
            f"Deployment.apps/{ns}/billing-api": "created",
            f"Service/{ns}/billing-api": "created",
        }
        ran = [(name, phase, result) for name, phase, result in hooks(first)
               if result != "Skipped"]  # fmt: skip
        assert [phase for _, phase, _ in ran] == ["PreSync", "PreSync", "Sync", "PostSync"]
        assert all(result == "Succeeded" for _, _, result in ran)
        pre = sorted(name for name, phase, _ in ran if phase == "PreSync")
        assert pre[0].startswith("db-backup-") and pre[0] != "db-backup-"
        assert pre[1] == "schema-migrate"
        assert [name for name, phase, _ in ran if phase != "PreSync"] == [
            "seed-reference-data", "smoke-test",
        ]  # fmt: skip
        assert ("legacy-settings", "Skip", "Skipped") in hooks(first)
        assert names(world, cluster, "jobs", ns) == {"schema-migrate", "seed-reference-data"}
        assert "smoke-test" not in names(world, cluster, "pods", ns)
        assert "legacy-settings" not in names(world, cluster, "configmaps", ns)


def test_waves_apply_in_order_each_waiting_for_the_last(world: World) -> None:
    """Migration Job (wave 1), then the API (wave 2), then its feature flags (wave 3)."""
    seed(world, "waves")
    fleet = world.fleet(application(world, {"path": "orders"}))
    ns = world.namespace
    for cluster in CLUSTERS:
        first = converge(world, fleet, cluster)
        created = [c.object for c in first.changes if c.action is Action.CREATED]
        assert created[0] == f"Namespace/{ns}"
        assert created[1] == f"Job.batch/{ns}/orders-db-migrate"
        assert set(created[2:4]) == {f"Deployment.apps/{ns}/orders", f"Service/{ns}/orders"}
        assert created[4:] == [f"ConfigMap/{ns}/orders-feature-flags"]
        job = kubectl(world, cluster, "job", "orders-db-migrate", "-n", ns)
        assert job["status"]["succeeded"] == 1
        api = kubectl(world, cluster, "deployment", "orders", "-n", ns)
        assert api["status"]["availableReplicas"] == 2
        # RFC 3339 in UTC compares as text: the API came after the migration finished.
        assert job["status"]["completionTime"] <= api["metadata"]["creationTimestamp"]


def test_immutable_job_changes_only_with_replace(world: World) -> None:
    """A new image in a Job's template is refused naming the field, until Replace=true."""
    seed(world, "immutable")
    fleet = world.fleet(application(world, {"path": "jobs"}))
    ns = world.namespace
    job = f"Job.batch/{ns}/usage-report"
    for cluster in CLUSTERS:
        converge(world, fleet, cluster)
    before = kubectl(world, "sim-1", "job", "usage-report", "-n", ns)["metadata"]["uid"]
    edit(world, "jobs/usage-report.yaml", "usage-report:1.6.0", "usage-report:1.7.0")
    world.repo.commit("usage-report 1.7.0")
    refused = reconcile(world, fleet, "sim-1")
    assert refused.sync is SyncStatus.FAILED
    assert refused.reason == "DryRunRejected"
    assert refused.errors[0].message.startswith(f"{job}: immutable field spec.template")
    assert "Replace=true" in refused.errors[0].message
    live = kubectl(world, "sim-1", "job", "usage-report", "-n", ns)
    assert live["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.6.0")
    edit(world, "jobs/usage-report.yaml", "  annotations:\n",
         "  annotations:\n    argocd.argoproj.io/sync-options: Replace=true\n")  # fmt: skip
    world.repo.commit("usage-report may be replaced")
    for cluster in CLUSTERS:
        replaced = synced(reconcile(world, fleet, cluster))
        assert changes(replaced)[job] == "replaced"
        assert changes(replaced)[f"ConfigMap/{ns}/usage-report-settings"] == "unchanged"
        settle(world, fleet, cluster)
        world.sim.reset_requests(cluster)
        again = synced(reconcile(world, fleet, cluster))
        assert set(changes(again).values()) == {"unchanged"}
        assert world.writes(cluster) == 0
    after = kubectl(world, "sim-1", "job", "usage-report", "-n", ns)
    assert after["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.7.0")
    assert after["metadata"]["uid"] != before


# -- bad input: named, and contained to its application --------------------------------------


def assert_companion_synced(world: World, fleet: Fleet, cluster: str = "sim-1") -> None:
    """The healthy application of the same fleet syncs as if nothing were wrong."""
    outcome = synced(reconcile(world, fleet, cluster, companion_name(world)))
    assert changes(outcome)[f"ConfigMap/{world.namespace}/shop-settings"] == "created"


def test_chart_template_error_names_template_and_line(world: World) -> None:
    """A typo in a new template fails the render naming the template and line; nothing is
    written, and the fleet's other application syncs."""
    seed(world, "helm-web", "nested-dirs")
    (world.repo.path / "charts/web/templates/pdb.yaml").write_text(
        "apiVersion: policy/v1\n"
        "kind: PodDisruptionBudget\n"
        "metadata:\n"
        '  name: {{ include "web.fullname" . }}\n'
        "  labels:\n"
        '    {{- include "web.labels" . | indent4 }}\n'
        "spec:\n"
        "  maxUnavailable: 1\n"
    )
    world.repo.commit("web: disruption budget")
    helm = {"releaseName": "web", "valueFiles": ["values.yaml"]}
    fleet = world.fleet(application(world, {"path": "charts/web", "helm": helm}) + companion(world))
    world.sim.reset_requests("sim-1")
    outcome = reconcile(world, fleet, "sim-1")
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "RenderFailed"
    assert not outcome.retryable
    message = outcome.errors[0].message
    assert message.startswith("charts/web/templates/pdb.yaml:6: "), message
    assert "indent4" in message
    assert world.writes("sim-1") == 0
    assert_companion_synced(world, fleet)


def test_missing_value_file_fails_only_the_clusters_that_need_it(world: World) -> None:
    """A value file chosen by cluster label and then deleted fails only the dev clusters."""
    seed(world, "helm-web", "nested-dirs")
    world.repo.remove("charts/web/values-dev.yaml").commit("drop dev values")
    values = ["values.yaml", "values-{{ cluster.labels.env }}.yaml"]
    helm = {"releaseName": "web", "valueFiles": values}
    fleet = world.fleet(application(world, {"path": "charts/web", "helm": helm}) + companion(world))
    dev = reconcile(world, fleet, "sim-2")
    assert dev.sync is SyncStatus.FAILED
    assert dev.reason == "RenderFailed"
    assert dev.errors[0].message.startswith("charts/web/values-dev.yaml: value file not found")
    assert "web" not in names(world, "sim-2", "deployments", world.namespace)
    synced(reconcile(world, fleet, "sim-1"))  # prod has its values-prod.yaml
    assert_companion_synced(world, fleet, "sim-2")


def test_jsonnet_syntax_error_names_file_and_line(world: World) -> None:
    """A missing comma is reported at the line Jsonnet stops at, in repository terms."""
    seed(world, "jsonnet-app", "nested-dirs")
    main = "apps/guestbook/main.jsonnet"
    edit(world, main, "' guestbook',", "' guestbook'")
    world.repo.commit("guestbook: retitle")
    lines = (world.repo.path / main).read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "REDIS_HOST" in text)
    jsonnet = {"tlas": {"name": "guestbook"}, "extVars": {"env": "prod"}, "libs": ["vendor"]}
    fleet = world.fleet(
        application(world, {"path": "apps/guestbook", "jsonnet": jsonnet}) + companion(world)
    )
    outcome = reconcile(world, fleet, "sim-1")
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "RenderFailed"
    assert outcome.errors[0].message.startswith(f"{main}:{line}: "), outcome.errors
    assert_companion_synced(world, fleet)


def test_failed_hook_runs_sync_fail_and_applies_its_delete_policy(world: World) -> None:
    """A failing Sync hook stops the sync before PostSync, runs SyncFail, and records why."""
    seed(world, "hooks-all", "nested-dirs")
    edit(world, "deploy/hooks/seed-reference-data.yaml",
         "  annotations:\n", "  annotations:\n    kubesim.dev/rollout: fail\n")  # fmt: skip
    world.repo.commit("seed: new tax rates")
    fleet = world.fleet(application(world, {"path": "deploy"}) + companion(world))
    ns = world.namespace
    outcome = reconcile(world, fleet, "sim-1")
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "HookFailed"
    assert outcome.errors[0].message.startswith(f"Job.batch/{ns}/seed-reference-data: Sync")
    ran = {(name, phase): result for name, phase, result in hooks(outcome)}
    assert ran[("seed-reference-data", "Sync")] == "Failed"
    failed = next(h for h in outcome.hooks if h.result == "Failed")
    assert failed.message and failed.message in outcome.errors[0].message
    assert ran[("notify-failure", "SyncFail")] == "Succeeded"
    assert ("smoke-test", "PostSync") not in ran  # the sync stopped before PostSync
    # HookFailed removed the failed seed Job; the SyncFail Job stays for its logs.
    jobs = names(world, "sim-1", "jobs", ns)
    assert "seed-reference-data" not in jobs
    assert {"schema-migrate", "notify-failure"} <= jobs
    assert_companion_synced(world, fleet)


def test_wave_that_never_becomes_healthy_times_out(world: World) -> None:
    """A migration that hangs holds back the waves after it, for waveTimeout and no longer."""
    seed(world, "waves", "nested-dirs")
    edit(world, "orders/01-migrate.yaml",
         "  annotations:\n", "  annotations:\n    kubesim.dev/rollout: hang\n")  # fmt: skip
    world.repo.commit("orders: migration that hangs")
    fleet = world.fleet(application(world, {"path": "orders"}, waveTimeout="1s")
                        + companion(world))  # fmt: skip
    ns = world.namespace
    outcome = reconcile(world, fleet, "sim-1")
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "WaveTimeout"
    assert outcome.errors[0].message.startswith(
        f"Job.batch/{ns}/orders-db-migrate: wave 1 not Healthy after 1s"
    ), outcome.errors
    assert outcome.duration < 1 + 5  # the timeout, plus the sync around it
    assert names(world, "sim-1", "deployments", ns) == set()
    assert "orders-feature-flags" not in names(world, "sim-1", "configmaps", ns)
    assert_companion_synced(world, fleet)
