"""``sync --revision``, ``--prune`` and ``--dry-run`` through a real worker.

Each option reaches the target runs (task arguments are identifiers: a ref, two flags)
and does what ``argocd app sync`` does with it.
"""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:6]}"


def test_sync_revision_prune_and_dry_run(stack: Stack) -> None:
    app = unique("opts")
    stack.write_app(app, value="1", deployment=False)
    stack.repo.write(f"{app}/extra.yaml", f"""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: extra, namespace: {app}}}
        data: {{k: v}}
        """)  # fmt: skip
    first = stack.repo.commit("two config maps")
    # Automatic runs off: what happens is what each sync asked for.
    stack.write_fleet(stack.app(app, clusters={"names": ["sim-1"]}, interval="1h",
                                automated=False, prune=False))  # fmt: skip
    stack.worker(concurrency=2)
    done = stack.cli("sync", app, "--timeout", "60", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert [o["revision"] for o in json.loads(done.stdout)] == [first]

    # --dry-run: the drift is reported, nothing is written, exit 1 (not in sync).
    stack.write_app(app, value="2", deployment=False)
    second = stack.repo.commit("change the value")
    dry = stack.cli("sync", app, "--dry-run", "--timeout", "60", "-o", "json")
    assert dry.returncode == 1, dry.stderr
    (outcome,) = json.loads(dry.stdout)
    assert outcome["dry_run"] is True and outcome["revision"] == second
    assert [d["object"] for d in outcome["drift"]] == [f"ConfigMap/{app}/cfg"]
    assert stack.configmap("sim-1", app) == {"key": "1"}

    # --revision: an earlier commit, by its id, is what is applied.
    back = stack.cli("sync", app, "--revision", first, "--timeout", "60", "-o", "json")
    assert back.returncode == 0, back.stderr
    assert [o["revision"] for o in json.loads(back.stdout)] == [first]
    assert stack.configmap("sim-1", app) == {"key": "1"}

    # sync.prune is off: a file that left Git is kept; --prune prunes it this once.
    stack.repo.remove(f"{app}/extra.yaml")
    stack.repo.commit("drop extra")
    kept = stack.cli("sync", app, "--timeout", "60", "-o", "json")
    assert stack.core("sim-1").read_namespaced_config_map("extra", app).data == {"k": "v"}
    assert json.loads(kept.stdout)[0]["sync"] == "OutOfSync", kept.stdout
    pruned = stack.cli("sync", app, "--prune", "--timeout", "60", "-o", "json")
    assert pruned.returncode == 0, pruned.stderr
    actions = {c["object"]: c["action"] for c in json.loads(pruned.stdout)[0]["changes"]}
    assert actions[f"ConfigMap/{app}/extra"] == "pruned"
    names = [c.metadata.name for c in stack.core("sim-1").list_namespaced_config_map(app).items]
    assert "extra" not in names

    # A ref the repository does not have is reported, not applied.
    bad = stack.cli("sync", app, "--revision", "no-such-branch", "--timeout", "60", "-o", "json")
    assert bad.returncode == 1
    assert "no-such-branch" in bad.stdout + bad.stderr
