"""Rendering: plain trees (pure tables), kustomize via the real kubectl, and finalize."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import RenderError
from reconciler.model import APP_LABEL, MANAGED_BY_LABEL
from reconciler.render import RenderedObject, finalize, render, render_plain
from reconciler.render.kustomize import kubectl_binary
from reconciler.source import GitSource
from tests.gitrepo import git

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


def _tree(files: dict[str, str]) -> dict[str, bytes]:
    return {name: text.encode() for name, text in files.items()}


def _names(objects: list[RenderedObject]) -> list[str]:
    return [obj.manifest["metadata"]["name"] for obj in objects]


# -- plain ------------------------------------------------------------------------------


def test_plain_tree_nested_hidden_multidoc_json_and_list() -> None:
    files = _tree(
        {
            "b.yaml": CM.format(name="b1") + "---\n" + CM.format(name="b2") + "---\n",
            "a/nested/deep.yml": CM.format(name="deep"),
            "c.json": '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "js"}}',
            ".hidden/x.yaml": CM.format(name="hidden"),
            "a/.secret.yaml": CM.format(name="hidden2"),
            "README.md": "not yaml",
            "list.yaml": (
                "apiVersion: v1\nkind: List\nitems:\n"
                "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: l1}\n"
                "- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: l2}\n"
            ),
        }
    )
    objects = render_plain(files, base="apps/web")
    assert _names(objects) == ["deep", "b1", "b2", "js", "l1", "l2"]
    assert [obj.where for obj in objects] == [
        "apps/web/a/nested/deep.yml:1",
        "apps/web/b.yaml:1",
        "apps/web/b.yaml:6",
        "apps/web/c.json:1",
        "apps/web/list.yaml:1",
        "apps/web/list.yaml:1",
    ]
    assert objects[2].index == 1
    assert objects[5].item == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1\n", r"^bad\.yaml:\d+: "),
        (CM.format(name="x") + "---\napiVersion: v1\nkind: X\nmetadata: {}\n",
         r"^bad\.yaml:6: document 2 has no metadata\.name$"),
        ("apiVersion: v1\nmetadata: {name: x}\n", r"^bad\.yaml:1: document 1 has no kind$"),
        ("kind: X\nmetadata: {name: x}\n", r"^bad\.yaml:1: document 1 has no apiVersion$"),
        ("- 1\n- 2\n", r"^bad\.yaml:1: document 1 is a list, not a mapping$"),
        ("apiVersion: v1\nkind: X\nmetadata: {name: 3}\n", r"metadata\.name must be a string"),
        ("apiVersion: v1\nkind: X\nmetadata: {name: x, labels: {v: 1}}\n",
         r"metadata\.labels\.v must be a string"),
        ("apiVersion: v1\nkind: List\nitems:\n- {kind: X}\n",
         r"^bad\.yaml:1: document 1, item 1 has no apiVersion$"),
        ("a: 1\na: 2\n", r"^bad\.yaml:2: duplicate key"),
    ],
)  # fmt: skip
def test_plain_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_plain({"bad.yaml": text.encode()})


# -- finalize ---------------------------------------------------------------------------

SCOPES = {("", "ConfigMap"): True, ("", "Namespace"): False, ("apps", "Deployment"): True}


def namespaced(group: str, kind: str) -> bool | None:
    return SCOPES.get((group, kind))


def test_finalize_fills_namespace_and_labels_without_touching_input() -> None:
    objects = render_plain(
        _tree(
            {
                "a.yaml": CM.format(name="a"),
                "b.yaml": CM.format(name="b") + "  namespace: other\n"
                "  labels: {team: x, app.kubernetes.io/managed-by: reconciler}\n",
                "ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
            }
        )
    )
    out = finalize(objects, app="shop", default_namespace="shop", namespaced=namespaced)
    assert [m["metadata"].get("namespace") for m in out] == ["shop", "other", None]
    for manifest in out:
        assert manifest["metadata"]["labels"][MANAGED_BY_LABEL] == "reconciler"
        assert manifest["metadata"]["labels"][APP_LABEL] == "shop"
    assert out[1]["metadata"]["labels"]["team"] == "x"
    assert "labels" not in objects[0].manifest["metadata"]  # inputs unchanged


@pytest.mark.parametrize(
    ("files", "default", "message"),
    [
        ({"a.yaml": "apiVersion: x.io/v1\nkind: Widget\nmetadata: {name: w}\n"}, "ns",
         r"^a\.yaml:1: Widget\.x\.io/w: unknown kind Widget\.x\.io"),
        ({"a.yaml": CM.format(name="a")}, None, r"^a\.yaml:1: ConfigMap/a: names no namespace"),
        ({"a.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: x}\n"},
         "ns", r"cluster-scoped but names namespace 'x'"),
        ({"a.yaml": CM.format(name="a") + "  labels: {reconciler.dev/app: other}\n"}, "ns",
         r"^a\.yaml:1: .*label reconciler\.dev/app='other' conflicts with 'shop'"),
        ({"a.yaml": CM.format(name="a"), "b/c.yaml": "---\n" + CM.format(name="a")}, "ns",
         r"^b/c\.yaml:2: ConfigMap/ns/a: duplicate object, first at a\.yaml:1$"),
    ],
)  # fmt: skip
def test_finalize_errors(files: dict[str, str], default: str | None, message: str) -> None:
    objects = render_plain(_tree(files))
    with pytest.raises(RenderError, match=message):
        finalize(objects, app="shop", default_namespace=default, namespaced=namespaced)


def test_same_name_in_different_namespaces_is_not_a_duplicate() -> None:
    objects = render_plain(
        _tree({"a.yaml": CM.format(name="a"), "b.yaml": CM.format(name="a") + "  namespace: b\n"})
    )
    out = finalize(objects, app="shop", default_namespace="a", namespaced=namespaced)
    assert len(out) == 2


# -- kustomize --------------------------------------------------------------------------

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"""

