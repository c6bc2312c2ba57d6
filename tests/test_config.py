"""Tests of the fleet file: table-driven over YAML cases in ``tests/data/config/``.

Each case file starts with comment directives the tests read:
``# expect: TEXT`` (invalid cases: TEXT must appear in the error),
``# warn: TEXT`` (valid cases: a warning containing TEXT is collected),
``# secret: TEXT`` (TEXT must never appear in the error).
"""

from __future__ import annotations

import copy
import json
import pickle
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import main
from reconciler.errors import ConfigError
from reconciler.fleet import (
    Application,
    Cluster,
    ClusterSelector,
    Destination,
    DirectorySource,
    Fleet,
    HelmSource,
    IgnoreRule,
    JsonnetArg,
    JsonnetSource,
    LabelRequirement,
    Operator,
    Source,
    SyncPolicy,
    Target,
    json_schema,
    load_fleet,
    parse_fleet,
    redact_url,
)
from reconciler.model import ObjectKey
from reconciler.yamlio import dump

DATA = Path(__file__).parent / "data" / "config"
INVALID = sorted((DATA / "invalid").glob("*.yaml"))
VALID = sorted((DATA / "valid").glob("*.yaml"))
BASE = "/fleet"


def directives(path: Path) -> dict[str, list[str]]:
    """The ``# name: value`` comment lines at the top of a case file."""
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"# (expect|warn|secret): (.*)", line)
        if match:
            found.setdefault(match.group(1), []).append(match.group(2))
        elif not line.startswith("#"):
            break
    return found


def fleet_of(text: str) -> Fleet:
    return parse_fleet(textwrap.dedent(text), source="fleet.yaml", base_dir=BASE)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        fleet_of(text)
    return str(caught.value)


# --------------------------------------------------------------------------------------
# Case files
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_case_reports_every_expected_problem(case: Path) -> None:
    expected = directives(case)
    assert expected.get("expect"), f"{case.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as caught:
        parse_fleet(case.read_bytes(), source="fleet.yaml", base_dir=str(case.parent))
    message = str(caught.value)
    for text in expected["expect"]:
        assert text in message, f"missing {text!r} in:\n{message}"
    for line in message.splitlines():
        assert line.startswith("fleet.yaml"), f"a line does not name the file: {line!r}"
    for secret in expected.get("secret", []):
        assert secret not in message
    # Each expectation is its own line: problems are listed, not merged.
    assert len(message.splitlines()) >= len(expected["expect"])


@pytest.mark.parametrize("case", VALID, ids=[p.stem for p in VALID])
def test_valid_case_loads_with_expected_warnings(case: Path) -> None:
    fleet = load_fleet(case)
    warnings = directives(case).get("warn", [])
    assert len(fleet.warnings) == len(warnings)
    for text in warnings:
        assert any(text in warning for warning in fleet.warnings), fleet.warnings
    for warning in fleet.warnings:
        assert warning.startswith(str(case))


def test_many_errors_are_reported_together_one_per_line() -> None:
    message = error_of(
        """
        clusters: [{name: A}, {name: b, labels: {x: 1}}]
        applications:
          - {name: web, source: {repo: "ext::x"}, sync: {interval: 6x}}
        """
    )
    assert message.splitlines() == [
        'fleet.yaml: clusters[0] (A): name: "A" is not a DNS-1123 label (lowercase letters, '
        "digits and '-', starting and ending with a letter or digit)",
        'fleet.yaml: clusters[1] (b): labels.x: expected a string, got a number (quote it: "1")',
        'fleet.yaml: applications[0] (web): source.repo: "ext::x": the "ext::" transport form '
        "runs a Git remote helper and is not allowed (use https://, ssh://, git://, file://, "
        "user@host:path or a local path)",
        'fleet.yaml: applications[0] (web): sync.interval: invalid duration "6x" (use 30s, 5m, 1h)',
    ]


# --------------------------------------------------------------------------------------
# Defaults and the model
# --------------------------------------------------------------------------------------


