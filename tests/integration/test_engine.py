"""The reconcile engine end to end: real Git repositories, kubesim over HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from reconciler.engine import Options
from reconciler.errors import ConfigError
from reconciler.fleet import Fleet
from reconciler.model import Action, Health, SyncStatus
from reconciler.outcome import Outcome, Trigger
from tests.integration.conftest import World

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
        - name: web
          image: {image}
          ports: [{{containerPort: 80}}]
          resources: {{limits: {{cpu: 1000m, memory: 1Gi}}}}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: {name}}}
data: {{key: "{value}"}}
"""


def app(world: World, path: str = "app", extra: str = "", **sync: object) -> str:
    policy = ", ".join(f"{k}: {json.dumps(v)}" for k, v in sync.items())
    return f"""\
        - name: {world.namespace}
          source:
            repo: {world.repo.path}
            revision: main
            path: "{path}"
          destination: {{namespace: {world.namespace}, clusters: {{names: [sim-1, sim-2]}}}}
          sync: {{{policy}}}
        {extra}"""


def run(world: World, fleet: Fleet, cluster: str = "sim-1", **kwargs: Any) -> Outcome:
    """Reconcile the test's application on ``cluster``."""
    return world.engine.reconcile(fleet.target(world.namespace, cluster), **kwargs)


def actions(outcome: Outcome) -> dict[str, str]:
    return {c.object: c.action.value for c in outcome.changes}


def plain_app(world: World, replicas: int = 2, image: str = "nginx:1.27") -> str:
    world.repo.write("app/web.yaml", DEPLOYMENT.format(replicas=replicas, image=image))
    world.repo.write("app/svc.yaml", SERVICE)
    world.repo.write("app/config/cm.yaml", CONFIGMAP.format(name="cfg", value="1"))
    world.repo.write("app/.hidden/ignored.yaml", CONFIGMAP.format(name="hidden", value="x"))
    return world.repo.commit("plain app")


def test_plain_app_first_sync_then_no_op(world: World) -> None:
    commit = plain_app(world)
    fleet = world.fleet(app(world))
    first = run(world, fleet, "sim-1")
    assert first.sync is SyncStatus.SYNCED, first.errors
    assert first.revision == commit
    ns = world.namespace
    assert actions(first) == {
        f"Namespace/{ns}": "created",
        f"ConfigMap/{ns}/cfg": "created",
        f"Service/{ns}/web": "created",
        f"Deployment.apps/{ns}/web": "created",
    }
    deployment = world.apps().read_namespaced_deployment("web", ns)
    assert deployment.metadata.labels["reconciler.dev/app"] == ns
    assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "reconciler"
    assert (
        world.core().list_namespaced_config_map(ns, field_selector="metadata.name=hidden").items
        == []
    )
    world.sim.reset_requests("sim-1")
    second = run(world, fleet, "sim-1")
    assert second.sync is SyncStatus.SYNCED
    assert second.drift == []
    assert set(actions(second).values()) == {"unchanged"}
    assert second.health is Health.HEALTHY
    assert world.writes("sim-1") == 0
    # Budget: one list per managed kind plus the inventory read.
    assert sum(world.sim.requests("sim-1").values()) <= 3 + 1


def test_drift_is_reported_and_healed(world: World) -> None:
    plain_app(world)
    fleet = world.fleet(app(world))
    assert run(world, fleet, "sim-1").sync is SyncStatus.SYNCED
    world.apps().patch_namespaced_deployment("web", world.namespace, {"spec": {"replicas": 5}})
    world.core().patch_namespaced_config_map("cfg", world.namespace, {"data": {"key": "tampered"}})
    report = run(world, fleet, "sim-1", options=Options(dry_run=True))
    assert report.sync is SyncStatus.OUT_OF_SYNC
    drift = {d.object: d for d in report.drift}
    assert drift[f"Deployment.apps/{world.namespace}/web"].paths == ("/spec/replicas",)
    assert "-  replicas: 5" in drift[f"Deployment.apps/{world.namespace}/web"].diff
    assert "+  replicas: 2" in drift[f"Deployment.apps/{world.namespace}/web"].diff
    assert world.apps().read_namespaced_deployment("web", world.namespace).spec.replicas == 5
    healed = run(world, fleet, "sim-1", trigger=Trigger.SCHEDULE)
    assert healed.sync is SyncStatus.SYNCED, healed.errors
    assert actions(healed)[f"Deployment.apps/{world.namespace}/web"] == "configured"
    assert actions(healed)[f"Service/{world.namespace}/web"] == "unchanged"
    assert world.apps().read_namespaced_deployment("web", world.namespace).spec.replicas == 2
    assert world.core().read_namespaced_config_map("cfg", world.namespace).data == {"key": "1"}


