"""Helm charts rendered by Helm's own engine (the Go SDK; ``helm template`` when installed).

The chart under ``tests/data/render/helm/charts/web`` is shaped like the ones teams keep
in Git: helpers, a values file per environment outside the chart, a vendored subchart,
a CRD, hooks (pre-install with ``generateName``, post-upgrade, test), NOTES.txt, and
templates that read ``.Capabilities``.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import RenderError
from reconciler.render import (
    EmptyRender,
    HelmOptions,
    RenderedObject,
    SourceKind,
    detect,
    finalize,
    render,
)
from reconciler.render.helm import helm_binary, helm_message, merge_values, split_template_output
from reconciler.source import GitSource
from tests.gitrepo import git

REPO = Path(__file__).parent / "data" / "render" / "helm"
WEB = "charts/web"
PROD = HelmOptions(
    release_name="shop",
    namespace="prod",
    value_files=("envs/prod/values.yaml",),
    kube_version="v1.31.0",
    api_versions=("monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor"),
)


def files_under(repo: Path, path: str) -> dict[str, bytes]:
    base = repo / path
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def copier(repo: Path) -> Callable[[Path], None]:
    def copy(dest: Path) -> None:
        shutil.copytree(repo, dest, dirs_exist_ok=True, symlinks=True)

    return copy


def render_chart(
    options: HelmOptions | None = None, *, path: str = WEB, repo: Path = REPO
) -> list[RenderedObject]:
    return render(files_under(repo, path), path=path, materialise=copier(repo), helm=options)


def by_name(objects: list[RenderedObject]) -> dict[str, RenderedObject]:
    def name(obj: RenderedObject) -> str:
        meta = obj.manifest["metadata"]
        return str(meta.get("name") or meta["generateName"] + "*")

    return {f"{obj.manifest['kind']}/{name(obj)}": obj for obj in objects}


def test_detected_as_helm() -> None:
    assert detect(files_under(REPO, WEB)) is SourceKind.HELM


def test_chart_renders_as_helm_template_does() -> None:
    objects = render_chart(PROD)
    found = by_name(objects)
    assert sorted(found) == [
        "ConfigMap/shop-web-platform",
        "CustomResourceDefinition/widgets.example.com",
        "Deployment/shop-web",
        "Ingress/shop-web",
        "Job/shop-web-migrate-*",
        "Job/shop-web-notify",
        "Pod/shop-web-test-connection",
        "Service/shop-redis",
        "Service/shop-web",
        "ServiceMonitor/shop-web",
    ]
    # CRDs come first, from crds/; every other object names its template.
    assert objects[0].manifest["kind"] == "CustomResourceDefinition"
    assert objects[0].where == "charts/web/crds/widgets.yaml:1"
    assert found["Deployment/shop-web"].source == "charts/web/templates/deployment.yaml"
    assert found["Service/shop-redis"].source == "charts/web/charts/redis/templates/service.yaml"
    assert found["Job/shop-web-migrate-*"].source == "charts/web/templates/hooks/migrate.yaml"
    deployment = found["Deployment/shop-web"].manifest
    assert deployment["metadata"]["labels"]["helm.sh/chart"] == "web-1.4.0"  # _helpers.tpl
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/web:2.1.1"  # deep-merged over defaults
    assert container["env"] == [{"name": "LOG_LEVEL", "value": "warn"}]
    # Parent values reach the vendored subchart under its name.
    assert found["Service/shop-redis"].manifest["spec"]["ports"] == [{"port": 6380}]


def test_hooks_are_kept_with_their_annotations() -> None:
    found = by_name(render_chart(PROD))
    annotations = {
        name: obj.manifest["metadata"]["annotations"]["helm.sh/hook"]
        for name, obj in found.items()
        if "helm.sh/hook" in (obj.manifest["metadata"].get("annotations") or {})
    }
    assert annotations == {
        "Job/shop-web-migrate-*": "pre-install,pre-upgrade",
        "Job/shop-web-notify": "post-upgrade",
        "Pod/shop-web-test-connection": "test",
    }
    migrate = found["Job/shop-web-migrate-*"].manifest["metadata"]["annotations"]
    assert migrate["helm.sh/hook-weight"] == "-5"


def test_notes_partials_and_empty_templates_are_dropped() -> None:
    sources = {obj.source for obj in render_chart(PROD)}
    assert not any(s.endswith(("NOTES.txt", "_helpers.tpl", "strict.yaml")) for s in sources)


@pytest.mark.parametrize(
    ("env", "replicas", "log_level", "ingress"),
    [("dev", 1, "debug", False), ("prod", 3, "warn", True)],
)
def test_a_values_file_per_environment(
    env: str, replicas: int, log_level: str, ingress: bool
) -> None:
    found = by_name(
        render_chart(HelmOptions(release_name="shop", value_files=(f"envs/{env}/values.yaml",)))
    )
    deployment = found["Deployment/shop-web"].manifest["spec"]
    assert deployment["replicas"] == replicas
    assert deployment["template"]["spec"]["containers"][0]["env"][0]["value"] == log_level
    assert ("Ingress/shop-web" in found) is ingress


def test_inline_values_merge_last_and_deep() -> None:
    options = HelmOptions(
        release_name="shop",
        value_files=("envs/dev/values.yaml", "envs/prod/values.yaml"),
        values={"replicas": 5, "image": {"tag": "2.2.0-rc1"}, "ingress": {"enabled": False}},
    )
    found = by_name(render_chart(options))
    spec = found["Deployment/shop-web"].manifest["spec"]
    assert spec["replicas"] == 5
    image = spec["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.example.com/web:2.2.0-rc1"
    assert "Ingress/shop-web" not in found


@pytest.mark.parametrize(
    ("base", "override", "merged"),
    [
        ({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}, {"a": {"b": 1, "c": 3}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": {"b": 1}}, {"a": "flat"}, {"a": "flat"}),
        ({"a": "flat"}, {"a": {"b": 1}}, {"a": {"b": 1}}),
        ({"a": {"b": 1}}, {"a": None}, {"a": None}),
    ],
)
def test_merge_values_as_helm_merges_value_files(
    base: dict[str, Any], override: dict[str, Any], merged: dict[str, Any]
) -> None:
    before = copy.deepcopy(base)
    assert merge_values(base, override) == merged
    assert base == before


@pytest.mark.parametrize(
    ("kube_version", "api_versions", "sidecars", "monitor"),
    [
        ("v1.29.4", (), "classic", False),
        ("v1.31.0", ("monitoring.coreos.com/v1/ServiceMonitor",), "native", True),
        (None, (), "native", False),  # Helm's own default version is recent
    ],
)
def test_capabilities_come_from_the_cluster(
    kube_version: str | None, api_versions: tuple[str, ...], sidecars: str, monitor: bool
) -> None:
    options = HelmOptions(
        release_name="shop", namespace="edge", kube_version=kube_version,
        api_versions=api_versions,
    )  # fmt: skip
    found = by_name(render_chart(options))
    data = found["ConfigMap/shop-web-platform"].manifest["data"]
    assert data["sidecars"] == sidecars
    assert data["namespace"] == "edge"
    if kube_version:
        assert data["kubeVersion"] == kube_version
    assert ("ServiceMonitor/shop-web" in found) is monitor
    # API versions are added to Helm's built-in set, not put in its place.
    assert "Deployment/shop-web" in found


def test_no_namespace_is_helms_default() -> None:
    found = by_name(render_chart(HelmOptions(release_name="shop")))
    assert found["ConfigMap/shop-web-platform"].manifest["data"]["namespace"] == "default"


def test_skip_crds() -> None:
    kinds = {obj.manifest["kind"] for obj in render_chart(HelmOptions("shop", skip_crds=True))}
    assert "CustomResourceDefinition" not in kinds


def test_chart_without_options_renders_with_helm_templates_release_name() -> None:
    found = by_name(render_chart())
    assert "Deployment/release-name-web" in found


def _chart_copy(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo)
    return repo


def test_dependency_vendored_as_an_archive(tmp_path: Path) -> None:
    repo = _chart_copy(tmp_path)
    charts = repo / WEB / "charts"
    with tarfile.open(charts / "redis-17.3.0.tgz", "w:gz") as archive:
        archive.add(charts / "redis", arcname="redis")
    shutil.rmtree(charts / "redis")
    found = by_name(render_chart(PROD, repo=repo))
    assert found["Service/shop-redis"].manifest["spec"]["ports"] == [{"port": 6380}]
    assert set(found) == set(by_name(render_chart(PROD)))


def test_missing_dependency_names_it(tmp_path: Path) -> None:
    repo = _chart_copy(tmp_path)
    shutil.rmtree(repo / WEB / "charts" / "redis")
    with pytest.raises(RenderError) as err:
        render_chart(PROD, repo=repo)
    assert str(err.value) == (
        "charts/web/Chart.yaml: chart web: dependency redis 17.x is not vendored under "
        "charts/; run helm dependency build and commit charts/"
    )


@pytest.mark.parametrize("engine", ["sdk", "binary"])
def test_missing_dependency_is_refused_alike_by_both_engines(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # the check comes before any helm binary
    with pytest.raises(RenderError, match=r"^charts/needs-deps/Chart\.yaml: chart needs-deps: "):
        render_chart(HelmOptions("shop", engine=engine), path="charts/needs-deps")


def test_invalid_chart_yaml_names_the_chart(tmp_path: Path) -> None:
    repo = _chart_copy(tmp_path)
    (repo / "charts" / "quiet" / "Chart.yaml").write_text("apiVersion: v2\nname: quiet\n")
    with pytest.raises(RenderError, match=r"^charts/quiet: cannot load chart: .*version"):
        render_chart(HelmOptions("shop"), path="charts/quiet", repo=repo)


def test_missing_dependency_of_a_chart_that_never_vendored_it() -> None:
    with pytest.raises(RenderError, match=r"chart needs-deps: dependency postgresql 12\.x is not"):
        render_chart(HelmOptions("shop"), path="charts/needs-deps")


def test_failing_template_names_template_and_line() -> None:
    with pytest.raises(RenderError) as err:
        render_chart(HelmOptions("shop", values={"strict": True}))
    message = str(err.value)
    assert message.startswith("charts/web/templates/strict.yaml:7: "), message
    assert "<.Values.owner.team>" in message
    assert "reconciler-helm-" not in message


def test_fail_in_a_template_names_template_and_line(tmp_path: Path) -> None:
    repo = _chart_copy(tmp_path)
    (repo / WEB / "templates" / "guard.yaml").write_text(
        '{{- if not .Values.image.tag }}\n{{- fail "image.tag is required" }}\n{{- end }}\n'
    )
    with pytest.raises(RenderError) as err:
        render_chart(HelmOptions("shop", values={"image": {"tag": ""}}), repo=repo)
    assert str(err.value) == "charts/web/templates/guard.yaml:2: image.tag is required"


@pytest.mark.parametrize(
    ("value_files", "message"),
    [
        (("envs/staging/values.yaml",),
         r"^envs/staging/values\.yaml: value file not found \(helm\.value_files of charts/web\)$"),
        (("../secrets.yaml",), r"^\.\./secrets\.yaml: value file must be a path inside the repo"),
        (("/etc/hostname",), r"^/etc/hostname: value file must be a path inside the repository"),
    ],
)  # fmt: skip
def test_value_file_errors_name_the_file(value_files: tuple[str, ...], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_chart(HelmOptions("shop", value_files=value_files))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("replicas: 3\nimage: [unclosed\n", r"^envs/prod/values\.yaml:\d+: "),
        ("- replicas\n- 3\n", r"^envs/prod/values\.yaml:1: values must be a mapping, not a list$"),
        ("replicas: 3\n---\nreplicas: 4\n",
         r"^envs/prod/values\.yaml:3: a value file holds one YAML document$"),
    ],
)  # fmt: skip
def test_value_file_content_errors_name_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    repo = _chart_copy(tmp_path)
    (repo / "envs" / "prod" / "values.yaml").write_text(text)
    with pytest.raises(RenderError, match=message):
        render_chart(PROD, repo=repo)


def test_empty_value_file_is_no_values(tmp_path: Path) -> None:
    repo = _chart_copy(tmp_path)
    (repo / "envs" / "prod" / "values.yaml").write_text("# nothing overridden yet\n")
    found = by_name(render_chart(PROD, repo=repo))
    assert found["Deployment/shop-web"].manifest["spec"]["replicas"] == 1


def test_values_schema_violation_names_the_chart() -> None:
    with pytest.raises(RenderError, match=r"^charts/web: values don't meet .*/replicas"):
        render_chart(HelmOptions("shop", values={"replicas": "three"}))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (HelmOptions("Shop_Release"), r"^charts/web: release name 'Shop_Release': "),
        (HelmOptions("shop", kube_version="latest"),
         r"^charts/web: invalid helm options: .*latest"),
        (HelmOptions("shop", engine="kustomize"),
         r"^charts/web: helm\.engine must be one of sdk, binary, not 'kustomize'$"),
    ],
)  # fmt: skip
def test_bad_options(options: HelmOptions, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_chart(options)


def test_helm_options_on_a_path_that_is_no_chart() -> None:
    with pytest.raises(RenderError, match=r"^envs/prod: no Chart\.yaml at the path"):
        render_chart(HelmOptions("shop"), path="envs/prod")


def test_chart_that_renders_nothing_is_an_empty_render() -> None:
    with pytest.raises(EmptyRender, match=r"^charts/quiet: chart quiet rendered no objects"):
        render_chart(HelmOptions("shop"), path="charts/quiet")
    assert render_chart(HelmOptions("shop", values={"enabled": True}), path="charts/quiet")


def test_finalize_accepts_the_generate_name_hook() -> None:
    manifests = finalize(
        render_chart(PROD), app="shop", default_namespace="prod", namespaced=lambda g, k: True
    )
    assert len(manifests) == 10


# -- the binary engine ------------------------------------------------------------------


def test_binary_engine_without_helm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RECONCILER_HELM", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RenderError, match=r"no helm binary is on PATH"):
        render_chart(HelmOptions("shop", engine="binary"))
    assert helm_binary({"RECONCILER_HELM": "/opt/helm"}) == "/opt/helm"


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed")
def test_binary_engine_renders_what_the_sdk_renders() -> None:
    binary = render_chart(dataclasses.replace(PROD, engine="binary"))
    sdk = render_chart(PROD)
    assert sorted(by_name(binary)) == sorted(by_name(sdk))
    assert {o.source for o in binary} == {o.source for o in sdk}


HELM_TEMPLATE_OUTPUT = """\
---
# Source: web/crds/widgets.yaml
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
---
# Source: web/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: shop-web
---
# Source: web/templates/hooks/migrate.yaml
apiVersion: batch/v1
kind: Job
metadata:
  generateName: shop-web-migrate-