def test_minimal_fleet_fills_every_default() -> None:
    fleet = load_fleet(DATA / "valid" / "minimal.yaml")
    (cluster,) = fleet.clusters
    assert cluster == Cluster(name="kind", context="kind", kubeconfig=None, labels={})
    (app,) = fleet.applications
    assert app.source == Source(repo=str(DATA / "valid" / "repo"), revision="HEAD", path=".")
    assert app.destination == Destination(namespace=None, clusters=ClusterSelector())
    assert app.sync == SyncPolicy(
        automated=True,
        prune=True,
        self_heal=True,
        allow_empty=False,
        create_namespace=True,
        force=True,
        interval_seconds=60.0,
        suspended=False,
    )
    assert app.ignore_differences == ()
    assert fleet.targets(app) == [cluster]
    assert fleet.source_path(app, cluster) == "."


def test_full_fleet() -> None:
    fleet = parse_fleet(
        (DATA / "valid" / "full.yaml").read_text(), source="full.yaml", base_dir="/git/fleet"
    )
    prod = fleet.cluster("prod-eu-1")
    assert prod.context == "ctx-prod-eu-1"
    assert prod.kubeconfig == "~/.kube/prod"  # stored as written, expanded lazily
    assert fleet.cluster("prod-us-1").context == "prod-us-1"

    guestbook = fleet.application("guestbook")
    assert guestbook.source.repo == "https://example.org/org/apps.git"
    assert guestbook.destination.namespace == "guestbook"
    assert guestbook.sync == SyncPolicy(
        automated=False,
        prune=True,
        self_heal=False,
        allow_empty=True,
        create_namespace=False,
        force=False,
        interval_seconds=5400.0,
        suspended=True,
    )
    assert guestbook.ignore_differences == (
        IgnoreRule("apps", "Deployment", "web", "guestbook", ("/spec/replicas",)),
        IgnoreRule("", "ConfigMap", None, None, ("/data/a~1b", "/metadata/annotations/x~0y")),
    )

    # defaults.sync applies where the application says nothing, field by field.
    monitoring = fleet.application("monitoring")
    assert monitoring.sync.interval_seconds == 300.0
    assert monitoring.sync.prune is False
    assert monitoring.sync.self_heal is True
    assert monitoring.source.repo == "/git/repos/platform"
    assert fleet.application("everywhere").source.repo == "git@github.com:org/base.git"


def test_model_values_are_frozen_hashable_and_picklable() -> None:
    fleet = load_fleet(DATA / "valid" / "full.yaml")
    cluster = fleet.clusters[0]
    with pytest.raises(TypeError):
        cluster.labels["env"] = "dev"  # type: ignore[index]
    assert hash(cluster) == hash(copy.deepcopy(cluster))
    assert {app.name for app in fleet.applications} == {app.name for app in {*fleet.applications}}
    assert pickle.loads(pickle.dumps(fleet)) == fleet
    # A plain dict passed in is frozen on the way in.
    assert Cluster("a", "a", None, {"x": "y"}) == Cluster("a", "a", None, {"x": "y"})
    assert hash(Cluster("a", "a", None, {"x": "y"})) == hash(Cluster("a", "a", None, {"x": "y"}))


# --------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------

SELECTED = {
    "all": ["prod-eu-1", "prod-us-1", "staging-eu-1", "bare"],
    "shorthand": ["prod-eu-1"],
    "in-notin": ["staging-eu-1"],
    "exists": ["prod-eu-1"],
    "does-not-exist": ["bare"],
    "names": ["prod-eu-1", "staging-eu-1"],  # file order, not the order of names:
    "nothing": [],
}


@pytest.mark.parametrize(("app", "clusters"), SELECTED.items())
def test_targets_follow_the_selector_in_file_order(app: str, clusters: list[str]) -> None:
    fleet = load_fleet(DATA / "valid" / "selectors.yaml")
    assert [c.name for c in fleet.targets(fleet.application(app))] == clusters


