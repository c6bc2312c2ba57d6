"""Kustomize stays inside the repository: real repositories on disk, the real kubectl.

Every path a reachable kustomization names is resolved before the build; one leaving the
repository (by ``..``, an absolute path or a symlink) or naming a remote base is refused
with the kustomization file and the entry, and a symlink leaving the repository fails
only the applications that reach it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import RenderError, SourceError
from reconciler.render import RenderedObject, render
from reconciler.render.kustomize import check_kustomizations
from reconciler.source import GitSource
from tests.gitrepo import GitRepo, git

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    path = tmp_path / "origin"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    repo = GitRepo(path)
    repo.write("base/kustomization.yaml", "resources: [cm.yaml]\n")
    repo.write("base/cm.yaml", CM.format(name="base"))
    repo.write("apps/good/kustomization.yaml", "resources: [../../base]\nnamePrefix: good-\n")
    return repo


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A host folder next to the repository holding a kustomization and a secret file."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (host / "cm.yaml").write_text(CM.format(name="host-secret"))
    return host


def _render(tmp_path: Path, repo: GitRepo, path: str) -> list[RenderedObject]:
    source = GitSource(tmp_path / "cache", timeout=30)
    url = str(repo.path)
    commit = source.resolve(url, "main", fetch=True)
    files = source.read_tree(url, commit, path)
    return render(files, path=path, materialise=lambda d: source.export(url, commit, d))


def _names(objects: list[RenderedObject]) -> list[str]:
    return sorted(obj.manifest["metadata"]["name"] for obj in objects)


def test_in_repository_overlay_builds(tmp_path: Path, repo: GitRepo) -> None:
    repo.commit()
    assert _names(_render(tmp_path, repo, "apps/good")) == ["good-base"]


@pytest.mark.parametrize(
    ("kustomization", "message"),
    [
        (
            "resources:\n- ../../../host\n",
            r"^apps/evil/kustomization\.yaml: resources\[0\] '\.\./\.\./\.\./host': "
            r"leaves the repository$",
        ),
        (
            "resources: [cm.yaml]\nbases:\n- ../../../../../../../../etc\n",
            r"^apps/evil/kustomization\.yaml: bases\[0\] .*: leaves the repository$",
        ),
        (
            "resources: [/etc/hosts]\n",
            r"resources\[0\] '/etc/hosts': absolute paths leave the repository",
        ),
        (
            "resources: [cm.yaml]\npatches:\n- path: ../../../host/cm.yaml\n",
            r"patches\[0\]\.path .*: leaves the repository",
        ),
        (
            "configMapGenerator:\n- name: x\n  files: [key=../../../host/cm.yaml]\n",
            r"configMapGenerator\[0\]\.files\[0\] '\.\./\.\./\.\./host/cm\.yaml': leaves",
        ),
        (
            "secretGenerator:\n- name: x\n  envs: [../../../host/cm.yaml]\n",
            r"secretGenerator\[0\]\.envs\[0\] .*: leaves the repository",
        ),
        (
            "components: [../../../host]\n",
            r"components\[0\] .*: leaves the repository",
        ),
        (
            "resources:\n- https://github.com/org/repo//base?ref=v1\n",
            r"resources\[0\] 'https://github\.com/.*': remote bases are refused",
        ),
        (
            "resources:\n- git::https://example.com/repo.git//base\n",
            r"resources\[0\] 'git::https.*': remote bases are refused",
        ),
        (
            "resources:\n- git@github.com:org/repo.git//base\n",
            r"remote bases are refused",
        ),
        (
            "resources:\n- github.com/org/repo/base?ref=main\n",
            r"remote bases are refused",
        ),
    ],
)
def test_paths_leaving_the_repository_are_refused(
    tmp_path: Path, repo: GitRepo, outside: Path, kustomization: str, message: str
) -> None:
    repo.write("apps/evil/kustomization.yaml", kustomization)
    repo.write("apps/evil/cm.yaml", CM.format(name="evil"))
    repo.commit()
    with pytest.raises(RenderError, match=message) as err:
        _render(tmp_path, repo, "apps/evil")
    assert "host-secret" not in str(err.value)
    assert str(tmp_path) not in str(err.value)


def test_a_base_reaching_out_is_refused_from_the_overlay(
    tmp_path: Path, repo: GitRepo, outside: Path
) -> None:
    repo.write("bad-base/kustomization.yaml", "resources: [../../host]\n")
    repo.write("apps/overlay/kustomization.yaml", "resources: [../../bad-base]\n")
    repo.commit()
    with pytest.raises(
        RenderError, match=r"^bad-base/kustomization\.yaml: resources\[0\] .*leaves the repository"
    ):
        _render(tmp_path, repo, "apps/overlay")


def test_symlink_out_fails_only_the_applications_using_it(
    tmp_path: Path, repo: GitRepo, outside: Path
) -> None:
    (repo.path / "linked").symlink_to(outside)
    repo.write("apps/uses-link/kustomization.yaml", "resources: [../../linked]\n")
    repo.commit()
    # The application that never reaches the link still builds from the same export.
    assert _names(_render(tmp_path, repo, "apps/good")) == ["good-base"]
    with pytest.raises(
        RenderError,
        match=r"^apps/uses-link/kustomization\.yaml: resources\[0\] '\.\./\.\./linked': "
        r"leaves the repository through a symlink$",
    ):
        _render(tmp_path, repo, "apps/uses-link")


def test_file_symlink_out_named_in_a_base(tmp_path: Path, repo: GitRepo, outside: Path) -> None:
    repo.write("apps/filelink/kustomization.yaml", "resources: [cm.yaml]\n")
    (repo.path / "apps/filelink/cm.yaml").symlink_to(outside / "cm.yaml")
    repo.write("apps/overlay/kustomization.yaml", "resources: [../filelink]\n")
    repo.commit()
    # Reading the application's own files already refuses the link ...
    with pytest.raises(SourceError, match="leaves the repository"):
        _render(tmp_path, repo, "apps/filelink")
    # ... and an overlay reaching it through a base is refused before kustomize reads it.
    with pytest.raises(RenderError, match=r"^apps/filelink/kustomization\.yaml: resources\[0\]"):
        _render(tmp_path, repo, "apps/overlay")


def test_export_neutralises_links_leaving_the_repository(
    tmp_path: Path, repo: GitRepo, outside: Path
) -> None:
    (repo.path / "linked").symlink_to(outside)
    (repo.path / "loop").symlink_to("loop")
    commit = repo.commit()
    source = GitSource(tmp_path / "cache", timeout=30)
    dest = tmp_path / "export"
    dest.mkdir()
    source.export(str(repo.path), commit, dest)
    assert (dest / "linked").is_symlink()
    assert not (dest / "linked").exists()  # nothing outside is reachable through it
    assert (dest / "base/cm.yaml").is_file()


def test_inline_patches_and_missing_paths_are_left_to_kustomize(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app/kustomization.yaml").write_text(
        "resources: [missing.yaml, sub]\n"
        "patchesStrategicMerge:\n- |\n  apiVersion: v1\n  kind: ConfigMap\n"
        "  metadata: {name: x}\n"
    )
    (root / "sub").mkdir()
    (root / "app/sub").symlink_to("../sub")
    (root / "sub/kustomization.yaml").write_text("resources: [../app]\n")  # a cycle
    assert check_kustomizations(root, "app") == 2
