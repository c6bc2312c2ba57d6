"""Sync windows, purely: open or not, which runs they stop, when the next may go."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from reconciler.errors import ConfigError
from reconciler.fleet import parse_fleet
from reconciler.fleet.model import SyncWindow
from reconciler.windows import is_open, next_allowed, opens_at, verdict

BERLIN = ZoneInfo("Europe/Berlin")


def window(kind: str, schedule: str, duration: float, **more: object) -> SyncWindow:
    return SyncWindow(kind=kind, schedule=schedule, duration=duration, **more)  # type: ignore[arg-type]


NIGHTLY = window("deny", "0 22 * * *", 7200, time_zone="Europe/Berlin")


@pytest.mark.parametrize(("local", "expected"), [
    (datetime(2026, 12, 1, 21, 59, tzinfo=BERLIN), False),
    # Not even a fraction of a second early.
    (datetime(2026, 12, 1, 21, 59, 59, 786000, tzinfo=BERLIN), False),
    (datetime(2026, 12, 1, 22, 0, tzinfo=BERLIN), True),
    (datetime(2026, 12, 1, 23, 59, tzinfo=BERLIN), True),
    (datetime(2026, 12, 2, 0, 0, tzinfo=BERLIN), False),
    # Read in its own time zone: 21:30 UTC is 22:30 in Berlin in winter.
    (datetime(2026, 12, 1, 21, 30, tzinfo=UTC), True),
])  # fmt: skip
def test_a_window_is_open_from_each_firing_for_its_duration(local: datetime,
                                                            expected: bool) -> None:  # fmt: skip
    assert is_open(NIGHTLY, local) is expected


def test_deny_stops_automatic_runs_and_manual_sync_lets_admin_syncs_through() -> None:
    inside = datetime(2026, 12, 1, 22, 30, tzinfo=BERLIN)
    stopped = verdict([NIGHTLY], inside, manual=False)
    assert not stopped.allowed and "deny '0 22 * * *' for 7200s" in stopped.why
    assert stopped.next_allowed == datetime(2026, 12, 2, 0, 0, tzinfo=BERLIN)
    assert not verdict([NIGHTLY], inside, manual=True).allowed  # manualSync is off
    lenient = window("deny", "0 22 * * *", 7200, time_zone="Europe/Berlin", manual_sync=True)
    assert verdict([lenient], inside, manual=True).allowed
    assert verdict([NIGHTLY], datetime(2026, 12, 1, 12, 0, tzinfo=BERLIN), manual=False).allowed


def test_allow_windows_let_automatic_runs_only_inside_them_and_deny_wins() -> None:
    office = window("allow", "0 9 * * 1-5", 8 * 3600, time_zone="Europe/Berlin")
    friday_evening = datetime(2026, 12, 4, 18, 0, tzinfo=BERLIN)
    outside = verdict([office], friday_evening, manual=False)
    assert not outside.allowed and "outside every allow window" in outside.why
    assert outside.next_allowed == datetime(2026, 12, 7, 9, 0, tzinfo=BERLIN)  # Monday
    monday = datetime(2026, 12, 7, 10, 0, tzinfo=BERLIN)
    assert verdict([office], monday, manual=False).allowed
    lunch = window("deny", "0 12 * * *", 3600, time_zone="Europe/Berlin")
    at_lunch = verdict([office, lunch], datetime(2026, 12, 7, 12, 30, tzinfo=BERLIN),
                       manual=False)  # fmt: skip
    assert not at_lunch.allowed and at_lunch.next_allowed == datetime(2026, 12, 7, 13, 0,
                                                                      tzinfo=BERLIN)  # fmt: skip
    assert opens_at(office, friday_evening) == datetime(2026, 12, 7, 9, 0, tzinfo=BERLIN)


def test_a_window_that_never_lets_a_run_through_has_no_next_moment() -> None:
    always = window("deny", "* * * * *", 120)
    assert next_allowed([always], datetime(2026, 12, 1, tzinfo=UTC), manual=False) is None


def test_the_fleet_file_takes_windows_per_application_and_per_cluster_selector() -> None:
    fleet = parse_fleet("""
clusters:
  - {name: prod-1, labels: {env: prod}}
  - {name: dev-1, labels: {env: dev}}
windows:
  - {kind: deny, schedule: "0 22 * * *", duration: 2h, timeZone: Europe/Berlin,
     clusters: {env: prod}, applications: ["web*"]}
applications:
  - name: web
    source: {repo: https://git.example/web.git}
    windows: [{kind: allow, schedule: "0 9 * * 1-5", duration: 8h, manualSync: true}]
  - name: db
    source: {repo: https://git.example/db.git}
""", source="fleet.yaml", base_dir="/")  # fmt: skip
    web, db = fleet.applications
    prod, dev = fleet.clusters
    assert [w.kind for w in fleet.windows_of(web, prod)] == ["allow", "deny"]
    assert [w.kind for w in fleet.windows_of(web, dev)] == ["allow"]
    assert fleet.windows_of(db, prod) == ()
    assert fleet.to_dict()["windows"][0]["timeZone"] == "Europe/Berlin"


@pytest.mark.parametrize(("entry", "message"), [
    ('{kind: deny, schedule: "0 25 * * *", duration: 1h}', 'invalid cron schedule "0 25 * * *"'),
    ('{kind: deny, schedule: "0 1 * * *", duration: 1h, timeZone: Mars/Olympus}',
     'unknown time zone "Mars/Olympus"'),
    ('{kind: maybe, schedule: "0 1 * * *", duration: 1h}', "kind"),
    ('{kind: deny, schedule: "0 1 * * *"}', "duration: required"),
])  # fmt: skip
def test_a_bad_window_names_its_file_entry_and_field(entry: str, message: str) -> None:
    text = f"""
clusters: [{{name: c1}}]
applications:
  - name: web
    source: {{repo: https://git.example/web.git}}
    windows: [{entry}]
"""
    with pytest.raises(ConfigError, match=r"fleet\.yaml") as caught:
        parse_fleet(text, source="fleet.yaml", base_dir="/")
    assert "windows[0]" in str(caught.value) and message in str(caught.value)