@pytest.mark.parametrize(
    ("operator", "values", "labels", "matches"),
    [
        (Operator.IN, ("a", "b"), {"k": "a"}, True),
        (Operator.IN, ("a", "b"), {"k": "c"}, False),
        (Operator.IN, ("a",), {}, False),
        (Operator.NOT_IN, ("a",), {"k": "b"}, True),
        (Operator.NOT_IN, ("a",), {"k": "a"}, False),
        (Operator.NOT_IN, ("a",), {}, True),  # Kubernetes: an absent label is "not in"
        (Operator.EXISTS, (), {"k": ""}, True),
        (Operator.EXISTS, (), {}, False),
        (Operator.DOES_NOT_EXIST, (), {}, True),
        (Operator.DOES_NOT_EXIST, (), {"k": "a"}, False),
    ],
)
def test_label_requirement(
    operator: Operator, values: tuple[str, ...], labels: dict[str, str], matches: bool
) -> None:
    requirement = LabelRequirement("k", operator, values)
    assert requirement.matches(labels) is matches
    selector = ClusterSelector(match_expressions=(requirement,))
    assert selector.matches(Cluster("c", "c", None, labels)) is matches


def test_selector_corner_cases() -> None:
    cluster = Cluster("c", "c", None, {"env": "prod"})
    assert ClusterSelector().matches(cluster)
    assert not ClusterSelector(names=()).matches(cluster)
    assert ClusterSelector(match_labels={"env": "prod"}).matches(cluster)
    assert not ClusterSelector(match_labels={"env": "prod", "x": "y"}).matches(cluster)
    # An empty matchLabels value matches a label that is present and empty only.
    assert not ClusterSelector(match_labels={"env": ""}).matches(cluster)


def test_ignore_rule_matches_object_keys() -> None:
    rule = IgnoreRule("apps", "Deployment", None, "web", ("/spec/replicas",))
    assert rule.matches(ObjectKey("apps", "Deployment", "web", "api"))
    assert not rule.matches(ObjectKey("apps", "Deployment", "other", "api"))
    assert not rule.matches(ObjectKey("", "Deployment", "web", "api"))


# --------------------------------------------------------------------------------------
# Path templates
# --------------------------------------------------------------------------------------

TEMPLATE_FLEET = """
clusters:
  - {name: prod-eu-1, labels: {env: prod, topology.kubernetes.io/region: eu-west}}
  - {name: dev, labels: {env: dev, topology.kubernetes.io/region: local}}
applications:
  - name: app
    source: {repo: /srv/x, path: "%s"}
"""


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (".", {"prod-eu-1": ".", "dev": "."}),
        ("./apps/", {"prod-eu-1": "apps", "dev": "apps"}),
        ("envs/{{ cluster.labels.env }}", {"prod-eu-1": "envs/prod", "dev": "envs/dev"}),
        ("{{cluster.name}}", {"prod-eu-1": "prod-eu-1", "dev": "dev"}),
        (
            "r/{{  cluster.labels.topology.kubernetes.io/region  }}/{{ cluster.name }}.d",
            {"prod-eu-1": "r/eu-west/prod-eu-1.d", "dev": "r/local/dev.d"},
        ),
        ("a/../b/./{{ cluster.name }}", {"prod-eu-1": "b/prod-eu-1", "dev": "b/dev"}),
    ],
)
def test_source_path_renders_per_cluster(template: str, expected: dict[str, str]) -> None:
    fleet = fleet_of(TEMPLATE_FLEET % template)
    app = fleet.application("app")
    assert {c.name: fleet.source_path(app, c) for c in fleet.targets(app)} == expected


