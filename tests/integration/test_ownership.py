"""Ownership and projects end to end: the real engine against kubesim over HTTP.

Two applications declaring one object must not take it from each other, nor prune it
when it leaves one of them; an object nobody owns is adopted; a project's allow-lists stop
a target before anything is written.  "Nothing written" is measured by kubesim's count
of mutating requests, not inferred from the outcome.
"""

from __future__ import annotations

import textwrap

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from reconciler import inventory as inv
from reconciler.errors import ConfigError
from reconciler.fleet import Fleet, parse_fleet
from reconciler.model import APP_LABEL, MANAGED_BY_LABEL, Action, SyncStatus
from reconciler.outcome import Outcome
from tests.integration.conftest import World


def fleet(world: World, apps: dict[str, str], *, projects: str = "") -> Fleet:
    """Applications named ``{namespace}-{key}`` reading ``key/`` of the one repository."""
    entries = "".join(
        f"- name: {world.namespace}-{key}\n"
        f"  source: {{repo: {world.repo.path}, revision: main, path: {key}}}\n"
        f"  destination: {{namespace: {world.namespace}, clusters: {{names: [sim-1]}}}}\n"
        + (f"  {extra}\n" if extra else "")
        for key, extra in apps.items()
    )
    text = (f"clusters:\n  - {{name: sim-1, kubeconfig: {world.kubeconfig}}}\n"
            + (f"projects:\n{textwrap.indent(textwrap.dedent(projects), '  ')}" if projects else "")
            + "applications:\n" + textwrap.indent(entries, "  "))  # fmt: skip
    return parse_fleet(text, source=str(world.tmp / "fleet.yaml"), base_dir=str(world.tmp))


def run(world: World, the_fleet: Fleet, key: str) -> Outcome:
    return world.engine.reconcile(the_fleet.target(f"{world.namespace}-{key}", "sim-1"))


def configmap(name: str, namespace: str, **data: str) -> str:
    return (f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
            f"data: {dict(data)!r}\n").replace("'", '"')  # fmt: skip


def namespace(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"


def labels_of(world: World, name: str, namespace: str) -> dict[str, str]:
    return dict(world.core().read_namespaced_config_map(name, namespace).metadata.labels or {})


def test_an_object_of_another_application_is_never_written_adopted_or_pruned(
    world: World,
) -> None:
    victim = f"{world.namespace}-victim"
    a, b = f"{world.namespace}-a", f"{world.namespace}-b"
    world.repo.write("a/ns.yaml", namespace(victim))
    world.repo.write("a/cfg.yaml", configmap("cfg", victim, owner="a"))
    world.repo.write("b/ns.yaml", namespace(victim))
    world.repo.write("b/cfg.yaml", configmap("cfg", victim, owner="b"))
    world.repo.write("b/own.yaml", configmap("own", world.namespace))
    world.repo.commit("two applications claim one ConfigMap and one Namespace")
    the_fleet = fleet(world, {"a": "", "b": ""})
    assert run(world, the_fleet, "a").sync is SyncStatus.SYNCED

    before = world.writes()
    refused = run(world, the_fleet, "b")
    assert refused.sync is SyncStatus.FAILED
    assert refused.reason == "OwnedElsewhere"
    messages = {p.object: p.message for p in refused.errors}
    assert set(messages) == {f"ConfigMap/{victim}/cfg", f"Namespace/{victim}"}
    assert messages[f"ConfigMap/{victim}/cfg"].startswith(
        f"ConfigMap/{victim}/cfg: owned by application '{a}'"
    )
    assert world.writes() == before  # not even b's own ConfigMap, nor its inventory
    assert world.core().read_namespaced_config_map("cfg", victim).data == {"owner": "a"}
    assert labels_of(world, "cfg", victim)[APP_LABEL] == a
    with pytest.raises(ApiException):
        world.core().read_namespaced_config_map("own", world.namespace)

    # b's copies leave Git, while b's (stale) inventory still lists them.
    world.repo.remove("b/cfg.yaml")
    world.repo.remove("b/ns.yaml")
    world.repo.commit("b gives up the shared objects")
    stale = inv.Inventory(entries=inv.entries_of([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": victim}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": victim}},
    ]), revision="0" * 40)  # fmt: skip
    world.engine.client(the_fleet.target(b, "sim-1")).apply(inv.to_configmap(b, stale), force=True)
    synced = run(world, the_fleet, "b")
    assert synced.sync is SyncStatus.SYNCED, synced.errors
    assert not [c for c in synced.changes if c.action is Action.PRUNED]
    assert world.core().read_namespaced_config_map("cfg", victim).data == {"owner": "a"}
    assert labels_of(world, "cfg", victim)[APP_LABEL] == a
    assert world.core().read_namespace(victim).metadata.labels[APP_LABEL] == a
    assert run(world, the_fleet, "a").sync is SyncStatus.SYNCED


