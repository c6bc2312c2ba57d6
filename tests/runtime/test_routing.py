"""Queue routing: forced work on the forced queue, targets routed by a cluster label."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from reconciler.store.keys import Keys
from tests.gitrepo import GitRepo
from workers import runtime as worker_runtime
from workers.app import (
    FORCED_QUEUE,
    SCHEDULED_QUEUE,
    app,
    queue_for,
    queues_for,
    reconfigure,
    settings,
)
from workers.tasks import reconcile_app


def test_queue_names_sort_forced_first() -> None:
    assert queue_for(forced=True) == FORCED_QUEUE
    assert queue_for(forced=False, route="eu") == f"{SCHEDULED_QUEUE}.eu"
    assert queues_for(["eu"]) == [FORCED_QUEUE, SCHEDULED_QUEUE, f"{FORCED_QUEUE}.eu",
                                  f"{SCHEDULED_QUEUE}.eu"]  # fmt: skip
    # The broker is consumed in sorted order: forced work of any route comes first.
    assert sorted([f"{SCHEDULED_QUEUE}.eu", f"{FORCED_QUEUE}.eu"])[0].startswith(FORCED_QUEUE)
    transport = settings("redis://x", Keys("p:"))["broker_transport_options"]
    assert isinstance(transport, dict)
    assert transport["queue_order_strategy"] == "sorted"


@pytest.fixture
def configured(
    redis_url: str, redis_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[redis.Redis, Keys]]:
    """The worker runtime of this process, on the test's Redis prefix and fleet."""
    repo = GitRepo(tmp_path / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    repo.write("app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    repo.commit()
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        "clusters:\n"
        "  - {name: eu-1, labels: {region: eu}}\n"
        "  - {name: us-1, labels: {region: us}}\n"
        "  - {name: any-1}\n"
        f"applications:\n  - {{name: web, source: {{repo: {repo.path}, path: app}}}}\n"
    )
    old = dict(app.conf)
    _drop_connections()
    monkeypatch.setenv("RECONCILER_CONFIG", str(fleet))
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECONCILER_ROUTE_LABEL", "region")
    reconfigure(app, url=redis_url, prefix=redis_prefix)
    worker_runtime.reset_runtime()
    client = redis.Redis.from_url(redis_url)
    yield client, Keys(redis_prefix)
    client.close()
    worker_runtime.reset_runtime()
    app.conf.update(old)
    _drop_connections()


def _drop_connections() -> None:
    """Forget the app's broker connections, so the next use connects where conf says."""
    pool = getattr(app, "_pool", None)
    if pool is not None:
        pool.force_close_all()
        app._pool = None


def queued(client: redis.Redis, keys: Keys) -> dict[str, list[tuple[str, str]]]:
    """Messages waiting per queue: (task name, cluster or app argument)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for key in client.scan_iter(match=f"{keys.celery()}reconciler-*"):
        if client.type(key) != b"list":
            continue
        name = key.decode()[len(keys.celery()) :]
        for raw in client.lrange(key, 0, -1):
            headers = json.loads(raw)["headers"]
            out.setdefault(name, []).append((headers["task"], headers["argsrepr"]))
    return out


def test_targets_go_to_their_route_and_forced_syncs_are_joined(
    configured: tuple[redis.Redis, Keys],
) -> None:
    client, keys = configured
    first = reconcile_app.run("web", "manual")
    assert [t["queued"] for t in first["targets"]] == [True, True, True]
    waiting = queued(client, keys)
    assert set(waiting) == {f"{FORCED_QUEUE}.eu", f"{FORCED_QUEUE}.us", FORCED_QUEUE}
    assert "eu-1" in waiting[f"{FORCED_QUEUE}.eu"][0][1]
    assert "any-1" in waiting[FORCED_QUEUE][0][1]  # no routing label: the shared queue
    # The same forced sync again while those wait: joined, nothing more queued.
    second = reconcile_app.run("web", "manual")
    assert [t["queued"] for t in second["targets"]] == [False, False, False]
    assert [t["task_id"] for t in second["targets"]] == [t["task_id"] for t in first["targets"]]
    assert sum(len(v) for v in queued(client, keys).values()) == 3
    # Scheduled work goes to the scheduled queues, never deduplicated against forced work.
    reconcile_app.run("web", "schedule")
    assert f"{SCHEDULED_QUEUE}.eu" in queued(client, keys)
    # Arguments are identifiers only.
    for messages in queued(client, keys).values():
        for _task, argsrepr in messages:
            assert "apiVersion" not in argsrepr and "http" not in argsrepr


def test_an_application_that_left_the_fleet_is_skipped(
    configured: tuple[redis.Redis, Keys],
) -> None:
    client, keys = configured
    result = reconcile_app.run("gone", "schedule")
    assert result == {"application": "gone", "skipped": "not in the fleet", "targets": []}
    assert queued(client, keys) == {}
