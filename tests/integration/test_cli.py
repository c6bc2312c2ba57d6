"""The commands as users run them: validate, reconcile, diff, and the listings of outcomes.

Exit codes and output: tables as a person reads them (cut at the header's columns),
``-o json|yaml|name|wide``, and where a run stopped and what its hooks did.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version

import pytest
import redis
import yaml

from cli.admin import LiveHealth, live_health
from cli.installation import installation
from reconciler.store.keys import Keys
from reconciler.store.provision import EmbeddedRedis
from reconciler.store.records import Records
from tests.integration.conftest import World
from tests.integration.test_engine import CONFIGMAP, DEPLOYMENT, app, plain_app
from tests.integration.test_sync_phases import job
from workers.app import queue_for


def cli(
    world: World, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}
    environment.update(RECONCILER_CACHE_DIR=str(world.tmp / "cli-cache"), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
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
    assert cli(world, "diff", "--config", path, world.namespace, "-o", "bogus").returncode == 2
    every = cli(world, "diff", "--config", path, world.namespace)  # nothing applied yet
    assert every.returncode == 1, every.stderr
    assert f"# {world.namespace} on sim-1" in every.stdout
    assert f"# {world.namespace} on sim-2" in every.stdout
    named = cli(world, "diff", "--config", path, world.namespace, "-o", "name")
    assert named.stdout.split() == [f"{world.namespace}/sim-1", f"{world.namespace}/sim-2"]
    env_config = cli(world, "validate", env={"RECONCILER_CONFIG": path})
    assert env_config.returncode == 0, env_config.stderr


# -- listings: reconcile, status and history show where a run stopped and its hooks ------


def pre_sync(version: int, *, fail: bool = False) -> str:
    """A PreSync migration Job ``migrate``; kubesim fails it when ``fail``."""
    annotations = {"argocd.argoproj.io/hook": "PreSync"}
    if fail:
        annotations["kubesim.dev/rollout"] = "fail"
    return job("migrate", image=f"migrate:{version}", **annotations)


#: A SyncFail hook that pages someone: it runs only when a sync fails.
SYNC_FAIL = job("page-someone", image="pager:1", **{"argocd.argoproj.io/hook": "SyncFail"})


def table(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """A kubectl-style table: its headers and rows, cut at the header's column starts.

    Cells may hold spaces (``1 ok, 1 failed``) or be empty (REASON), so rows are not split
    on whitespace.  The table ends at the first blank line (hook lines follow it).
    """
    lines = text.splitlines()
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return names, rows


def hook_lines(text: str) -> list[list[str]]:
    """The lines after a table's blank line: ``LABEL hook PHASE OBJECT RESULT [MESSAGE]``."""
    _, _, after = text.partition("\n\n")
    return [line.split(maxsplit=5) for line in after.splitlines() if line.strip()]


def failing_hook_app(world: World) -> str:
    """A Deployment behind a PreSync migration that fails, and a SyncFail hook that pages."""
    world.repo.write("app/web.yaml", DEPLOYMENT.format(replicas=1, image="nginx:1.27"))
    world.repo.write("app/pre.yaml", pre_sync(1, fail=True))
    world.repo.write("app/fail.yaml", SYNC_FAIL)
    return world.repo.commit("a migration that fails")


