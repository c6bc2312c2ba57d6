"""``reconciler plan``: what a branch (or any revision) would do to every cluster, before
it merges.

Each application is rendered at the revision for every target it reaches (in its
rollout's step order), compared with the live state and checked by the server's dry-run
(``Engine.preview``), and reported per target: objects to create, to change (with the
field paths, and the diff with ``--diff``), to prune, and the hooks a sync would run.
Nothing is written, so a CI job with read access to the clusters can run it; ``-o
markdown`` is a pull-request comment (a summary table, then a folded section per target).

Exit 0 when nothing would change, 1 when something would (or a cluster could not be
read), 2 on bad input (an unknown application, a revision that does not exist, a render
error naming its file and line, a write the server would reject).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cli.local import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Params, engine, load, targets_of
from cli.output import print_json, print_table, print_yaml, short
from reconciler.engine import Engine, Preview
from reconciler.fleet import Application, Fleet
from reconciler.hooks import Phase
from reconciler.model import ObjectKey
from reconciler.rollout import Step, step_of, steps_of

#: Hook phases a sync runs, in order (SyncFail runs only when the sync fails).
_PHASES = (Phase.PRE_SYNC, Phase.SYNC, Phase.POST_SYNC)


def _step_name(step: Step | None) -> str:
    if step is None:
        return "-"
    return step.label


def target_plan(preview: Preview, step: Step | None, *, with_diff: bool) -> dict[str, Any]:
    """One target's plan as data: what ``-o json`` prints and the other outputs show."""
    target = preview.target
    row: dict[str, Any] = {
        "application": target.app.name, "cluster": target.cluster.name,
        "step": _step_name(step), "revision": preview.revision,
        "create": [], "change": [], "prune": [], "keep": [], "hooks": [], "errors": [],
        "checked": preview.checked,
    }  # fmt: skip
    row["errors"] = [{"message": p.message, "object": p.object, "retryable": p.retryable}
                     for p in preview.errors]  # fmt: skip
    if preview.reason:
        row["reason"] = preview.reason
    the_plan = preview.plan
    if the_plan is None:
        return row
    live_keys = {ObjectKey.of(o) for o in the_plan.live_hooks.values()}
    for obj in the_plan.writes:
        key = ObjectKey.of(obj)
        if key in preview.server_unchanged:
            continue
        found = the_plan.diffs.get(key)
        created = any(d.object == str(key) and d.kind == "missing" for d in the_plan.drift)
        entry: dict[str, Any] = {"object": str(key)}
        if not created and found is not None:
            entry["paths"] = list(found.changed_paths)
        if with_diff and found is not None and found.diff:
            entry["diff"] = found.diff
        if key in preview.rejected:
            row["errors"].append({"message": f"{key}: the server's dry-run rejects it: "
                                  f"{preview.rejected[key]}", "object": str(key),
                                  "retryable": False})  # fmt: skip
        row["create" if created else "change"].append(entry)
    row["prune"] = [{"object": str(ObjectKey.of(o))} for o in the_plan.prune]
    row["keep"] = [{"object": str(ObjectKey.of(k.object)), "reason": k.reason}
                   for k in the_plan.kept]  # fmt: skip
    changes = row["create"] or row["change"] or row["prune"] or the_plan.new_revision
    if changes:
        sync_hooks = [h for wave in the_plan.waves for h in wave.hooks]
        by_phase = {**the_plan.hooks, Phase.SYNC: tuple(sync_hooks)}
        row["hooks"] = [{"phase": phase.value, "object": hook.shown,
                         "replaces": hook.key in live_keys}
                        for phase in _PHASES for hook in by_phase.get(phase, ())]  # fmt: skip
    return row


def changes_of(row: dict[str, Any]) -> int:
    """How many writes, prunes and hook runs the target's plan holds."""
    return len(row["create"]) + len(row["change"]) + len(row["prune"]) + len(row["hooks"])


def plan_fleet(
    fleet: Fleet,
    applications: Sequence[Application],
    revision: str,
    clusters: Sequence[str] | None,
    *,
    with_diff: bool,
    eng: Engine | None = None,
) -> list[dict[str, Any]]:
    """Every target's plan at ``revision``, application by application, in step order."""
    eng = eng or engine()
    jobs = []
    resolved: dict[tuple[str, str], str] = {}
    for app in applications:
        source = dataclasses.replace(app.source, revision=revision)
        key = (str(source.repo), revision)
        if key not in resolved:
            resolved[key] = eng.resolve(source, True)  # SourceError names the revision
        chosen = targets_of(fleet, app, clusters)
        steps = steps_of(app, fleet.targets(app))
        ordered = sorted(chosen, key=lambda c: (getattr(step_of(steps, c.name), "index", 0),
                                                chosen.index(c)))  # fmt: skip
        jobs += [(fleet.target(app.name, c.name), resolved[key],
                  step_of(steps, c.name) if app.rollout is not None else None)
                 for c in ordered]  # fmt: skip
    if not jobs:
        return []
    try:
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            previews = list(pool.map(lambda job: eng.preview(job[0], job[1]), jobs))
    finally:
        eng.clients.close()
    return [target_plan(p, job[2], with_diff=with_diff)
            for p, job in zip(previews, jobs, strict=True)]  # fmt: skip