def test_a_namespace_holding_another_applications_objects_is_not_pruned(world: World) -> None:
    shared = f"{world.namespace}-shared"
    a = f"{world.namespace}-a"
    world.repo.write("b/ns.yaml", namespace(shared))
    world.repo.write("b/own.yaml", configmap("own", world.namespace))
    world.repo.write("a/cfg.yaml", configmap("cfg", shared, owner="a"))
    world.repo.commit("b declares a namespace a puts its config in")
    the_fleet = fleet(world, {"a": "", "b": ""})
    assert run(world, the_fleet, "b").sync is SyncStatus.SYNCED
    assert run(world, the_fleet, "a").sync is SyncStatus.SYNCED

    world.repo.remove("b/ns.yaml")
    world.repo.commit("the namespace leaves b")
    outcome = run(world, the_fleet, "b")
    assert outcome.sync is SyncStatus.SYNCED, outcome.errors
    skipped = {c.object: c.reason for c in outcome.changes if c.action is Action.SKIPPED}
    assert skipped == {f"Namespace/{shared}": f"holds objects of application(s) {a}"}
    assert world.core().read_namespace(shared).status.phase == "Active"
    assert world.core().read_namespaced_config_map("cfg", shared).data == {"owner": "a"}


def test_an_object_nobody_owns_is_adopted_and_the_change_says_so(world: World) -> None:
    core = world.core()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=world.namespace)))
    core.create_namespaced_config_map(world.namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="found"), data={"v": "by hand"}))  # fmt: skip
    world.repo.write("a/found.yaml", configmap("found", world.namespace, v="from git"))
    world.repo.commit("take over a hand-made ConfigMap")
    outcome = run(world, fleet(world, {"a": ""}), "a")
    assert outcome.sync is SyncStatus.SYNCED, outcome.errors
    change = next(c for c in outcome.changes if c.object == f"ConfigMap/{world.namespace}/found")
    assert change.action is Action.CONFIGURED
    assert "adopted" in change.reason
    labels = labels_of(world, "found", world.namespace)
    assert labels[APP_LABEL] == f"{world.namespace}-a"
    assert labels[MANAGED_BY_LABEL] == "reconciler"
    assert core.read_namespaced_config_map("found", world.namespace).data == {"v": "from git"}


def test_a_project_refuses_other_namespaces_and_cluster_scoped_kinds_before_any_write(
    world: World,
) -> None:
    world.repo.write("a/ok.yaml", configmap("ok", world.namespace))
    world.repo.write("a/sneaky.yaml", configmap("sneaky", "kube-system"))
    world.repo.write(
        "a/role.yaml",
        textwrap.dedent(f"""\
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata: {{name: {world.namespace}-admin}}
        rules: []
        """),
    )
    world.repo.commit("writes outside the project")
    projects = f"""\
        - name: team
          destinations: {{namespaces: ["{world.namespace}", "{world.namespace}-*"]}}
        """
    the_fleet = fleet(world, {"a": "project: team"}, projects=projects)
    before = world.writes()
    outcome = run(world, the_fleet, "a")
    assert outcome.sync is SyncStatus.FAILED
    assert outcome.reason == "NotPermitted"
    role = f"ClusterRole.rbac.authorization.k8s.io/{world.namespace}-admin"
    messages = {p.object: p.message for p in outcome.errors}
    assert set(messages) == {"ConfigMap/kube-system/sneaky", role}
    assert 'namespace "kube-system" is not a destination of project "team"' in messages[
        "ConfigMap/kube-system/sneaky"]  # fmt: skip
    assert "not in clusterResources.allow" in messages[role]
    assert world.writes() == before  # not the permitted ConfigMap, not the namespace
    with pytest.raises(ApiException):
        world.core().read_namespace(world.namespace)

    allowed = projects + (
        "  clusterResources: {allow: [{group: rbac.authorization.k8s.io, kind: ClusterRole}]}\n"
    )
    world.repo.remove("a/sneaky.yaml")
    world.repo.commit("only what the project allows")
    outcome = run(world, fleet(world, {"a": "project: team"}, projects=allowed), "a")
    assert outcome.sync is SyncStatus.SYNCED, outcome.errors
    assert labels_of(world, "ok", world.namespace)[APP_LABEL] == f"{world.namespace}-a"
    rbac = client.RbacAuthorizationV1Api(world.api())
    assert rbac.read_cluster_role(f"{world.namespace}-admin").metadata.labels[APP_LABEL] == (
        f"{world.namespace}-a"
    )


def test_an_unknown_project_is_a_fleet_error_naming_the_entry(world: World) -> None:
    with pytest.raises(ConfigError) as caught:
        fleet(world, {"a": "project: tema"}, projects="- name: team\n")
    assert str(caught.value) == (
        f"{world.tmp / 'fleet.yaml'}: applications[0] ({world.namespace}-a): project: "
        'unknown project "tema" (did you mean "team"?)'
    )
