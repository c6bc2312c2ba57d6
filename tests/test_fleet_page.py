"""The fleet page: its view model as pure functions, and its routes over real HTTP.

Outcomes are written the way workers write them (``Records.record``) into a real Redis
under the test's own prefix, then read back with ``Records.status`` and ``history``, so
the view is built from exactly what the page reads in production.  The routes are served
by ``make_app`` on a loopback port (aiohttp's TestServer).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from reconciler.fleet import Fleet, load_fleet
from reconciler.outcome import Outcome, TargetStatus
from reconciler.rollout import Phase, RolloutState
from reconciler.settings import load as load_settings
from reconciler.store.keys import Keys
from reconciler.store.records import Records
from reconciler.store.rollback import Rollbacks, RolledBack
from reconciler.store.rollout import Rollouts
from workers.fleet_file import FleetFile
from workers.readers import ReadAccess
from workers.ui import view
from workers.ui.pages import DEFAULT_FLOWER_URL, flower_url, templates
from workers.webhook_server import WebhookSecrets, make_app

NOW = datetime(2024, 5, 1, 12, 10, tzinfo=UTC)
OLD = "1111111111111111111111111111111111111111"
NEW = "2222222222222222222222222222222222222222"
FLEET = """\
clusters:
  - {name: dev-1, labels: {env: dev}}
  - {name: prod-1, labels: {env: prod, region: eu}}
  - {name: prod-2, labels: {env: prod, region: us}}
applications:
  - name: web
    source: {repo: "https://git.example.com/acme/apps.git", revision: main, path: web}
    rollout:
      steps:
        - clusters: {env: dev}
        - clusters: {env: prod}
  - name: api
    source: {repo: "https://git.example.com/acme/apps.git", revision: main, path: api}
    destination: {clusters: {env: prod}}
  - name: batch
    source: {repo: "https://git.example.com/acme/apps.git", revision: main, path: batch}
    destination: {clusters: {names: [dev-1]}}