def test_source_path_unknown_label_names_application_cluster_and_label() -> None:
    app = Application("web", Source("/srv/x", "HEAD", "overlays/{{ cluster.labels.env }}"))
    cluster = Cluster("edge-1", "edge-1", None, {"region": "eu"})
    fleet = Fleet(clusters=(cluster,), applications=(app,), path="fleet.yaml")
    with pytest.raises(ConfigError) as caught:
        fleet.source_path(app, cluster)
    assert str(caught.value) == (
        'fleet.yaml: applications[0] (web): source.path: cluster "edge-1" has no label "env" '
        '(used in "overlays/{{ cluster.labels.env }}")'
    )


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("/abs/{{ cluster.name }}", "is absolute"),
        ("a/{{ cluster.labels.env }}/../..", "leaves the repository"),  # env is empty below
        ("{{ cluster.labels.env }}/x", "is absolute"),
        ("..", "leaves the repository"),
    ],
)
def test_source_path_stays_inside_the_repository(template: str, problem: str) -> None:
    app = Application("web", Source("/srv/x", "HEAD", template))
    cluster = Cluster("c", "c", None, {"env": ""})
    fleet = Fleet(clusters=(cluster,), applications=(app,), path="fleet.yaml")
    with pytest.raises(ConfigError, match=problem):
        fleet.source_path(app, cluster)


def test_escape_through_an_empty_label_is_refused_at_load_time() -> None:
    message = error_of(
        """
        clusters: [{name: c, labels: {env: ""}}]
        applications:
          - {name: web, source: {repo: /srv/x, path: "a/{{ cluster.labels.env }}/../.."}}
        """
    )
    assert message == (
        'fleet.yaml: applications[0] (web): source.path: on cluster "c": "a//../.." '
        "leaves the repository"
    )


def test_missing_labels_are_grouped_per_label() -> None:
    clusters = ", ".join(f"{{name: c{i}}}" for i in range(8))
    message = error_of(
        f"""
        clusters: [{clusters}]
        applications:
          - {{name: web, source: {{repo: /srv/x, path: "{{{{ cluster.labels.env }}}}"}}}}
        """
    )
    assert message == (
        'fleet.yaml: applications[0] (web): source.path: label "env" used in '
        '"{{ cluster.labels.env }}" is missing on clusters "c0", "c1", "c2", "c3", "c4" '
        "and 3 more"
    )


# --------------------------------------------------------------------------------------
# Durations, repositories, lookups
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("90", 90.0),
        (90, 90.0),
        (7.5, 7.5),
        ("5000ms", 5.0),
        ("2m30s500ms", 150.5),
    ],
)
def test_interval_durations(interval: object, seconds: float) -> None:
    text = f"""
        clusters: []
        applications:
          - {{name: a, source: {{repo: /srv/x}}, sync: {{interval: {dump(interval).split()[0]}}}}}
        """
    assert fleet_of(text).applications[0].sync.interval_seconds == seconds


@pytest.mark.parametrize(
    ("interval", "problem"),
    [
        ("6x", 'invalid duration "6x" (use 30s, 5m, 1h)'),
        ("4s", "is below the minimum of 5s"),
        ("4999ms", "is below the minimum of 5s"),
        (".inf", "is above the maximum"),
        ("-.inf", "is below the minimum"),
        (".nan", 'invalid duration "nan"'),
        ("9" * 400, "is above the maximum"),
        ("1000h", "is above the maximum of 720h"),
        ("1 h", 'invalid duration "1 h"'),
        ("[30s]", "expected a duration such as 30s, 5m or 1h, got a list"),
    ],
)
def test_invalid_intervals(interval: str, problem: str) -> None:
    message = error_of(
        f"""
        clusters: []
        applications:
          - {{name: a, source: {{repo: /srv/x}}, sync: {{interval: {interval}}}}}
        """
    )
    assert message.startswith("fleet.yaml: applications[0] (a): sync.interval: ")
    assert problem in message


