"""The admin commands against a real installation, where things go wrong.

A sync nobody takes (no worker consumes the broker), a run that fails on a worker (its
whole outcome must still reach ``sync --wait``, whatever state its Celery task ended
in), and the history of an application across its clusters as workers recorded it.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.e2e.conftest import CONFIGMAP, Stack

pytestmark = pytest.mark.e2e


def unique(stem: str) -> str:
    """An application name (and namespace) no other test uses."""
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def test_sync_wait_with_no_worker_names_the_app_and_the_installation(stack: Stack) -> None:
    app = unique("nobody")
    stack.write_app(app, deployment=False)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="1h"))
    started = time.monotonic()
    done = stack.cli("sync", app, "--wait", "--timeout", "2", timeout=60)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert time.monotonic() - started < 2 + 20  # bounded by --timeout (plus start-up)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: no worker took the sync of {app} within"), line
    assert f"is a worker running against Redis {stack.redis_url}, prefix '{stack.prefix}'?" in line


def test_sync_wait_reports_a_failed_run_whole_and_exits_1(stack: Stack) -> None:
    app = unique("broken")
    stack.write_app(app, deployment=False)
    stack.repo.write(f"{app}/bad.yaml", CONFIGMAP.format(value="1").replace("cfg", "Bad_Name"))
    commit = stack.repo.commit("a ConfigMap whose name is invalid")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1", "sim-2"]}, interval="1h"))
    stack.worker(concurrency=2)

    done = stack.cli("sync", app, "--wait", "--timeout", "60", "-o", "json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    outcomes = {o["cluster"]: o for o in json.loads(done.stdout)}
    assert set(outcomes) == {"sim-1", "sim-2"}
    for cluster, outcome in outcomes.items():
        # The outcome the worker recorded, not a stand-in made from the task's state.
        assert (outcome["application"], outcome["sync"]) == (app, "Failed"), outcome
        assert outcome["revision"] == commit, outcome
        assert any("Bad_Name" in e["message"] for e in outcome["errors"]), outcome
        assert f"error: {app} on {cluster}: Failed" in done.stderr
    assert "Traceback" not in done.stderr

    # Both targets' runs, newest first, each naming its cluster.
    listed = stack.cli("history", app)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:2] == ["STARTED", "CLUSTER"]
    assert sorted(row.split()[1] for row in rows) == ["sim-1", "sim-2"]
    items = stack.cli_json("history", app)
    assert [i["started"] for i in items] == sorted((i["started"] for i in items), reverse=True)
    assert {i["cluster"] for i in items} == {"sim-1", "sim-2"}


def test_unknown_application_is_bad_input_everywhere(stack: Stack) -> None:
    app = unique("known")
    stack.write_app(app, deployment=False)
    stack.repo.commit("one application")
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="1h"))
    typo = app[:-1]
    for args in (("status", typo), ("history", typo), ("sync", typo, "--wait"),
                 ("suspend", typo), ("resume", typo)):  # fmt: skip
        done = stack.cli(*args, timeout=30)
        assert (done.returncode, done.stdout) == (2, ""), (args, done.stderr)
        assert f'unknown application "{typo}" (did you mean "{app}"?)' in done.stderr, args