"""


def outcome(app: str, cluster: str, **fields: Any) -> Outcome:
    """An outcome as the engine produces it, with ``fields`` replaced."""
    base: dict[str, Any] = {
        "application": app,
        "cluster": cluster,
        "revision": NEW,
        "trigger": "schedule",
        "started": "2024-05-01T12:00:00.000Z",
        "duration": 1.5,
        "sync": "Synced",
        "health": "Healthy",
        "changes": [{"object": "ConfigMap/web/cfg", "action": "configured", "reason": ""}],
        "drift": [],
        "errors": [],
        "hooks": [],
    }
    base.update(fields)
    return Outcome.from_dict(base)


@dataclass
class Installation:
    client: redis.Redis
    keys: Keys
    records: Records
    fleet_path: Path

    @property
    def fleet(self) -> Fleet:
        return load_fleet(self.fleet_path)

    def app(self, readers: ReadAccess | None = None) -> web.Application:
        return make_app(fleet=FleetFile(str(self.fleet_path)), client=self.client,
                        keys=self.keys, secrets=WebhookSecrets(),
                        readers=readers or ReadAccess(anonymous=True))  # fmt: skip


@pytest.fixture
def inst(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[Installation]:
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET)
    with redis.Redis.from_url(redis_url) as client:
        keys = Keys(redis_prefix)
        yield Installation(client, keys, Records(client, keys), path)


def populate(inst: Installation) -> None:
    """web: green on dev-1, red on prod-1 (a bad manifest), amber on prod-2; api: degraded
    on prod-1, never run on prod-2; batch: out of sync on dev-1."""
    inst.records.record(outcome("web", "dev-1"))
    inst.records.record(outcome("web", "prod-1", sync="Synced", started="2024-05-01T11:00:00Z",
                                drift=[{"object": "ConfigMap/web/cfg", "kind": "changed",
                                        "paths": ["/data/key"],
                                        "diff": "-key: <b>old</b>\n+key: new\n"}],
                                hooks=[{"object": "Job.batch/web/migrate", "phase": "PreSync",
                                        "result": "Succeeded", "message": "done"}]))  # fmt: skip
    inst.records.record(outcome(
        "web", "prod-1", sync="Failed", health="Unknown", reason="RenderFailed",
        errors=[{"message": "web/bad.yaml:3: <script>alert(1)</script> is not YAML",
                 "retryable": False}],
        changes=[],
    ))  # fmt: skip
    inst.records.record(outcome("web", "prod-2", sync="OutOfSync", revision=OLD))
    inst.records.record(outcome("api", "prod-1", health="Degraded"))
    inst.records.record(outcome("batch", "dev-1", sync="OutOfSync", health="Progressing"))


def cells(matrix: view.Matrix) -> dict[tuple[str, str], view.Cell]:
    return {(row.application, c.cluster): c for row in matrix.rows for c in row.cells}


def build(inst: Installation, query: dict[str, str] | list[tuple[str, str]], **kw: Any
          ) -> view.Matrix:  # fmt: skip
    selection = view.select(inst.fleet, inst.records.status(), filters=view.Filters.parse(query))
    return view.matrix(selection, **kw)


# --------------------------------------------------------------------------------------
# Pure rules
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sync", "health", "tone"),
    [
        ("Synced", "Healthy", "ok"),
        ("Synced", "Suspended", "ok"),
        ("OutOfSync", "Healthy", "warn"),
        ("Synced", "Progressing", "warn"),
        ("Synced", "Missing", "warn"),
        ("Failed", "Healthy", "bad"),
        ("Failed", "Unknown", "bad"),
        ("Synced", "Degraded", "bad"),
        ("OutOfSync", "Degraded", "bad"),
        ("Synced", "Unknown", "unknown"),
        ("", "", "unknown"),
    ],
)
def test_a_target_is_coloured_by_its_sync_and_health(sync: str, health: str, tone: str) -> None:
    entry = TargetStatus("web", "prod", sync=sync, health=health)
    assert view.tone_of(entry).value == tone


def test_a_target_never_run_is_grey() -> None:
    assert view.tone_of(None) is view.Tone.UNKNOWN
    assert view.statuses_of(None) == {"unknown"}


def test_filters_are_read_from_the_query_and_written_back() -> None:
    query = [("label", "env=prod,region"), ("label", "tier=web"), ("app", " we "),
             ("status", "Failed"), ("page", "3")]  # fmt: skip
    filters = view.Filters.parse(query)
    assert [str(f) for f in filters.labels] == ["env=prod", "region", "tier=web"]
    assert (filters.app, filters.status, filters.page, filters.problems) == ("we", "failed", 3, ())
    assert filters.query(page=4) == "label=env%3Dprod&label=region&label=tier%3Dweb&app=we" \
        "&status=failed&page=4"  # fmt: skip
    assert view.Filters().query() == ""
    odd = view.Filters.parse({"status": "broken", "page": "x"})
    assert odd.status == "" and odd.page == 1
    assert odd.problems == ("status 'broken' is not one of synced, outofsync, failed, degraded, "
                            "progressing, unknown", "page 'x' is not a number")  # fmt: skip


def test_the_flower_link_searches_for_the_target_only() -> None:
    link = view.flower_link("http://flower.example:5555/", "web", "prod-1")
    assert link == ("http://flower.example:5555/tasks?name="
                    "%22reconcile%20web%20%E2%86%92%20prod-1%20%28%22")  # fmt: skip


def test_the_flower_address_comes_from_the_environment_without_credentials() -> None:
    assert flower_url({}) == DEFAULT_FLOWER_URL == "http://127.0.0.1:5555"
    assert flower_url({"RECONCILER_FLOWER_URL": "https://ops:pw@flower.example/"}) == \
        "https://flower.example"  # fmt: skip
    assert flower_url({"RECONCILER_FLOWER_URL": "javascript:alert(1)"}) == DEFAULT_FLOWER_URL


# --------------------------------------------------------------------------------------
# The matrix, from a real status index
# --------------------------------------------------------------------------------------


def test_the_matrix_colours_every_target_of_the_fleet(inst: Installation) -> None:
    populate(inst)
    matrix = build(inst, {})
    assert [row.application for row in matrix.rows] == ["web", "api", "batch"]
    assert [c.name for c in matrix.columns] == ["dev-1", "prod-1", "prod-2"]
    got = {key: (cell.tone.value, cell.label) for key, cell in cells(matrix).items()
           if cell.targeted}  # fmt: skip
    assert got == {
        ("web", "dev-1"): ("ok", "Synced · Healthy"),
        ("web", "prod-1"): ("bad", "Failed"),
        ("web", "prod-2"): ("warn", "OutOfSync · Healthy"),
        ("api", "prod-1"): ("bad", "Synced · Degraded"),
        ("api", "prod-2"): ("unknown", "never run"),
        ("batch", "dev-1"): ("warn", "OutOfSync · Progressing"),
    }
    assert not cells(matrix)[("api", "dev-1")].targeted
    failed = cells(matrix)[("web", "prod-1")]
    assert failed.reason == "RenderFailed" and "bad.yaml:3" in failed.title
    assert failed.href == "/ui/target/web/prod-1"
    assert matrix.tones == {"ok": 1, "warn": 2, "bad": 2, "unknown": 1}
    assert (matrix.applications, matrix.fleet_applications, matrix.pages) == (3, 3, 1)


def test_filters_by_label_application_and_status(inst: Installation) -> None:
    populate(inst)
    prod = build(inst, {"label": "env=prod"})
    assert [c.name for c in prod.columns] == ["prod-1", "prod-2"]
    assert [row.application for row in prod.rows] == ["web", "api"]  # batch is on dev only
    eu = build(inst, [("label", "env=prod"), ("label", "region=eu")])
    assert [c.name for c in eu.columns] == ["prod-1"]
    named = build(inst, {"app": "AP"})
    assert [row.application for row in named.rows] == ["api"]
    assert [c.name for c in named.columns] == ["prod-1", "prod-2"]
    failed = build(inst, {"status": "failed"})
    assert [row.application for row in failed.rows] == ["web"]
    assert {c.cluster: c.matches for c in failed.rows[0].cells} == \
        {"dev-1": False, "prod-1": True, "prod-2": False}  # fmt: skip
    assert failed.tones["bad"] == 1 and sum(failed.tones.values()) == 1
    assert [r.application for r in build(inst, {"status": "degraded"}).rows] == ["api"]
    assert [r.application for r in build(inst, {"status": "unknown"}).rows] == ["web", "api"]
    assert [r.application for r in build(inst, {"status": "progressing"}).rows] == ["batch"]
    assert build(inst, {"label": "env=nowhere"}).rows == ()


def test_rolled_back_and_held_targets_carry_a_marker(inst: Installation) -> None:
    populate(inst)
    Rollbacks(inst.client, inst.keys).pin("web", "prod-2", RolledBack(OLD, replaced=NEW,
                                          wanted=NEW, at="2024-05-01T12:05:00Z", by="ops@host",
                                          reason="bad release"))  # fmt: skip
    state = RolloutState(
        revision=NEW,
        previous={"dev-1": OLD, "prod-1": OLD, "prod-2": OLD},
        assigned={"dev-1": NEW, "prod-1": OLD, "prod-2": OLD},
        step=0,
    )
    Rollouts(inst.client, inst.keys).change("web", lambda _old: (state, None))
    selection = view.select(inst.fleet, inst.records.status(), filters=view.Filters())
    assert selection.page_applications == ["web", "api", "batch"]
    matrix = view.matrix(
        selection,
        rolled_back=Rollbacks(inst.client, inst.keys).all(),
        rollouts=Rollouts(inst.client, inst.keys).read_many(["web", "api"]),
    )
    got = {c.cluster: (c.rolled_back, c.held) for c in matrix.rows[0].cells}
    assert got == {"dev-1": (False, False), "prod-1": (False, True), "prod-2": (True, True)}
    assert "rolled back" in cells(matrix)[("web", "prod-2")].title
    done = RolloutState(revision=NEW, previous={}, assigned={}, phase=Phase.COMPLETED)
    assert not view.held_by_rollout(done, "prod-1")


def test_the_matrix_is_paged(inst: Installation) -> None:
    apps = "".join(f"  - {{name: app-{i:03d}, source: {{repo: 'https://g.example/r.git', "
                   f"revision: main}}}}\n" for i in range(120))  # fmt: skip
    inst.fleet_path.write_text("clusters: [{name: c1}, {name: c2}]\napplications:\n" + apps)
    first = build(inst, {})
    assert (first.page, first.pages, len(first.rows)) == (1, 3, 50)
    assert first.previous is None and first.next == "page=2"
    last = build(inst, {"page": "9", "app": "app-0"})  # app-000 to app-099; 9 is too far
    assert (last.page, last.pages, last.applications) == (2, 2, 100)
    assert [r.application for r in last.rows][:2] == ["app-050", "app-051"]
    assert last.previous == "app=app-0"
    assert last.next is None


def test_building_the_matrix_of_5000_targets_is_quick(tmp_path: Path) -> None:
    clusters = "".join(f"  - {{name: c{i:02d}, labels: {{env: {'prod' if i % 2 else 'dev'}}}}}\n"
                       for i in range(50))  # fmt: skip
    apps = "".join(f"  - {{name: app-{i:03d}, source: {{repo: 'https://g.example/r.git', "
                   f"revision: main}}}}\n" for i in range(100))  # fmt: skip
    path = tmp_path / "fleet.yaml"
    path.write_text(f"clusters:\n{clusters}applications:\n{apps}")
    fleet = load_fleet(path)
    tones = [("Synced", "Healthy"), ("OutOfSync", "Healthy"), ("Failed", "Unknown"),
             ("Synced", "Degraded"), ("Synced", "Progressing")]  # fmt: skip
    statuses = [TargetStatus(f"app-{a:03d}", f"c{c:02d}", revision=NEW,
                             sync=tones[(a + c) % 5][0], health=tones[(a + c) % 5][1])
                for a in range(100) for c in range(50)]  # fmt: skip
    for query in ({}, {"status": "failed"}, {"label": "env=prod", "page": "2"}):
        start = time.perf_counter()
        selection = view.select(fleet, statuses, filters=view.Filters.parse(query))
        matrix = view.matrix(selection)
        took = time.perf_counter() - start
        start = time.perf_counter()
        html = templates().get_template("index.html").render(matrix=matrix, updated="now")
        rendered = time.perf_counter() - start
        print(
            f"matrix of 100 apps x 50 clusters, {query or 'no filter'}: view model "
            f"{took * 1000:.1f} ms, HTML {rendered * 1000:.1f} ms ({len(html) // 1024} KiB)"
        )
        assert sum(matrix.tones.values()) > 0
    assert len(view.matrix(view.select(fleet, statuses, filters=view.Filters())).rows) == 50


# --------------------------------------------------------------------------------------
# One target
# --------------------------------------------------------------------------------------


def test_the_target_page_shows_status_history_drift_and_hooks(inst: Installation) -> None:
    populate(inst)
    fleet = inst.fleet
    found = view.find_target(fleet, "web", "prod-1")
    assert not isinstance(found, view.NotFound)
    app, cluster = found
    state = RolloutState(revision=NEW, previous={"dev-1": OLD, "prod-1": OLD, "prod-2": OLD},
                         assigned={"dev-1": NEW}, step=0, phase=Phase.HALTED,
                         reason="dev-1 Failed")  # fmt: skip
    page = view.target_page(
        fleet, app, cluster,
        status=inst.records.entry("web", "prod-1"),
        history=inst.records.history("web", "prod-1", n=20),
        rolled_back=None, rollout=state, flower_url="http://flower:5555", now=NOW,
    )  # fmt: skip
    assert page.tone is view.Tone.BAD and page.status is not None
    assert page.status.error.startswith("web/bad.yaml:3")
    assert page.repo == "https://git.example.com/acme/apps.git"
    assert (page.ref, page.path, page.wanted) == ("main", "web", NEW)
    assert [run.sync for run in page.history] == ["Failed", "Synced"]
    assert page.history[0].reason == "RenderFailed" and page.history[1].changes == "1 configured"
    assert page.history[1].ago == "1h ago"
    assert [d.object for d in page.drift] == ["ConfigMap/web/cfg"]
    assert page.drift_started == "2024-05-01T11:00:00Z" and page.drift[0].paths == ("/data/key",)
    assert [(h.phase, h.result) for h in page.hooks] == [("PreSync", "Succeeded")]
    assert page.rollout == view.RolloutView(
        phase="Halted",
        revision=NEW,
        step=2,
        steps=2,
        current=1,
        step_clusters=("prod-1", "prod-2"),
        assigned="",
        held=True,
        reason="dev-1 Failed",
    )
    assert page.flower.startswith("http://flower:5555/tasks?name=")


def test_an_unknown_target_names_the_closest(inst: Installation) -> None:
    fleet = inst.fleet
    missing = view.find_target(fleet, "wbe", "prod-1")
    assert isinstance(missing, view.NotFound)
    assert missing.message == "No application 'wbe' in the fleet file."
    assert missing.suggestions == (("web", "/ui/target/web/prod-1"),)
    nowhere = view.find_target(fleet, "web", "prod-3")
    assert isinstance(nowhere, view.NotFound)
    assert sorted(name for name, _ in nowhere.suggestions)[:2] == ["prod-1", "prod-2"]
    elsewhere = view.find_target(fleet, "api", "dev-1")
    assert isinstance(elsewhere, view.NotFound)
    assert elsewhere.message == "Application 'api' does not go to cluster 'dev-1'."


# --------------------------------------------------------------------------------------
# Over HTTP
# --------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    text: str
    headers: dict[str, str]


def fetch(app: web.Application, *requests: tuple[str, dict[str, str]]) -> list[Reply]:
    async def main() -> list[Reply]:
        replies = []
        async with TestClient(TestServer(app)) as client:
            for path, headers in requests:
                async with client.get(path, headers=headers, allow_redirects=False) as got:
                    replies.append(Reply(got.status, await got.text(), dict(got.headers)))
        return replies

    return asyncio.run(main())


def test_the_pages_are_served_escaped_and_without_credentials(inst: Installation) -> None:
    populate(inst)
    Rollbacks(inst.client, inst.keys).pin("web", "prod-2", RolledBack(OLD, replaced=NEW,
                                          wanted=NEW, by="ops@host"))  # fmt: skip
    index, partial, target, drifted, rolled, missing, js = fetch(
        inst.app(),
        ("/ui?label=env%3Dprod", {}),
        ("/ui?partial=1&status=failed", {}),
        ("/ui/target/web/prod-1", {}),
        ("/ui/target/web/prod-1", {}),
        ("/ui/target/web/prod-2", {}),
        ("/ui/target/wbe/prod-1", {}),
        ("/ui/static/fleet.js", {}),
    )
    assert index.status == 200 and index.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in index.headers["Content-Security-Policy"]
    assert '<tr data-app="web">' in index.text and '<tr data-app="batch">' not in index.text
    assert 'data-cluster="prod-1" data-tone="bad"' in index.text
    assert '<script src="/ui/static/fleet.js"></script>' in index.text
    assert partial.status == 200 and "<html" not in partial.text
    assert '<tr data-app="web">' in partial.text and '<tr data-app="api">' not in partial.text
    assert target.status == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in target.text
    assert "<script>alert" not in target.text
    assert "-key: &lt;b&gt;old&lt;/b&gt;" in drifted.text  # the diff is text, not markup
    assert "RenderFailed" in target.text and "reconcile%20web%20%E2%86%92%20prod-1" in target.text
    assert rolled.status == 200 and 'id="rollback"' in rolled.text and "ops@host" in rolled.text
    assert missing.status == 404 and "No application &#39;wbe&#39;" in missing.text
    assert 'href="/ui/target/web/prod-1"' in missing.text
    assert js.status == 200 and "partial" in js.text
    [nofile] = fetch(inst.app(), ("/ui/static/..%2Fpages.py", {}))
    assert nofile.status == 404


def test_the_pages_ask_for_the_token_where_others_can_reach(inst: Installation) -> None:
    env = load_settings({"RECONCILER_HTTP_TOKEN": "s3cret-reader"})
    public = ReadAccess.for_listener("0.0.0.0", env)
    basic = "Basic " + base64.b64encode(b"me:s3cret-reader").decode()
    replies = fetch(
        inst.app(readers=public),
        ("/ui", {}),
        ("/ui/target/web/dev-1", {}),
        ("/ui/static/fleet.css", {}),
        ("/ui", {"Authorization": "Bearer guess"}),
        ("/ui", {"Authorization": "Bearer s3cret-reader"}),
        ("/ui/target/web/dev-1", {"Authorization": basic}),
    )
    assert [r.status for r in replies] == [401, 401, 401, 401, 200, 200]
    assert replies[0].headers["WWW-Authenticate"].startswith('Basic realm="reconciler"')
    assert "s3cret" not in replies[0].text


def test_an_invalid_fleet_file_is_said_so(inst: Installation) -> None:
    inst.fleet_path.write_text("clusters: [{name: Bad_Name}]\n")
    [reply] = fetch(inst.app(), ("/ui", {}))
    assert reply.status == 503 and "Fleet file invalid" in reply.text
    assert str(inst.fleet_path) in reply.text
