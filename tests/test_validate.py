"""``reconciler validate`` at fleet scale: shared fetches, reads and renders, and progress.

A fleet of many applications on one repository must cost one fetch per repository, one
resolve per (repository, revision) and one render per (commit, path, render inputs); a
failing render fails exactly the targets that share it; progress lines reach stderr.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import cli.local
import kubesim
from cli.local import _Validation
from cli.main import main
from kubesim.runtime import SimHandle
from reconciler.engine import RenderInput
from reconciler.fleet import parse_fleet
from reconciler.render import RenderedObject
from tests.gitrepo import GitRepo

CM = "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with kubesim.serve(2, controller_delay=0.0) as handle:
        yield handle


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    for name in ("one", "two", "three"):
        repo.write(f"apps/{name}/cm.yaml", CM.format(name=name))
    repo.write("apps/broken/cm.yaml", "kind: [\n")
    repo.commit()
    repo.git("tag", "v1")
    return repo


def _fleet_text(repo: GitRepo, kubeconfig: str, apps: int) -> str:
    paths = ["apps/one", "apps/two", "apps/three", "apps/broken"]
    lines = [
        "clusters:",
        f"  - {{name: sim-1, kubeconfig: {kubeconfig}}}",
        f"  - {{name: sim-2, kubeconfig: {kubeconfig}}}",
        "applications:",
    ]
    lines += [
        f"  - {{name: a{i}, source: {{repo: {repo.path}, path: {paths[i % 4]}, "
        f"revision: {'v1' if i % 2 else 'main'}}}, destination: {{namespace: ns}}}}"
        for i in range(apps)
    ]
    return "\n".join(lines) + "\n"


def test_fetch_resolve_and_render_are_shared(sim: SimHandle, repo: GitRepo, tmp_path: Path) -> None:
    kubeconfig = sim.write_kubeconfig(str(tmp_path / "kubeconfig"))
    fleet = parse_fleet(_fleet_text(repo, kubeconfig, 40), source="fleet.yaml",
                        base_dir=str(tmp_path))  # fmt: skip
    validation = _Validation(fleet, tmp_path / "cache")
    renders: list[tuple[str, str]] = []
    render = validation._render_from_git

    def counted(spec: RenderInput, commit: str) -> list[RenderedObject]:
        renders.append((spec.path, commit))
        return render(spec, commit)

    validation._render_from_git = counted
    sim.reset_requests()
    try:
        rows = validation.run()
    finally:
        validation.engine.clients.close()
    assert len(rows) == 80  # 40 applications on 2 clusters
    assert validation.source.fetch_count == 1  # two revisions, one repository, one fetch
    # main and v1 are the same commit: 4 paths, 4 renders for 80 targets.
    assert sorted(path for path, _ in renders) == [
        "apps/broken", "apps/one", "apps/three", "apps/two",
    ]  # fmt: skip
    broken = [r for r in rows if r["error"]]
    assert len(broken) == 20
    assert all(r["error"].startswith("apps/broken/cm.yaml:2:") for r in broken)
    assert all(r["objects"] == 1 for r in rows if not r["error"])
    reads = {"get", "list"}
    assert sum(n for (verb, _), n in sim.requests("sim-1").items() if verb not in reads) == 0


def test_progress_lines_and_exit_code(
    sim: SimHandle,
    repo: GitRepo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kubeconfig = sim.write_kubeconfig(str(tmp_path / "kubeconfig"))
    path = tmp_path / "fleet.yaml"
    path.write_text(_fleet_text(repo, kubeconfig, 150))
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cli.local, "PROGRESS_EVERY", 100)
    code = main(["validate", "--config", str(path), "-o", "json"])
    out, err = capsys.readouterr()
    assert code == 2  # the broken path is bad input
    progress = [line for line in err.splitlines() if line.startswith("validate: ")]
    assert [line.split(" (")[0] for line in progress] == [
        "validate: 100/300 targets", "validate: 200/300 targets", "validate: 300/300 targets",
    ]  # fmt: skip
    targets = json.loads(out)["targets"]
    assert len(targets) == 300
    assert (
        sum(1 for t in targets if t["error"]) == 74
    )  # a3, a7, ... a147 (every fourth) on 2 clusters
