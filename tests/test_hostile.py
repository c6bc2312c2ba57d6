"""A corpus of hostile input: every case fails cleanly, names where, and writes nothing.

Anyone who can push to a repository, or edit the fleet file, writes what the platform
reads.  Each case under ``tests/data/hostile/<case>/`` is a ``case.yaml`` (what to expect,
how to build the case) and, for repository cases, a ``repo/`` tree committed into a
fresh Git repository.  Every case is run through ``reconciler validate`` in this process
against kubesim and must exit 2 with every ``expect`` pattern in its messages, no
traceback and none of the ``absent`` strings (secrets, the outside file's content);
repository cases are also reconciled for real by the engine, which must report a failed
outcome and leave the cluster without a single write.

``case.yaml`` keys: ``expect`` (regexes searched in stderr), ``absent`` (strings),
``fleet`` (a whole fleet file; ``{repo}``, ``{kubeconfig}``, ``{namespace}`` filled in),
``fleet_base64`` (a fleet file's raw bytes), ``path`` and ``source`` (the default fleet's
one application: its path and extra ``source`` fields), ``symlinks`` (name -> target,
``{outside}`` naming a host folder holding ``secret.yaml``), ``generate`` (name ->
``{text, times}``, for files too big to keep), ``binary`` (name -> base64), and
``jsonnet_timeout`` (seconds, for the runaway-loop cases).
"""

from __future__ import annotations

import base64
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import kubesim
import reconciler.render.jsonnet
from cli.main import main
from kubesim.runtime import SimHandle
from reconciler.engine import Engine, Options
from reconciler.errors import ConfigError
from reconciler.fleet import parse_fleet
from tests.gitrepo import GitRepo

HOSTILE = Path(__file__).parent / "data" / "hostile"
CASES = sorted(path.name for path in HOSTILE.iterdir() if (path / "case.yaml").is_file())
CLUSTER = "sim-1"
#: In the outside folder's file: must never reach a message.
OUTSIDE_MARKER = "OUTSIDE-SECRET-7f3a"

DEFAULT_FLEET = """\
clusters:
  - {{name: sim-1, kubeconfig: "{kubeconfig}"}}
applications:
  - name: hostile
    source: {source}
    destination: {{namespace: {namespace}}}
"""


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with kubesim.serve(1, controller_delay=0.0) as handle:
        yield handle


def _writes(sim: SimHandle) -> int:
    return sum(
        n for (verb, _), n in sim.requests(CLUSTER).items()
        if verb in {"create", "update", "patch", "delete", "deletecollection"}
    )  # fmt: skip


def _build_repo(case: dict[str, Any], directory: Path, repo: GitRepo, outside: Path) -> None:
    tree = directory / "repo"
    if tree.is_dir():
        shutil.copytree(tree, repo.path, dirs_exist_ok=True)
    for name, spec in (case.get("generate") or {}).items():
        target = repo.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec["text"] * int(spec["times"]))
    for name, data in (case.get("binary") or {}).items():
        target = repo.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(data))
    for name, link in (case.get("symlinks") or {}).items():
        target = repo.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(link.format(outside=outside))
    (repo.path / ".keep").write_text("")  # a commit even for cases without a tree
    repo.commit("hostile case")


def _fleet_file(case: dict[str, Any], tmp: Path, repo: GitRepo, kubeconfig: str) -> Path:
    path = tmp / "fleet.yaml"
    fields = {"repo": str(repo.path), "kubeconfig": kubeconfig,
              "namespace": f"h-{uuid.uuid4().hex[:8]}"}  # fmt: skip
    if "fleet_base64" in case:
        path.write_bytes(base64.b64decode(case["fleet_base64"]))
    elif "fleet" in case:
        path.write_text(case["fleet"].format(**fields))
    else:
        source = {"repo": str(repo.path), "path": case.get("path", "app"),
                  **(case.get("source") or {})}  # fmt: skip
        flow = yaml.safe_dump(source, default_flow_style=True, width=10_000).strip()
        path.write_text(DEFAULT_FLEET.format(source=flow, **fields))
    return path


@pytest.mark.parametrize("name", CASES)
def test_hostile_case_fails_cleanly_and_writes_nothing(
    name: str,
    sim: SimHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = HOSTILE / name
    case = yaml.safe_load((directory / "case.yaml").read_text())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {OUTSIDE_MARKER.lower()}}}\n"
        f"data: {{token: {OUTSIDE_MARKER}}}\n"
    )
    repo = GitRepo(tmp_path / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    _build_repo(case, directory, repo, outside)
    kubeconfig = sim.write_kubeconfig(str(tmp_path / "kubeconfig"))
    fleet_path = _fleet_file(case, tmp_path, repo, kubeconfig)
    monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RECONCILER_CONFIG", raising=False)
    if "jsonnet_timeout" in case:
        monkeypatch.setattr(reconciler.render.jsonnet, "EVALUATION_TIMEOUT",
                            float(case["jsonnet_timeout"]))  # fmt: skip
    sim.reset_requests()

    code = main(["validate", "--config", str(fleet_path)])
    out, err = capsys.readouterr()

    assert code == case.get("exit", 2), f"stdout:\n{out}\nstderr:\n{err}"
    for pattern in case["expect"]:
        assert re.search(pattern, err), f"{pattern!r} not in stderr:\n{err}"
    for text in ["Traceback", OUTSIDE_MARKER, *(case.get("absent") or [])]:
        assert text not in out + err
    assert _writes(sim) == 0

    # A repository case is reconciled for real as well: a failed outcome, still no write.
    try:
        fleet = parse_fleet(fleet_path.read_bytes(), source=str(fleet_path),
                            base_dir=str(tmp_path))  # fmt: skip
    except ConfigError:
        return  # the fleet file itself is the hostile input: nothing can run from it
    engine = Engine.local(tmp_path / "cache")
    try:
        for app in fleet.applications:
            for cluster in fleet.targets(app):
                outcome = engine.reconcile(fleet.target(app.name, cluster.name),
                                           options=Options())  # fmt: skip
                assert outcome.failed, outcome.to_dict()
                messages = " ".join(problem.message for problem in outcome.errors)
                assert re.search(case["expect"][-1], messages), messages
                assert OUTSIDE_MARKER not in messages
    finally:
        engine.clients.close()
    assert _writes(sim) == 0


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
