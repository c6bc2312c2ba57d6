"""What every source kind shares: detection, explicit options, empty renders, generateName."""

from __future__ import annotations

import pytest

from reconciler.errors import RenderError
from reconciler.render import (
    RENDERERS,
    DirectoryOptions,
    EmptyRender,
    HelmOptions,
    JsonnetOptions,
    RenderedObject,
    SourceKind,
    detect,
    finalize,
    render,
    render_plain,
)

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
JSONNET_CM = b"{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'from-jsonnet'}}"


@pytest.mark.parametrize(
    ("names", "kind"),
    [
        (["kustomization.yaml", "deployment.yaml"], SourceKind.KUSTOMIZE),
        (["kustomization.yml"], SourceKind.KUSTOMIZE),
        (["Kustomization"], SourceKind.KUSTOMIZE),
        (["Chart.yaml", "values.yaml", "templates/deployment.yaml"], SourceKind.HELM),
        (["Chart.yaml", "kustomization.yaml"], SourceKind.KUSTOMIZE),  # Argo CD's precedence
        (["main.jsonnet", "lib.libsonnet"], SourceKind.JSONNET),
        (["Chart.yaml", "main.jsonnet"], SourceKind.HELM),
        (["lib.libsonnet", "deployment.yaml"], SourceKind.DIRECTORY),
        (["sub/Chart.yaml", "sub/kustomization.yaml", "sub/a.jsonnet"], SourceKind.DIRECTORY),
        (["chart.yaml"], SourceKind.DIRECTORY),
        ([], SourceKind.DIRECTORY),
    ],
)
def test_detect(names: list[str], kind: SourceKind) -> None:
    assert detect(dict.fromkeys(names, b"")) is kind


def test_every_kind_has_a_renderer() -> None:
    assert set(RENDERERS) == set(SourceKind)


def test_explicit_options_override_detection() -> None:
    files = {
        "kustomization.yaml": b"resources: [a.yaml]\n",
        "a.yaml": CM.format(name="a").encode(),
        "main.jsonnet": JSONNET_CM,
    }
    assert detect(files) is SourceKind.KUSTOMIZE
    jsonnet = render(files, path="apps/x", jsonnet=JsonnetOptions())
    assert [o.manifest["metadata"]["name"] for o in jsonnet] == ["from-jsonnet"]
    plain = render(files, path="apps/x", directory=DirectoryOptions(exclude="kustomization.*"))
    assert [o.manifest["metadata"]["name"] for o in plain] == ["a"]


def test_options_for_two_kinds_are_refused() -> None:
    with pytest.raises(RenderError, match=r"^apps/x: options for helm and jsonnet given"):
        render({}, path="apps/x", helm=HelmOptions("x"), jsonnet=JsonnetOptions())


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, r"^apps/x: no manifests found"),
        ({"kustomization.yaml": b"resources: []\n"},
         r"^apps/x/kustomization\.yaml: kustomize built no objects$"),
        ({"main.jsonnet": b"[]"}, r"^apps/x: Jsonnet rendered no objects"),
        ({"Chart.yaml": b"apiVersion: v2\nname: none\nversion: 0.1.0\n"},
         r"^apps/x: chart none rendered no objects"),
    ],
)  # fmt: skip
def test_no_object_is_an_empty_render_for_every_kind(files: dict[str, bytes], message: str) -> None:
    with pytest.raises(EmptyRender, match=message) as err:
        render(files, path="apps/x")
    assert isinstance(err.value, RenderError)


def test_options_are_immutable_values() -> None:
    values = {"a": 1}
    options = HelmOptions("x", values=values, value_files=["a.yaml"])  # type: ignore[arg-type]
    values["a"] = 2
    assert options.values["a"] == 1
    assert options.value_files == ("a.yaml",)
    with pytest.raises(TypeError):
        options.values["b"] = 3  # type: ignore[index]
    assert HelmOptions("x") == HelmOptions("x")


# -- generateName -------------------------------------------------------------------------


def generated(annotations: str = "") -> str:
    return "apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: migrate-\n" + (
        f"  annotations: {{{annotations}}}\n" if annotations else ""
    )


def namespaced(group: str, kind: str) -> bool | None:
    return True


def finalized(*texts: str) -> list[dict[str, object]]:
    files = {f"{i}.yaml": text.encode() for i, text in enumerate(texts)}
    return finalize(
        render_plain(files), app="shop", default_namespace="shop", namespaced=namespaced
    )


def test_generate_name_without_a_hook_is_refused() -> None:
    with pytest.raises(RenderError) as err:
        finalized(generated())
    assert str(err.value) == (
        "0.yaml:1: Job/migrate-*: has no metadata.name (generateName is allowed only for hooks)"
    )


@pytest.mark.parametrize(
    "annotation",
    [
        "reconciler.dev/hook: PreSync",
        "argocd.argoproj.io/hook: PreSync",
        "helm.sh/hook: pre-install",
    ],
)
def test_generate_name_is_allowed_for_hooks_and_skips_the_duplicate_check(
    annotation: str,
) -> None:
    manifests = finalized(generated(annotation), generated(annotation))
    assert [m["metadata"]["generateName"] for m in manifests] == ["migrate-", "migrate-"]  # type: ignore[index]
    assert all(m["metadata"]["namespace"] == "shop" for m in manifests)  # type: ignore[index]


def test_name_wins_over_generate_name() -> None:
    text = CM.format(name="a") + "  generateName: a-\n"
    with pytest.raises(RenderError, match=r"duplicate object"):
        finalized(text, text)


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ("{generateName: 3}", r"^0\.yaml:1: document 1: metadata\.generateName must be a string$"),
        ("{generateName: ''}", r"^0\.yaml:1: document 1 has no metadata\.name$"),
        ("{annotations: {helm.sh/hook: test}}", r"^0\.yaml:1: document 1 has no metadata\.name$"),
    ],
)  # fmt: skip
def test_an_object_needs_a_name_or_a_generate_name(metadata: str, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        finalized(f"apiVersion: v1\nkind: Pod\nmetadata: {metadata}\n")


def test_rendered_object_keeps_its_fields() -> None:
    obj = RenderedObject({"kind": "X"}, "a.yaml", 3, 0)
    assert obj.where == "a.yaml:3"
