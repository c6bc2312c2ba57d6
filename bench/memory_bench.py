"""Memory as the fleet grows: the RSS of every long-lived component at several fleet sizes.

For each of ``--scales`` (numbers of kubesim clusters), ``--apps`` applications
(fleet_bench's: a Deployment, a Service and three ConfigMaps each) on every cluster, and
a fresh installation for it alone, driven from a Python process of its own (a Celery app
is pointed at one key prefix before its first use): kubesim (``reconciler sim
--controller-delay 0``), one ``reconciler worker --concurrency 2 --loglevel WARNING``, one
``reconciler watcher`` and one ``reconciler beat``, each in a process group of its own;
Redis from :func:`provide_redis` (``REDIS_URL`` when it answers, else an embedded one)
under a key prefix of that scale's own, whose keys are deleted when the scale ends.  The
revision cache lives 8 s (``RECONCILER_REVISION_TTL=8``); every application's interval
is an hour, so beat holds its entries without firing them while the bench runs.

At each scale, in order:

1. one full sync: ``reconcile_app`` with trigger ``manual`` on the forced queue for every
   application, done when every target's status entry says Synced (the status index is
   read once a second);
2. the watcher watching every cluster: each cluster's watch-stream hash exists;
3. one no-change pass: ``reconcile_app`` with trigger ``schedule`` on the scheduled queue
   (as beat sends it), done when every target recorded Synced after the pass began (the
   reconciles' total is read once a second, the status index once it has moved by the
   number of targets);
4. after ``SETTLE`` seconds, the RSS (psutil) of the worker's main process and of each of
   its pool processes, of the watcher, of beat and of kubesim (with its children, if any);
   and Redis's ``used_memory`` beyond what it used before the scale started, per target.

The table has one row per scale, then the ratio of the largest scale to the smallest for
each component.  kubesim holds every simulated object, so it is expected to grow with the
fleet; the others are the product.

``--trace COMPONENT[,COMPONENT]`` (worker, watcher, beat, kubesim) starts those components
through :func:`traced` (this file, imported by the component's own Python), which runs
``tracemalloc`` in the process (and in the worker's pool processes, which inherit it) and
writes a snapshot when the bench asks for one, after the RSS is read.  It then prints, per
traced component (the worker's busiest pool process apart from its main process), what
grew from the smallest scale to the largest, twice: by the innermost line of the
product's own code on each allocation's stack (what of ours made the memory, or asked a
library for it), and by the allocating line.  Tracing costs memory and time (a traced
first sync is ten times slower): read the table of a traced run for the trace only.

    .venv/bin/python bench/memory_bench.py [--scales 10,100,1000] [--apps 2]
        [--concurrency 2] [--trace watcher,worker]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import linecache
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
import redis
from fleet_bench import cluster_name, cpu_of, used_memory, write_fleet, write_repo
from latency_bench import ROOT, Processes, signals_exit, wait_until

from reconciler.outcome import Trigger
from reconciler.store.keys import Keys
from reconciler.store.metrics import ReconcileMetrics
from reconciler.store.provision import provide_redis
from reconciler.store.records import Records
from workers.app import app, queue_for, reconfigure

#: Seconds the first sync, the watches and the no-change pass may each take (2,000 targets
#: on 1,000 clusters take one or two minutes on two cores, ten times that traced).
DEADLINE = 3600.0
#: Seconds between two reads while the bench waits.
POLL = 1.0
#: Seconds between two progress lines while it waits.
PROGRESS = 15.0
#: Seconds between the end of the no-change pass and the RSS reading.
SETTLE = 3.0
#: ``RECONCILER_REVISION_TTL`` of the installation.
REVISION_TTL = "8"
COMPONENTS = ("worker", "watcher", "beat", "kubesim")
#: Directory the traced components write their snapshots to (set only for ``--trace``).
TRACE_ENV = "MEMORY_BENCH_TRACE_DIR"
#: File in that directory naming the snapshot wanted now (its text: the scale's label).
TRACE_MARK = "snapshot-now"
#: Frames kept per allocation, and lines printed per traced component.
TRACE_FRAMES = 30
TRACE_LINES = 15
#: The product's packages, whose innermost frame on a stack names what made an allocation.
PRODUCT = ("reconciler", "workers", "beat", "kubesim")


# -- processes ------------------------------------------------------------------------------


class Components(Processes):
    """latency_bench's process groups, the ``traced`` components started through
    :func:`traced` instead of ``python -m cli``."""

    def __init__(self, work: Path, *, traced: frozenset[str] = frozenset()) -> None:
        super().__init__(work)
        self.traced = traced

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        if name not in self.traced:
            return super().start(name, argv, env)
        bench_dir = str(Path(__file__).resolve().parent)
        launcher = (f"import sys; sys.path.insert(0, {bench_dir!r}); "
                    f"import memory_bench; memory_bench.traced({name!r})")  # fmt: skip
        with (self.work / f"{name}.log").open("wb") as log:
            child = subprocess.Popen([sys.executable, "-c", launcher, *argv], env=env, cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        self.started.append(child)
        return child


def rss(proc: psutil.Process) -> int:
    with contextlib.suppress(psutil.NoSuchProcess):
        return int(proc.memory_info().rss)
    return 0


def family(child: subprocess.Popen[bytes]) -> tuple[psutil.Process, list[psutil.Process]]:
    top = psutil.Process(child.pid)
    return top, top.children(recursive=True)


# -- one scale ------------------------------------------------------------------------------


@dataclass
class Scale:
    """What one fleet size measured."""

    clusters: int
    targets: int
    worker_main: int = 0
    worker_pool: list[int] = field(default_factory=list)
    watcher: int = 0
    beat: int = 0
    kubesim: int = 0
    redis_per_target: float = 0.0
    first_sync: float = 0.0
    watches: float = 0.0
    no_change: float = 0.0
    checked: dict[str, int] = field(default_factory=dict)
    #: CPU seconds each component had used when its RSS was read.
    cpu: dict[str, float] = field(default_factory=dict)

    def component(self, name: str) -> float:
        return float({
            "worker main": self.worker_main,
            "worker pool": sum(self.worker_pool),
            "watcher": self.watcher,
            "beat": self.beat,
            "kubesim": self.kubesim,
            "Redis per target": self.redis_per_target,
        }[name])  # fmt: skip


@dataclass
class Installation:
    apps: list[str]
    clusters: list[str]
    client: redis.Redis
    keys: Keys
    procs: list[subprocess.Popen[bytes]]

    @property
    def targets(self) -> int:
        return len(self.apps) * len(self.clusters)

    def send_all(self, trigger: Trigger) -> None:
        forced = trigger is not Trigger.SCHEDULE
        for name in self.apps:
            app.send_task("reconciler.reconcile_app", args=(name, trigger.value),
                          queue=queue_for(forced=forced))  # fmt: skip

    def synced_since(self, started_at: float) -> tuple[int, dict[str, int]]:
        """Targets whose last outcome is Synced and finished after ``started_at``, and
        what those runs checked (``cluster``, ``watch``...)."""
        synced = 0
        checked: dict[str, int] = {}
        for entry in Records(self.client, self.keys).status():
            if entry.sync == "Synced" and epoch(entry.finished) >= started_at:
                synced += 1
                what = str(entry.checked or "-")
                checked[what] = checked.get(what, 0) + 1
        return synced, checked

    def watched(self) -> int:
        """Clusters whose watch stream exists (``WatchStreams.get`` would find it)."""
        pipe = self.client.pipeline(transaction=False)
        for cluster in self.clusters:
            pipe.exists(self.keys.watch_stream(cluster))
        return sum(int(n) for n in pipe.execute())


def epoch(value: object) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


class Progress:
    """A line every ``PROGRESS`` seconds while the bench waits for something."""

    def __init__(self, what: str, total: int) -> None:
        self.what = what
        self.total = total
        self.begin = time.monotonic()
        self.last = self.begin

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS:
            self.last = now
            print(f"    {self.what}: {done}/{self.total} after {now - self.begin:.0f} s",
                  flush=True)  # fmt: skip


def first_sync(inst: Installation) -> float:
    """A forced sync of every application; seconds until every target recorded Synced."""
    started_at = time.time()
    begin = time.perf_counter()
    inst.send_all(Trigger.MANUAL)
    progress = Progress("first sync, targets Synced", inst.targets)

    def done() -> bool:
        synced, _ = inst.synced_since(started_at)
        progress(synced)
        return synced >= inst.targets

    wait_until("the first sync", done, timeout=DEADLINE, procs=inst.procs, every=POLL)
    return time.perf_counter() - begin


def watches(inst: Installation) -> float:
    """Seconds until the watcher says it watches every cluster."""
    begin = time.perf_counter()
    progress = Progress("clusters watched", len(inst.clusters))

    def done() -> bool:
        n = inst.watched()
        progress(n)
        return n >= len(inst.clusters)

    wait_until("every cluster watched", done, timeout=DEADLINE, procs=inst.procs, every=POLL)
    return time.perf_counter() - begin


def no_change_pass(inst: Installation) -> tuple[float, dict[str, int]]:
    """A scheduled pass of every application, as beat sends it; its seconds, and what its
    runs checked."""
    metrics = ReconcileMetrics(inst.client, inst.keys)
    counted = metrics.total()
    started_at = time.time()
    begin = time.perf_counter()
    inst.send_all(Trigger.SCHEDULE)
    progress = Progress("no-change pass, reconciles counted", inst.targets)
    found: dict[str, int] = {}

    def done() -> bool:
        moved = metrics.total() - counted
        progress(moved)
        if moved < inst.targets:
            return False
        synced, checked = inst.synced_since(started_at)
        found.update(checked)
        return synced >= inst.targets

    wait_until("the no-change pass", done, timeout=DEADLINE, procs=inst.procs, every=POLL)
    return time.perf_counter() - begin, found


def run_scale(*, clusters: int, apps: int, concurrency: int, repo: Path, work: Path, url: str,
              traced: frozenset[str], trace_dir: Path | None) -> Scale:  # fmt: skip
    """One fresh installation of ``clusters`` clusters, measured, then stopped and its keys
    deleted, whatever happens."""
    work.mkdir()
    kubeconfig = work / "kubeconfig"
    fleet_file = work / "fleet.yaml"
    write_fleet(fleet_file, repo=repo, kubeconfig=kubeconfig, apps=apps, clusters=clusters)
    prefix = f"memory-{uuid.uuid4().hex[:8]}:"
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("GIT_", "RECONCILER_", "KUBECONFIG", TRACE_ENV))}  # fmt: skip
    env = {**inherited, "REDIS_URL": url, "RECONCILER_REDIS_PREFIX": prefix,
           "RECONCILER_CONFIG": str(fleet_file), "RECONCILER_CACHE_DIR": str(work / "cache"),
           "RECONCILER_REVISION_TTL": REVISION_TTL, "PYTHONUNBUFFERED": "1"}  # fmt: skip
    if trace_dir is not None:
        env[TRACE_ENV] = str(trace_dir)
    reconfigure(app, url=url, prefix=prefix)
    procs = Components(work, traced=traced)
    client = redis.Redis.from_url(url)
    scale = Scale(clusters=clusters, targets=apps * clusters)
    try:
        before = used_memory(client)
        sim = procs.start("kubesim", ["sim", "--clusters", str(clusters), "--kubeconfig",
                                      str(kubeconfig), "--controller-delay", "0"], env)  # fmt: skip
        wait_until("kubesim's kubeconfig", kubeconfig.exists, timeout=300, procs=[sim])
        worker = procs.start("worker", ["worker", "--concurrency", str(concurrency),
                                        "--loglevel", "WARNING"], env)  # fmt: skip
        watcher = procs.start("watcher", ["watcher"], env)
        beat = procs.start("beat", ["beat", "--loglevel", "WARNING"], env)
        inst = Installation(apps=[f"app-{i}" for i in range(apps)],
                            clusters=[cluster_name(c) for c in range(clusters)], client=client,
                            keys=Keys(prefix), procs=[sim, worker, watcher, beat])  # fmt: skip
        wait_until("the worker to answer a ping", lambda: app.control.ping(timeout=0.5),
                   timeout=120, procs=inst.procs)  # fmt: skip
        scale.first_sync = first_sync(inst)
        print(f"  first sync of {inst.targets} targets: {scale.first_sync:.1f} s", flush=True)
        scale.watches = watches(inst)
        print(f"  every cluster watched {scale.watches:.1f} s later", flush=True)
        scale.no_change, scale.checked = no_change_pass(inst)
        print(f"  no-change pass: {scale.no_change:.1f} s (runs that checked: "
              f"{', '.join(f'{n} {what}' for what, n in sorted(scale.checked.items()))})",
              flush=True)  # fmt: skip
        time.sleep(SETTLE)
        main, pool = family(worker)
        scale.worker_main = rss(main)
        scale.worker_pool = sorted((rss(p) for p in pool), reverse=True)
        scale.watcher = rss(psutil.Process(watcher.pid))
        scale.beat = rss(psutil.Process(beat.pid))
        sim_top, sim_children = family(sim)
        scale.kubesim = rss(sim_top) + sum(rss(p) for p in sim_children)
        scale.redis_per_target = (used_memory(client) - before) / scale.targets
        scale.cpu = {"worker main": cpu_of([main]), "worker pool": cpu_of(pool),
                     "watcher": cpu_of([psutil.Process(watcher.pid)]),
                     "beat": cpu_of([psutil.Process(beat.pid)]),
                     "kubesim": cpu_of([sim_top, *sim_children])}  # fmt: skip
        if trace_dir is not None:
            expected = sum(1 + (concurrency if name == "worker" else 0) for name in traced)
            snapshots(trace_dir, label=f"{clusters}", expected=expected, procs=inst.procs)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            procs.stop_all()
            try:
                mine = list(client.scan_iter(match=f"{prefix}*", count=1000))
                for start in range(0, len(mine), 500):
                    client.delete(*mine[start : start + 500])
            except redis.RedisError as exc:  # an embedded Redis stopped by the same Ctrl-C
                print(f"  the keys under {prefix} were not deleted: {exc}", flush=True)
            client.close()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return scale


# -- tracing --------------------------------------------------------------------------------


def traced(name: str) -> None:
    """Run ``reconciler`` (the arguments after the program's) under ``tracemalloc``,
    writing a snapshot to ``$MEMORY_BENCH_TRACE_DIR`` each time the bench asks.

    A thread polls for ``TRACE_MARK``; the worker's pool processes, forked with tracing
    on, start a thread of their own.  Snapshots are ``LABEL-NAME-PID.snap`` (``NAME``:
    the component, ``-pool`` added in a pool process).
    """
    where = Path(os.environ[TRACE_ENV])
    root = os.getpid()
    tracemalloc.start(TRACE_FRAMES)

    def asked() -> str:
        with contextlib.suppress(OSError):
            return (where / TRACE_MARK).read_text().strip()
        return ""

    def watch() -> None:
        me = name if os.getpid() == root else f"{name}-pool"
        seen = asked()  # a request from before this process started is not for it
        while True:
            time.sleep(0.5)
            label = asked()
            with contextlib.suppress(OSError):
                if label and label != seen:
                    seen = label
                    out = where / f"{label}-{me}-{os.getpid()}.snap"
                    tracemalloc.take_snapshot().dump(str(out) + ".part")
                    os.replace(str(out) + ".part", out)

    def thread() -> None:
        threading.Thread(target=watch, name="memory-bench-trace", daemon=True).start()

    os.register_at_fork(after_in_child=thread)
    thread()
    sys.argv = ["reconciler", *sys.argv[1:]]
    runpy.run_module("cli", run_name="__main__", alter_sys=True)


def snapshots(where: Path, *, label: str, expected: int,
              procs: Sequence[subprocess.Popen[bytes]]) -> None:  # fmt: skip
    """Ask every traced process for a snapshot and wait until they are written."""
    (where / TRACE_MARK).write_text(label)
    print(f"  tracemalloc: {expected} snapshots asked for", flush=True)
    try:
        wait_until(f"{expected} tracemalloc snapshots",
                   lambda: len(list(where.glob(f"{label}-*.snap"))) >= expected, timeout=600,
                   procs=procs, every=POLL)  # fmt: skip
    finally:
        (where / TRACE_MARK).unlink()


def load_snapshot(where: Path, label: str, name: str) -> tracemalloc.Snapshot | None:
    """The snapshot of ``name`` (``worker-pool``: the pool process tracing the most)."""
    paths = [p for p in where.glob(f"{label}-{name}-*.snap")
             if p.stem.removeprefix(f"{label}-{name}-").isdigit()]  # fmt: skip
    if not paths:
        return None
    ignored = [tracemalloc.Filter(False, tracemalloc.__file__),
               tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]  # fmt: skip
    found = [tracemalloc.Snapshot.load(str(p)).filter_traces(ignored) for p in paths]
    return max(found, key=lambda s: sum(stat.size for stat in s.statistics("filename")))


def short(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    return filename.removeprefix(str(ROOT) + "/")


def _product(filename: str) -> bool:
    return any(filename.startswith(str(ROOT / part) + "/") for part in PRODUCT)


def by_our_line(snapshot: tracemalloc.Snapshot) -> dict[tuple[str, int], tuple[int, int]]:
    """Bytes and blocks traced, by the innermost line of the product's own code on each
    allocation's stack: what of ours made (or asked a library to make) the memory."""
    found: dict[tuple[str, int], tuple[int, int]] = {}
    for trace in snapshot.traces:
        frames = list(trace.traceback)  # the oldest first
        ours = next(((f.filename, f.lineno) for f in reversed(frames) if _product(f.filename)),
                    ("(no frame of the product)", 0))  # fmt: skip
        size, count = found.get(ours, (0, 0))
        found[ours] = (size + trace.size, count + 1)
    return found


def trace_report(where: Path, *, small: Scale, large: Scale, traced: frozenset[str]) -> None:
    """Per traced component: what grew from the smallest scale to the largest."""
    clusters = large.clusters - small.clusters
    targets = large.targets - small.targets
    names = [n for name in COMPONENTS if name in traced
             for n in ([name, f"{name}-pool"] if name == "worker" else [name])]  # fmt: skip
    for name in names:
        first = load_snapshot(where, str(small.clusters), name)
        last = load_snapshot(where, str(large.clusters), name)
        if first is None or last is None:
            print(f"\n{name}: no snapshot at {small.clusters} or {large.clusters} clusters")
            continue
        total = [sum(s.size for s in snap.statistics("filename")) for snap in (first, last)]
        print(f"\n{name}: traced memory {total[0] / 2**20:.1f} MiB at {small.clusters} clusters, "
              f"{total[1] / 2**20:.1f} MiB at {large.clusters}: "
              f"{(total[1] - total[0]) / clusters / 1024:.1f} KiB per cluster added")  # fmt: skip
        head = (f"  {'growth':>9} {'/cluster':>9} {'/target':>8} {'blocks':>8}  "
                f"({small.clusters} -> {large.clusters} clusters)")  # fmt: skip
        print("  by the innermost line of the product's code on the stack")
        print(head)
        before, after = by_our_line(first), by_our_line(last)
        grown = sorted(((after.get(k, (0, 0))[0] - before.get(k, (0, 0))[0],
                         after.get(k, (0, 0))[1] - before.get(k, (0, 0))[1], k)
                        for k in {*before, *after}), reverse=True)  # fmt: skip
        for size, count, (filename, lineno) in grown[:TRACE_LINES]:
            code = linecache.getline(filename, lineno).strip()[:60] if lineno else ""
            print(f"  {size / 2**20:5.2f} MiB {size / clusters:7.0f} B {size / targets:6.0f} B "
                  f"{count:+8d}  {short(filename)}:{lineno}  {code}")  # fmt: skip
        print("  by the allocating line")
        print(head)
        for stat in last.compare_to(first, "lineno")[:TRACE_LINES]:
            frame = stat.traceback[0]
            print(f"  {stat.size_diff / 2**20:5.2f} MiB {stat.size_diff / clusters:7.0f} B "
                  f"{stat.size_diff / targets:6.0f} B {stat.count_diff:+8d}  "
                  f"{short(frame.filename)}:{frame.lineno}")  # fmt: skip


# -- the report -----------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / 2**20:.1f}"


def report(scales: Sequence[Scale], *, apps: int, concurrency: int, redis_used: str) -> None:
    print()
    print(f"memory: {apps} applications (5 objects, 3 kinds each) on every cluster; one worker "
          f"--concurrency {concurrency}, one watcher, one beat, kubesim, {redis_used}; RSS "
          f"in MiB after a first sync and a no-change pass ({os.cpu_count()} cores)")  # fmt: skip
    print(f"  {'clusters':>8} {'targets':>7} {'worker main':>11} {'worker pool (each)':>19} "
          f"{'watcher':>8} {'beat':>6} {'kubesim':>8} {'Redis/target':>13}")  # fmt: skip
    for s in scales:
        pool = " + ".join(mib(n) for n in s.worker_pool)
        print(f"  {s.clusters:>8} {s.targets:>7} {mib(s.worker_main):>11} {pool:>19} "
              f"{mib(s.watcher):>8} {mib(s.beat):>6} {mib(s.kubesim):>8} "
              f"{s.redis_per_target / 1024:>9.2f} KiB")  # fmt: skip
    if len(scales) < 2:
        return
    small, large = scales[0], scales[-1]
    print(f"  ratio {large.clusters} vs {small.clusters} clusters (worker pool: the sum):")
    for name in ("worker main", "worker pool", "watcher", "beat", "kubesim", "Redis per target"):
        base = small.component(name)
        ratio = large.component(name) / base if base else float("nan")
        print(f"    {name + ':':<18} {ratio:5.2f}x")
    print("  CPU seconds used by then: " + "; ".join(
        f"{s.clusters} clusters: " + ", ".join(f"{who} {sec:.0f}" for who, sec in s.cpu.items())
        for s in scales))  # fmt: skip
    print("  the passes (s): " + "; ".join(
        f"{s.clusters} clusters: first sync {s.first_sync:.1f}, watches {s.watches:.1f}, "
        f"no-change {s.no_change:.1f}" for s in scales))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="10,100,1000", help="numbers of clusters, in order")
    parser.add_argument("--apps", type=int, default=2, help="applications, each on every cluster")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--trace", default="", help=f"components under tracemalloc: {','.join(COMPONENTS)}"
    )
    # One scale in this process, its figures written to WORK/scale.json (how main runs each).
    parser.add_argument("--one-scale", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        sizes = [int(n) for n in args.scales.split(",") if n.strip()]
    except ValueError:
        parser.error("--scales is a comma-separated list of numbers")
    traced = frozenset(n.strip() for n in args.trace.split(",") if n.strip())
    if not sizes or min(sizes) < 1 or args.apps < 1 or args.concurrency < 1:
        parser.error("--scales, --apps and --concurrency are at least 1")
    if traced - set(COMPONENTS):
        parser.error(f"--trace names some of {', '.join(COMPONENTS)}")
    if args.one_scale:
        return one_scale(args, traced=traced)
    work = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    write_repo(work / "repo", args.apps)
    if traced:
        (work / "trace").mkdir()
    print(f"work directory: {work} (component logs under scale-N/)", flush=True)
    scales: list[Scale] = []
    given = os.environ.get("REDIS_URL", "")
    with signals_exit(), provide_redis() as url:
        where = ("the Redis at REDIS_URL (used_memory is the whole server's)"
                 if given and url == given else "an embedded Redis")  # fmt: skip
        for clusters in sizes:
            print(f"{clusters} clusters, {clusters * args.apps} targets", flush=True)
            scale_work = work / f"scale-{clusters}"
            # A Python of its own per scale: a Celery app is pointed at one key prefix
            # before its first use, and a scale's prefix is fresh.
            argv = [sys.executable, __file__, "--one-scale", str(clusters), "--work", str(work),
                    "--apps", str(args.apps), "--concurrency", str(args.concurrency),
                    "--trace", ",".join(sorted(traced))]  # fmt: skip
            child = subprocess.Popen(argv, env={**os.environ, "REDIS_URL": url}, cwd=ROOT)
            try:
                status = child.wait()
            finally:
                if child.poll() is None:  # Ctrl-C reached it too; SIGTERM did not
                    child.terminate()
                    try:
                        child.wait(timeout=180)  # it stops its components, deletes its keys
                    except subprocess.TimeoutExpired:
                        child.kill()
                        child.wait(timeout=10)
            if status:
                print(f"the scale of {clusters} clusters failed ({status}): logs under "
                      f"{scale_work}")  # fmt: skip
                return 1
            scales.append(Scale(**json.loads((scale_work / "scale.json").read_text())))
    report(scales, apps=args.apps, concurrency=args.concurrency, redis_used=where)
    if traced and len(scales) > 1:
        print("\n(tracemalloc on: the RSS above includes its cost)")
        trace_report(work / "trace", small=scales[0], large=scales[-1], traced=traced)
    return 0


def one_scale(args: argparse.Namespace, *, traced: frozenset[str]) -> int:
    work = Path(args.work)
    with signals_exit(), provide_redis() as url:
        scale = run_scale(clusters=args.one_scale, apps=args.apps, concurrency=args.concurrency,
                          repo=work / "repo", work=work / f"scale-{args.one_scale}", url=url,
                          traced=traced, trace_dir=work / "trace" if traced else None)  # fmt: skip
    (work / f"scale-{args.one_scale}" / "scale.json").write_text(json.dumps(asdict(scale)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
