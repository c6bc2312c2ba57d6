"""A fleet through the real runtime: Redis, a Celery worker, kubesim clusters, one Git repo.

``--apps`` applications (5 objects each, 3 kinds) on ``--clusters`` kubesim clusters, all
in one local Git repository, reconciled by a worker with ``--concurrency`` processes.
Prints the time for the first full sync, for no-change passes, the targets per second,
and the Git fetches per pass (counted by the workers in Redis).  Passes are started the
way beat starts them (``reconcile_app`` on the scheduled queue), all at once.

    .venv/bin/python bench/fleet_bench.py [--apps 20] [--clusters 10] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

import redis

from reconciler.outcome import Trigger
from reconciler.store.keys import Keys
from reconciler.store.provision import provide_redis
from reconciler.store.records import Records
from workers.app import app, queue_for, reconfigure

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org",
           "PATH": "/usr/bin:/bin"}  # fmt: skip


def write_repo(repo: Path, apps: int) -> None:
    """``apps`` directories, each a Deployment, a Service and three ConfigMaps."""
    for i in range(apps):
        folder = repo / f"app-{i}"
        folder.mkdir(parents=True)
        (folder / "web.yaml").write_text(f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web-{i}}}}}
  template:
    metadata: {{labels: {{app: web-{i}}}}}
    spec:
      containers:
        - {{name: web, image: "nginx:1.27", ports: [{{containerPort: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{selector: {{app: web-{i}}}, ports: [{{port: 80}}]}}
""")
        for j in range(3):
            (folder / f"cm-{j}.yaml").write_text(
                f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{j}}}\n"
                f"data: {{app: '{i}', n: '{j}'}}\n"
            )
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "fleet"]):
        subprocess.run(["git", *args], cwd=repo, env=GIT_ENV, check=True)


def write_fleet(path: Path, *, repo: Path, kubeconfig: Path, apps: int, clusters: int) -> None:
    lines = ["clusters:"]
    lines += [f"  - {{name: sim-{c}, kubeconfig: {kubeconfig}}}" for c in range(1, clusters + 1)]
    lines.append("applications:")
    for i in range(apps):
        lines += [
            f"  - name: app-{i}",
            f"    source: {{repo: {repo}, revision: main, path: app-{i}}}",
            f"    destination: {{namespace: app-{i}}}",
            "    sync: {interval: 1h}",  # passes are started by the benchmark, not beat
        ]
    path.write_text("\n".join(lines) + "\n")


def run_pass(apps: int, clusters: int, records: Records) -> float:
    """Start every application at once; seconds until every target recorded an outcome."""
    started_at = time.time()
    begin = time.perf_counter()
    for i in range(apps):
        app.send_task("reconciler.reconcile_app", args=(f"app-{i}", Trigger.SCHEDULE.value),
                      queue=queue_for(forced=False))  # fmt: skip
    want = apps * clusters
    done = 0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = sum(
            1 for entry in records.status()
            if entry.get("sync") == "Synced" and _epoch(entry.get("finished")) >= started_at
        )  # fmt: skip
        if done >= want:
            return time.perf_counter() - begin
        time.sleep(0.05)
    raise SystemExit(f"pass did not finish: {done}/{want} targets Synced")


def _epoch(value: object) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3, help="no-change passes to time")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    write_repo(work / "repo", args.apps)
    kubeconfig = work / "kubeconfig"
    fleet = work / "fleet.yaml"
    write_fleet(fleet, repo=work / "repo", kubeconfig=kubeconfig, apps=args.apps,
                clusters=args.clusters)  # fmt: skip
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    children: list[subprocess.Popen[bytes]] = []
    # SIGTERM (e.g. from timeout) must still stop the children and an embedded Redis.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    worker_log = (work / "worker.log").open("wb")
    print(f"work directory: {work} (worker log: {work / 'worker.log'})", flush=True)
    with provide_redis() as url, worker_log:
        env = {**os.environ, "REDIS_URL": url, "RECONCILER_REDIS_PREFIX": prefix,
               "RECONCILER_CONFIG": str(fleet), "RECONCILER_CACHE_DIR": str(work / "cache"),
               "RECONCILER_REVISION_TTL": "1"}  # fmt: skip
        reconfigure(app, url=url, prefix=prefix)
        try:
            children.append(subprocess.Popen(
                [sys.executable, "-m", "cli", "sim", "--clusters", str(args.clusters),
                 "--kubeconfig", str(kubeconfig), "--controller-delay", "0"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            deadline = time.monotonic() + 30
            while not kubeconfig.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            children.append(subprocess.Popen(
                [sys.executable, "-m", "cli", "worker", "--concurrency",
                 str(args.concurrency), "--loglevel", "WARNING"],
                env=env, stdout=subprocess.DEVNULL, stderr=worker_log))  # fmt: skip
            client = redis.Redis.from_url(url)
            keys = Keys(prefix)
            records = Records(client, keys)
            fetches = keys.metrics_git_fetches()

            def fetch_count() -> int:
                return int(client.get(fetches) or 0)

            first = run_pass(args.apps, args.clusters, records)
            first_fetches = fetch_count()
            times, per_pass = [], []
            for _ in range(args.passes):
                time.sleep(1.2)  # let the revision cache expire: each pass asks Git again
                before = fetch_count()
                times.append(run_pass(args.apps, args.clusters, records))
                per_pass.append(fetch_count() - before)
            for key in client.scan_iter(match=f"{prefix}*", count=1000):
                client.delete(key)
            client.close()
        finally:
            for child in reversed(children):
                child.terminate()
                child.wait(timeout=60)
    targets = args.apps * args.clusters
    best = min(times)
    print(f"fleet: {args.apps} applications x {args.clusters} kubesim clusters = {targets} "
          f"targets, 1 Git repository, worker --concurrency {args.concurrency}")  # fmt: skip
    print(f"  first full sync:   {first:6.2f} s   {targets / first:6.1f} targets/s   "
          f"git fetches: {first_fetches}")  # fmt: skip
    for t, f in zip(times, per_pass, strict=True):
        print(f"  no-change pass:    {t:6.2f} s   {targets / t:6.1f} targets/s   "
              f"git fetches: {f}")  # fmt: skip
    print(f"  best no-change pass: {targets / best:.1f} targets/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
