"""Rolled-back targets in Redis: pinned, listed, released, and kept current on Git's side."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from reconciler.store.keys import Keys
from reconciler.store.rollback import Rollbacks, RolledBack


@pytest.fixture
def rollbacks(redis_url: str, redis_prefix: str) -> Iterator[Rollbacks]:
    with redis.Redis.from_url(redis_url) as client:
        yield Rollbacks(client, Keys(redis_prefix))


def test_pins_are_per_target_and_released_per_cluster(rollbacks: Rollbacks) -> None:
    rollbacks.pin("web", "prod-1", RolledBack("a" * 40, replaced="b" * 40, by="ann@host"))
    rollbacks.pin("web", "prod-2", RolledBack("a" * 40))
    rollbacks.pin("web-api", "prod-1", RolledBack("c" * 40))
    assert set(rollbacks.of_app("web")) == {"prod-1", "prod-2"}  # not web-api's
    assert rollbacks.get("web", "prod-1") == RolledBack("a" * 40, replaced="b" * 40, by="ann@host")
    assert rollbacks.release("web", ["prod-2", "absent"]) == ["prod-2"]
    assert set(rollbacks.all()) == {("web", "prod-1"), ("web-api", "prod-1")}
    assert rollbacks.release("web") == ["prod-1"]
    assert rollbacks.get("web", "prod-1") is None


def test_what_git_wants_is_recorded_but_never_brings_a_released_pin_back(
    rollbacks: Rollbacks,
) -> None:
    rollbacks.pin("web", "prod-1", RolledBack("a" * 40, wanted="b" * 40))
    held = rollbacks.of_app("web")
    rollbacks.saw_wanted("web", held, "c" * 40)
    assert rollbacks.get("web", "prod-1") == RolledBack("a" * 40, wanted="c" * 40)
    stale = rollbacks.of_app("web")
    rollbacks.release("web")  # a resume between the fan-out's read and its write
    rollbacks.saw_wanted("web", stale, "d" * 40)
    assert rollbacks.of_app("web") == {}
