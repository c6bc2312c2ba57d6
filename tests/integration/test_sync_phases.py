"""Sync phases end to end: declared namespaces, hooks, health-gated waves, replacement.

Real Git repositories and kubesim over HTTP; kubesim's controllers complete Jobs and
Pods, or fail or hang them when the object carries ``kubesim.dev/rollout: fail|hang``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from reconciler.engine import Options
from reconciler.fleet import Fleet
from reconciler.inventory import NAMESPACE, from_configmap, name_for
from reconciler.model import SyncStatus
from reconciler.outcome import Outcome, Trigger
from tests.integration.conftest import World

JOB = """\
apiVersion: batch/v1
kind: Job
metadata:
  {name}
  annotations: {annotations}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: run, image: "{image}"}}]
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, annotations: {annotations}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: nginx}}]}}
"""


def job(name: str, image: str = "migrate:1", **annotations: str) -> str:
    named = f"generateName: {name}" if name.endswith("-") else f"name: {name}"
    return JOB.format(name=named, annotations=json.dumps(annotations), image=image)


def deployment(**annotations: str) -> str:
    return DEPLOYMENT.format(annotations=json.dumps(annotations))


def fleet(world: World, path: str = "app", **sync: object) -> Fleet:
    policy = ", ".join(f"{k}: {json.dumps(v)}" for k, v in sync.items())
    return world.fleet(f"""\
        - name: {world.namespace}
          source: {{repo: {world.repo.path}, revision: main, path: "{path}"}}
          destination: {{namespace: {world.namespace}, clusters: {{names: [sim-1, sim-2]}}}}
          sync: {{{policy}}}
        """)


def run(world: World, the_fleet: Fleet, cluster: str = "sim-1", **kwargs: Any) -> Outcome:
    return world.engine.reconcile(the_fleet.target(world.namespace, cluster), **kwargs)


def hooks(outcome: Outcome) -> list[tuple[str, str, str]]:
    return [(h.object.rsplit("/", 1)[-1], h.phase, h.result) for h in outcome.hooks]


def batch(world: World, cluster: str = "sim-1") -> client.BatchV1Api:
    return client.BatchV1Api(world.api(cluster))


def job_names(world: World, cluster: str = "sim-1") -> list[str]:
    return sorted(j.metadata.name for j in batch(world, cluster).list_namespaced_job(
        world.namespace).items)  # fmt: skip


def test_namespace_declared_in_git_syncs_in_one_run(world: World) -> None:
    team = f"{world.namespace}-team"
    namespace = f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {team}}}\n"
    world.repo.write("app/ns.yaml", namespace)
    world.repo.write("app/cm.yaml", f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: settings, namespace: {team}}}
        data: {{a: "1"}}
        """)
    world.repo.commit("namespace and its config")
    the_fleet = fleet(world, createNamespace=False)
    for cluster in ("sim-1", "sim-2"):
        outcome = run(world, the_fleet, cluster)
        assert outcome.sync is SyncStatus.SYNCED, outcome.errors
        assert world.core(cluster).read_namespaced_config_map("settings", team).data == {"a": "1"}
    again = run(world, the_fleet)
    assert {c.action.value for c in again.changes} == {"unchanged"}
    assert not again.drift


def test_undeclared_namespace_without_create_namespace_fails_naming_it(world: World) -> None:
    world.repo.write("app/cm.yaml", """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings, namespace: nowhere-to-be-found}
        """)
    world.repo.commit()
    outcome = run(world, fleet(world, createNamespace=False))
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "NamespaceMissing"
    assert outcome.errors[0].message.startswith("Namespace/nowhere-to-be-found: does not exist")


