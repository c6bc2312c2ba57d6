"""Faults side by side: what a failing cluster costs the healthy ones, what a dead host costs.

Three kubesim clusters, one real worker process (``reconciler worker``), a local Git
repository of ``--apps`` small applications on every cluster, and the platform's Redis.

* **A failing cluster.**  Every round queues one forced run of every target at once, as
  ``reconciler sync`` does, and measures the *healthy* clusters' (sim-1, sim-3) targets:
  throughput (targets per second from the first send to the last healthy finish) and p95
  latency (send to finish).  Rounds: no fault, then sim-2 down (connections refused),
  slow (``--latency`` seconds per request) and answering 503 to half its requests.  The
  figures are compared with the no-fault round: the goal is a throughput ratio of at most
  1.10 and a p95 ratio of at most 1.20.  A round ends when every task of it has ended
  (retries and deferrals of the faulted cluster's targets included, the fault lifted),
  so no round shares the worker with an earlier one's leftovers; the worker's breaker
  cooldown is ``--cooldown`` (5 s, shorter than the default 30 s: more probes of the
  faulted cluster during a round, and rounds that drain sooner).  Each round's figures
  are printed as it ends, with the requests the faulted cluster saw and its breaker's
  state when the healthy targets were done.
* **Worker host death.**  Two workers; a forced sync of a slow target; once the target's
  lock is held, the holder's whole process group is SIGKILLed.  Reports seconds from the
  kill to the target's Synced record and how many syncs were lost (never recorded within
  120 s), over ``--kills`` repetitions; a replacement worker is started after each.

Figures are printed, never asserted (tests/e2e/test_faults.py holds the short checks).

    .venv/bin/python bench/fault_bench.py [--apps 12] [--rounds 2] [--kills 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import yaml

import kubesim
from kubesim.runtime import SimHandle
from reconciler.store.keys import Keys
from reconciler.store.provision import provide_redis
from reconciler.store.records import Records

CLUSTERS = ("sim-1", "sim-2", "sim-3")
HEALTHY = ("sim-1", "sim-3")
FAULTED = "sim-2"
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org"}  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **GIT_ENV})  # fmt: skip
    return done.stdout.strip()


class Bench:
    """One installation: clusters, repository, fleet, Redis prefix, worker processes."""

    def __init__(self, tmp: Path, sim: SimHandle, url: str, apps: int) -> None:
        self.tmp, self.sim, self.url = tmp, sim, url
        self.prefix = f"fault-bench-{uuid.uuid4().hex[:8]}:"
        self.keys = Keys(self.prefix)
        self.client = redis.Redis.from_url(url)
        self.records = Records(self.client, self.keys)
        self.repo = tmp / "repo"
        self.repo.mkdir()
        _git(self.repo, "init", "-q", "-b", "main")
        self.apps = [f"app-{i:02d}" for i in range(apps)]
        for app in self.apps:
            (self.repo / app).mkdir()
            (self.repo / app / "cm.yaml").write_text(
                f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg}}\ndata: {{k: '{app}'}}\n"
            )
        _git(self.repo, "add", "-A")
        _git(self.repo, "commit", "-q", "-m", "apps")
        self.commit = _git(self.repo, "rev-parse", "HEAD")
        kubeconfig = sim.write_kubeconfig(str(tmp / "kubeconfig"))
        fleet = {
            "clusters": [{"name": c, "kubeconfig": kubeconfig} for c in CLUSTERS],
            "applications": [
                {"name": a, "source": {"repo": str(self.repo), "revision": "main", "path": a},
                 "destination": {"namespace": a, "clusters": {"names": list(CLUSTERS)}},
                 "sync": {"interval": "1h"}}
                for a in self.apps
            ],
        }  # fmt: skip
        (tmp / "fleet.yaml").write_text(yaml.safe_dump(fleet))
        scrub = ("RECONCILER_", "CELERY_", "REDIS_URL", "KUBECONFIG")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(scrub)}
        self.env.update(REDIS_URL=url, RECONCILER_REDIS_PREFIX=self.prefix,
                        RECONCILER_CONFIG=str(tmp / "fleet.yaml"), KUBECONFIG=kubeconfig,
                        RECONCILER_CACHE_DIR=str(tmp / "cache"), PYTHONUNBUFFERED="1",
                        )  # fmt: skip
        self.workers: list[subprocess.Popen[bytes]] = []
        from workers.app import create_app, settings  # noqa: PLC0415

        self.celery = create_app()
        self.celery.conf.update(settings(url, self.keys))

    def worker(
        self, concurrency: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        name = f"bench{len(self.workers) + 1}"
        log = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", f"--concurrency={concurrency}",
             f"--hostname={name}@%h"],
            env={**self.env, **(env or {})}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.workers.append(proc)
        deadline = time.monotonic() + 60
        while b" ready." not in (self.tmp / f"{name}.log").read_bytes():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(
                    f"{name} did not start: {(self.tmp / f'{name}.log').read_text()}"
                )
            time.sleep(0.2)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        keys = list(self.client.scan_iter(match=f"{self.prefix}*", count=1000))
        if keys:
            self.client.delete(*keys)
        self.celery.close()

    def send(self, app: str, cluster: str) -> str:
        task_id = str(uuid.uuid4())
        self.celery.send_task("reconciler.reconcile_target", args=(app, cluster, "manual"),
                              kwargs={"revision": self.commit}, task_id=task_id,
                              queue="reconciler-forced")  # fmt: skip
        return task_id

    def finished(self, app: str, cluster: str, task_id: str) -> float | None:
        """Epoch seconds when the target's run of ``task_id`` ended Synced, if it did."""
        for entry in self.records.history(app, cluster, n=10):
            if entry.get("task_id") == task_id and entry.get("sync") == "Synced":
                started = datetime.fromisoformat(str(entry["started"])).timestamp()
                return started + float(entry.get("duration") or 0.0)
        return None


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def _settled(bench: Bench, task_ids: list[str]) -> bool:
    """Every task of a round ended (no retry or deferral of it is still to come)."""
    return all(bench.celery.AsyncResult(t).state in {"SUCCESS", "FAILURE"} for t in task_ids)


