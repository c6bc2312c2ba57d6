"""The one-shot commands as users run them: validate, reconcile, diff (exit codes and output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.conftest import World
from tests.integration.test_engine import CONFIGMAP, app, plain_app


def cli(
    world: World, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}
    environment.update(RECONCILER_CACHE_DIR=str(world.tmp / "cli-cache"), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args],
        capture_output=True, text=True, timeout=120, env=environment, check=False,
    )  # fmt: skip


def fleet_file(world: World, apps: str) -> str:
    world.fleet(apps)
    return str(world.tmp / "fleet.yaml")


def test_validate_renders_every_target(world: World) -> None:
    plain_app(world)
    path = fleet_file(world, app(world))
    world.sim.reset_requests()
    proc = cli(world, "validate", "--config", path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["APPLICATION", "CLUSTER", "REVISION"]
    assert {line.split()[1] for line in lines[1:]} == {"sim-1", "sim-2"}
    assert world.writes("sim-1") == world.writes("sim-2") == 0  # discovery reads only
    data = json.loads(cli(world, "validate", "--config", path, "-o", "json").stdout)
    assert [t["objects"] for t in data["targets"]] == [3, 3]
    assert world.core().list_namespaced_config_map(world.namespace).items == []


def test_validate_reports_bad_fleet_with_exit_2(world: World) -> None:
    path = world.tmp / "bad.yaml"
    path.write_text("clusters:\n  - name: Bad_Name\n    lables: {a: b}\napplications: []\n")
    proc = cli(world, "validate", "--config", str(path))
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stderr
    assert "clusters[0]" in proc.stderr
    assert "lables" in proc.stderr


def test_validate_names_the_broken_manifest(world: World) -> None:
    world.repo.write("app/broken.yaml", "kind: ConfigMap\nmetadata: {name: x}\n")
    world.repo.commit()
    proc = cli(world, "validate", "--config", fleet_file(world, app(world)))
    assert proc.returncode == 2
    assert "app/broken.yaml:1" in proc.stderr


def test_reconcile_then_diff(world: World) -> None:
    plain_app(world)
    path = fleet_file(world, app(world))
    proc = cli(world, "reconcile", "--config", path, world.namespace, "--cluster", "sim-1",
               "-o", "json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (outcome,) = json.loads(proc.stdout)
    assert outcome["sync"] == "Synced"
    assert world.apps().read_namespaced_deployment("web", world.namespace).spec.replicas == 2
    same = cli(world, "diff", "--config", path, world.namespace, "--cluster", "sim-1")
    assert same.returncode == 0, same.stderr
    assert same.stdout == ""
    world.apps().patch_namespaced_deployment("web", world.namespace, {"spec": {"replicas": 4}})
    drift = cli(world, "diff", "--config", path, world.namespace, "--cluster", "sim-1")
    assert drift.returncode == 1, drift.stderr
    assert "-  replicas: 4" in drift.stdout and "+  replicas: 2" in drift.stdout
    assert world.apps().read_namespaced_deployment("web", world.namespace).spec.replicas == 4
    table = cli(world, "reconcile", "--config", path, world.namespace)
    assert table.returncode == 0, table.stderr
    assert {line.split()[0] for line in table.stdout.splitlines()[1:]} == {"sim-1", "sim-2"}
    assert world.apps().read_namespaced_deployment("web", world.namespace).spec.replicas == 2


def test_reconcile_failure_exits_1(world: World) -> None:
    world.repo.write("app/cm.yaml", CONFIGMAP.format(name="Bad_Name", value="1"))
    world.repo.commit()
    proc = cli(world, "reconcile", "--config", fleet_file(world, app(world)), world.namespace,
               "--cluster", "sim-1")  # fmt: skip
    assert proc.returncode == 1
    assert "Bad_Name" in proc.stderr
    assert "Failed" in proc.stdout


def test_usage_errors_exit_2(world: World) -> None:
    plain_app(world)
    path = fleet_file(world, app(world))
    assert cli(world, "reconcile", world.namespace).returncode == 2  # no fleet file
    not_targeted = cli(world, "reconcile", "--config", path, world.namespace, "--cluster", "sim-3")
    assert not_targeted.returncode == 2
    assert "does not target" in not_targeted.stderr
    unknown = cli(world, "reconcile", "--config", path, "nope")
    assert unknown.returncode == 2
    assert cli(world, "diff", "--config", path, world.namespace).returncode == 2
    env_config = cli(world, "validate", env={"RECONCILER_CONFIG": path})
    assert env_config.returncode == 0, env_config.stderr
