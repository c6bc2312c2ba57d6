"""What the browser tests share: the Chromium to drive, and where screenshots go.

Each browser test module names its artifact folder (``SCREENSHOTS = "flower"``); the
fixtures live in ``tests/e2e/conftest.py``, built from these.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("RECONCILER_CHROMIUM") or "/usr/bin/chromium"
#: Milliseconds the browser waits for one thing on a page.
PAGE_TIMEOUT_MS = 30_000
#: Not valid YAML: the flow mapping is never closed.
BROKEN_YAML = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: broken\ndata: {key: x}\n"


def unavailable(why: str) -> None:
    """Skip on a developer's machine without the browser; fail in CI, which must run it."""
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"the browser tests must run in CI: {why}", pytrace=False)
    pytest.skip(why)


def chromium() -> str:
    """The Chromium binary to drive, checked to exist."""
    path = CHROMIUM if os.path.isabs(CHROMIUM) else (shutil.which(CHROMIUM) or CHROMIUM)
    if not os.access(path, os.X_OK):
        unavailable(f"no Chromium at {path} (scripts/check installs Debian's chromium as root)")
    return path


def screenshot_folder(tmp_path: Path, name: str) -> Iterator[Path]:
    """A folder for a test's screenshots, copied to ``$RECONCILER_TEST_ARTIFACTS/name``."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    artifacts = os.environ.get("RECONCILER_TEST_ARTIFACTS")
    if artifacts:
        target = Path(artifacts) / name
        target.mkdir(parents=True, exist_ok=True)
        for shot in folder.iterdir():
            shutil.copy2(shot, target / shot.name)