def test_reconcile_table_shows_the_reason_and_each_hook(world: World) -> None:
    failing_hook_app(world)
    path = fleet_file(world, app(world))
    proc = cli(world, "reconcile", "--config", path, world.namespace, "--cluster", "sim-1")
    assert proc.returncode == 1, proc.stderr
    headers, rows = table(proc.stdout)
    assert headers == ["CLUSTER", "REVISION", "SYNC", "HEALTH", "REASON", "CHANGES", "DRIFT",
                       "HOOKS", "DURATION", "ERROR"]  # fmt: skip
    (row,) = rows
    assert (row["CLUSTER"], row["SYNC"], row["REASON"]) == ("sim-1", "Failed", "HookFailed")
    assert row["HOOKS"] == "1 ok, 1 failed"
    assert row["ERROR"].startswith(f"Job.batch/{world.namespace}/migrate: PreSync hook failed")
    lines = hook_lines(proc.stdout)
    assert [line[:5] for line in lines] == [
        ["sim-1", "hook", "PreSync", f"Job.batch/{world.namespace}/migrate", "Failed"],
        ["sim-1", "hook", "SyncFail", f"Job.batch/{world.namespace}/page-someone", "Succeeded"],
    ]  # fmt: skip
    assert "backoff limit" in lines[0][5]  # why it failed, on the failed hook's line
    assert len(lines[1]) == 5  # a hook that succeeded needs no message
    assert f"error: {world.namespace} on sim-1: Job.batch/{world.namespace}/migrate" in proc.stderr


def test_reconcile_json_yaml_name_and_wide(world: World) -> None:
    failing_hook_app(world)
    path = fleet_file(world, app(world))
    base = ("reconcile", "--config", path, world.namespace, "--cluster", "sim-1")
    as_json = cli(world, *base, "-o", "json")
    assert as_json.returncode == 1, as_json.stderr
    (outcome,) = json.loads(as_json.stdout)
    assert outcome["reason"] == "HookFailed" and outcome["sync"] == "Failed"
    assert [(h["object"], h["phase"], h["result"]) for h in outcome["hooks"]] == [
        (f"Job.batch/{world.namespace}/migrate", "PreSync", "Failed"),
        (f"Job.batch/{world.namespace}/page-someone", "SyncFail", "Succeeded"),
    ]  # fmt: skip
    assert "backoff limit" in outcome["hooks"][0]["message"]
    as_yaml = cli(world, *base, "-o", "yaml")
    assert as_yaml.returncode == 1, as_yaml.stderr
    (again,) = yaml.safe_load(as_yaml.stdout)
    assert set(again) == set(outcome)
    assert again["reason"] == "HookFailed"
    assert [h["result"] for h in again["hooks"]] == ["Failed", "Succeeded"]
    named = cli(world, *base, "-o", "name")
    assert (named.returncode, named.stdout) == (1, f"{world.namespace}/sim-1\n")
    headers, _ = table(cli(world, *base).stdout)
    wide = cli(world, *base, "-o", "wide")
    wide_headers, (row,) = table(wide.stdout)
    # -o wide adds columns before ERROR; it never drops or reorders the table's.
    assert [h for h in wide_headers if h in headers] == headers
    assert wide_headers[-1] == "ERROR"
    assert set(wide_headers) - set(headers) == {"APPLICATION", "TRIGGER", "STARTED", "RETRYABLE"}
    assert (row["APPLICATION"], row["TRIGGER"], row["RETRYABLE"]) == (world.namespace, "cli",
                                                                      "false")  # fmt: skip
    assert hook_lines(wide.stdout)[0][:5] == hook_lines(cli(world, *base).stdout)[0][:5]


def redis_env(redis_url: str, prefix: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "RECONCILER_REDIS_PREFIX": prefix}


def recorded_runs(world: World, redis_url: str, prefix: str) -> None:
    """Two runs of sim-1 recorded as workers record them (hooks that pass, then fail), one of
    sim-2."""
    world.repo.write("app/web.yaml", DEPLOYMENT.format(replicas=1, image="nginx:1.27"))
    world.repo.write("app/pre.yaml", pre_sync(1))
    world.repo.write("app/fail.yaml", SYNC_FAIL)
    world.repo.commit("a migration that passes")
    the_fleet = world.fleet(app(world))
    client = redis.Redis.from_url(redis_url)
    records = Records(client, Keys(prefix))
    try:
        for cluster in ("sim-2", "sim-1"):
            good = world.engine.reconcile(the_fleet.target(world.namespace, cluster))
            assert good.sync.value == "Synced", good.errors
            records.record(good)
        world.repo.write("app/pre.yaml", pre_sync(2, fail=True))
        world.repo.commit("a migration that fails")
        bad = world.engine.reconcile(the_fleet.target(world.namespace, "sim-1"))
        assert bad.reason == "HookFailed", bad
        records.record(bad)
    finally:
        client.close()


