"""Rollout decisions, purely: which clusters take a revision when, gates, halts, abort."""

from __future__ import annotations

from reconciler.fleet.model import (
    Application,
    Cluster,
    ClusterSelector,
    Rollout,
    RolloutStep,
    Source,
)
from reconciler.rollout import (
    Phase,
    RolloutState,
    Step,
    TargetView,
    abort,
    advance,
    begin,
    pause,
    promote,
    resume,
    steps_of,
)

OLD, NEW = "a" * 40, "b" * 40
CLUSTERS = [Cluster(name="dev-1", labels={"env": "dev"}),
            Cluster(name="stg-1", labels={"env": "staging"}),
            Cluster(name="stg-2", labels={"env": "staging"}),
            Cluster(name="prod-1", labels={"env": "prod"}),
            Cluster(name="prod-2", labels={"env": "prod"}),
            Cluster(name="edge-1", labels={"env": "edge"})]  # fmt: skip


def app(*steps: RolloutStep) -> Application:
    return Application(name="web", source=Source(repo="https://git.example/web.git"),
                       rollout=Rollout(steps=steps))  # fmt: skip


def step(env: str, soak: float = 0.0, most: int | str = "100%") -> RolloutStep:
    return RolloutStep(clusters=ClusterSelector(match_labels={"env": env}),
                       max_unavailable=most, soak=soak)  # fmt: skip


STEPS = steps_of(app(step("dev", soak=30), step("staging", soak=300, most=1), step("prod")),
                 CLUSTERS)  # fmt: skip


def views(state: RolloutState, **overrides: TargetView) -> dict[str, TargetView]:
    """Every cluster Synced and Healthy on what it is assigned, unless overridden."""
    found = {c: TargetView(r, "Synced", "Healthy") for c, r in state.assigned.items()}
    return {**found, **overrides}


def started() -> RolloutState:
    state = begin(None, NEW, {c.name: OLD for c in CLUSTERS}, now=0.0)
    assert state is not None
    return state


def test_clusters_fall_into_the_first_step_that_selects_them_and_the_rest_come_last() -> None:
    assert [(s.index, s.clusters, s.rest) for s in STEPS] == [
        (0, ("dev-1",), False), (1, ("stg-1", "stg-2"), False),
        (2, ("prod-1", "prod-2"), False), (3, ("edge-1",), True),
    ]  # fmt: skip
    overlapping = steps_of(app(step("dev"), RolloutStep()), CLUSTERS)
    assert overlapping[0].clusters == ("dev-1",) and len(overlapping[1].clusters) == 5
    assert len(overlapping) == 2  # nothing is left for a rest step


def test_a_revision_goes_step_by_step_each_gated_on_health_and_soak() -> None:
    state = started()
    assert state.assigned == {c.name: OLD for c in CLUSTERS}  # nobody reached yet
    first = advance(state, STEPS, views(state), now=1.0)
    assert first.sync == ("dev-1",)
    # dev-1 is still progressing: nothing moves.
    held = advance(first.state, STEPS, views(first.state, **{"dev-1": TargetView(
        NEW, "Synced", "Progressing")}), now=5.0)  # fmt: skip
    assert held.sync == () and held.state.gate_since is None
    healthy = advance(held.state, STEPS, views(held.state), now=10.0)
    assert healthy.sync == () and healthy.state.gate_since == 10.0  # soaking for 30 s
    soaking = advance(healthy.state, STEPS, views(healthy.state), now=39.0)
    assert soaking.sync == () and soaking.state.step == 0
    staging = advance(soaking.state, STEPS, views(soaking.state), now=40.0)
    assert staging.state.step == 1 and staging.sync == ("stg-1",)  # maxUnavailable 1
    assert [e["event"] for e in staging.events] == ["step passed"]
    second = advance(staging.state, STEPS, views(staging.state), now=41.0)
    assert second.sync == ("stg-2",)
    gated = advance(second.state, STEPS, views(second.state), now=42.0)
    assert gated.sync == () and gated.state.gate_since == 42.0
    rest = advance(gated.state, STEPS, views(gated.state), now=342.0)
    # prod passes at once (no soak), its targets become good, then the rest step.
    assert rest.sync == ("prod-1", "prod-2") and rest.state.step == 2
    done = advance(rest.state, STEPS, views(rest.state), now=343.0)
    assert done.sync == ("edge-1",)
    final = advance(done.state, STEPS, views(done.state), now=344.0)
    assert final.state.phase is Phase.COMPLETED and final.state.finished == 344.0
    assert set(final.state.assigned.values()) == {NEW}