KUSTOMIZE_REPO = {
    "base/kustomization.yaml": "resources:\n- deployment.yaml\n- configmap.yaml\n",
    "base/deployment.yaml": DEPLOYMENT,
    "base/configmap.yaml": CM.format(name="settings"),
    "overlays/prod/kustomization.yaml": (
        "resources:\n- ../../base\nnamePrefix: prod-\npatches:\n- path: replicas.yaml\n"
    ),
    "overlays/prod/replicas.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 3}\n"
    ),
    "overlays/broken/kustomization.yaml": "resources:\n- ../../missing\n",
}


@pytest.fixture
def kustomize_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "origin"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for name, text in KUSTOMIZE_REPO.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "apps")
    return repo


def _render_fromgit(tmp_path: Path, repo: Path, path: str) -> list[RenderedObject]:
    source = GitSource(tmp_path / "cache", timeout=30)
    url = str(repo)
    commit = source.resolve(url, "main")
    files = source.read_tree(url, commit, path)
    return render(files, path=path, materialise=lambda d: source.export(url, commit, d))


def test_kubectl_found_next_to_python() -> None:
    assert Path(kubectl_binary({})).name == "kubectl"
    assert kubectl_binary({"RECONCILER_KUBECTL": "/opt/kubectl"}) == "/opt/kubectl"


def test_kustomize_overlay_from_git_commit(tmp_path: Path, kustomize_repo: Path) -> None:
    objects = _render_fromgit(tmp_path, kustomize_repo, "overlays/prod")
    by_name = {obj.manifest["metadata"]["name"]: obj for obj in objects}
    assert set(by_name) == {"prod-web", "prod-settings"}
    assert by_name["prod-web"].manifest["spec"]["replicas"] == 3
    assert by_name["prod-web"].source == "overlays/prod/kustomization.yaml (kustomize output)"
    out = finalize(objects, app="web", default_namespace="prod", namespaced=namespaced)
    assert {m["metadata"]["namespace"] for m in out} == {"prod"}


def test_kustomize_base_alone(tmp_path: Path, kustomize_repo: Path) -> None:
    objects = _render_fromgit(tmp_path, kustomize_repo, "base")
    assert sorted(_names(objects)) == ["settings", "web"]


def test_kustomize_error_names_kustomization(tmp_path: Path, kustomize_repo: Path) -> None:
    with pytest.raises(RenderError) as err:
        _render_fromgit(tmp_path, kustomize_repo, "overlays/broken")
    message = str(err.value)
    assert message.startswith("overlays/broken/kustomization.yaml: kustomize build failed:")
    assert "missing" in message
    assert "reconciler-kustomize-" not in message  # temporary paths stripped


def test_kustomize_without_materialiser_uses_given_files() -> None:
    files = _tree(
        {
            "kustomization.yaml": "resources: [cm.yaml]\nnamespace: x\n",
            "cm.yaml": CM.format(name="c"),
        }
    )
    objects = render(files, path="apps/c")
    assert [obj.manifest["metadata"] for obj in objects] == [{"name": "c", "namespace": "x"}]


def test_kustomize_remote_resources_do_not_reach_the_network() -> None:
    files = _tree({"kustomization.yaml": "resources:\n- https://example.com/x.yaml\n"})
    with pytest.raises(
        RenderError, match=r"^kustomization\.yaml: resources\[0\] .*: remote bases are refused"
    ):
        render(files)


def test_render_refuses_escaping_path() -> None:
    with pytest.raises(RenderError, match="inside the repository"):
        render({}, path="../x")