def test_hooks_run_in_order_only_when_the_sync_writes(world: World) -> None:
    world.repo.write("app/pre.yaml", job("migrate-", **{
        "argocd.argoproj.io/hook": "PreSync",
        "argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}))  # fmt: skip
    world.repo.write("app/post.yaml", job("smoke", **{"argocd.argoproj.io/hook": "PostSync"}))
    world.repo.write("app/web.yaml", deployment())
    world.repo.commit("hooks")
    the_fleet = fleet(world)
    first = run(world, the_fleet)
    assert first.sync is SyncStatus.SYNCED, first.errors
    ran = hooks(first)
    assert [(phase, result) for _, phase, result in ran] == [
        ("PreSync", "Succeeded"), ("PostSync", "Succeeded"),
    ]  # fmt: skip
    assert ran[0][0].startswith("migrate-") and ran[1][0] == "smoke"
    # HookSucceeded deleted the migration; the PostSync Job (BeforeHookCreation) stays.
    assert job_names(world) == ["smoke"]
    # Hooks are not desired state: not in the inventory, not drift, not pruned.
    inventory = from_configmap(world.core().read_namespaced_config_map(
        name_for(world.namespace), NAMESPACE).to_dict())  # fmt: skip
    assert all(e.key.kind != "Job" for e in inventory.entries)
    again = run(world, the_fleet, trigger=Trigger.SCHEDULE)
    assert again.sync is SyncStatus.SYNCED, again.errors
    assert not again.hooks and not again.drift
    assert {c.action.value for c in again.changes} == {"unchanged"}
    # Healed drift is a sync that writes: hooks run again, the old PostSync Job replaced.
    world.apps().patch_namespaced_deployment("web", world.namespace, {"spec": {"replicas": 3}})
    healed = run(world, the_fleet, trigger=Trigger.SCHEDULE)
    assert [(p, r) for _, p, r in hooks(healed)] == [("PreSync", "Succeeded"),
                                                     ("PostSync", "Succeeded")]  # fmt: skip
    assert job_names(world) == ["smoke"]


def test_failed_pre_sync_applies_nothing_and_runs_sync_fail(world: World) -> None:
    world.repo.write("app/pre.yaml", job("migrate", **{
        "argocd.argoproj.io/hook": "PreSync", "kubesim.dev/rollout": "fail"}))  # fmt: skip
    world.repo.write("app/fail.yaml", job("page-someone", **{
        "argocd.argoproj.io/hook": "SyncFail"}))  # fmt: skip
    world.repo.write("app/web.yaml", deployment())
    world.repo.commit("failing migration")
    outcome = run(world, fleet(world))
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "HookFailed"
    assert hooks(outcome) == [("migrate", "PreSync", "Failed"),
                              ("page-someone", "SyncFail", "Succeeded")]  # fmt: skip
    assert outcome.errors[0].message.startswith(f"Job.batch/{world.namespace}/migrate: PreSync")
    with pytest.raises(ApiException):
        world.apps().read_namespaced_deployment("web", world.namespace)
    # The other cluster is not disturbed by this one's failure.
    assert job_names(world, "sim-2") == []


def test_wave_two_waits_for_wave_one_to_be_healthy(world: World) -> None:
    world.repo.write("app/schema.yaml", job("schema", **{
        "argocd.argoproj.io/sync-wave": "1", "kubesim.dev/rollout": "hang"}))  # fmt: skip
    world.repo.write("app/web.yaml", deployment(**{"argocd.argoproj.io/sync-wave": "2"}))
    world.repo.commit("waves")
    the_fleet = fleet(world, waveTimeout="1s")
    outcome = run(world, the_fleet)
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "WaveTimeout"
    assert outcome.errors[0].message.startswith(
        f"Job.batch/{world.namespace}/schema: wave 1 not Healthy after 1s: Progressing"
    )
    with pytest.raises(ApiException):
        world.apps().read_namespaced_deployment("web", world.namespace)
    # A Job that completes lets the next run go on to wave 2 (the stuck one is pruned).
    world.repo.write("app/schema.yaml", job("schema-2", **{"argocd.argoproj.io/sync-wave": "1"}))
    world.repo.commit("schema job completes")
    done = run(world, the_fleet)
    assert done.sync is SyncStatus.SYNCED, done.errors
    assert world.apps().read_namespaced_deployment("web", world.namespace)


def test_degraded_wave_fails_the_sync(world: World) -> None:
    world.repo.write("app/a.yaml", deployment(**{
        "argocd.argoproj.io/sync-wave": "1", "kubesim.dev/rollout": "fail"}))  # fmt: skip
    world.repo.write("app/b.yaml", """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: later, annotations: {argocd.argoproj.io/sync-wave: "2"}}
        """)
    world.repo.commit()
    outcome = run(world, fleet(world))
    assert outcome.reason == "WaveFailed"
    assert f"Deployment.apps/{world.namespace}/web: wave 1: Degraded" in outcome.errors[0].message
    with pytest.raises(ApiException):
        world.core().read_namespaced_config_map("later", world.namespace)


def test_immutable_change_fails_naming_the_field_unless_replace(world: World) -> None:
    world.repo.write("app/job.yaml", job("once", image="a:1"))
    world.repo.write("app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    world.repo.commit()
    the_fleet = fleet(world)
    assert run(world, the_fleet).sync is SyncStatus.SYNCED
    world.repo.write("app/job.yaml", job("once", image="a:2"))
    world.repo.write("app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
                     "data: {x: y}\n")  # fmt: skip
    world.repo.commit("new image")
    refused = run(world, the_fleet)
    assert refused.reason == "DryRunRejected"
    message = refused.errors[0].message
    assert message.startswith(f"Job.batch/{world.namespace}/once: immutable field spec.template")
    assert "Replace=true" in message
    assert world.core().read_namespaced_config_map("c", world.namespace).data is None
    world.repo.write("app/job.yaml", job("once", image="a:2", **{"reconciler.dev/replace": "true"}))
    world.repo.commit("allow replacement")
    replaced = run(world, the_fleet)
    assert replaced.sync is SyncStatus.SYNCED, replaced.errors
    assert {c.object: c.action.value for c in replaced.changes}[
        f"Job.batch/{world.namespace}/once"] == "replaced"  # fmt: skip
    live = batch(world).read_namespaced_job("once", world.namespace)
    assert live.spec.template.spec.containers[0].image == "a:2"


def test_a_wave_still_waited_on_when_the_run_must_end_is_retryable(world: World) -> None:
    world.repo.write("app/schema.yaml", job("schema", **{
        "argocd.argoproj.io/sync-wave": "1", "kubesim.dev/rollout": "hang"}))  # fmt: skip
    world.repo.write("app/web.yaml", deployment(**{"argocd.argoproj.io/sync-wave": "2"}))
    world.repo.commit("waves")
    started = time.monotonic()
    outcome = run(world, fleet(world), options=Options(deadline=time.monotonic() + 1.0))
    assert time.monotonic() - started < 30  # not the 5m waveTimeout
    assert outcome.reason == "WaveTimeout"
    assert outcome.retryable
    assert "when the run's time ran out" in outcome.errors[0].message