def test_without_self_heal_drift_is_only_reported(world: World) -> None:
    plain_app(world)
    fleet = world.fleet(app(world, selfHeal=False))
    run(world, fleet, "sim-1", trigger=Trigger.SCHEDULE)
    world.apps().patch_namespaced_deployment("web", world.namespace, {"spec": {"replicas": 7}})
    outcome = run(world, fleet, "sim-1", trigger=Trigger.SCHEDULE)
    assert outcome.sync is SyncStatus.OUT_OF_SYNC
    assert world.apps().read_namespaced_deployment("web", world.namespace).spec.replicas == 7
    # A new revision is applied, drift included.
    plain_app(world, image="nginx:1.28")
    outcome = run(world, fleet, "sim-1", trigger=Trigger.SCHEDULE)
    assert outcome.sync is SyncStatus.SYNCED, outcome.errors
    live = world.apps().read_namespaced_deployment("web", world.namespace)
    assert (live.spec.replicas, live.spec.template.spec.containers[0].image) == (2, "nginx:1.28")


def test_manual_apps_apply_only_when_forced(world: World) -> None:
    plain_app(world)
    fleet = world.fleet(app(world, automated=False))
    scheduled = run(world, fleet, "sim-1", trigger=Trigger.SCHEDULE)
    assert scheduled.sync is SyncStatus.OUT_OF_SYNC
    with pytest.raises(ApiException):
        world.apps().read_namespaced_deployment("web", world.namespace)
    forced = run(world, fleet, "sim-1", trigger=Trigger.MANUAL)
    assert forced.sync is SyncStatus.SYNCED, forced.errors
    assert world.apps().read_namespaced_deployment("web", world.namespace).spec.replicas == 2


def test_removed_file_is_pruned_and_unowned_objects_are_kept(world: World) -> None:
    plain_app(world)
    fleet = world.fleet(app(world))
    run(world, fleet, "sim-1")
    foreign = {
        "metadata": {
            "name": "foreign",
            "labels": {
                "app.kubernetes.io/managed-by": "reconciler",
                "reconciler.dev/app": "someone-else",
            },
        }
    }
    world.core().create_namespaced_config_map(world.namespace, foreign)
    world.repo.remove("app/svc.yaml").remove("app/config").commit("drop service and config")
    outcome = run(world, fleet, "sim-1")
    assert outcome.sync is SyncStatus.SYNCED, outcome.errors
    assert actions(outcome)[f"Service/{world.namespace}/web"] == "pruned"
    assert actions(outcome)[f"ConfigMap/{world.namespace}/cfg"] == "pruned"
    with pytest.raises(ApiException):
        world.core().read_namespaced_service("web", world.namespace)
    assert world.core().read_namespaced_config_map("foreign", world.namespace)
    again = run(world, fleet, "sim-1")
    assert set(actions(again).values()) == {"unchanged"}