@pytest.mark.parametrize(
    ("repo", "stored"),
    [
        ("https://github.com/org/repo.git", "https://github.com/org/repo.git"),
        ("http://git.local/repo", "http://git.local/repo"),
        ("ssh://git@github.com:22/org/repo.git", "ssh://git@github.com:22/org/repo.git"),
        ("git://git.local/repo", "git://git.local/repo"),
        ("file:///srv/git/repo.git", "file:///srv/git/repo.git"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("github.com:org/repo.git", "github.com:org/repo.git"),
        ("/srv/git/repo", "/srv/git/repo"),
        ("repos/apps", "/fleet/repos/apps"),
        ("./apps/../apps2", "/fleet/apps2"),
        ("../shared", "/shared"),
        ("~/src/apps", "~/src/apps"),
    ],
)
def test_allowed_repositories(repo: str, stored: str) -> None:
    text = f"""
        clusters: []
        applications: [{{name: a, source: {{repo: "{repo}"}}}}]
        """
    assert fleet_of(text).applications[0].source.repo == stored


def test_credentials_are_refused_and_never_echoed() -> None:
    message = error_of(
        """
        clusters: []
        applications:
          - {name: a, source: {repo: "https://bot:ghp_TOKEN123@github.com/org/repo.git"}}
        """
    )
    assert "ghp_TOKEN123" not in message
    assert "bot" not in message
    assert message == (
        'fleet.yaml: applications[0] (a): source.repo: "https://***@github.com/org/repo.git": '
        "credentials must not be written in the fleet file (use a Git credential helper, "
        "an SSH key or a mounted secret)"
    )


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("https://user:pw@host/repo.git", "https://***@host/repo.git"),
        ("https://token@host/repo.git", "https://***@host/repo.git"),
        ("https://u:p@ss@host/x", "https://***@host/x"),
        ("https://host/repo.git", "https://host/repo.git"),
        ("ssh://git@host:22/repo", "ssh://git@host:22/repo"),
        ("ssh://git:pw@host:22/repo", "ssh://***@host:22/repo"),
        ("HTTPS://tok@host/x", "HTTPS://***@host/x"),
        ("git@host:org/repo", "git@host:org/repo"),
        ("user:pw@host:org/repo", "***@host:org/repo"),
        ("/srv/git/repo", "/srv/git/repo"),
        ("https://host/a@b", "https://host/a@b"),
        ("", ""),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_unknown_names_suggest_close_ones() -> None:
    fleet = load_fleet(DATA / "valid" / "selectors.yaml")
    with pytest.raises(
        ConfigError, match=r'unknown cluster "prod-eu-2" \(did you mean "prod-eu-1"'
    ):
        fleet.cluster("prod-eu-2")
    with pytest.raises(ConfigError, match=r'unknown application "xyz" \(known: all, shorthand'):
        fleet.application("xyz")
    with pytest.raises(ConfigError, match=r'unknown application "nothng" \(did you mean "nothing"'):
        fleet.application("nothng")
    assert str(fleet.path).endswith("selectors.yaml")


def test_load_fleet_resolves_relative_repositories_and_reports_missing_files(
    tmp_path: Path,
) -> None:
    (tmp_path / "fleet.yaml").write_text(
        "clusters: [{name: a}]\napplications: [{name: x, source: {repo: apps}}]\n"
    )
    fleet = load_fleet(tmp_path / "fleet.yaml")
    assert fleet.applications[0].source.repo == str(tmp_path / "apps")
    assert fleet.path == str(tmp_path / "fleet.yaml")
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the fleet file"):
        load_fleet(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------------------
# Fingerprint and round trip
# --------------------------------------------------------------------------------------


def test_round_trip_through_to_dict() -> None:
    for case in VALID:
        fleet = load_fleet(case)
        again = parse_fleet(fleet.to_yaml(), source="again.yaml", base_dir="/elsewhere")
        assert again.clusters == fleet.clusters
        assert again.applications == fleet.applications
        assert again.projects == fleet.projects
        assert again.fingerprint() == fleet.fingerprint()


def test_fingerprint_ignores_form_and_follows_content() -> None:
    short = fleet_of(
        """
        clusters: [{name: a}]
        applications: [{name: x, source: {repo: /srv/x}}]
        """
    )
    spelled_out = fleet_of(
        """
        # Same fleet, every default written, different layout.
        clusters:
          - name: a
            context: a
            labels: {}
        applications:
          - name: x
            source: {repo: /srv/x, revision: HEAD, path: .}
            destination: {clusters: {}}
            sync: {interval: 1m, prune: true}
        """
    )
    changed = fleet_of(
        """
        clusters: [{name: a}]
        applications: [{name: x, source: {repo: /srv/x}, sync: {interval: 2m}}]
        """
    )
    assert re.fullmatch(r"[0-9a-f]{64}", short.fingerprint())
    assert short.fingerprint() == short.fingerprint()
    assert changed.fingerprint() != short.fingerprint()
    # Spelled-out defaults, "1m" for 60 seconds and {} for "every cluster" change nothing.
    assert spelled_out.fingerprint() == short.fingerprint()
    assert spelled_out == short


# --------------------------------------------------------------------------------------
# Only ConfigError ever escapes
# --------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=30,
)
words = st.sampled_from(
    ["a", "prod", "Prod", "-x", "", "ext::sh", "https://u:p@h/r", "{{ cluster.name }}",
     "{{ cluster.labels.env }}", "../..", "/abs", "30s", "6x", "In", "Exists", "/spec",
     "~2", "names", "matchLabels", "env"]
)  # fmt: skip
leaves = words | json_values


def _shaped(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), leaves, max_size=len(keys))