def failing_cluster_round(bench: Bench, fault: dict[str, Any]) -> dict[str, Any]:
    """One forced run of every target; healthy targets' throughput (per s) and p95 (s).

    Also what the faulted cluster saw: requests (and how many were failed by the fault),
    and its breaker's state when the healthy targets were done.  The round ends only
    when every task of it has ended, retries and deferrals included, with the fault
    lifted: a later round must not share the worker with this one's leftovers.
    """
    bench.sim.set_faults(FAULTED, **{"latency": 0.0, "down": False, "errorRate": 0.0, **fault})
    bench.sim.reset_requests(FAULTED)
    sent = time.time()
    tasks = {(a, c): bench.send(a, c) for a in bench.apps for c in CLUSTERS}
    done: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + 300
    while len(done) < len(bench.apps) * len(HEALTHY) and time.monotonic() < deadline:
        for (app, cluster), task_id in tasks.items():
            if cluster in HEALTHY and (app, cluster) not in done:
                end = bench.finished(app, cluster, task_id)
                if end is not None:
                    done[(app, cluster)] = end
        time.sleep(0.1)
    latencies = [end - sent for end in done.values()]
    throughput = len(done) / max(1e-6, max(done.values()) - sent)
    counts = bench.sim.requests(FAULTED)
    state = bench.client.hget(bench.keys.breaker(FAULTED), "state") or b"closed"
    breaker = state.decode() if isinstance(state, bytes) else str(state)
    bench.sim.set_faults(FAULTED, latency=0.0, down=False, errorRate=0.0)
    drain = time.monotonic() + 180
    while time.monotonic() < drain and not _settled(bench, list(tasks.values())):
        time.sleep(0.5)
    return {"throughput": throughput, "p95": _p95(latencies),
            "requests": sum(counts.values()),
            "failed": sum(n for (verb, _), n in counts.items() if verb == "error"),
            "breaker": breaker}  # fmt: skip