def test_status_shows_reason_and_hook_counts(world: World, redis_url: str,
                                             redis_prefix: str) -> None:  # fmt: skip
    recorded_runs(world, redis_url, redis_prefix)
    env = redis_env(redis_url, redis_prefix)
    proc = cli(world, "status", world.namespace, env=env)
    assert proc.returncode == 0, proc.stderr
    headers, rows = table(proc.stdout)
    assert headers == ["APPLICATION", "CLUSTER", "REVISION", "SYNC", "HEALTH", "REASON", "DRIFT",
                       "HOOKS", "AGE", "ERROR"]  # fmt: skip
    by_cluster = {r["CLUSTER"]: r for r in rows}
    failed, fine = by_cluster["sim-1"], by_cluster["sim-2"]
    assert (failed["SYNC"], failed["REASON"], failed["HOOKS"]) == ("Failed", "HookFailed",
                                                                   "1 ok, 1 failed")  # fmt: skip
    assert failed["ERROR"].startswith(f"Job.batch/{world.namespace}/migrate: PreSync hook")
    assert (fine["SYNC"], fine["REASON"], fine["HOOKS"]) == ("Synced", "", "1 ok")
    wide_headers, wide_rows = table(cli(world, "status", world.namespace, "-o", "wide",
                                        env=env).stdout)  # fmt: skip
    assert [h for h in wide_headers if h in headers] == headers and wide_headers[-1] == "ERROR"
    assert {r["CLUSTER"]: r["TRIGGER"] for r in wide_rows} == {"sim-1": "cli", "sim-2": "cli"}
    entries = json.loads(cli(world, "status", world.namespace, "-o", "json", env=env).stdout)
    entry = {e["cluster"]: e for e in entries}["sim-1"]
    assert (entry["reason"], entry["hooks"]) == ("HookFailed", {"Failed": 1, "Succeeded": 1})
    assert yaml.safe_load(cli(world, "status", world.namespace, "-o", "yaml",
                              env=env).stdout) == entries  # fmt: skip
    named = cli(world, "status", world.namespace, "-o", "name", env=env)
    assert named.stdout.splitlines() == [f"{world.namespace}/sim-1", f"{world.namespace}/sim-2"]


def test_history_shows_each_run_and_wide_lists_its_hooks(world: World, redis_url: str,
                                                         redis_prefix: str) -> None:  # fmt: skip
    recorded_runs(world, redis_url, redis_prefix)
    env = redis_env(redis_url, redis_prefix)
    base = ("history", world.namespace, "--cluster", "sim-1")
    proc = cli(world, *base, env=env)
    assert proc.returncode == 0, proc.stderr
    headers, (latest, first) = table(proc.stdout)
    assert headers == ["STARTED", "TRIGGER", "REVISION", "SYNC", "HEALTH", "REASON", "CHANGES",
                       "DRIFT", "HOOKS", "DURATION", "ERROR"]  # fmt: skip
    assert (latest["SYNC"], latest["REASON"], latest["HOOKS"]) == ("Failed", "HookFailed",
                                                                   "1 ok, 1 failed")  # fmt: skip
    assert (first["SYNC"], first["REASON"], first["HOOKS"]) == ("Synced", "", "1 ok")
    assert first["CHANGES"].startswith("created=")
    assert hook_lines(proc.stdout) == []  # the table stays one line per run
    wide = cli(world, *base, "-o", "wide", env=env)
    wide_headers, _ = table(wide.stdout)
    assert [h for h in wide_headers if h in headers] == headers and wide_headers[-1] == "ERROR"
    ns = world.namespace
    assert [line[1:5] for line in hook_lines(wide.stdout)] == [
        ["hook", "PreSync", f"Job.batch/{ns}/migrate", "Failed"],
        ["hook", "SyncFail", f"Job.batch/{ns}/page-someone", "Succeeded"],
        ["hook", "PreSync", f"Job.batch/{ns}/migrate", "Succeeded"],
    ]  # fmt: skip
    assert hook_lines(wide.stdout)[0][0] == latest["STARTED"]  # each hook names its run
    items = json.loads(cli(world, *base, "-o", "json", env=env).stdout)
    assert [i["reason"] for i in items] == ["HookFailed", ""]
    assert [h["result"] for h in items[0]["hooks"]] == ["Failed", "Succeeded"]
    assert cli(world, *base, "-o", "name", env=env).stdout == f"{ns}/sim-1\n"
    assert len(table(cli(world, *base, "-n", "1", env=env).stdout)[1]) == 1


