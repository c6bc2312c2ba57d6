"""Flower in a real browser: reconcile jobs read as people think of them.

The stack the other end-to-end tests start (kubesim, Redis, a worker) plus Flower behind
basic auth; one application syncs, one has a broken YAML file.  Chromium, driven by
Playwright, opens Flower's tasks page as an operator would and checks that the broken
target is under Failed and the good one under Succeeded, each row naming its application
and cluster, and that searching for an application finds its jobs.  A screenshot of each
page is saved under the test's temporary directory (and ``$RECONCILER_TEST_ARTIFACTS``
when set), so a person can see what the operator sees.

Chromium is Debian's (``scripts/check`` installs it where it may); Playwright drives it
through ``executable_path`` and never downloads a browser.  In CI the test must run: a
missing browser or Playwright fails it instead of skipping it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.browser import BROKEN_YAML, PAGE_TIMEOUT_MS, unavailable
from tests.e2e.conftest import FAKE_GIT_TOKEN, Proc, Stack, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

#: The folder of this module's screenshots under $RECONCILER_TEST_ARTIFACTS.
SCREENSHOTS = "flower"


def _start_flower(stack: Stack, password: str) -> tuple[Proc, str]:
    import requests  # noqa: PLC0415

    port = free_port()
    flower = stack.start("flower", "flower", "--port", str(port),
                         env={"FLOWER_BASIC_AUTH": f"ops:{password}"})  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            got = requests.get(f"{url}/api/workers", auth=("ops", password), timeout=5)
        except requests.RequestException:
            return False
        return got.status_code == 200

    stack.wait_until(answers, timeout=30, what="Flower to answer", procs=[flower])
    return flower, url


def _flower_tasks(url: str, password: str) -> dict[str, dict[str, Any]]:
    import requests  # noqa: PLC0415

    tasks: dict[str, dict[str, Any]] = requests.get(
        f"{url}/api/tasks", auth=("ops", password), timeout=5
    ).json()
    return tasks


def _rows(page: Page) -> list[str]:
    """The text of each row of Flower's tasks table, as the page shows it now."""
    return [row.inner_text() for row in page.locator("#tasks-table tbody tr").all()]


def _show_state(page: Page, label: str, wanted: str, shot: Path) -> str:
    """Click the state filter ``label``; the row that names ``wanted``, once it shows."""
    page.get_by_role("button", name=label, exact=True).click()
    row = page.locator("#tasks-table tbody tr", has_text=wanted)
    row.first.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=str(shot), full_page=True)
    return row.first.inner_text()


def test_flower_shows_failed_and_succeeded_reconciles_in_a_browser(
    stack: Stack, chromium_path: str, screenshots: Path
) -> None:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415
    except ImportError:
        unavailable("Playwright is not installed (it is in the dev extra)")

    password = "pw-" + uuid.uuid4().hex[:10]
    good, bad = f"good-{uuid.uuid4().hex[:6]}", f"bad-{uuid.uuid4().hex[:6]}"
    stack.write_app(good, deployment=False)
    stack.write_app(bad, deployment=False)
    stack.repo.write(f"{bad}/broken.yaml", BROKEN_YAML)
    stack.repo.commit("a good application and a broken one")
    on_sim1 = {"names": ["sim-1"]}
    stack.write_fleet(stack.app(good, clusters=on_sim1, interval="1h"),
                      stack.app(bad, clusters=on_sim1, interval="1h"))  # fmt: skip
    flower, url = _start_flower(stack, password)
    stack.worker(concurrency=2)

    synced = stack.cli("sync", good, "--wait", "--timeout", "60", "-o", "json")
    assert synced.returncode == 0, (synced.stdout, synced.stderr)
    broken = stack.cli("sync", bad, "--wait", "--timeout", "60", "-o", "json")
    assert broken.returncode == 1, (broken.stdout, broken.stderr)
    assert "broken.yaml" in broken.stderr, broken.stderr

    good_name = f"reconcile {good} → sim-1 (manual)"
    bad_name = f"reconcile {bad} → sim-1 (manual)"

    def flower_knows() -> dict[str, dict[str, Any]] | None:
        tasks = _flower_tasks(url, password)
        states = {t.get("name"): t.get("state") for t in tasks.values()}
        done = states.get(good_name) == "SUCCESS" and states.get(bad_name) == "FAILURE"
        # The fan-outs too, named whichever of the sender's and worker's events came last.
        fanned = {states.get(f"reconcile {a} (manual)") for a in (good, bad)} == {"SUCCESS"}
        return tasks if done and fanned else None

    tasks = stack.wait_until(flower_knows, timeout=30, what="Flower to see both runs end",
                             procs=[flower])  # fmt: skip
    failed = next(t for t in tasks.values() if t.get("name") == bad_name)
    assert failed["exception"].startswith("ReconcileFailed("), failed
    assert f"{bad} on sim-1: Failed" in failed["exception"], failed
    assert "broken.yaml" in failed["exception"], failed
    assert FAKE_GIT_TOKEN not in str(tasks) and password not in str(tasks)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path,
            # Root in CI: Chromium's sandbox needs user namespaces a container may lack.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            context = browser.new_context(
                http_credentials={"username": "ops", "password": password},
                viewport={"width": 1600, "height": 900},
            )
            page = context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(f"{url}/tasks")
            page.locator("#tasks-table tbody tr").first.wait_for(state="visible")

            row = _show_state(page, "Failed", bad, screenshots / "flower-failed.png")
            assert bad_name in row and "FAILURE" in row, row
            assert "broken.yaml" in row, row  # the exception column reads as a sentence
            assert not any(good in text for text in _rows(page)), _rows(page)

            row = _show_state(page, "Succeeded", good, screenshots / "flower-succeeded.png")
            assert good_name in row and "SUCCESS" in row, row
            assert '"sync": "Synced"' in row, row  # the result is a JSON summary
            assert not any(bad_name in text for text in _rows(page)), _rows(page)

            # Searching for an application finds its jobs, and only its.
            page.get_by_role("button", name="All", exact=True).click()
            page.get_by_placeholder("state:FAILURE worker:celery@hostname").fill(bad)
            page.locator("#tasks-table tbody tr", has_text=bad_name).first.wait_for()
            page.wait_for_function(
                "(good) => ![...document.querySelectorAll('#tasks-table tbody tr')]"
                ".some((row) => row.innerText.includes(good))",
                arg=good,
            )
            page.screenshot(path=str(screenshots / "flower-search.png"), full_page=True)
            assert all(bad in text for text in _rows(page)), _rows(page)
            context.close()
        finally:
            browser.close()
    assert flower.alive()
