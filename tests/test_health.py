"""Health rules, driven by the YAML cases in ``tests/data/health`` (one object per file).

Each file holds ``object`` (a live object as the API server returns it, or null for an
absent one) and ``expect`` (``status`` and a ``message_contains`` fragment), in the manner
of gitops-engine's ``pkg/health/testdata``: adding a case is adding a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.health import HEALTH_RULES, HealthResult, aggregate, health_of
from reconciler.model import HEALTH_ORDER, Health
from reconciler.yamlio import load_documents

CASES = sorted((Path(__file__).parent / "data" / "health").glob("*.yaml"))


def load_case(path: Path) -> dict[str, Any]:
    """The single document of a case file, checked for the keys the test relies on."""
    (document,) = load_documents(path.read_text(), source=str(path))
    case: dict[str, Any] = document.data
    assert set(case) == {"object", "expect"}, f"{path.name}: needs exactly object and expect"
    return case


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_health_case(path: Path) -> None:
    case = load_case(path)
    result = health_of(case["object"])
    expected = case["expect"]
    assert result.status == Health(expected["status"]), result.message
    assert expected["message_contains"] in result.message


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_every_result_has_a_message(path: Path) -> None:
    assert health_of(load_case(path)["object"]).message.strip()


def test_result_is_immutable() -> None:
    result = HealthResult(Health.HEALTHY, "fine")
    with pytest.raises(AttributeError):
        result.status = Health.DEGRADED  # type: ignore[misc]


def test_every_status_in_the_cases() -> None:
    """The table exercises every status the rules can give except Unknown."""
    seen = {health_of(load_case(path)["object"]).status for path in CASES}
    assert seen >= set(Health) - {Health.UNKNOWN}


def test_pod_in_unknown_phase_is_unknown() -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Unknown"}}
    assert health_of(pod).status is Health.UNKNOWN


def test_dispatch_uses_the_group() -> None:
    """A custom ``Deployment`` is judged by its conditions, not by replica counters."""
    custom = {
        "apiVersion": "example.com/v1",
        "kind": "Deployment",
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert health_of(custom).status is Health.HEALTHY
    builtin = {**custom, "apiVersion": "apps/v1"}
    assert health_of(builtin).status is Health.PROGRESSING


def _result(status: Health) -> HealthResult:
    return HealthResult(status, status.value)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], Health.HEALTHY),
        ([Health.HEALTHY, Health.HEALTHY], Health.HEALTHY),
        ([Health.HEALTHY, Health.SUSPENDED], Health.SUSPENDED),
        ([Health.SUSPENDED, Health.PROGRESSING, Health.HEALTHY], Health.PROGRESSING),
        ([Health.PROGRESSING, Health.MISSING], Health.MISSING),
        ([Health.DEGRADED, Health.MISSING, Health.PROGRESSING], Health.DEGRADED),
        ([Health.HEALTHY, Health.UNKNOWN, Health.DEGRADED], Health.UNKNOWN),
    ],
    ids=lambda value: "-".join(s.value for s in value) if isinstance(value, list) else None,
)
def test_aggregate_is_worst_of(statuses: list[Health], expected: Health) -> None:
    assert aggregate(_result(status) for status in statuses) is expected


def test_aggregate_follows_health_order_for_every_pair() -> None:
    for better_index, better in enumerate(HEALTH_ORDER):
        for worse in HEALTH_ORDER[better_index:]:
            assert aggregate([_result(better), _result(worse)]) is worse
            assert aggregate([_result(worse), _result(better)]) is worse


def test_aggregate_of_case_files() -> None:
    results = [health_of(load_case(path)["object"]) for path in CASES]
    assert aggregate(results) is Health.DEGRADED
    healthy = [r for r in results if r.status is Health.HEALTHY]
    assert aggregate(healthy) is Health.HEALTHY


# --- robustness: live status blocks are written by controllers we do not own -----------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
#: Field names the rules read, so generated objects reach past the first missing key.
_FIELD_NAMES = """
    replicas updatedReplicas availableReplicas readyReplicas paused observedGeneration
    generation conditions type status reason message phase containerStatuses
    initContainerStatuses state waiting terminated exitCode name restartPolicy updateStrategy
    rollingUpdate partition currentRevision updateRevision desiredNumberScheduled
    updatedNumberScheduled numberAvailable suspend loadBalancer ingress ip hostname
    deletionTimestamp volumeName schedule
"""
KNOWN_FIELDS = st.sampled_from(_FIELD_NAMES.split())
#: Values the rules compare against, so generated objects take the interesting branches.
_VALUE_WORDS = """
    True False Unknown Ready Available Complete Failed Established NamesAccepted
    ReplicaFailure Progressing ProgressDeadlineExceeded AbleToScale ScalingActive
    FailedGetScale ScalingDisabled Running Pending Succeeded Bound Lost OnDelete LoadBalancer
    CrashLoopBackOff Always Never Terminating
"""
CONDITION_VALUES = st.sampled_from(_VALUE_WORDS.split())
SHAPED = st.recursive(
    JSON | CONDITION_VALUES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(KNOWN_FIELDS, children, max_size=5)
    ),
    max_leaves=30,
)
KNOWN = sorted(HEALTH_RULES)


@st.composite
def live_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A dict whose kind has a rule, with arbitrary (often nonsensical) contents."""
    group, kind = draw(st.sampled_from(KNOWN))
    obj: dict[str, Any] = draw(st.dictionaries(st.text(max_size=8), JSON, max_size=3))
    obj["kind"] = kind
    obj["apiVersion"] = f"{group}/v1" if group else "v1"
    for part in ("metadata", "spec", "status"):
        if draw(st.booleans()):
            obj[part] = draw(SHAPED)
    return obj


@settings(max_examples=400, deadline=None)
@given(live_objects())
def test_health_of_never_raises(obj: dict[str, Any]) -> None:
    result = health_of(obj)
    assert isinstance(result.status, Health)
    assert result.message


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON, max_size=6))
def test_health_of_arbitrary_dicts_never_raises(obj: dict[str, Any]) -> None:
    assert isinstance(health_of(obj).status, Health)