def _counts(row: dict[str, Any]) -> str:
    parts = [f"{len(row[k])} to {k}" for k in ("create", "change", "prune") if row[k]]
    if row["hooks"]:
        parts.append(f"{len(row['hooks'])} hook(s)")
    if row["errors"]:
        parts.append("error")
    return ", ".join(parts) or "no change"


def _hook_cell(row: dict[str, Any]) -> str:
    return ", ".join(f"{h['phase']}: {h['object'].rsplit('/', 1)[-1]}" for h in row["hooks"])


def print_table_plan(rows: list[dict[str, Any]], *, with_diff: bool) -> None:
    print_table(
        ["APPLICATION", "CLUSTER", "STEP", "CREATE", "CHANGE", "PRUNE", "HOOKS", "ERROR"],
        [[r["application"], r["cluster"], r["step"], len(r["create"]), len(r["change"]),
          len(r["prune"]), _hook_cell(r) or "-",
          short(r["errors"][0]["message"], 50) if r["errors"] else ""] for r in rows],
    )  # fmt: skip
    for row in rows:
        if not changes_of(row):
            continue
        print(f"\n# {row['application']} on {row['cluster']} (step {row['step']}): "
              f"{_counts(row)}")  # fmt: skip
        for entry in row["create"]:
            print(f"  + {entry['object']}")
        for entry in row["change"]:
            print(f"  ~ {entry['object']}: {', '.join(entry.get('paths') or [])}")
        for entry in row["prune"]:
            print(f"  - {entry['object']}")
        for hook in row["hooks"]:
            print(f"  > {hook['phase']} hook {hook['object']}")
        if with_diff:
            for entry in row["create"] + row["change"]:
                if entry.get("diff"):
                    print(entry["diff"], end="" if entry["diff"].endswith("\n") else "\n")


def markdown(rows: list[dict[str, Any]], revision: str) -> str:
    """A pull-request comment: one summary table, then a folded section per target."""
    commits = sorted({str(r["revision"])[:12] for r in rows if r.get("revision")})
    changed = [r for r in rows if changes_of(r) or r["errors"]]
    lines = [f"### reconciler plan for `{revision}`" + (f" ({', '.join(commits)})" if commits
                                                        else ""), ""]  # fmt: skip
    lines.append(f"{len(changed)} of {len(rows)} target(s) would change"
                 if changed else f"No change on any of {len(rows)} target(s).")  # fmt: skip
    lines += ["", "| Application | Cluster | Step | Create | Change | Prune | Hooks | Status |",
              "|---|---|---|---:|---:|---:|---|---|"]  # fmt: skip
    for r in rows:
        status = "error" if r["errors"] else "changes" if changes_of(r) else "no change"
        lines.append(f"| {r['application']} | {r['cluster']} | {r['step']} | {len(r['create'])} "
                     f"| {len(r['change'])} | {len(r['prune'])} | {_hook_cell(r) or '-'} "
                     f"| {status} |")  # fmt: skip
    for r in changed:
        lines += ["", f"<details><summary><b>{r['application']}</b> on <b>{r['cluster']}</b>"
                  f" (step {r['step']}): {_counts(r)}</summary>", ""]  # fmt: skip
        lines += [f"- error: {e['message']}" for e in r["errors"]]
        lines += [f"- create `{e['object']}`" for e in r["create"]]
        lines += [f"- change `{e['object']}`: " + ", ".join(f"`{p}`" for p in e.get("paths") or [])
                  for e in r["change"]]  # fmt: skip
        lines += [f"- prune `{e['object']}`" for e in r["prune"]]
        lines += [f"- {h['phase']} hook `{h['object']}`" for h in r["hooks"]]
        for entry in r["create"] + r["change"]:
            if entry.get("diff"):
                lines += ["", "```diff", entry["diff"].rstrip("\n"), "```"]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def cmd_plan(args: Params) -> int:
    """Plan APP... (every application when none is named) at ``--revision``."""
    fleet = load(args)
    names = list(args.apps or ())
    applications = ([fleet.application(n) for n in names] if names
                    else list(fleet.applications))  # fmt: skip
    rows = plan_fleet(fleet, applications, args.revision, args.cluster or None,
                      with_diff=args.diff)  # fmt: skip
    if args.output == "json":
        print_json(rows)
    elif args.output == "yaml":
        print_yaml(rows)
    elif args.output == "markdown":
        print(markdown(rows, args.revision), end="")
    else:
        print_table_plan(rows, with_diff=args.diff)
    failed = [e for r in rows for e in r["errors"]]
    for row in rows:
        for error in row["errors"]:
            print(f"error: {row['application']} on {row['cluster']}: {error['message']}",
                  file=sys.stderr)  # fmt: skip
    if any(not e["retryable"] for e in failed):
        return EXIT_USAGE
    if failed or any(changes_of(r) for r in rows):
        return EXIT_FAILED
    return EXIT_OK