def test_prune_false_annotation_keeps_object(world: World) -> None:
    world.repo.write(
        "app/keep.yaml",
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: keep, annotations: {reconciler.dev/prune: "false"}}
        data: {a: b}
        """,
    )
    world.repo.write("app/cm.yaml", CONFIGMAP.format(name="other", value="1"))
    world.repo.commit()
    fleet = world.fleet(app(world))
    run(world, fleet, "sim-1")
    world.repo.remove("app/keep.yaml").commit()
    outcome = run(world, fleet, "sim-1")
    assert actions(outcome)[f"ConfigMap/{world.namespace}/keep"] == "skipped"
    assert world.core().read_namespaced_config_map("keep", world.namespace).data == {"a": "b"}


def test_empty_render_prunes_nothing(world: World) -> None:
    plain_app(world)
    fleet = world.fleet(app(world))
    run(world, fleet, "sim-1")
    world.repo.remove("app").write("app/README.md", "nothing here\n").commit("empty")
    outcome = run(world, fleet, "sim-1")
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "RenderFailed"
    assert any("allowEmpty" in e.message for e in outcome.errors)
    assert not any(c.action is Action.PRUNED for c in outcome.changes)
    assert world.apps().read_namespaced_deployment("web", world.namespace)
    allowed = world.fleet(app(world, allowEmpty=True))
    outcome = run(world, allowed, "sim-1")
    assert outcome.sync is SyncStatus.SYNCED, outcome.errors
    with pytest.raises(ApiException):
        world.apps().read_namespaced_deployment("web", world.namespace)


def test_invalid_object_applies_nothing(world: World) -> None:
    world.repo.write("app/good.yaml", CONFIGMAP.format(name="good", value="1"))
    world.repo.write(
        "app/bad.yaml",
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: bad}
        spec:
          selector: {matchLabels: {app: bad}}
          template:
            metadata: {labels: {app: other}}
            spec: {containers: [{name: c, image: x}]}
        """,
    )
    world.repo.commit()
    outcome = run(world, world.fleet(app(world)), "sim-1")
    assert outcome.sync is SyncStatus.FAILED
    assert not outcome.retryable
    bad = [e for e in outcome.errors if e.object == f"Deployment.apps/{world.namespace}/bad"]
    assert bad and "selector" in bad[0].message
    assert not any(c.action is Action.CREATED and "ConfigMap" in c.object for c in outcome.changes)
    with pytest.raises(ApiException):
        world.core().read_namespaced_config_map("good", world.namespace)


def test_malformed_yaml_names_file_and_line(world: World) -> None:
    world.repo.write("app/broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n")
    world.repo.commit()
    outcome = run(world, world.fleet(app(world)), "sim-1")
    assert outcome.sync is SyncStatus.FAILED
    assert "app/broken.yaml:" in outcome.errors[0].message
    assert not outcome.retryable


def test_kustomize_overlays_per_environment(world: World) -> None:
    world.repo.write("kz/base/kustomization.yaml", "resources: [web.yaml]\n")
    world.repo.write("kz/base/web.yaml", DEPLOYMENT.format(replicas=1, image="nginx:1.27"))
    for env, replicas in (("prod", 3), ("dev", 1)):
        world.repo.write(
            f"kz/overlays/{env}/kustomization.yaml",
            f"""\
            resources: [../../base]
            patches:
              - target: {{kind: Deployment, name: web}}
                patch: |
                  - op: replace
                    path: /spec/replicas
                    value: {replicas}
            """,
        )
    world.repo.commit()
    fleet = world.fleet(app(world, path="kz/overlays/{{ cluster.labels.env }}"))
    for cluster, replicas in (("sim-1", 3), ("sim-2", 1)):
        outcome = run(world, fleet, cluster)
        assert outcome.sync is SyncStatus.SYNCED, outcome.errors
        live = world.apps(cluster).read_namespaced_deployment("web", world.namespace)
        assert live.spec.replicas == replicas


def test_crd_and_custom_resources_in_one_app(world: World) -> None:
    group = f"{world.namespace}.example.com"
    world.repo.write(
        "app/crd.yaml",
        f"""\
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {{name: gadgets.{group}}}
        spec:
          group: {group}
          scope: Namespaced
          names: {{plural: gadgets, singular: gadget, kind: Gadget}}
          versions:
            - name: v1
              served: true
              storage: true
              schema:
                openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
        """,
    )
    world.repo.write(
        "app/gadget.yaml",
        f"""\
        apiVersion: {group}/v1
        kind: Gadget
        metadata: {{name: g1}}
        spec: {{size: 3}}
        """,
    )
    world.repo.commit()
    fleet = world.fleet(app(world))
    outcome = run(world, fleet, "sim-1")
    assert outcome.sync is SyncStatus.SYNCED, outcome.errors
    gadget = f"Gadget.{group}/{world.namespace}/g1"
    assert actions(outcome)[gadget] == "created"
    custom = client.CustomObjectsApi(world.api()).get_namespaced_custom_object(
        group, "v1", world.namespace, "gadgets", "g1"
    )
    assert custom["spec"]["size"] == 3
    assert set(actions(run(world, fleet, "sim-1")).values()) == {
        "unchanged"
    }


