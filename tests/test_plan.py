"""The pure plan, table-tested from YAML cases in ``tests/data/plan/``.

Each case gives a sync policy (defaults: automated, prune, selfHeal on; allowEmpty and
suspended off), a trigger, the commit, the inventory's revision, the desired objects and
the live ones (both get the application's ownership labels unless ``unowned: true``, or
another application's with ``owner: NAME``), optionally a ``project`` (as written in a fleet
file) and ``neighbours`` (namespace -> other applications with objects in it), and under
``expect`` only the parts of the plan it is about.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter

from reconciler.errors import RenderError
from reconciler.fleet import Project
from reconciler.hooks import Hook
from reconciler.inventory import Inventory
from reconciler.model import APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Manifest, ObjectKey
from reconciler.outcome import Trigger
from reconciler.plan import Plan, plan

CASES = sorted((Path(__file__).parent / "data" / "plan").glob("*.yaml"))
APP = "web"


@dataclass(frozen=True)
class Policy:
    automated: bool = True
    prune: bool = True
    self_heal: bool = True
    allow_empty: bool = False
    suspended: bool = False


def _owned(objs: list[Manifest]) -> list[Manifest]:
    result = []
    for original in objs:
        obj = copy.deepcopy(original)
        owner = obj.pop("owner", APP)
        if not obj.pop("unowned", False):
            labels = obj.setdefault("metadata", {}).setdefault("labels", {})
            labels.update({MANAGED_BY_LABEL: MANAGED_BY_VALUE, APP_LABEL: owner})
        result.append(obj)
    return result


def _keys(objs: Any) -> list[str]:
    return [str(ObjectKey.of(o)) for o in objs]


def _hooks(hooks: tuple[Hook, ...]) -> list[str]:
    return [h.shown for h in hooks]


def _build(case: dict[str, Any]) -> Plan:
    policy = case.get("policy") or {}
    names = {"selfHeal": "self_heal", "allowEmpty": "allow_empty"}
    inventory = case.get("inventory")
    project = case.get("project")
    return plan(
        _owned(case.get("desired") or []),
        _owned(case.get("live") or []),
        Inventory(revision=inventory["revision"], exists=True) if inventory else Inventory(),
        Policy(**{names.get(k, k): v for k, v in policy.items()}),
        Trigger(case.get("trigger", "schedule")),
        str(case["commit"]),
        app=APP,
        rules=_PROJECT.validate_python(project, by_alias=True, by_name=False) if project else None,
        neighbours={ns: frozenset(apps) for ns, apps in (case.get("neighbours") or {}).items()},
    )


_PROJECT = TypeAdapter(Project)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_plan_case(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(RenderError) as caught:
            _build(case)
        assert expect["error"] in str(caught.value)
        return
    result = _build(case)
    checks = {
        "sync": lambda: result.sync,
        "drift": lambda: {d.object: d.kind for d in result.drift},
        "unchanged": lambda: [str(k) for k in result.unchanged],
        "scaffolding": lambda: _keys(result.scaffolding),
        "waves": lambda: [
            {"number": w.number, "objects": _keys(w.objects), "writes": _keys(w.writes),
             **({"hooks": _hooks(w.hooks)} if w.hooks else {})}
            for w in result.waves
        ],
        "prune": lambda: _keys(result.prune),
        "kept": lambda: {str(ObjectKey.of(k.object)): k.reason for k in result.kept},
        "kept_by_policy": lambda: [str(ObjectKey.of(k.object)) for k in result.kept if k.by_policy],
        "hooks": lambda: {
            phase: _hooks(result.hooks[phase]) for phase in expect["hooks"]  # type: ignore[index]
        },
        "hook_waves": lambda: {
            h.shown: h.wave for hooks in result.hooks.values() for h in hooks
            if h.shown in expect["hook_waves"]
        },
        "delete_policies": lambda: {
            h.shown: sorted(p.value for p in h.delete_policies)
            for hooks in [*result.hooks.values(), *(w.hooks for w in result.waves)]
            for h in hooks if h.shown in expect["delete_policies"]
        },
        "skipped": lambda: [s.object for s in result.skipped_hooks],
        "live_hooks": lambda: [str(k) for k in result.live_hooks],
        "gated": lambda: result.gated,
        "changes_anything": lambda: result.changes_anything,
        "refuse_empty_prune": lambda: result.refuse_empty_prune,
        "replaceable": lambda: sorted(str(k) for k in result.replaceable),
        "refused": lambda: {str(r.key): r.reason.value for r in result.refused},
        "refused_messages": lambda: sorted(r.message for r in result.refused),
        "adopted": lambda: sorted(str(k) for k in result.adopted),
    }
    unknown = set(expect) - set(checks)
    assert not unknown, f"{path.name}: unknown expectations {unknown}"
    for name, want in expect.items():
        wanted = {k: sorted(v) for k, v in want.items()} if name == "delete_policies" else want
        assert checks[name]() == wanted, f"{path.name}: {name}"


def test_plan_does_not_change_its_inputs() -> None:
    case = yaml.safe_load((CASES[0].parent / "waves-gated.yaml").read_text())
    desired = _owned(case["desired"])
    before = copy.deepcopy(desired)
    plan(desired, [], Inventory(), Policy(), Trigger.SCHEDULE, "c1", app=APP)
    assert desired == before
