"""A fleet through the real runtime, and beside it the kubectl loop a team would write.

``--apps`` applications (a Deployment, a Service and three ConfigMaps each: 5 objects,
3 kinds) on ``--clusters`` kubesim clusters, all in one local Git repository, reconciled
by one worker with ``--concurrency`` processes; Redis, kubesim and the worker on this
machine.  Passes are started the way beat starts them (``reconcile_app`` on the scheduled
queue, every application at once): a first full sync, then ``--passes`` no-change passes.
The revision cache expires between passes, so every pass asks Git again.

What is measured is not disturbed by the measuring: the bench learns that a pass is over
from the reconciles' total, one Redis field the workers already increment with every
outcome (``ReconcileMetrics.total``), read every 100 ms.  Once the total has moved by the
number of targets, every status entry is read once: a pass counts only when every target
recorded Synced after it started, and its time is the last target's finish.

Then the peer, on the same kubesim clusters with the same manifests (each application's
directory as written in the repository): for each target, ``kubectl apply --server-side
--field-manager=peer -f <dir> -n peer-app-N --context <cluster>``, as many kubectl
processes at once as the worker has processes, a first pass then ``--passes`` no-change
passes.  Its namespaces are of its own (``peer-app-N``), created beforehand and not timed.
A kubectl process per target is slow at thousands of targets, so the peer runs on
``--peer-sample`` targets (spread over every application and cluster); its targets/s is
that sample's.  The worker is stopped before the peer runs.

Costs, printed at the end: API requests per target by verb (kubesim's counters) in a
no-change pass, ours and the peer's; CPU per target of the worker, kubesim, Redis and
kubectl; Redis commands per target; Redis memory per target and the size of each status,
history and result key; the worker's RSS (main process and pool processes); Git fetches
per repository per pass.

``--profile`` adds one no-change pass with the worker's pool processes under cProfile
(each task of that pass, from ``task_prerun`` to ``task_postrun``; the time between tasks
is timed, not profiled) and prints the busiest one's top functions by cumulative time.
The worker is then started through :func:`profiled_worker` (this file, imported by the
worker's own Python), whose hooks do nothing until the profiled pass.

    .venv/bin/python bench/fleet_bench.py [--apps 20] [--clusters 10] [--concurrency 2]
        [--passes 3] [--peer-sample 200] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import resource
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import redis
import yaml

from reconciler.fleet import redact_url
from reconciler.outcome import Trigger
from reconciler.render.kustomize import kubectl_binary
from reconciler.store.keys import Keys
from reconciler.store.metrics import ReconcileMetrics
from reconciler.store.provision import provide_redis
from reconciler.store.records import DEFAULT_HISTORY_LIMIT, Records
from workers.app import app, queue_for, reconfigure

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org",
           "PATH": "/usr/bin:/bin"}  # fmt: skip

#: Seconds between two reads of the reconciles' total while a pass runs.
POLL = 0.1
#: Seconds a pass may take before the bench gives up on it.
PASS_TIMEOUT = 1800.0
#: Seconds a resolved revision is trusted in the bench: longer than one pass's fan-out
#: (a hundred applications on one repository take a few seconds on two cores), so a pass
#: asks Git once, as a beat interval would.
REVISION_TTL = 8.0
#: Seconds between passes: the revision cache expires, so every pass asks Git again.
BETWEEN_PASSES = REVISION_TTL + 0.5
#: Targets whose history and result keys are sized with ``MEMORY USAGE``.
KEY_SAMPLE = 20
#: Directory the profiled worker's pool processes write to (set only for ``--profile``).
PROFILE_ENV = "FLEET_BENCH_PROFILE_DIR"
#: File in that directory whose presence starts the profile at a pool process's next task.
PROFILE_MARK = "profile-now"
#: Functions printed from the profile, by cumulative time and by own time.
PROFILE_TOP = 25
PROFILE_OWN = 10


# -- the fleet ---------------------------------------------------------------------------


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
    lines += [f"  - {{name: {cluster_name(c)}, kubeconfig: {kubeconfig}}}" for c in range(clusters)]
    lines.append("applications:")
    for i in range(apps):
        lines += [
            f"  - name: app-{i}",
            f"    source: {{repo: {repo}, revision: main, path: app-{i}}}",
            f"    destination: {{namespace: app-{i}}}",
            "    sync: {interval: 1h}",  # passes are started by the benchmark, not beat
        ]
    path.write_text("\n".join(lines) + "\n")


def cluster_name(index: int) -> str:
    """The fleet's and the kubeconfig's name of cluster ``index`` (``cli sim``: sim-1...)."""
    return f"sim-{index + 1}"


def spread(apps: int, clusters: int, n: int) -> list[tuple[int, int]]:
    """``n`` distinct (application, cluster) targets spread evenly over both.

    Diagonals: round ``j`` pairs application ``a`` with cluster ``(a + j) % clusters``, so
    the first rounds give every application once per round and cycle through clusters.
    """
    order = [(a, (a + j) % clusters) for j in range(clusters) for a in range(apps)]
    return order[: max(0, n)]


# -- processes ---------------------------------------------------------------------------


class Children:
    """Every process the bench starts, each stopped by its id on the way out, whatever happens.

    The worker's pool processes are descendants the bench did not start itself: they are
    remembered when seen (``adopt``) and killed if still there once the worker has stopped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._popens: list[subprocess.Popen[bytes]] = []
        self._descendants: dict[int, psutil.Process] = {}

    def start(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(list(argv), **kwargs)
        with self._lock:
            self._popens.append(child)
        return child

    def run(self, argv: Sequence[str]) -> tuple[int, bytes]:
        """Run ``argv`` to its end (from any thread): exit status and stderr."""
        child = self.start(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = child.communicate(timeout=300)
        finally:
            self.stop(child)
        return child.returncode, err

    def family(self, child: subprocess.Popen[bytes]) -> list[psutil.Process]:
        """``child`` and its live descendants, which are remembered to be stopped later."""
        try:
            top = psutil.Process(child.pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        with self._lock:
            for proc in procs[1:]:
                self._descendants.setdefault(proc.pid, proc)
        return procs

    def stop(self, child: subprocess.Popen[bytes], *, timeout: float = 60) -> None:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=10)
        with self._lock:
            if child in self._popens:
                self._popens.remove(child)

    def stop_all(self) -> None:
        with self._lock:
            popens = list(reversed(self._popens))
        for child in popens:
            self.stop(child)
        with self._lock:
            left = list(self._descendants.values())
            self._descendants.clear()
        for proc in left:
            try:
                if proc.is_running():  # the same process: psutil checks its start time
                    proc.kill()
            except psutil.NoSuchProcess:
                pass


def rss_of(procs: Sequence[psutil.Process]) -> int:
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def cpu_of(procs: Sequence[psutil.Process]) -> float:
    """CPU seconds (user + system) the processes have used so far."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def children_cpu() -> float:
    """CPU seconds of this process's children that have ended (the peer's kubectl runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- kubesim and Redis counters ------------------------------------------------------------


class SimCounters:
    """kubesim's request counters, per cluster, through its admin endpoint."""

    def __init__(self, kubeconfig: Path, clusters: int) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        server = str(config["clusters"][0]["cluster"]["server"])
        self.base = server.split("/clusters/", 1)[0]
        self.names = [cluster_name(c) for c in range(clusters)]
        self.pid = 0

    def reset(self) -> None:
        for name in self.names:
            url = f"{self.base}/admin/clusters/{name}/requests"
            request = urllib.request.Request(url, method="DELETE")
            with urllib.request.urlopen(request, timeout=30) as response:
                response.read()

    def read(self) -> Counter[str]:
        """Requests by verb over every cluster since the last reset (discovery as ``get``)."""
        counts: Counter[str] = Counter()
        for name in self.names:
            url = f"{self.base}/admin/clusters/{name}/requests"
            with urllib.request.urlopen(url, timeout=30) as response:
                body = json.loads(response.read())
            for row in body["requests"]:
                counts[f"{row['verb']} {row['resource']}"] += int(row["count"])
        return counts


def redis_cpu(client: redis.Redis) -> float:
    """The Redis server's CPU seconds so far (the whole server)."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def redis_calls(client: redis.Redis) -> Counter[str]:
    """Commands the Redis server has served so far, by command (the whole server)."""
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"])
                    for name, v in stats.items() if isinstance(v, dict)})  # fmt: skip


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


# -- our passes ----------------------------------------------------------------------------


@dataclass
class PassFigures:
    """One pass: how long, how many targets ended Synced, and what it cost."""

    name: str
    seconds: float
    targets: int
    not_synced: int = 0
    fetches: int = 0
    checked: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)
    redis_calls: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.targets / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Installation:
    """The running fleet: Redis, the worker, kubesim, and what the passes need of them."""

    apps: int
    clusters: int
    client: redis.Redis
    keys: Keys
    children: Children
    worker: subprocess.Popen[bytes]
    sim: subprocess.Popen[bytes]
    counters: SimCounters

    @property
    def targets(self) -> int:
        return self.apps * self.clusters

    def fetches(self) -> int:
        return int(self.client.get(self.keys.metrics_git_fetches()) or 0)

    def cpu(self) -> dict[str, float]:
        worker = self.children.family(self.worker)
        return {
            "worker main": cpu_of(worker[:1]),
            "worker pool": cpu_of(worker[1:]),
            "kubesim": cpu_of(self.children.family(self.sim)),
            "Redis": redis_cpu(self.client),
        }

    def run_pass(self, name: str, *, count_requests: bool = False) -> PassFigures:
        """Start every application at once; the pass ends when every target has an outcome.

        While it runs, the bench reads one Redis field every ``POLL`` seconds and nothing
        else.  Afterwards it reads every status entry once.
        """
        metrics = ReconcileMetrics(self.client, self.keys)
        if count_requests:
            self.counters.reset()
        fetches_before = self.fetches()
        cpu_before = self.cpu()
        counted_before = metrics.total()
        calls_before = redis_calls(self.client)
        started_at = time.time()
        begin = time.perf_counter()
        for i in range(self.apps):
            app.send_task("reconciler.reconcile_app", args=(f"app-{i}", Trigger.SCHEDULE.value),
                          queue=queue_for(forced=False))  # fmt: skip
        polls = 0
        deadline = time.monotonic() + PASS_TIMEOUT
        while metrics.total() - counted_before < self.targets:
            polls += 1
            if time.monotonic() > deadline:
                break
            time.sleep(POLL)
        seen = time.perf_counter() - begin
        calls_after = redis_calls(self.client)
        cpu_after = self.cpu()
        figures = PassFigures(name=name, seconds=seen, targets=self.targets)
        figures.cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
        # The bench's own commands in between (its polls and one INFO) are not the fleet's.
        calls_after.subtract(calls_before)
        calls_after.subtract({"hget": polls + 1, "info": 1})
        figures.redis_calls = +calls_after
        figures.fetches = self.fetches() - fetches_before
        if count_requests:
            figures.requests = self.counters.read()
        # The one full read: every target Synced, finished after the pass started.
        last = 0.0
        synced = 0
        for entry in Records(self.client, self.keys).status():
            finished = _epoch(entry.finished)
            if entry.sync == "Synced" and finished >= started_at:
                synced += 1
                last = max(last, finished)
                figures.checked[str(entry.checked or "-")] += 1
            elif len(figures.failures) < 3:
                figures.failures.append(
                    f"{entry.get('application')} on {entry.get('cluster')}: "
                    f"{entry.get('sync')} {entry.get('reason') or ''} {entry.get('error') or ''}"
                )
        figures.not_synced = self.targets - synced
        if not figures.not_synced and last:
            figures.seconds = last - started_at  # the last finish, not the poll that saw it
        return figures


def _epoch(value: object) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def wait_for_worker(worker: subprocess.Popen[bytes], *, timeout: float = 120) -> None:
    """Until the worker answers a ping: its consumer is up and its pool has forked."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}: see its log")
        if app.control.ping(timeout=0.5):
            return
    raise SystemExit(f"the worker did not answer a ping within {timeout:.0f} s")


# -- Redis's share ------------------------------------------------------------------------


@dataclass
class KeySizes:
    status_per_target: float = 0.0
    history_per_target: float = 0.0
    history_entries: float = 0.0
    results: int = 0
    result_size: float = 0.0
    keys_total: int = 0


def key_sizes(client: redis.Redis, keys: Keys, sample: Sequence[tuple[int, int]],
              targets: int) -> KeySizes:  # fmt: skip
    sizes = KeySizes()
    sizes.status_per_target = (client.memory_usage(keys.status_index(), samples=0) or 0) / targets
    histories = [keys.history(f"app-{a}", cluster_name(c)) for a, c in sample[:KEY_SAMPLE]]
    if histories:
        sizes.history_per_target = sum(
            client.memory_usage(h, samples=0) or 0 for h in histories) / len(histories)  # fmt: skip
        sizes.history_entries = sum(client.llen(h) for h in histories) / len(histories)
    found: list[bytes] = []
    for key in client.scan_iter(match=f"{keys.prefix}*", count=5000):
        sizes.keys_total += 1
        if b"celery-task-meta-" in key:
            sizes.results += 1
            if len(found) < KEY_SAMPLE:
                found.append(key)
    if found:
        sizes.result_size = sum(client.memory_usage(k, samples=0) or 0 for k in found) / len(found)
    return sizes


# -- the peer: a kubectl loop ---------------------------------------------------------------


@dataclass
class Peer:
    """``kubectl apply --server-side`` per target, ``concurrency`` at a time."""

    kubectl: str
    kubeconfig: Path
    repo: Path
    cache: Path
    sample: list[tuple[int, int]]
    concurrency: int
    children: Children
    sim: subprocess.Popen[bytes]
    counters: SimCounters

    def command(self, a: int, c: int) -> list[str]:
        return [self.kubectl, "apply", "--server-side", "--field-manager=peer",
                "-f", str(self.repo / f"app-{a}"), "-n", f"peer-app-{a}",
                "--kubeconfig", str(self.kubeconfig), "--context", cluster_name(c),
                "--cache-dir", str(self.cache)]  # fmt: skip

    def create_namespaces(self, work: Path) -> None:
        """The peer's namespaces, one kubectl per cluster, before anything is timed."""
        by_cluster: dict[int, list[int]] = {}
        for a, c in self.sample:
            by_cluster.setdefault(c, []).append(a)
        for c, apps in sorted(by_cluster.items()):
            manifest = work / f"peer-namespaces-{c}.yaml"
            manifest.write_text("".join(
                f"---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: peer-app-{a}}}\n"
                for a in apps))  # fmt: skip
            status, err = self.children.run(
                [self.kubectl, "apply", "--server-side", "--field-manager=peer", "-f",
                 str(manifest), "--kubeconfig", str(self.kubeconfig), "--context",
                 cluster_name(c), "--cache-dir", str(self.cache)])  # fmt: skip
            if status:
                raise SystemExit(f"peer namespaces on {cluster_name(c)}: {err.decode()[:300]}")

    def run_pass(self, name: str, *, count_requests: bool = False) -> PassFigures:
        if count_requests:
            self.counters.reset()
        failures: list[str] = []
        sim_before = cpu_of(self.children.family(self.sim))
        kubectl_before = children_cpu()

        def one(target: tuple[int, int]) -> None:
            status, err = self.children.run(self.command(*target))
            if status:
                failures.append(f"app-{target[0]} on {cluster_name(target[1])}: "
                                f"{err.decode(errors='replace').strip()[:200]}")  # fmt: skip

        begin = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            list(pool.map(one, self.sample))
        finally:
            # On Ctrl-C or a failure, the targets not started yet are not started at all.
            pool.shutdown(wait=True, cancel_futures=True)
        seconds = time.perf_counter() - begin
        figures = PassFigures(name=name, seconds=seconds, targets=len(self.sample))
        figures.cpu = {"kubectl": children_cpu() - kubectl_before,
                       "kubesim": cpu_of(self.children.family(self.sim)) - sim_before}  # fmt: skip
        figures.not_synced = len(failures)
        figures.failures = failures
        if count_requests:
            figures.requests = self.counters.read()
        return figures


# -- the profile --------------------------------------------------------------------------


class TaskProfile:
    """A pool process's profile of the tasks it runs while ``PROFILE_MARK`` exists.

    The profiler runs from ``task_prerun`` to ``task_postrun`` of each task (the task, the
    result it stores, Celery's tracing around it); the time from one task's end to the next
    one's start (waiting for work, taking it from the main process) is timed apart, not
    profiled.  Written to ``pool-PID.prof`` and ``pool-PID.json`` when the process exits.
    """

    def __init__(self, where: Path) -> None:
        self.where = where
        self.profiler: cProfile.Profile | None = None
        self.tasks = 0
        self.in_tasks = 0.0
        self.between = 0.0
        self._began = 0.0
        self._ended = 0.0

    def prerun(self, **_: Any) -> None:
        now = time.perf_counter()
        if self.profiler is None:
            if not (self.where / PROFILE_MARK).exists():
                return
            self.profiler = cProfile.Profile()
        elif self._ended:
            self.between += now - self._ended
        self._began = now
        self.profiler.enable()

    def postrun(self, **_: Any) -> None:
        if self.profiler is None or not self._began:
            return
        self.profiler.disable()
        self._ended = time.perf_counter()
        self.in_tasks += self._ended - self._began
        self._began = 0.0
        self.tasks += 1

    def dump(self, **_: Any) -> None:
        if self.profiler is None:
            return
        name = self.where / f"pool-{os.getpid()}"
        self.profiler.dump_stats(f"{name}.prof")
        Path(f"{name}.json").write_text(json.dumps(
            {"tasks": self.tasks, "in_tasks": self.in_tasks, "between": self.between}))  # fmt: skip


def profiled_worker() -> None:
    """Run ``reconciler worker`` (the arguments after the program's) with a
    :class:`TaskProfile` in each pool process, writing to ``$FLEET_BENCH_PROFILE_DIR``."""
    from celery import signals  # noqa: PLC0415

    profile = TaskProfile(Path(os.environ[PROFILE_ENV]))  # forked into every pool process
    signals.task_prerun.connect(profile.prerun, weak=False)
    signals.task_postrun.connect(profile.postrun, weak=False)
    signals.worker_process_shutdown.connect(profile.dump, weak=False)
    sys.argv = ["reconciler", *sys.argv[1:]]
    runpy.run_module("cli", run_name="__main__", alter_sys=True)


def profile_lines(where: Path) -> list[str]:
    """The busiest pool process's top functions by cumulative time."""
    runs = []
    for path in sorted(where.glob("pool-*.prof")):
        times = json.loads(path.with_suffix(".json").read_text())
        runs.append((float(times["in_tasks"]), path, times))
    if not runs:
        return ["  (no pool process wrote a profile: see the worker log)"]
    _, path, times = max(runs, key=lambda run: run[0])
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(raw.items(), key=lambda item: item[1][3], reverse=True)
    lines = [
        f"  busiest of {len(runs)} pool processes: {times['tasks']} tasks, "
        f"{times['in_tasks']:.2f} s in them (profiled), {times['between']:.2f} s between "
        "them (waiting for the next, not profiled)",
        f"  top {PROFILE_TOP} functions by cumulative time:",
        f"  {'calls':>9} {'own s':>7} {'cum s':>7}  function",
    ]
    for (filename, line, function), (_, calls, own, cumulative, _) in rows[:PROFILE_TOP]:
        lines.append(f"  {calls:>9} {own:7.3f} {cumulative:7.3f}  "
                     f"{_short(filename)}:{line}({function})")  # fmt: skip
    lines.append(f"  and the top {PROFILE_OWN} by own time:")
    rows.sort(key=lambda item: item[1][2], reverse=True)
    for (filename, line, function), (_, calls, own, cumulative, _) in rows[:PROFILE_OWN]:
        lines.append(f"  {calls:>9} {own:7.3f} {cumulative:7.3f}  "
                     f"{_short(filename)}:{line}({function})")  # fmt: skip
    return lines


def _short(filename: str) -> str:
    """A source file as the profile prints it: from its package (or this repository) on."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    return filename.removeprefix(str(Path(__file__).resolve().parent.parent) + "/")


# -- the report ---------------------------------------------------------------------------


def by_verb(requests: Counter[str], targets: int) -> str:
    verbs: Counter[str] = Counter()
    for name, n in requests.items():
        verbs[name.split(" ", 1)[0]] += n
    total = sum(verbs.values())
    parts = ", ".join(f"{verb} {n / targets:.2f}" for verb, n in verbs.most_common())
    return f"{total / targets:.2f} = {parts or 'none'}"


def by_resource(requests: Counter[str], targets: int) -> str:
    return ", ".join(f"{name} {n / targets:.2f}" for name, n in requests.most_common(8))


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def kib(n: float) -> str:
    return f"{n / 1024:.2f} KiB"


def best(passes: Sequence[PassFigures]) -> PassFigures:
    return max(passes, key=lambda p: p.rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3, help="no-change passes to time")
    parser.add_argument("--no-watcher", action="store_true",
                        help="run no watcher: every run reads its cluster")  # fmt: skip
    parser.add_argument("--peer-sample", type=int, default=200,
                        help="targets the kubectl loop runs on (0: no peer)")  # fmt: skip
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more no-change pass with the pool processes under cProfile",
    )
    parser.add_argument("--profile-first", action="store_true",
                        help="the first full sync with the pool processes under cProfile "
                        "(instead of the extra no-change pass)")  # fmt: skip
    args = parser.parse_args()
    args.profile = args.profile or args.profile_first
    if args.apps < 1 or args.clusters < 1 or args.passes < 1 or args.concurrency < 1:
        parser.error("--apps, --clusters, --passes and --concurrency are at least 1")
    targets = args.apps * args.clusters
    sample = spread(args.apps, args.clusters, min(args.peer_sample, targets))
    kubectl = kubectl_binary() if sample else ""
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    write_repo(work / "repo", args.apps)
    kubeconfig = work / "kubeconfig"
    fleet_file = work / "fleet.yaml"
    write_fleet(fleet_file, repo=work / "repo", kubeconfig=kubeconfig, apps=args.apps,
                clusters=args.clusters)  # fmt: skip
    profile_dir = work / "profile"
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    children = Children()
    # SIGTERM (e.g. from timeout) must still stop the children and an embedded Redis.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"work directory: {work} (worker log: {work / 'worker.log'})", flush=True)
    ours: list[PassFigures] = []
    peer: list[PassFigures] = []
    profiled: PassFigures | None = None
    rss: dict[str, int] = {}
    memory: dict[str, int] = {}
    sizes = KeySizes()
    client: redis.Redis | None = None
    given = os.environ.get("REDIS_URL", "")
    with provide_redis() as url, (work / "worker.log").open("wb") as worker_log:
        where = (f"the Redis at {redact_url(url)} (the server-wide figures include its "
                 "other users)" if given and url == given else "an embedded Redis")  # fmt: skip
        # The runtime refuses inherited GIT_* settings (a host's CA bundle, say); the
        # bench's repository is a local one and needs none of them.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env = {**inherited, "REDIS_URL": url, "RECONCILER_REDIS_PREFIX": prefix,
               "RECONCILER_CONFIG": str(fleet_file), "RECONCILER_CACHE_DIR": str(work / "cache"),
               "RECONCILER_REVISION_TTL": str(REVISION_TTL)}  # fmt: skip
        reconfigure(app, url=url, prefix=prefix)
        try:
            sim = children.start(
                [sys.executable, "-m", "cli", "sim", "--clusters", str(args.clusters),
                 "--kubeconfig", str(kubeconfig), "--controller-delay", "0"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            deadline = time.monotonic() + 60
            while not kubeconfig.exists():
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise SystemExit("kubesim did not write its kubeconfig")
                time.sleep(0.05)
            worker_args = ["worker", "--concurrency", str(args.concurrency),
                           "--loglevel", "WARNING"]  # fmt: skip
            if args.profile:
                profile_dir.mkdir()
                env[PROFILE_ENV] = str(profile_dir)
                bench_dir = str(Path(__file__).resolve().parent)
                launcher = (f"import sys; sys.path.insert(0, {bench_dir!r}); "
                            "import fleet_bench; fleet_bench.profiled_worker()")  # fmt: skip
                worker_argv = [sys.executable, "-c", launcher, *worker_args]
            else:
                worker_argv = [sys.executable, "-m", "cli", *worker_args]
            worker = children.start(worker_argv, env=env, stdout=subprocess.DEVNULL,
                                    stderr=worker_log)  # fmt: skip
            if not args.no_watcher:
                # Part of an installation: it lets unchanged targets skip the cluster read.
                children.start([sys.executable, "-m", "cli", "watcher"], env=env,
                               stdout=subprocess.DEVNULL, stderr=worker_log)  # fmt: skip
            client = redis.Redis.from_url(url)
            keys = Keys(prefix)
            counters = SimCounters(kubeconfig, args.clusters)
            fleet = Installation(apps=args.apps, clusters=args.clusters, client=client, keys=keys,
                          children=children, worker=worker, sim=sim, counters=counters)  # fmt: skip
            wait_for_worker(worker)

            memory["before"] = used_memory(client)
            if args.profile_first:
                (profile_dir / PROFILE_MARK).touch()
            ours.append(fleet.run_pass("first full sync"))
            if args.profile_first:
                (profile_dir / PROFILE_MARK).unlink()
            memory["first"] = used_memory(client)
            rss["first"] = rss_of(children.family(worker))
            print(f"  ours: {ours[-1].name}: {ours[-1].seconds:.2f} s", flush=True)
            for n in range(1, args.passes + 1):
                time.sleep(BETWEEN_PASSES)
                ours.append(fleet.run_pass(f"no-change pass {n}", count_requests=True))
                print(f"  ours: {ours[-1].name}: {ours[-1].seconds:.2f} s", flush=True)
            memory["last"] = used_memory(client)
            rss["last"] = rss_of(children.family(worker))
            rss["processes"] = len(children.family(worker))
            sizes = key_sizes(client, keys, sample or spread(args.apps, args.clusters, 20),
                              targets)  # fmt: skip
            if args.profile and not args.profile_first:
                (profile_dir / PROFILE_MARK).touch()
                time.sleep(BETWEEN_PASSES)
                profiled = fleet.run_pass("no-change pass under cProfile")
                (profile_dir / PROFILE_MARK).unlink()
                print(f"  ours: {profiled.name}: {profiled.seconds:.2f} s", flush=True)
            children.stop(worker)  # the peer has the machine to itself; pool profiles written

            if sample:
                runner = Peer(kubectl=kubectl, kubeconfig=kubeconfig, repo=work / "repo",
                              cache=work / "kube-cache", sample=sample,
                              concurrency=args.concurrency, children=children, sim=sim,
                              counters=counters)  # fmt: skip
                runner.create_namespaces(work)
                peer.append(runner.run_pass("first apply"))
                print(f"  peer: first apply: {peer[-1].seconds:.2f} s", flush=True)
                for n in range(1, args.passes + 1):
                    peer.append(runner.run_pass(f"no-change pass {n}", count_requests=True))
                    print(f"  peer: {peer[-1].name}: {peer[-1].seconds:.2f} s", flush=True)
        finally:
            children.stop_all()
            if client is not None:
                for key in client.scan_iter(match=f"{prefix}*", count=1000):
                    client.delete(key)
                client.close()
    report(args, ours=ours, peer=peer, profiled=profiled, rss=rss, memory=memory,
           sizes=sizes, profile_dir=profile_dir if args.profile else None,
           redis_used=where)  # fmt: skip
    unfinished = sum(p.not_synced for p in [*ours, *peer])
    if unfinished:
        print(f"\n{unfinished} target runs did not end Synced: these figures do not measure "
              f"a healthy fleet (worker log: {work / 'worker.log'})")  # fmt: skip
        return 1
    return 0


def report(args: argparse.Namespace, *, ours: list[PassFigures], peer: list[PassFigures],
           profiled: PassFigures | None, rss: dict[str, int], memory: dict[str, int],
           sizes: KeySizes, profile_dir: Path | None, redis_used: str) -> None:  # fmt: skip
    """The passes, one line each, then one block of figures, each naming what it measures."""
    targets = args.apps * args.clusters
    first, changeless = ours[0], ours[1:]
    last, fast = changeless[-1], best(changeless)
    print()
    print(f"fleet: {args.apps} applications x {args.clusters} kubesim clusters = {targets} "
          f"targets (5 objects, 3 kinds each), 1 Git repository; one worker --concurrency "
          f"{args.concurrency}, {'no watcher' if args.no_watcher else 'one watcher'}; "
          f"kubesim, {redis_used} and the worker on this machine "
          f"({os.cpu_count()} cores)")  # fmt: skip
    print(f"  {'pass':<38} {'time':>9} {'targets/s':>10} {'git fetches':>12} {'not Synced':>11}")
    for p in [*ours, *([profiled] if profiled else [])]:
        print(f"  {'ours: ' + p.name:<38} {p.seconds:8.2f}s {p.rate:10.1f} {p.fetches:12d} "
              f"{p.not_synced:11d}")  # fmt: skip
        for failure in p.failures:
            print(f"    not Synced: {failure}")
    for p in peer:
        print(f"  {'peer: ' + p.name:<38} {p.seconds:8.2f}s {p.rate:10.1f} {'-':>12} "
              f"{p.not_synced:11d}")  # fmt: skip
        for failure in p.failures[:3]:
            print(f"    failed: {failure}")
    if peer:
        sample = spread(args.apps, args.clusters, peer[0].targets)
        covered = f"{len({a for a, _ in sample})} applications, {len({c for _, c in sample})}"
        print(f"  peer: kubectl apply --server-side per target, {args.concurrency} at a time, "
              f"on a sample of {peer[0].targets} of the {targets} targets ({covered} "
              "clusters): its targets/s is the sample's; its namespaces made "
              "beforehand")  # fmt: skip

    def line(label: str, text: str) -> None:
        print(f"  {label + ':':<44} {text}")

    def per_target(cpu: dict[str, float], n: int) -> str:
        return ", ".join(f"{who} {seconds * 1000 / n:.2f} ms" for who, seconds in cpu.items())

    print()
    print("figures")
    if peer:
        peer_fast = best(peer[1:])
        line("first sync, targets/s",
             f"ours {first.rate:.1f}, peer {peer[0].rate:.1f} (sample): "
             f"ours/peer {first.rate / peer[0].rate:.1f}x")  # fmt: skip
        line("no-change pass (best of each), targets/s",
             f"ours {fast.rate:.1f}, peer {peer_fast.rate:.1f} (sample): "
             f"ours/peer {fast.rate / peer_fast.rate:.1f}x")  # fmt: skip
    else:
        line("first sync, targets/s", f"ours {first.rate:.1f}")
        line("no-change pass (best), targets/s", f"ours {fast.rate:.1f}")
    line("targets Synced after each pass (ours)",
         ", ".join(f"{p.targets - p.not_synced}/{p.targets}" for p in ours))  # fmt: skip
    line("no-change runs by what they checked (ours)",
         ", ".join(f"{n} {what}" for what, n in last.checked.most_common()))  # fmt: skip
    line("API requests per no-op target, ours", by_verb(last.requests, targets))
    line("  by resource", by_resource(last.requests, targets))
    if peer:
        line("API requests per no-op target, peer", by_verb(peer[-1].requests, peer[-1].targets))
        line("  by resource", by_resource(peer[-1].requests, peer[-1].targets))
    line("CPU per no-op target, ours", per_target(last.cpu, targets))
    if peer:
        line("CPU per no-op target, peer", per_target(peer[-1].cpu, peer[-1].targets))
    commands = last.redis_calls
    top = ", ".join(f"{name} {n / targets:.1f}" for name, n in commands.most_common(8))
    line("Redis commands per no-op target",
         f"{sum(commands.values()) / targets:.1f} (the whole server) = {top}, ...")  # fmt: skip
    grown = {when: (memory[when] - memory["before"]) / targets for when in ("first", "last")}
    line("Redis used_memory per target",
         f"{kib(grown['first'])} after the first sync, "
         f"{kib(grown['last'])} after {len(ours)} passes")  # fmt: skip
    per_outcome = sizes.history_per_target / sizes.history_entries if sizes.history_entries else 0
    line("Redis key sizes (MEMORY USAGE)",
         f"status entry {sizes.status_per_target:.0f} B per target; history "
         f"{kib(sizes.history_per_target)} per target for {sizes.history_entries:.0f} outcomes "
         f"({per_outcome:.0f} B each, {kib(per_outcome * DEFAULT_HISTORY_LIMIT)} at the cap of "
         f"{DEFAULT_HISTORY_LIMIT}); task result {sizes.result_size:.0f} B each, "
         f"{sizes.results / targets:.1f} per target kept; "
         f"{sizes.keys_total} keys in all")  # fmt: skip
    line(f"worker RSS (main + pool, {rss.get('processes', 0)} processes)",
         f"{mib(rss.get('first', 0))} after the first sync, "
         f"{mib(rss.get('last', 0))} after the last pass")  # fmt: skip
    line("Git fetches per repository per pass (ours)", ", ".join(str(p.fetches) for p in ours))
    if profile_dir is not None:
        print()
        print("profile of one no-change pass (a pool process under cProfile, which slows it)")
        for text in profile_lines(profile_dir):
            print(text)


if __name__ == "__main__":
    raise SystemExit(main())