def failing_cluster(bench: Bench, rounds: int, latency: float) -> None:
    faults: dict[str, dict[str, Any]] = {
        "no fault": {},
        "down": {"down": True},
        f"slow ({latency:g} s/request)": {"latency": latency},
        "503 at 50 %": {"errorRate": 0.5, "errorCode": 503},
    }
    results: dict[str, list[dict[str, Any]]] = {}
    failing_cluster_round(bench, {})  # warm-up: namespaces, discovery caches
    for number in range(rounds):
        for name, fault in faults.items():
            result = failing_cluster_round(bench, fault)
            results.setdefault(name, []).append(result)
            print(f"round {number + 1} {name:<24} {result['throughput']:>7.1f} targets/s "
                  f"p95 {result['p95']:.2f} s; {FAULTED}: {result['requests']} requests "
                  f"({result['failed']} failed by the fault), breaker {result['breaker']}",
                  flush=True)  # fmt: skip
            bench.client.delete(*(bench.keys.breaker(c) for c in CLUSTERS))
    base_tp = statistics.median(r["throughput"] for r in results["no fault"])
    base_p95 = statistics.median(r["p95"] for r in results["no fault"])
    print(f"\nA failing cluster: {len(bench.apps)} apps x 3 clusters, {rounds} round(s) each; "
          f"healthy clusters {', '.join(HEALTHY)}")  # fmt: skip
    print(f"{'fault on ' + FAULTED:<28} {'targets/s':>10} {'p95 s':>8} {'tp loss':>8} {'p95 x':>7}")
    for name, values in results.items():
        tp = statistics.median(r["throughput"] for r in values)
        p95 = statistics.median(r["p95"] for r in values)
        print(f"{name:<28} {tp:>10.1f} {p95:>8.2f} {base_tp / tp:>8.2f} {p95 / base_p95:>7.2f}")


def host_death(bench: Bench, kills: int, env: dict[str, str]) -> None:
    app = bench.apps[0]
    survivor = bench.worker(1, env)
    times: list[float] = []
    lost = 0
    for _ in range(kills):
        doomed = bench.worker(1, env)
        bench.sim.set_faults("sim-1", latency=0.3)
        bench.sim.reset_requests("sim-1")
        # A first sync of a fresh namespace is long enough to be killed in the middle.
        bench.client.delete(bench.keys.history(app, "sim-1"))
        task_id = bench.send(app, "sim-1")
        lock = bench.keys.lock(app, "sim-1")
        deadline = time.monotonic() + 30
        while not (held := bench.client.get(lock)) and time.monotonic() < deadline:
            time.sleep(0.05)
        holder = (held or b"").decode()
        victim = doomed if '"w":"bench' + str(bench.workers.index(doomed) + 1) + "@" in holder \
            else survivor  # fmt: skip
        bench.kill(victim)
        killed = time.time()
        bench.sim.set_faults("sim-1", latency=0.0)
        end = None
        limit = time.monotonic() + 120
        while end is None and time.monotonic() < limit:
            end = bench.finished(app, "sim-1", task_id)
            time.sleep(0.1)
        if end is None:
            lost += 1
        else:
            times.append(max(0.0, end - killed))
        if victim is survivor:
            survivor = doomed
    print(f"\nWorker host death: {kills} SIGKILL(s) of a whole worker mid forced sync "
          f"(lock TTL {env['RECONCILER_LOCK_TTL']} s, heartbeat TTL "
          f"{env['RECONCILER_WORKER_HEARTBEAT_TTL']} s)")  # fmt: skip
    if times:
        print(f"seconds to converge: median {statistics.median(times):.1f}, max {max(times):.1f}"
              f" ({', '.join(f'{t:.1f}' for t in times)})")  # fmt: skip
    print(f"syncs lost: {lost}")


@contextlib.contextmanager
def installation(apps: int) -> Iterator[Bench]:
    with tempfile.TemporaryDirectory() as tmp, provide_redis() as url, \
            kubesim.serve(list(CLUSTERS)) as sim:  # fmt: skip
        bench = Bench(Path(tmp), sim, url, apps)
        try:
            yield bench
        finally:
            bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--cluster-limit", type=int, default=2)
    parser.add_argument("--cooldown", type=float, default=5.0)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--only", choices=["cluster", "host"], default=None)
    args = parser.parse_args()
    if args.only != "host":
        with installation(args.apps) as bench:
            bench.worker(args.concurrency,
                         {"RECONCILER_CLUSTER_CONCURRENCY": str(args.cluster_limit),
                          "RECONCILER_BREAKER_COOLDOWN": str(args.cooldown)})  # fmt: skip
            failing_cluster(bench, args.rounds, args.latency)
    if args.only != "cluster":
        env = {"RECONCILER_LOCK_TTL": "10", "RECONCILER_WORKER_HEARTBEAT_TTL": "3",
               "RECONCILER_TASK_SOFT_LIMIT": "30"}  # fmt: skip
        with installation(2) as bench:
            host_death(bench, args.kills, env)
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
