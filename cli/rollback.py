"""``reconciler rollback``: apply an earlier revision from a target's history, and keep it.

As ``argocd app rollback`` does, the targets rolled back stop syncing automatically (a
scheduled run, a push or the watcher would otherwise apply Git's revision again at once)
until ``reconciler resume APP [--cluster C]``.  ``status`` shows them rolled back, with
the revision they run and the one Git wants.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime

from cli.admin import _print_outcomes, _sync_problems, _timed_out, require_fleet, who
from cli.installation import installation, redis_client, require_redis
from cli.local import Params, targets_of
from reconciler.errors import ConfigError, TransientError
from reconciler.outcome import timestamp

_HEX = re.compile(r"[0-9a-f]{4,40}")
#: Outcomes of a target searched for earlier revisions.
_SEARCHED = 100


def applied_revisions(history: list[dict[str, object]]) -> list[str]:
    """Revisions the target ran Synced, newest first, each once."""
    seen: list[str] = []
    for entry in history:
        revision = entry.get("revision")
        if entry.get("sync") == "Synced" and isinstance(revision, str) and revision not in seen:
            seen.append(revision)
    return seen


def choose(cluster: str, history: list[dict[str, object]], current: str | None, *,
           to: str | None, steps: int | None) -> str:  # fmt: skip
    """The revision a target goes back to: ``steps`` revisions before the one it runs, or
    ``to`` (a commit, or a prefix of one, from its history; else a branch, tag or commit
    the workers resolve)."""
    applied = applied_revisions(history)
    if steps is not None:
        earlier = [r for r in applied if r != current]
        if len(earlier) < steps:
            raise ConfigError(f"{cluster}: its history holds {len(earlier)} earlier revision(s), "
                              f"not {steps}")  # fmt: skip
        return earlier[steps - 1]
    assert to is not None
    if _HEX.fullmatch(to.lower()):
        matches = [r for r in applied if r.startswith(to.lower())]
        if len(matches) > 1:
            shown = ", ".join(m[:12] for m in matches)
            raise ConfigError(f"{cluster}: {to} names {len(matches)} revisions of its history "
                              f"({shown}): give more digits")  # fmt: skip
        if matches:
            return matches[0]
    return to


def cmd_rollback(args: Params) -> int:
    """Roll the application's targets (or ``--cluster``'s) back and keep them there."""
    from celery.exceptions import TimeoutError as ResultTimeout  # noqa: PLC0415

    from reconciler.outcome import Trigger  # noqa: PLC0415
    from reconciler.store.keys import Keys  # noqa: PLC0415
    from reconciler.store.records import Records  # noqa: PLC0415
    from reconciler.store.rollback import Rollbacks, RolledBack  # noqa: PLC0415
    from workers.dispatch import enqueue_app, fan_out_result, wait_for_targets  # noqa: PLC0415

    if (args.to is None) == (args.steps is None):
        raise ConfigError("give one of --to REVISION and --steps N")
    deadline = time.monotonic() + args.timeout
    fleet = require_fleet(args)
    application = fleet.application(args.app)
    clusters = [c.name for c in targets_of(fleet, application, args.cluster)]
    require_redis()
    client = redis_client()
    records, rollbacks = Records(client, Keys()), Rollbacks(client, Keys())
    chosen: dict[str, str] = {}
    replaced: dict[str, str | None] = {}
    for cluster in clusters:
        entry = records.entry(application.name, cluster)
        replaced[cluster] = entry.revision if entry is not None else None
        history = records.history(application.name, cluster, n=_SEARCHED)
        chosen[cluster] = choose(cluster, history, replaced[cluster], to=args.to,
                                 steps=args.steps)  # fmt: skip
    at, by = timestamp(datetime.now(UTC)), who()
    # Pinned first: an automatic run that starts meanwhile must not undo the rollback.
    for cluster, revision in chosen.items():
        rollbacks.pin(application.name, cluster, RolledBack(
            revision=revision, replaced=replaced[cluster], wanted=replaced[cluster], at=at,
            by=by, reason=args.reason or ""))  # fmt: skip
    groups: dict[str, list[str]] = {}
    for cluster, revision in chosen.items():
        groups.setdefault(revision, []).append(cluster)
    targets = []
    for revision, members in groups.items():
        cause = {"by": by, "reason": args.reason or "", "rollback": {"to": revision}}
        result = enqueue_app(application.name, trigger=Trigger.MANUAL, clusters=members,
                             fresh=True, revision=revision,
                             cause={k: v for k, v in cause.items() if v})  # fmt: skip
        try:
            targets += fan_out_result(result, timeout=min(60.0, max(1.0, deadline
                                                                    - time.monotonic())))[1]
        except (TimeoutError, ResultTimeout):
            raise TransientError(
                f"no worker took the rollback of {application.name} within 60s: is a worker "
                f"running against {installation()}? It stays queued, and its targets stay "
                "rolled back (automatic sync waits for 'reconciler resume')") from None
    waited = wait_for_targets(targets, timeout=max(0.0, deadline - time.monotonic()))
    rows = [outcome if outcome is not None else _timed_out(application.name, c, args.timeout)
            for c, outcome in waited.items()]  # fmt: skip
    _print_outcomes(args.output, rows)
    if args.output in {"table", "wide"}:
        print(f"{application.name}: automatic sync of {', '.join(sorted(chosen))} waits for "
              f"'reconciler resume {application.name}'")  # fmt: skip
    problems = _sync_problems(rows, health=False, timeout=args.timeout)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0