def test_a_failing_step_halts_and_promote_goes_on_regardless() -> None:
    state = advance(started(), STEPS, {}, now=1.0).state
    state = advance(state, STEPS, views(state), now=100.0).state
    state = advance(state, STEPS, views(state), now=200.0).state  # staging, stg-1 first
    assert state.step == 1 and state.assigned["stg-1"] == NEW
    failing = views(state, **{"stg-1": TargetView(NEW, "Synced", "Degraded", "deadline")})
    halted = advance(state, STEPS, failing, now=201.0)
    assert halted.state.phase is Phase.HALTED and halted.sync == ()
    assert halted.state.reason == "stg-1: Synced Degraded: deadline"
    assert halted.state.assigned["stg-2"] == OLD  # clusters not reached keep their revision
    # A halted rollout stays halted whatever the status says...
    assert advance(halted.state, STEPS, views(halted.state), now=300.0).sync == ()
    # ...until promoted: the step's clusters all take the revision, the next step begins.
    promoted = promote(halted.state, STEPS, now=301.0)
    assert promoted.sync == ("stg-2",) and promoted.state.step == 2
    assert promoted.state.phase is Phase.PROGRESSING
    after = advance(promoted.state, STEPS, failing, now=302.0)
    assert after.sync == ("prod-1", "prod-2")  # the promoted step's failure no longer gates


def test_resume_after_a_halt_halts_again_while_the_step_still_fails() -> None:
    state = advance(started(), STEPS, {}, now=1.0).state
    bad = {"dev-1": TargetView(NEW, "Failed", "Unknown", "ApplyFailed")}
    halted = advance(state, STEPS, bad, now=2.0).state
    assert halted.phase is Phase.HALTED
    again = advance(resume(halted, now=3.0), STEPS, bad, now=3.0).state
    assert again.phase is Phase.HALTED
    fixed = advance(resume(again, now=4.0), STEPS, views(again), now=4.0).state
    assert fixed.phase is Phase.PROGRESSING and fixed.gate_since == 4.0


def test_pause_stops_assigning_and_resume_goes_on() -> None:
    state = advance(started(), STEPS, {}, now=1.0).state
    paused = pause(state, now=2.0)
    assert paused.shown_phase == "Paused"
    assert advance(paused, STEPS, views(paused), now=100.0).sync == ()
    moved = advance(resume(paused, now=101.0), STEPS, views(paused), now=101.0)
    assert moved.state.gate_since == 101.0


def test_abort_sends_every_cluster_back_and_a_new_revision_starts_from_there() -> None:
    state = advance(started(), STEPS, {}, now=1.0).state
    state = promote(state, STEPS, now=2.0).state
    state = advance(state, STEPS, {}, now=3.0).state
    assert {c for c, r in state.assigned.items() if r == NEW} == {"dev-1", "stg-1"}
    aborted = abort(state, now=4.0)
    assert set(aborted.sync) == {"dev-1", "stg-1"} and aborted.state.phase is Phase.ABORTED
    assert set(aborted.state.assigned.values()) == {OLD}
    assert advance(aborted.state, STEPS, {}, now=5.0).sync == ()
    assert begin(aborted.state, NEW, {}, now=6.0) is None  # the same revision stays aborted
    third = begin(aborted.state, "c" * 40, {c.name: OLD for c in CLUSTERS}, now=7.0)
    assert third is not None and third.previous["dev-1"] == OLD and third.step == 0


def test_a_first_revision_reaches_nobody_before_its_step() -> None:
    state = begin(None, NEW, {c.name: None for c in CLUSTERS}, now=0.0)
    assert state is not None and state.assigned == {}
    first = advance(state, STEPS, {}, now=1.0)
    assert first.sync == ("dev-1",) and set(first.state.assigned) == {"dev-1"}
    # Abort has nothing to send the others back to, and takes nothing away.
    assert abort(first.state, now=2.0).state.assigned == {"dev-1": NEW}


def test_the_state_survives_a_round_trip_through_json() -> None:
    import json  # noqa: PLC0415

    state = advance(started(), STEPS, {}, now=1.0).state
    copy = RolloutState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert copy == state


def test_an_empty_step_is_passed_at_once() -> None:
    steps = [Step(0, step("nowhere", soak=600), ()),
             *(Step(s.index + 1, s.rule, s.clusters, s.rest) for s in STEPS)]  # fmt: skip
    moved = advance(started(), steps, {}, now=1.0)
    assert moved.sync == ("dev-1",) and moved.state.step == 1
