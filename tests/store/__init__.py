"""Tests of the Redis adapter, against a real Redis (see ``tests/conftest.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(condition: Callable[[], bool], *, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes: a deadline, not a bare sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