fleet_like = st.fixed_dictionaries(
    {
        "clusters": st.lists(
            st.fixed_dictionaries(
                {"name": leaves},
                optional={"labels": st.dictionaries(words, leaves, max_size=3), "context": leaves},
            ),
            max_size=4,
        ),
        "applications": st.lists(
            st.fixed_dictionaries(
                {"name": leaves, "source": _shaped(["repo", "revision", "path"]) | leaves},
                optional={
                    "destination": st.fixed_dictionaries(
                        {},
                        optional={
                            "namespace": leaves,
                            "clusters": _shaped(["names", "matchLabels", "matchExpressions", "env"])
                            | leaves,
                        },
                    ),
                    "sync": _shaped(["automated", "prune", "interval", "selfHeal"]) | leaves,
                    "ignoreDifferences": st.lists(
                        _shaped(["group", "kind", "name", "jsonPointers"]), max_size=2
                    )
                    | leaves,
                },
            ),
            max_size=4,
        ),
    },
    optional={"defaults": st.fixed_dictionaries({}, optional={"sync": leaves})},
)


def _only_config_errors(text: str | bytes) -> None:
    try:
        fleet = parse_fleet(text, source="fleet.yaml", base_dir=BASE)
    except ConfigError as exc:
        assert all(line.startswith("fleet.yaml") for line in str(exc).splitlines())
        return
    fleet.fingerprint()
    for app in fleet.applications:
        for cluster in fleet.targets(app):
            fleet.source_path(app, cluster)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300) | st.binary(max_size=100))
def test_arbitrary_text_raises_only_config_error(text: str | bytes) -> None:
    _only_config_errors(text)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_structures_raise_only_config_error(data: object) -> None:
    _only_config_errors(dump(data))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleet_like)
def test_fleet_shaped_structures_raise_only_config_error(data: dict[str, Any]) -> None:
    _only_config_errors(dump(data))


# --------------------------------------------------------------------------------------
# Renderers, wave timeouts and targets
# --------------------------------------------------------------------------------------


def test_renderer_fields() -> None:
    fleet = load_fleet(DATA / "valid" / "renderers.yaml")
    web = fleet.application("web")
    assert web.source.helm == HelmSource(
        release_name="web-frontend",
        value_files=(
            "values.yaml", "values-{{ cluster.labels.env }}.yaml", "../common/values.yaml"
        ),
        values={"replicaCount": 2, "image": {"tag": "1.2.3"}, "hosts": ["a.example.org"]},
        skip_crds=True,
        engine="binary",
    )
    assert web.source.jsonnet is None and web.source.directory is None
    assert web.sync.wave_timeout_seconds == 90.0
    defaults = fleet.application("web-defaults")
    assert defaults.source.helm == HelmSource(None, (), {}, False, "sdk")
    assert defaults.sync.wave_timeout_seconds == 120.0  # from defaults.sync
    dashboards = fleet.application("dashboards").source.jsonnet
    assert dashboards == JsonnetSource(
        tlas={"name": JsonnetArg("web"), "replicas": JsonnetArg("2", code=True)},
        ext_vars={"env": JsonnetArg("prod"), "debug": JsonnetArg("false", code=True)},
        libs=("vendor", "lib"),
    )
    assert fleet.application("plain").source.directory == DirectorySource(
        recurse=False, include="*.yaml", exclude="test/*"
    )
    assert DirectorySource() == DirectorySource(recurse=True, include=None, exclude=None)
    assert SyncPolicy().wave_timeout_seconds == 300.0


