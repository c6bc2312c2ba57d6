"""The recorded state of the fleet file, against a real Redis: how observations combine."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from reconciler.store.fleet_state import FleetHealth, FleetState
from reconciler.store.keys import Keys

T0 = datetime(2026, 11, 26, 4, 30, 10, tzinfo=UTC)
PATH = "/etc/reconciler/fleet.yaml"
ERROR = f"{PATH}:3: did not find expected ',' or '}}'"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def state(client: redis.Redis, redis_prefix: str) -> FleetState:
    return FleetState(client, Keys(redis_prefix))


def valid(at: datetime = T0, *, since: datetime | None = None, **fields: object) -> FleetHealth:
    base: dict[str, object] = {
        "valid": True, "path": PATH, "since": since or at, "observed": at,
        "fingerprint": "f" * 64, "applications": 3, "reporter": "beat",
    }  # fmt: skip
    base.update(fields)
    return FleetHealth(**base)  # type: ignore[arg-type]


def invalid(at: datetime, *, since: datetime | None = None, **fields: object) -> FleetHealth:
    return valid(at, since=since, **{"valid": False, "error": ERROR, "problems": 1, **fields})


def test_nothing_recorded_reads_as_none(state: FleetState) -> None:
    assert state.read() is None


def test_an_observation_reads_back_whole(state: FleetState) -> None:
    health = invalid(T0, problems=4, reporter="worker@host:12")
    assert state.record(health)
    assert state.read() == health


def test_the_first_observer_of_a_state_keeps_its_since(state: FleetState) -> None:
    assert state.record(invalid(T0, reporter="worker"))
    later = T0 + timedelta(seconds=4)
    assert not state.record(invalid(later, reporter="beat"))
    found = state.read()
    assert found is not None
    assert (found.since, found.reporter) == (T0, "worker")


def test_an_older_observation_cannot_overwrite_a_newer_one(state: FleetState) -> None:
    # Beat read the file (valid) just before a worker saw the breakage and recorded it.
    assert state.record(invalid(T0 + timedelta(seconds=1), reporter="worker"))
    assert not state.record(valid(T0, reporter="beat"))
    found = state.read()
    assert found is not None and not found.valid


def test_a_newer_observation_replaces_the_state(state: FleetState) -> None:
    state.record(invalid(T0))
    fixed = T0 + timedelta(minutes=5)
    assert state.record(valid(fixed, fingerprint="a" * 64, applications=4))
    found = state.read()
    assert found is not None
    assert (found.valid, found.error, found.since, found.applications) == (True, "", fixed, 4)


def test_a_changed_error_keeps_since_the_file_became_invalid(state: FleetState) -> None:
    state.record(invalid(T0))
    other = f'{PATH}: applications[0] (web): sync.interval: invalid duration "soon"'
    later = T0 + timedelta(minutes=1)
    assert state.record(invalid(later, since=later, error=other))
    found = state.read()
    assert found is not None
    assert (found.error, found.since, found.observed) == (other, T0, later)


def test_a_hash_not_written_by_record_reads_as_none(
    state: FleetState, client: redis.Redis, redis_prefix: str
) -> None:
    client.hset(Keys(redis_prefix).fleet(), mapping={"valid": "1", "path": PATH, "since": "x"})
    assert state.read() is None


def test_the_line_an_operator_reads() -> None:
    assert invalid(T0).describe() == (
        f"fleet file {PATH} is invalid since 2026-11-26T04:30:10Z: {ERROR}; "
        "running the last valid fleet (3 applications)"
    )
    assert invalid(T0, problems=3, applications=1).describe() == (
        f"fleet file {PATH} is invalid since 2026-11-26T04:30:10Z: {ERROR} (and 2 more "
        "problems); running the last valid fleet (1 application)"
    )
    assert (
        invalid(T0, fingerprint="", applications=0)
        .describe()
        .endswith("; no valid fleet was ever loaded, nothing is reconciled")
    )
    assert valid(T0).describe() == (
        f"fleet file {PATH} is valid since 2026-11-26T04:30:10Z (3 applications)"
    )


def test_to_dict_is_json_ready() -> None:
    data = invalid(T0).to_dict()
    assert data["since"] == "2026-11-26T04:30:10Z"
    assert (data["valid"], data["error"], data["applications"]) == (False, ERROR, 3)