def test_listings_exit_codes(world: World, redis_url: str, redis_prefix: str) -> None:
    env = redis_env(redis_url, redis_prefix)
    empty = cli(world, "status", env=env)
    assert (empty.returncode, empty.stdout) == (0, "")  # nothing recorded is not an error
    assert "No targets recorded" in empty.stderr
    assert json.loads(cli(world, "status", "-o", "json", env=env).stdout) == []
    none = cli(world, "history", "web", "--cluster", "sim-1", env=env)
    assert (none.returncode, none.stdout) == (0, "")
    assert "No outcomes recorded for web on sim-1" in none.stderr
    assert cli(world, "history", "web", "--cluster", "sim-1", "-n", "0", env=env).returncode == 2
    assert cli(world, "status", "-o", "xml", env=env).returncode == 2
    bad_name = cli(world, "status", "Bad_Name", env=env)
    assert bad_name.returncode == 2 and "Bad_Name" in bad_name.stderr
    assert cli(world, "sync", "web", "--health", "--timeout", "0", env=env).returncode == 2
    down = cli(world, "status", env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert down.returncode == 1 and "does not answer" in down.stderr


def until(read: Callable[[], LiveHealth], status: str, timeout: float = 20) -> LiveHealth:
    """Poll ``read`` until it reports ``status`` (kubesim's controllers write asynchronously)."""
    deadline = time.monotonic() + timeout
    while (seen := read()).status != status:
        assert time.monotonic() < deadline, f"not {status} after {timeout}s: {seen}"
        time.sleep(0.05)
    return seen


def test_live_health_is_read_from_the_inventory(world: World) -> None:
    world.repo.write("app/web.yaml", DEPLOYMENT.format(replicas=1, image="nginx:1.27"))
    world.repo.write("app/cm.yaml", CONFIGMAP.format(name="cfg", value="1"))
    world.repo.commit("a web server")
    the_fleet = world.fleet(app(world))
    target = the_fleet.target(world.namespace, "sim-1")
    kube = world.engine.client(target)
    never = live_health(kube, world.namespace)
    assert never.status == "Unknown" and "no inventory" in never.message
    assert world.engine.reconcile(target).sync.value == "Synced"
    healthy = until(lambda: live_health(kube, world.namespace), "Healthy")
    assert (healthy.source, healthy.message, healthy.resources) == ("cluster", "", ())
    world.apps().patch_namespaced_deployment(
        "web", world.namespace,
        {"metadata": {"annotations": {"kubesim.dev/rollout": "fail"}},
         "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}}},
    )  # fmt: skip
    failing = until(lambda: live_health(kube, world.namespace), "Degraded")
    assert failing.message.startswith(f"Deployment.apps/{world.namespace}/web: Deployment exceeded")
    assert [r[:2] for r in failing.resources] == [(f"Deployment.apps/{world.namespace}/web",
                                                   "Degraded")]  # fmt: skip


# -- errors a person can act on: unknown names, the installation read, no worker ------------


def test_version_is_the_installed_package_version(world: World) -> None:
    proc = cli(world, "--version")
    assert (proc.returncode, proc.stdout) == (0, f"reconciler {version('reconciler')}\n")


def test_installation_names_redis_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://admin:s3cret@redis.example:6380/2")
    monkeypatch.setenv("RECONCILER_REDIS_PREFIX", "team-a:")
    shown = installation()
    assert "s3cret" not in shown and "admin" not in shown
    assert shown == "Redis redis://redis.example:6380/2, prefix 'team-a:'"


def test_unknown_names_exit_2_with_a_suggestion(world: World, redis_url: str,
                                                redis_prefix: str) -> None:  # fmt: skip
    recorded_runs(world, redis_url, redis_prefix)
    path = str(world.tmp / "fleet.yaml")
    env = redis_env(redis_url, redis_prefix)
    typo = world.namespace[:-1]
    suggestion = f'(did you mean "{world.namespace}"?)'
    for args in (("status", typo), ("history", typo), ("history", typo, "--cluster", "sim-1"),
                 ("sync", typo, "--wait"), ("suspend", typo), ("resume", typo)):  # fmt: skip
        proc = cli(world, *args, "--config", path, env=env)
        assert (proc.returncode, proc.stdout) == (2, ""), (args, proc.stderr)
        assert f'unknown application "{typo}" {suggestion}' in proc.stderr, (args, proc.stderr)
    from_env = cli(world, "status", typo, env={**env, "RECONCILER_CONFIG": path})
    assert from_env.returncode == 2 and suggestion in from_env.stderr
    # A cluster: unknown to the fleet, or not a target of the application.
    unknown = cli(world, "history", world.namespace, "--cluster", "sim-9", "--config", path,
                  env=env)  # fmt: skip
    assert unknown.returncode == 2 and 'unknown cluster "sim-9" (did you mean' in unknown.stderr
    for args in (("history", world.namespace, "--cluster", "sim-3"),
                 ("sync", world.namespace, "--cluster", "sim-3")):  # fmt: skip
        proc = cli(world, *args, "--config", path, env=env)
        assert proc.returncode == 2 and "does not target cluster sim-3" in proc.stderr, args
    # Without a fleet file, the status index is the list of what exists.
    recorded = cli(world, "status", typo, env=env)
    assert recorded.returncode == 2 and suggestion in recorded.stderr, recorded.stderr
    assert redis_prefix in recorded.stderr
    off_target = cli(world, "history", world.namespace, "--cluster", "sim-3", env=env)
    assert off_target.returncode == 2, off_target.stderr
    assert f'unknown cluster "sim-3" for {world.namespace} (did you mean' in off_target.stderr
    assert "Traceback" not in recorded.stderr + off_target.stderr


def test_an_empty_listing_names_the_installation_it_read(world: World, redis_url: str,
                                                         redis_prefix: str) -> None:  # fmt: skip
    env = redis_env(redis_url, redis_prefix)
    where = f"Redis {redis_url}, prefix '{redis_prefix}'"
    empty = cli(world, "status", env=env)
    assert (empty.returncode, empty.stdout) == (0, "")
    assert empty.stderr == f"No targets recorded in {where}.\n"
    plain_app(world)
    path = fleet_file(world, app(world))
    known = cli(world, "status", world.namespace, "--config", path, env=env)
    assert (known.returncode, known.stdout) == (0, "")
    assert known.stderr == f"No targets of {world.namespace} recorded in {where}.\n"
    history = cli(world, "history", world.namespace, "--config", path, env=env)
    assert (history.returncode, history.stdout) == (0, "")
    none = f"No outcomes recorded for {world.namespace} on any cluster in {where}.\n"
    assert history.stderr == none
    # History is about the past: an application that left the fleet is no typo.
    gone = cli(world, "history", "retired-app", "--cluster", "sim-1", "--config", path, env=env)
    assert (gone.returncode, gone.stdout) == (0, ""), gone.stderr
    assert gone.stderr == (f"No outcomes recorded for retired-app on sim-1 in {where}; "
                           f"retired-app is not an application of {path}.\n")  # fmt: skip


def test_history_of_every_target_newest_first(world: World, redis_url: str,
                                              redis_prefix: str) -> None:  # fmt: skip
    recorded_runs(world, redis_url, redis_prefix)
    env = redis_env(redis_url, redis_prefix)
    path = str(world.tmp / "fleet.yaml")
    ns = world.namespace
    for config in (("--config", path), ()):  # from the fleet file, or from the status index
        proc = cli(world, "history", ns, *config, env=env)
        assert proc.returncode == 0, proc.stderr
        headers, rows = table(proc.stdout)
        assert headers[:2] == ["STARTED", "CLUSTER"]
        assert [(r["CLUSTER"], r["SYNC"]) for r in rows] == [
            ("sim-1", "Failed"), ("sim-1", "Synced"), ("sim-2", "Synced"),
        ]  # fmt: skip
        assert [r["STARTED"] for r in rows] == sorted((r["STARTED"] for r in rows), reverse=True)
    items = json.loads(cli(world, "history", ns, "-o", "json", env=env).stdout)
    assert [(i["cluster"], i["reason"]) for i in items] == [
        ("sim-1", "HookFailed"), ("sim-1", ""), ("sim-2", ""),
    ]  # fmt: skip
    named = cli(world, "history", ns, "-o", "name", env=env)
    assert named.stdout.splitlines() == [f"{ns}/sim-1", f"{ns}/sim-2"]
    newest = table(cli(world, "history", ns, "-n", "2", env=env).stdout)[1]
    assert [r["CLUSTER"] for r in newest] == ["sim-1", "sim-1"]
    wide = cli(world, "history", ns, "-o", "wide", env=env)
    assert {line[1] for line in hook_lines(wide.stdout)} == {"sim-1", "sim-2"}


def test_sync_with_no_worker_says_so_and_exits_1(world: World, redis_url: str,
                                                 redis_prefix: str) -> None:  # fmt: skip
    """A real broker that nobody consumes: the fan-out is never taken within --timeout."""
    plain_app(world)
    path = fleet_file(world, app(world))
    env = redis_env(redis_url, redis_prefix)
    started = time.monotonic()
    proc = cli(world, "sync", world.namespace, "--config", path, "--wait", "--timeout", "1.5",
               env=env)  # fmt: skip
    assert time.monotonic() - started < 30
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"error: no worker took the sync of {world.namespace} within")
    assert "is a worker running" in proc.stderr
    assert f"Redis {redis_url}, prefix '{redis_prefix}'" in proc.stderr


def test_every_admin_command_exits_1_when_redis_does_not_answer(world: World) -> None:
    plain_app(world)
    path = fleet_file(world, app(world))
    down = {"REDIS_URL": "redis://127.0.0.1:1/0"}
    ns = world.namespace
    for args in (("status",), ("history", ns), ("history", ns, "--cluster", "sim-1"),
                 ("sync", ns, "--config", path, "--wait", "--timeout", "5"),
                 ("suspend", ns, "--config", path), ("resume", ns, "--config", path)):  # fmt: skip
        proc = cli(world, *args, env=down)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stderr == (
            "error: Redis at redis://127.0.0.1:1/0 does not answer "
            "(set REDIS_URL, or use 'reconciler up')\n"
        ), args


def test_redis_that_stops_answering_mid_command_is_an_error_not_a_traceback(world: World) -> None:
    """A Redis of the test's own, stopped while ``sync --wait`` waits for its fan-out."""
    plain_app(world)
    path = fleet_file(world, app(world))
    server = EmbeddedRedis().start()
    environment = {k: v for k, v in os.environ.items() if k != "RECONCILER_CONFIG"}
    environment.update(RECONCILER_CACHE_DIR=str(world.tmp / "cli-cache"), REDIS_URL=server.url,
                       RECONCILER_REDIS_PREFIX="lost:")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "sync", world.namespace, "--config", path,
         "--wait", "--timeout", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )  # fmt: skip
    try:
        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 30
        # The forced queue holds the sync once the command is waiting for a worker to take it.
        while not client.exists(Keys("lost:").celery() + queue_for(forced=True)):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the sync was never queued"
            time.sleep(0.05)
        client.close()
        server.stop()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.stop()
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert err.startswith(f"error: Redis stopped answering (Redis {server.url}, prefix 'lost:'): ")