def test_values_with_maps_stay_hashable_and_picklable() -> None:
    fleet = load_fleet(DATA / "valid" / "renderers.yaml")
    assert len({*fleet.applications}) == len(fleet.applications)
    again = pickle.loads(pickle.dumps(fleet))
    assert again == fleet
    assert hash(again.application("web")) == hash(fleet.application("web"))
    target = fleet.target("web", "dev-eu-1")
    assert pickle.loads(pickle.dumps(target)) == target
    assert hash(target) == hash(copy.deepcopy(target))


@pytest.mark.parametrize(
    ("app", "cluster", "path", "value_files"),
    [
        ("web", "prod-eu-1", "charts/web",
         ("charts/web/values.yaml", "charts/web/values-prod.yaml", "charts/common/values.yaml")),
        ("web", "dev-eu-1", "charts/web",
         ("charts/web/values.yaml", "charts/web/values-dev.yaml", "charts/common/values.yaml")),
        ("dashboards", "dev-eu-1", "dashboards/dev-eu-1", ()),
        ("plain", "prod-eu-1", "", ()),  # the repository root
    ],
)  # fmt: skip
def test_target_fills_the_templates_for_its_cluster(
    app: str, cluster: str, path: str, value_files: tuple[str, ...]
) -> None:
    fleet = load_fleet(DATA / "valid" / "renderers.yaml")
    target = fleet.target(app, cluster)
    assert target == Target(fleet.application(app), fleet.cluster(cluster), path, value_files)
    assert target.name == f"{app}/{cluster}"
    assert fleet.source_path(target.app, target.cluster) == (path or ".")


def test_target_errors_name_the_file_the_entry_and_the_field() -> None:
    helm = HelmSource(value_files=("values.yaml", "values-{{ cluster.labels.env }}.yaml"))
    app = Application("web", Source("/srv/x", "HEAD", "charts/web", helm=helm))
    only_eu = Application(
        "eu", Source("/srv/x"), Destination(clusters=ClusterSelector(match_labels={"r": "eu"}))
    )
    cluster = Cluster("edge-1", "edge-1", None, {"region": "eu"})
    fleet = Fleet(clusters=(cluster,), applications=(only_eu, app), path="fleet.yaml")
    with pytest.raises(ConfigError) as caught:
        fleet.target("web", "edge-1")
    assert str(caught.value) == (
        'fleet.yaml: applications[1] (web): source.helm.valueFiles[1]: cluster "edge-1" has '
        'no label "env" (used in "values-{{ cluster.labels.env }}.yaml")'
    )
    with pytest.raises(ConfigError, match=r'^fleet.yaml: unknown application "wbe" \(did you'):
        fleet.target("wbe", "edge-1")
    with pytest.raises(ConfigError, match=r'^fleet.yaml: unknown cluster "edge-2" \(did you'):
        fleet.target("web", "edge-2")
    with pytest.raises(ConfigError) as caught:
        fleet.target("eu", "edge-1")
    assert str(caught.value) == (
        'fleet.yaml: applications[0] (eu): destination.clusters: does not select cluster "edge-1"'
    )


def test_renderers_are_one_of_three() -> None:
    message = error_of(
        """
        clusters: []
        applications:
          - {name: a, source: {repo: /srv/x, jsonnet: {}, directory: {}, helm: {}}}
        """
    )
    assert message == (
        "fleet.yaml: applications[0] (a): source: helm and jsonnet and directory cannot be "
        "combined (use one of helm, jsonnet, directory)"
    )


# --------------------------------------------------------------------------------------
# JSON Schema
# --------------------------------------------------------------------------------------

_ANNOTATIONS = {"$schema", "$defs", "title", "description", "default"}


