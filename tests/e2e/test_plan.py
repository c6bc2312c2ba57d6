"""``reconciler plan`` on a branch, against live clusters: exactly what would change, and
nothing written (kubesim's request log holds reads and dry-runs only)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

OLD = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: old}
data: {gone: "soon"}
"""
NEW = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: new}
data: {fresh: "yes"}
"""
HOOK = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  annotations: {argocd.argoproj.io/hook: PreSync}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: "busybox:1.36"}]
"""
WRITES = {"POST", "PUT", "DELETE"}


def test_plan_reports_what_a_branch_adds_changes_and_removes_and_writes_nothing(
    stack: Stack,
) -> None:
    app = f"plan-{uuid.uuid4().hex[:6]}"
    stack.write_app(app, "1")
    stack.repo.write(f"{app}/old.yaml", OLD)
    main = stack.repo.commit("the application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1", "sim-2"]}))
    deployed = stack.cli("reconcile", app)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    # The branch changes the ConfigMap, removes one, adds one and a PreSync hook.
    stack.repo.git("checkout", "-q", "-b", "feature")
    stack.write_app(app, "2")
    stack.repo.remove(f"{app}/old.yaml")
    stack.repo.write(f"{app}/new.yaml", NEW)
    stack.repo.write(f"{app}/hook.yaml", HOOK)
    feature = stack.repo.commit("the change under review")
    stack.repo.git("checkout", "-q", "main")
    assert stack.repo.git("rev-parse", "HEAD") == main
    stack.sim.reset_requests()

    result = stack.cli("plan", app, "--revision", "feature", "-o", "json", "--diff")
    assert result.returncode == 1, result.stdout + result.stderr  # something would change
    rows = json.loads(result.stdout)
    assert [(r["cluster"], r["revision"]) for r in rows] == [("sim-1", feature),
                                                             ("sim-2", feature)]  # fmt: skip
    for row in rows:
        assert [e["object"] for e in row["create"]] == [f"ConfigMap/{app}/new"]
        assert [(e["object"], e["paths"]) for e in row["change"]] == [
            (f"ConfigMap/{app}/cfg", ["/data/key"])]  # fmt: skip
        assert '+  key: "2"' in row["change"][0]["diff"], row["change"][0]["diff"]
        assert [e["object"] for e in row["prune"]] == [f"ConfigMap/{app}/old"]
        assert [(h["phase"], h["object"]) for h in row["hooks"]] == [
            ("PreSync", f"Job.batch/{app}/migrate")]  # fmt: skip
        assert row["errors"] == [] and row["checked"] == "server dry-run"
    for cluster in ("sim-1", "sim-2"):
        log = stack.sim.request_log(cluster)
        assert log, "the plan read the cluster"
        writes = [r for r in log if r["method"] in WRITES
                  or (r["method"] == "PATCH" and "dryRun=All" not in r["path"])]  # fmt: skip
        assert writes == []
        assert any(r["method"] == "PATCH" for r in log)  # the server's dry-run was asked
    assert stack.configmap("sim-1", app) == {"key": "1"}  # nothing changed

    # The markdown comment: a summary table, then one folded section per target.
    comment = stack.cli("plan", app, "--revision", "feature", "-o", "markdown")
    assert comment.returncode == 1
    assert comment.stdout.count("<details>") == 2
    assert f"| {app} | sim-1 | - | 1 | 1 | 1 | PreSync: migrate | changes |" in comment.stdout

    # The branch it came from: no change at all, exit 0.
    same = stack.cli("plan", app, "--revision", "main")
    assert same.returncode == 0, same.stdout + same.stderr

    # A revision that does not exist, and a render error naming its file and line.
    missing = stack.cli("plan", app, "--revision", "no-such-branch")
    assert missing.returncode == 2 and "no-such-branch" in missing.stderr
    stack.repo.git("checkout", "-q", "-b", "broken")
    stack.repo.write(f"{app}/bad.yaml", "kind: ConfigMap\nmetadata: {name: [unclosed\n")
    stack.repo.commit("broken YAML")
    stack.repo.git("checkout", "-q", "main")
    broken = stack.cli("plan", app, "--revision", "broken")
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert f"{app}/bad.yaml:" in broken.stderr
