"""``reconciler rollout``: where an application's progressive rollout stands, and the
operator's hand on it (promote, pause, resume, abort).

The state is the one the workers decide on (``reconciler.store.rollout``); a change made
here goes through the same atomic change as theirs, then a decision is queued so the
workers act on it at once (send the reassigned clusters their revision, go on to the
next step).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from cli.admin import require_fleet
from cli.installation import redis_client
from cli.local import Params
from cli.output import Column, age_cell, print_listing, revision_cell
from reconciler.errors import ConfigError
from reconciler.fleet import Application, Fleet
from reconciler.fleet.model import format_duration
from reconciler.outcome import TargetStatus
from reconciler.rollout import Decision, Phase, RolloutState, Step, abort, pause, promote, resume
from reconciler.rollout import steps_of as split

#: ``rollout status``: one row per cluster, in step order.
_COLUMNS = (
    Column("STEP", lambda r: r["step"]),
    Column("CLUSTER", lambda r: r["cluster"]),
    Column("REVISION", lambda r: revision_cell({"revision": r["assigned"]})),
    Column("RUNNING", lambda r: revision_cell({"revision": r["running"]})),
    Column("SYNC", lambda r: r["sync"] or "Unknown"),
    Column("HEALTH", lambda r: r["health"] or "-"),
    Column("SINCE", lambda r: age_cell(r["since"] or "")),
    Column("STATE", lambda r: r["state"]),
    Column("ERROR", lambda r: (r["error"] or "")[:60], wide=True),
)


def _stamp(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _application(args: Params) -> tuple[Fleet, Application, list[Step]]:
    fleet = require_fleet(args)
    application = fleet.application(args.app)
    if application.rollout is None:
        raise ConfigError(f"{fleet.path}: application {application.name} has no rollout.steps; "
                          "it reaches every cluster at once")  # fmt: skip
    return fleet, application, split(application, fleet.targets(application))


def _stores() -> tuple[Any, Any]:
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415
    from reconciler.store.rollout import Rollouts  # noqa: PLC0415

    client = redis_client()
    return Rollouts(client, Keys()), Records(client, Keys())


def _cluster_state(state: RolloutState | None, step: Step, current: int, cluster: str,
                   entry: TargetStatus | None) -> str:  # fmt: skip
    """``done``, ``updating``, ``waiting`` or ``previous`` (not reached), for one cluster."""
    if state is None:
        return "no rollout"
    if state.assigned.get(cluster) != state.revision:
        return "waiting" if step.index >= current else "previous"
    good = (entry is not None and entry.revision == state.revision and entry.sync == "Synced"
            and entry.health in {"Healthy", "Suspended"})  # fmt: skip
    return "done" if good else "updating"


def rollout_view(application: Application, steps: list[Step],
                 state: RolloutState | None, entries: dict[str, TargetStatus]
                 ) -> dict[str, Any]:  # fmt: skip
    """The rollout as ``rollout status`` and the fleet page show it."""
    rows = []
    current = state.step if state is not None else 0
    for step in steps:
        for cluster in step.clusters:
            entry = entries.get(cluster)
            rows.append({
                "step": step.label,
                "cluster": cluster,
                "assigned": state.assigned.get(cluster) if state else None,
                "running": entry.revision if entry else None,
                "sync": entry.sync if entry else "",
                "health": entry.health if entry else "",
                "since": (entry.health_at or entry.finished) if entry else "",
                "state": _cluster_state(state, step, current, cluster, entry),
                "error": entry.error if entry else "",
            })  # fmt: skip
    described = [{"step": s.label if s.rest else s.index + 1, "clusters": list(s.clusters),
                  "maxUnavailable": s.rule.max_unavailable, "soak": format_duration(s.rule.soak)}
                 for s in steps]  # fmt: skip
    data: dict[str, Any] = {"application": application.name, "steps": described, "clusters": rows}
    if state is not None:
        data["rollout"] = {**state.to_dict(), "phase": state.shown_phase,
                           "started": _stamp(state.started), "finished": _stamp(state.finished),
                           "step_started": _stamp(state.step_started),
                           "gate_since": _stamp(state.gate_since),
                           "events": [{**e, "at": _stamp(e.get("at"))} for e in state.events]}
    return data


def _headline(application: Application, steps: list[Step], state: RolloutState | None) -> str:
    if state is None:
        return f"{application.name}: no rollout yet (it begins with the next revision resolved)"
    total = len(steps)
    where = ("all steps done" if state.step >= total else
             f"step {state.step + 1}/{total}" + (" (the clusters no step selects)"
                                                  if steps[state.step].rest else ""))  # fmt: skip
    line = (f"{application.name}: rollout of {state.revision[:12]} {state.shown_phase}, {where}, "
            f"started {age_cell(_stamp(state.started) or '')} ago")  # fmt: skip
    if state.step < total and state.gate_since is not None and state.phase is Phase.PROGRESSING:
        left = steps[state.step].rule.soak - (time.time() - state.gate_since)
        line += f"; soaking, {max(0, int(left))}s left"
    if state.reason:
        line += f"\n  {state.reason}"
    return line


def cmd_rollout_status(args: Params) -> int:
    """Per step: its clusters, the revision each is assigned and runs, sync, health."""
    _fleet, application, steps = _application(args)
    rollouts, records = _stores()
    state = rollouts.read(application.name)
    entries = {e.cluster: e for e in records.status(application.name)}
    view = rollout_view(application, steps, state, entries)
    if args.output in {"table", "wide"}:
        print(_headline(application, steps, state))
    print_listing(args.output, view["clusters"], _COLUMNS, data=view,
                  name=lambda r: f"{application.name}/{r['cluster']}")  # fmt: skip
    return 0


def _change(args: Params, what: str) -> int:
    """Promote, pause, resume or abort, atomically with the workers' own decisions."""
    from workers.dispatch import enqueue_rollout_decision  # noqa: PLC0415

    _fleet, application, steps = _application(args)
    rollouts, _records = _stores()
    now = time.time()

    def decide(state: RolloutState | None) -> tuple[RolloutState | None, Decision | None]:
        if state is None:
            return None, None
        if what == "promote":
            decision = promote(state, steps, now)
        elif what == "abort":
            decision = abort(state, now)
        elif what == "pause":
            decision = Decision(pause(state, now, getattr(args, "reason", "") or ""))
        else:
            decision = Decision(resume(state, now))
        return decision.state, decision

    decision = rollouts.change(application.name, decide)
    if decision is None:
        raise ConfigError(f"{application.name} has no rollout yet: nothing to {what}")
    state = decision.state
    if what != "pause":
        enqueue_rollout_decision(application.name, sync=decision.sync)
    else:
        from reconciler.notify import rollout_events  # noqa: PLC0415
        from reconciler.outcome import timestamp  # noqa: PLC0415
        from workers.dispatch import enqueue_notifications  # noqa: PLC0415

        paused = [e for e in state.events if e.get("event") == "paused" and e.get("at") == now]
        events = rollout_events(application.name, state.revision, paused,
                                at=timestamp(datetime.now(UTC)))  # fmt: skip
        enqueue_notifications(application.name, [e.to_dict() for e in events])
    moved = f"; {len(decision.sync)} cluster(s) sent: {', '.join(decision.sync)}" if (
        decision.sync) else ""  # fmt: skip
    print(f"{application.name}: rollout of {state.revision[:12]} {state.shown_phase}, "
          f"step {steps[state.step].label if state.step < len(steps) else 'done'}"
          f"{moved}")  # fmt: skip
    return 0


def cmd_rollout_promote(args: Params) -> int:
    return _change(args, "promote")


def cmd_rollout_pause(args: Params) -> int:
    return _change(args, "pause")


def cmd_rollout_resume(args: Params) -> int:
    return _change(args, "resume")


def cmd_rollout_abort(args: Params) -> int:
    return _change(args, "abort")