"""


def test_split_template_output_by_source_comment() -> None:
    parts = split_template_output(HELM_TEMPLATE_OUTPUT)
    assert [source for source, _ in parts] == [
        "web/crds/widgets.yaml",
        "web/templates/service.yaml",
        "web/templates/hooks/migrate.yaml",
    ]
    assert "name: shop-web\n" in parts[1][1]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Helm v4's SDK
        ('web/templates/deploy.yaml:12:15\n  executing "web/templates/deploy.yaml" at '
         "<.Values.a.b>:\n    nil pointer evaluating interface {}.b",
         'charts/web/templates/deploy.yaml:12: executing "charts/web/templates/deploy.yaml" '
         "at <.Values.a.b>: nil pointer evaluating interface {}.b"),
        ("execution error at (web/templates/deploy.yaml:3:6): boom",
         "charts/web/templates/deploy.yaml:3: boom"),
        ('parse error at (web/templates/_helpers.tpl:4): function "nope" not defined',
         'charts/web/templates/_helpers.tpl:4: function "nope" not defined'),
        ("execution error at (web/charts/redis/templates/svc.yaml:2:3): no port",
         "charts/web/charts/redis/templates/svc.yaml:2: no port"),
        # helm template (Helm v3 wording)
        ('Error: template: web/templates/deploy.yaml:7:20: executing "web/templates/deploy.yaml" '
         'at <required "x" .Values.x>: error calling required: x',
         'charts/web/templates/deploy.yaml:7: executing "charts/web/templates/deploy.yaml" at '
         '<required "x" .Values.x>: error calling required: x'),
        ("Error: YAML parse error on web/templates/cm.yaml: error converting YAML to JSON",
         "charts/web/templates/cm.yaml: error converting YAML to JSON"),
        ("Error: chart requires kubeVersion: >=1.32.0 which is incompatible with Kubernetes "
         "v1.31.0",
         "charts/web: chart requires kubeVersion: >=1.32.0 which is incompatible with "
         "Kubernetes v1.31.0"),
        # a chart named like a folder elsewhere is left alone
        ("execution error at (web/templates/x.yaml:1:1): see other/web/templates/y",
         "charts/web/templates/x.yaml:1: see other/web/templates/y"),
    ],
)  # fmt: skip
def test_helm_messages_start_with_the_template_and_line(raw: str, expected: str) -> None:
    assert helm_message(raw, chart="web", path="charts/web") == expected


def test_helm_message_for_a_chart_at_the_repository_root() -> None:
    raw = "execution error at (web/templates/x.yaml:4:2): boom"
    assert helm_message(raw, chart="web", path="") == "templates/x.yaml:4: boom"


# -- from a Git commit, as the engine renders ---------------------------------------------


def test_chart_from_a_git_commit_with_value_files_outside_the_chart(tmp_path: Path) -> None:
    origin = tmp_path / "origin"
    shutil.copytree(REPO, origin)
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "charts")
    source = GitSource(tmp_path / "cache", timeout=30)
    url = str(origin)
    commit = source.resolve(url, "main")
    files = source.read_tree(url, commit, WEB)
    objects = render(
        files, path=WEB, materialise=lambda d: source.export(url, commit, d), helm=PROD
    )
    assert by_name(objects).keys() == by_name(render_chart(PROD)).keys()
