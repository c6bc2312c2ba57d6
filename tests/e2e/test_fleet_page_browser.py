"""The fleet page in a real browser, served by a real webhook server over a real worker.

The stack the other end-to-end tests start (kubesim, Redis, a worker) plus the webhook
server listening on every address with ``RECONCILER_HTTP_TOKEN`` set, so its pages ask a
reader for the token.  One application syncs everywhere; another has a broken YAML file
and fails.  Chromium, driven by Playwright, opens ``/ui`` as an operator would: the
broken targets are red, the good ones green, the filters narrow the matrix, the page's
script refreshes it, and the broken target's page shows the file's error.  Without the
token the server answers 401 with a basic-auth challenge.  A screenshot of each page is
saved under the test's temporary directory (and ``$RECONCILER_TEST_ARTIFACTS/fleet-page``
when set).

Chromium is Debian's, driven through ``executable_path``, as in ``test_flower_browser``
(whose ``chromium_path`` fixture, and its rule of skipping only outside CI, this uses).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.browser import BROKEN_YAML, PAGE_TIMEOUT_MS, unavailable
from tests.e2e.conftest import Proc, Stack, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e


#: The folder of this module's screenshots under $RECONCILER_TEST_ARTIFACTS.
SCREENSHOTS = "fleet-page"


def _start_webhook(stack: Stack, token: str) -> tuple[Proc, str]:
    """The webhook server on every address (so its pages need the token), once it answers."""
    import requests  # noqa: PLC0415

    port = free_port()
    proc = stack.start("webhook", "webhook", "--host", "0.0.0.0", "--port", str(port),
                       env={"RECONCILER_HTTP_TOKEN": token})  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            got = requests.get(f"{url}/ui", headers={"Authorization": f"Bearer {token}"},
                               timeout=5)  # fmt: skip
        except requests.RequestException:
            return False
        return got.status_code == 200

    stack.wait_until(answers, timeout=30, what="the fleet page to answer", procs=[proc])
    return proc, url


def _tone(page: Page, app: str, cluster: str) -> str | None:
    cell = page.locator(f'#matrix tr[data-app="{app}"] td[data-cluster="{cluster}"]')
    return cell.get_attribute("data-tone")


def _rows(page: Page) -> list[str | None]:
    return [row.get_attribute("data-app") for row in page.locator("#matrix tbody tr").all()]


def _columns(page: Page) -> list[str | None]:
    return [th.get_attribute("data-cluster") for th in page.locator("#matrix th.cluster").all()]


def test_the_fleet_page_shows_failed_and_healthy_targets_in_a_browser(
    stack: Stack,
    chromium_path: str,
    screenshots: Path,
) -> None:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        unavailable("Playwright is not installed (it is in the dev extra)")
    import requests  # noqa: PLC0415

    token = "reader-" + uuid.uuid4().hex[:12]
    good, bad = f"good-{uuid.uuid4().hex[:6]}", f"bad-{uuid.uuid4().hex[:6]}"
    stack.write_app(good, deployment=False)
    stack.write_app(bad, deployment=False)
    stack.repo.write(f"{bad}/broken.yaml", BROKEN_YAML)
    stack.repo.commit("a good application and a broken one")
    stack.write_fleet(
        stack.app(good, interval="1h"),
        stack.app(bad, clusters={"names": ["sim-1", "sim-2"]}, interval="1h"),
    )
    webhook, url = _start_webhook(stack, token)
    stack.worker(concurrency=2)

    synced = stack.cli("sync", good, "--wait", "--timeout", "60", "-o", "json")
    assert synced.returncode == 0, (synced.stdout, synced.stderr)
    broken = stack.cli("sync", bad, "--wait", "--timeout", "60", "-o", "json")
    assert broken.returncode == 1, (broken.stdout, broken.stderr)
    rows = stack.status()
    assert {rows[(good, c)]["sync"] for c in ("sim-1", "sim-2", "sim-3")} == {"Synced"}
    assert {rows[(bad, c)]["sync"] for c in ("sim-1", "sim-2")} == {"Failed"}

    # Without the token: refused, with the challenge that makes a browser prompt.
    for path in ("/ui", f"/ui/target/{bad}/sim-1", "/ui?partial=1"):
        refused = requests.get(url + path, timeout=10)
        assert refused.status_code == 401, (path, refused.status_code)
        assert refused.headers["WWW-Authenticate"].startswith("Basic realm="), refused.headers
        assert token not in refused.text

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            # A browser without the token is challenged (Chromium, headless, cannot prompt,
            # so its request API shows the answer a person's browser would prompt on).
            anonymous = browser.new_context()
            challenged = anonymous.request.get(f"{url}/ui")
            assert challenged.status == 401
            assert challenged.headers["www-authenticate"].startswith("Basic realm=")
            anonymous.close()

            context = browser.new_context(
                http_credentials={"username": "ops", "password": token},
                viewport={"width": 1400, "height": 900},
            )
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)

            # -- the matrix: red where the manifest is broken, green where it synced -----
            answer = page.goto(f"{url}/ui")
            assert answer is not None and answer.status == 200
            page.locator(f'#matrix tr[data-app="{bad}"]').wait_for()
            assert _rows(page) == [good, bad]
            assert _columns(page) == ["sim-1", "sim-2", "sim-3"]
            assert [_tone(page, good, c) for c in ("sim-1", "sim-2", "sim-3")] == ["ok"] * 3
            assert [_tone(page, bad, c) for c in ("sim-1", "sim-2")] == ["bad", "bad"]
            assert _tone(page, bad, "sim-3") is None  # bad does not go there
            cell = page.locator(f'#matrix tr[data-app="{bad}"] td[data-cluster="sim-1"]')
            assert "Failed" in cell.inner_text()
            assert "broken.yaml" in (cell.get_attribute("title") or "")
            summary = page.locator("#summary").inner_text()
            assert "3 synced & healthy" in summary and "2 failed or degraded" in summary
            page.screenshot(path=str(screenshots / "fleet-matrix.png"), full_page=True)

            # -- the script reloads the matrix by itself -------------------------------
            first = page.locator("#summary").get_attribute("data-updated")
            page.wait_for_function(
                "(first) => document.getElementById('summary')"
                ".getAttribute('data-updated') !== first",
                arg=first,
                timeout=PAGE_TIMEOUT_MS,
            )
            assert _tone(page, bad, "sim-1") == "bad"

            # -- filters, as a person uses them: the form, server-side -------------------
            page.fill('input[name="label"]', "env=dev")
            page.click('button[type="submit"]')
            page.wait_for_url("**/ui?label=env%3Ddev*")
            assert _columns(page) == ["sim-2"] and _rows(page) == [good, bad]
            page.screenshot(path=str(screenshots / "fleet-label-dev.png"), full_page=True)

            page.goto(f"{url}/ui?label=env%3Dprod")
            assert _columns(page) == ["sim-1", "sim-3"]

            page.goto(f"{url}/ui")
            page.select_option('select[name="status"]', "failed")
            page.click('button[type="submit"]')
            page.wait_for_url("**status=failed*")
            assert _rows(page) == [bad]
            page.screenshot(path=str(screenshots / "fleet-status-failed.png"), full_page=True)

            page.goto(f"{url}/ui")
            page.fill('input[name="app"]', good[:7])
            page.click('button[type="submit"]')
            page.wait_for_url("**app=good-*")
            assert _rows(page) == [good]
            page.goto(f"{url}/ui?status=synced")
            assert _rows(page) == [good]

            # -- the broken target's page shows the error --------------------------------
            page.goto(f"{url}/ui?app={bad}")
            page.locator(f'tr[data-app="{bad}"] td[data-cluster="sim-1"] a').click()
            page.wait_for_url(f"**/ui/target/{bad}/sim-1")
            assert "Failed" in page.locator("#headline").inner_text()
            error = page.locator("#error").inner_text()
            assert "broken.yaml" in error, error
            history = page.locator("#history tbody tr").first.inner_text()
            assert "Failed" in history and "manual" in history, history
            flower = page.locator("#flower").get_attribute("href") or ""
            assert flower.startswith("http://127.0.0.1:5555/tasks?name="), flower
            page.screenshot(path=str(screenshots / "target-failed.png"), full_page=True)

            page.goto(f"{url}/ui/target/{good}/sim-3")
            assert "Synced" in page.locator("#headline").inner_text()
            assert page.locator("#history tbody tr").count() >= 1
            page.screenshot(path=str(screenshots / "target-synced.png"), full_page=True)

            # -- a mistyped name: 404, naming the closest -------------------------------
            answer = page.goto(f"{url}/ui/target/{good[:-1]}x/sim-1")
            assert answer is not None and answer.status == 404
            assert good in page.locator("#suggestions").inner_text()
            page.screenshot(path=str(screenshots / "target-not-found.png"), full_page=True)
            context.close()
        finally:
            browser.close()
    assert webhook.alive()
    assert token not in (stack.tmp / "webhook.log").read_text()
