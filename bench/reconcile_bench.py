"""API requests and CPU of one target's reconcile: a first sync, then no-op reconciles.

A 10-object application (3 Deployments, 3 Services, 2 ConfigMaps, a Secret and a
ServiceAccount: 5 kinds) in a local Git repository, reconciled onto one kubesim cluster
running in its own process.  Requests are counted by kubesim; CPU is this process's own
(the engine's), so the simulator's work is not in it.  The revision is resolved once up
front, as the workers' shared revision cache does; the Git fetch is reported apart.

    .venv/bin/python bench/reconcile_bench.py [--runs 50]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from reconciler.engine import Engine, Options
from reconciler.fleet import parse_fleet
from reconciler.model import SyncStatus
from reconciler.store.provision import free_port

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org",
           "PATH": "/usr/bin:/bin"}  # fmt: skip


def write_app(repo: Path) -> None:
    """Ten objects of five kinds, committed."""
    docs = []
    for i in range(3):
        docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: web-{i}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web-{i}}}}}
  template:
    metadata: {{labels: {{app: web-{i}}}}}
    spec:
      serviceAccountName: bench
      containers:
        - name: web
          image: nginx:1.27
          ports: [{{containerPort: 8080}}]
          env: [{{name: MODE, value: prod}}, {{name: INDEX, value: "{i}"}}]
          resources: {{requests: {{cpu: 100m, memory: 128Mi}}, limits: {{cpu: "1", memory: 1Gi}}}}
""")
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: web-{i}}}
spec:
  selector: {{app: web-{i}}}
  ports: [{{port: 80, targetPort: 8080}}]
""")
    for i in range(2):
        docs.append(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg-{i}}}\n"
                    f"data: {{a: '1', b: '2'}}\n")  # fmt: skip
    docs.append("apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {token: x}\n")
    docs.append("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bench}\n")
    (repo / "app").mkdir(parents=True)
    (repo / "app" / "all.yaml").write_text("---\n".join(docs))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "app"]):
        subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True)


def requests(base: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/admin/clusters/sim-1/requests", timeout=10) as r:
        data = json.load(r)
    return {f"{c['verb']} {c['resource']}": c["count"] for c in data["requests"]}


def reset(base: str) -> None:
    request = urllib.request.Request(f"{base}/admin/clusters/sim-1/requests", method="DELETE")
    urllib.request.urlopen(request, timeout=10).close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="no-op reconciles to average")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    write_app(work / "repo")
    port = free_port()
    kubeconfig = work / "kubeconfig"
    sim = subprocess.Popen(
        [sys.executable, "-m", "kubesim", "--clusters", "1", "--port", str(port),
         "--kubeconfig", str(kubeconfig), "--controller-delay", "0"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            if time.monotonic() > deadline:
                raise SystemExit("kubesim did not start")
            time.sleep(0.05)
        fleet = parse_fleet(
            f"clusters: [{{name: sim-1, kubeconfig: {kubeconfig}}}]\n"
            f"applications:\n  - name: bench\n    source: {{repo: {work / 'repo'}, path: app}}\n"
            "    destination: {namespace: bench}\n",
            source="fleet.yaml", base_dir=str(work),
        )  # fmt: skip
        engine = Engine.local(work / "cache")
        started = time.perf_counter()
        commit = engine.resolve(fleet.application("bench").source, True)
        fetch_ms = (time.perf_counter() - started) * 1000
        options = Options(revision=commit)

        reset(base)
        cpu, wall = time.process_time(), time.perf_counter()
        first = engine.reconcile(fleet.target("bench", "sim-1"), options=options)
        first_cpu, first_wall = time.process_time() - cpu, time.perf_counter() - wall
        assert first.sync is SyncStatus.SYNCED, first.errors
        first_requests = requests(base)

        engine.reconcile(fleet.target("bench", "sim-1"), options=options)  # settle status writes
        reset(base)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.runs):
            outcome = engine.reconcile(fleet.target("bench", "sim-1"), options=options)
            assert outcome.sync is SyncStatus.SYNCED and not outcome.drift, outcome.drift
        noop_cpu = (time.process_time() - cpu) / args.runs
        noop_wall = (time.perf_counter() - wall) / args.runs
        noop_requests = {k: v / args.runs for k, v in requests(base).items()}
    finally:
        sim.terminate()
        sim.wait(timeout=30)

    kinds = 5
    print("reconcile of a 10-object application (5 kinds) on one kubesim cluster")
    print(f"  git fetch + resolve (once, shared by all targets): {fetch_ms:7.1f} ms wall")
    print(f"  first sync: {sum(first_requests.values()):4d} requests, "
          f"{first_cpu * 1000:7.1f} ms CPU, {first_wall * 1000:7.1f} ms wall")  # fmt: skip
    for key, count in sorted(first_requests.items()):
        print(f"      {key:36} {count}")
    total = sum(noop_requests.values())
    print(f"  no-op reconcile (mean of {args.runs}): {total:4.1f} requests, "
          f"{noop_cpu * 1000:7.2f} ms CPU, {noop_wall * 1000:7.2f} ms wall")  # fmt: skip
    for key, count in sorted(noop_requests.items()):
        print(f"      {key:36} {count:.1f}")
    print(f"  budget for a no-op: {kinds} kinds + 1 = {kinds + 1} requests -> "
          f"{'within' if total <= kinds + 1 else 'OVER'} budget")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
