"""``reconciler validate`` on large fleets: 200, 1,000 and 10,000 applications, one repository.

CI validates the whole fleet file on every change, so the time must grow with the work
that differs between applications, not with fetches and processes per application.  Each
run generates one local Git repository holding ``N`` application folders (``apps/a<i>``,
one ConfigMap and one Service each), a fleet file of ``N`` applications on one kubesim
cluster (all on ``main``), and times the real command line in a fresh process with a
fresh Git cache (so the fetch is included):

    reconciler validate --config fleet.yaml -o json

It checks the exit code and that every target rendered two objects, and prints the wall
time, the targets per second and the command's peak memory.

    .venv/bin/python bench/validate_bench.py [--apps 200,1000,10000] [--runs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kubesim

ROOT = Path(__file__).resolve().parents[1]
RECONCILER = str(Path(sys.executable).parent / "reconciler")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip
MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: a{i}-settings}}
data: {{index: "{i}"}}
---
apiVersion: v1
kind: Service
metadata: {{name: a{i}}}
spec:
  selector: {{app: a{i}}}
  ports: [{{port: 80}}]
"""


def make_repo(path: Path, apps: int) -> None:
    """A repository with ``apps`` application folders, in one commit."""
    path.mkdir()
    for i in range(apps):
        folder = path / "apps" / f"a{i}"
        folder.mkdir(parents=True)
        (folder / "app.yaml").write_text(MANIFEST.format(i=i))
    env = {**os.environ, **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "apps"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)


def fleet_text(repo: Path, kubeconfig: str, apps: int) -> str:
    """``apps`` applications of ``repo`` on cluster sim-1."""
    lines = ["clusters:", f"  - {{name: sim-1, kubeconfig: {kubeconfig}}}", "applications:"]
    lines += [
        f"  - {{name: a{i}, source: {{repo: {repo}, path: apps/a{i}}}, "
        f"destination: {{namespace: bench}}}}"
        for i in range(apps)
    ]
    return "\n".join(lines) + "\n"


def run(apps: int, sim: kubesim.runtime.SimHandle) -> tuple[float, float]:
    """Seconds and peak MiB of one ``reconciler validate`` of ``apps`` applications."""
    with tempfile.TemporaryDirectory(prefix="validate-bench-") as tmp:
        base = Path(tmp)
        make_repo(base / "repo", apps)
        kubeconfig = sim.write_kubeconfig(str(base / "kubeconfig"))
        fleet = base / "fleet.yaml"
        fleet.write_text(fleet_text(base / "repo", kubeconfig, apps))
        env = {**os.environ, "RECONCILER_CACHE_DIR": str(base / "cache")}
        env.pop("RECONCILER_CONFIG", None)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        proc = subprocess.run(
            [RECONCILER, "validate", "--config", str(fleet), "-o", "json"],
            capture_output=True, text=True, env=env, cwd=ROOT, check=False,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        if proc.returncode != 0:
            raise SystemExit(f"validate exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        targets = json.loads(proc.stdout)["targets"]
        assert len(targets) == apps and all(t["objects"] == 2 for t in targets)
        return elapsed, peak


def main() -> None:
    """Print one line per fleet size: applications, seconds, targets per second, MiB."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", default="200,1000,10000")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    with kubesim.serve(1, controller_delay=0.0) as sim:
        print(f"{'applications':>12} {'seconds':>8} {'targets/s':>10} {'peak MiB':>9}")
        for apps in (int(n) for n in args.apps.split(",")):
            for _ in range(args.runs):
                seconds, peak = run(apps, sim)
                print(f"{apps:>12} {seconds:>8.2f} {apps / seconds:>10.0f} {peak:>9.0f}")


if __name__ == "__main__":
    main()