def test_sync_waves_order_creation(world: World) -> None:
    for name, wave in (("third", "5"), ("first", "-1"), ("second", "0")):
        world.repo.write(
            f"app/{name}.yaml",
            f"""\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: {name}
              annotations: {{argocd.argoproj.io/sync-wave: "{wave}"}}
            """,
        )
    world.repo.commit()
    outcome = run(world, world.fleet(app(world)), "sim-1")
    assert outcome.sync is SyncStatus.SYNCED, outcome.errors
    items = world.core().list_namespaced_config_map(world.namespace).items
    order = sorted(items, key=lambda cm: int(cm.metadata.resource_version))
    assert [cm.metadata.name for cm in order] == ["first", "second", "third"]


def test_secret_values_never_appear_in_outcome(world: World) -> None:
    world.repo.write(
        "app/secret.yaml",
        """\
        apiVersion: v1
        kind: Secret
        metadata: {name: creds}
        stringData: {password: hunter2-very-secret}
        """,
    )
    world.repo.commit()
    fleet = world.fleet(app(world))
    first = run(world, fleet, "sim-1")
    assert first.sync is SyncStatus.SYNCED, first.errors
    assert "hunter2" not in json.dumps(first.to_dict())
    assert set(actions(run(world, fleet, "sim-1")).values()) == {
        "unchanged"
    }
    world.core().patch_namespaced_secret(
        "creds", world.namespace, {"stringData": {"password": "x"}}
    )
    drifted = run(world, fleet, "sim-1", options=Options(dry_run=True))
    assert [d.paths for d in drifted.drift] == [("/data/password",)]
    assert "hunter2" not in json.dumps(drifted.to_dict())


def test_ignore_differences(world: World) -> None:
    plain_app(world)
    ignore = (
        "  ignoreDifferences: [{group: apps, kind: Deployment, name: web, "
        "jsonPointers: [/spec/replicas]}]\n"
    )
    fleet = world.fleet(app(world, extra=ignore))
    run(world, fleet, "sim-1")
    world.apps().patch_namespaced_deployment("web", world.namespace, {"spec": {"replicas": 9}})
    outcome = run(world, fleet, "sim-1")
    assert outcome.drift == []
    assert world.apps().read_namespaced_deployment("web", world.namespace).spec.replicas == 9


def test_cluster_down_fails_only_its_target(world: World) -> None:
    plain_app(world)
    fleet = world.fleet(app(world))
    world.sim.set_faults("sim-2", down=True)
    try:
        down = run(world, fleet, "sim-2")
        up = run(world, fleet, "sim-1")
    finally:
        world.sim.set_faults("sim-2", down=False)
    assert down.sync is SyncStatus.FAILED
    assert down.retryable
    assert "sim-2" in down.errors[0].message
    assert up.sync is SyncStatus.SYNCED, up.errors
    later = run(world, fleet, "sim-2")
    assert later.sync is SyncStatus.SYNCED, later.errors


def test_server_errors_are_retryable(world: World) -> None:
    plain_app(world)
    fleet = world.fleet(app(world))
    world.sim.set_faults("sim-2", errorRate=1.0, errorCode=503)
    try:
        outcome = run(world, fleet, "sim-2")
    finally:
        world.sim.set_faults("sim-2", errorRate=0.0)
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.retryable
    assert "503" in outcome.errors[0].message


def test_failed_rollout_is_degraded(world: World) -> None:
    world.repo.write(
        "app/web.yaml",
        DEPLOYMENT.format(replicas=1, image="nginx:1").replace(
            "metadata: {name: web}",
            "metadata: {name: web, annotations: {kubesim.dev/rollout: fail}}",
        ),
    )
    world.repo.commit()
    fleet = world.fleet(app(world))
    run(world, fleet, "sim-1")
    outcome = run(world, fleet, "sim-1")
    assert outcome.health is Health.DEGRADED


def test_prune_disabled_keeps_objects_and_reports_out_of_sync(world: World) -> None:
    plain_app(world)
    fleet = world.fleet(app(world, prune=False))
    run(world, fleet, "sim-1")
    world.repo.remove("app/svc.yaml").commit("drop the service")
    outcome = run(world, fleet, "sim-1")
    assert outcome.sync is SyncStatus.OUT_OF_SYNC
    assert actions(outcome)[f"Service/{world.namespace}/web"] == "skipped"
    assert [d.kind for d in outcome.drift] == ["extra"]
    assert world.core().read_namespaced_service("web", world.namespace)


def test_unknown_application_has_no_target(world: World) -> None:
    plain_app(world)
    with pytest.raises(ConfigError, match="no-such-app"):
        world.fleet(app(world)).target("no-such-app", "sim-1")