def schema_problems(value: object, schema: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """The keywords of JSON Schema that ``reconciler schema`` uses, and only those.

    jsonschema is not installed here; a keyword this does not know fails the test, so the
    schema cannot grow a rule the tests silently skip.
    """
    unknown = set(schema) - _ANNOTATIONS - {
        "$ref", "anyOf", "type", "enum", "pattern", "properties", "required",
        "additionalProperties", "items",
    }  # fmt: skip
    assert not unknown, f"schema keywords not understood by the test: {unknown}"
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return schema_problems(value, root["$defs"][name], root)
    if "anyOf" in schema:
        tried = [schema_problems(value, option, root) for option in schema["anyOf"]]
        return [] if any(not problems for problems in tried) else [p for t in tried for p in t]
    kinds = {
        "string": str, "boolean": bool, "object": dict, "array": list, "null": type(None),
        "number": (int, float),
    }  # fmt: skip
    if "type" in schema:
        wanted = kinds[schema["type"]]
        if not isinstance(value, wanted) or (isinstance(value, bool) and wanted is not bool):
            return [f"{value!r} is not of type {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{value!r} is not one of {schema['enum']}"]
    if "pattern" in schema and not re.search(schema["pattern"], str(value)):
        return [f"{value!r} does not match {schema['pattern']}"]
    problems: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        problems += [f"{key} is required" for key in schema.get("required", ()) if key not in value]
        for key, item in value.items():
            if key in properties:
                problems += schema_problems(item, properties[key], root)
            elif schema.get("additionalProperties") is False:
                problems.append(f"{key}: additional property")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += schema_problems(item, schema["additionalProperties"], root)
    if isinstance(value, list) and "items" in schema:
        for item in value:
            problems += schema_problems(item, schema["items"], root)
    return problems


def _documents() -> list[tuple[str, Any]]:
    cases = [(case.name, yaml.safe_load(case.read_text())) for case in VALID]
    return cases + [(f"{case.name} normalised", load_fleet(case).to_dict()) for case in VALID]


@pytest.mark.parametrize(("name", "document"), _documents(), ids=[n for n, _ in _documents()])
def test_schema_accepts_every_valid_case_and_the_normalised_form(
    name: str, document: Any
) -> None:
    schema = json_schema()
    assert schema_problems(document, schema, schema) == []


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"applicatons": []}, "applicatons: additional property"),
        ({"clusters": [{"name": "a", "lables": {}}]}, "lables: additional property"),
        ({"applications": [{"name": "a", "source": {"repo": "/x", "helm": {"skipCrd": True}}}]},
         "skipCrd: additional property"),
        ({"applications": [{"name": "a", "source": {"repo": "/x"}, "sync": {"self_heal": True}}]},
         "self_heal: additional property"),
        ({"applications": [{"name": "a"}]}, "source is required"),
        ({"applications": [{"name": "a", "source": {"repo": "/x"}, "sync": {"interval": "6x"}}]},
         "does not match"),
    ],
)  # fmt: skip
def test_schema_refuses_unknown_fields(document: dict[str, Any], problem: str) -> None:
    schema = json_schema()
    problems = schema_problems(document, schema, schema)
    assert any(problem in p for p in problems), problems


def test_schema_uses_the_file_names_and_describes_every_field() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    sync = schema["$defs"]["SyncPolicy"]
    assert {"selfHeal", "allowEmpty", "interval", "waveTimeout"} <= set(sync["properties"])
    helm = schema["$defs"]["HelmSource"]["properties"]
    assert {"releaseName", "valueFiles", "values", "skipCrds", "engine"} == set(helm)
    for name, definition in [("(root)", schema), *schema["$defs"].items()]:
        if definition.get("type") != "object":
            continue
        assert definition["additionalProperties"] is False, name
        for key, prop in definition["properties"].items():
            assert prop.get("description"), f"{name}.{key} has no description"


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_schema_command_prints_the_schema(
    output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "-o", output]) == 0
    printed = capsys.readouterr().out
    assert (json.loads(printed) if output == "json" else yaml.safe_load(printed)) == json_schema()
