"""Latency: drift detected and healed, a push applied everywhere, a forced sync jumping a queue.

Throughput (``fleet_bench.py``) says how many targets a pass gets through; this says how
long one change waits.  Real processes on this machine, each in a process group of its
own: kubesim (``reconciler sim --controller-delay 0``), one ``reconciler worker
--concurrency N``, one ``reconciler watcher`` and one ``reconciler webhook``; Redis from
:func:`provide_redis` (``REDIS_URL`` when it answers, else an embedded one) under a key
prefix of this run's own, whose keys are deleted at the end.  Every application's
interval is an hour, so no scheduled run can explain a heal; everything is synced once
(forced syncs) before anything is timed.  The revision cache lives 1 s
(``RECONCILER_REVISION_TTL=1``).

* **drift**: ``--apps`` applications (fleet_bench's: a Deployment ``web`` with 2
  replicas, a Service, three ConfigMaps) on ``--clusters`` clusters.  ``--drifts``
  times, one after the other, on distinct targets: a merge PATCH of the Deployment's
  replicas straight to kubesim's API (no kubectl start-up in the figure); the clock starts
  when the PATCH has answered.  *Detected*: the watcher recorded the change, polled as
  one HGET of the live-changes hash every 10 ms until it holds the patched
  resourceVersion or a later one.  *Healed*: ``spec.replicas`` is 2 again, polled with
  a GET every 20 ms.  The next drift starts 0.3 s after the previous one healed.
* **webhook**: one application (``hook``, in a Git repository of its own, so a push
  matches it alone) on every cluster.  ``--pushes`` times: a commit changing one of its
  ConfigMaps, then the clock starts and the plain-token push is POSTed to ``reconciler
  webhook`` (``{"repo", "ref", "commit"}``; rate limit off).  *Applied*: every target's
  status entry shows that commit and Synced, polled with one HMGET of the application's
  fields every 20 ms.  The next push starts 0.3 s after the previous one was applied.
* **forced**: a scheduled pass of every application queued at once (``reconcile_app``
  trigger ``schedule`` on the scheduled queue, as beat sends it), then at once a forced
  sync of one target (trigger ``manual``, ``clusters=[one]``, on the forced queue); the
  clock runs from that send until the target's status entry shows a ``manual`` run that
  finished after it (one HGET every 20 ms).  Before each round the bench waits for the
  previous round's work to drain (both queues empty, nothing unacknowledged), so every
  round sees a full backlog.  First, the same forced sync on an idle worker, for the
  floor.

Times are of the poll that saw the result, so they include up to one poll period.
Percentiles are nearest-rank.  Nothing here asserts a speed.

    .venv/bin/python bench/latency_bench.py [--apps 10] [--clusters 50] [--concurrency 2]
        [--drifts 30] [--pushes 20] [--forced 10] [--only drift|webhook|forced]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import redis
import requests
import yaml
from fleet_bench import write_fleet, write_repo

from reconciler.store.keys import Keys
from reconciler.store.live import WatchStreams
from reconciler.store.provision import free_port, provide_redis
from reconciler.store.records import Records
from workers.app import FORCED_QUEUE, SCHEDULED_QUEUE, app, queue_for, reconfigure

ROOT = Path(__file__).resolve().parent.parent
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.org",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.org",
           "PATH": "/usr/bin:/bin"}  # fmt: skip
#: The webhook application: its own repository, so a push to it matches nothing else.
HOOK_APP = "hook"
#: Replicas of every Deployment ``web`` in Git (fleet_bench's ``write_repo``).
DESIRED_REPLICAS = 2
#: Poll periods, seconds.
DETECT_POLL, HEAL_POLL, STATUS_POLL = 0.01, 0.02, 0.02
#: Seconds between one measured change being done and the next one.
SPACING = 0.3
#: Seconds one measured change may take before it counts as missed.
CHANGE_TIMEOUT = 60.0
#: Seconds the first sync of the fleet may take.
SYNC_TIMEOUT = 900.0
#: Rounds of the forced sync on an idle worker, for the floor.
IDLE_ROUNDS = 3

T = TypeVar("T")


# -- processes ---------------------------------------------------------------------------


class Processes:
    """The processes the bench starts, each the leader of a process group of its own.

    Stopping one signals its whole group (a worker's pool processes with it), SIGTERM
    first, SIGKILL for whatever is left after a grace period.
    """

    def __init__(self, work: Path) -> None:
        self.work = work
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.work / f"{name}.log").open("wb") as log:
            child = subprocess.Popen([sys.executable, "-m", "cli", *argv], env=env, cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)  # fmt: skip
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.started):
            self._stop(child)
        self.started.clear()

    @staticmethod
    def _stop(child: subprocess.Popen[bytes]) -> None:
        group = child.pid  # start_new_session: the child leads a group of its own pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            child.wait(timeout=10)
        # The leader is gone; members of its group may linger (pool processes).  While
        # any does, the group id cannot be given to another process.
        deadline = time.monotonic() + 10
        while _group_alive(group):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                break
            time.sleep(0.1)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(what: str, check: Callable[[], T | None], *, timeout: float,
               procs: Sequence[subprocess.Popen[bytes]] = (), every: float = 0.2) -> T:  # fmt: skip
    """``check()``'s first true answer, polled every ``every`` seconds, or SystemExit."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{what}: a process exited ({proc.args!r}: {proc.returncode})")
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


# -- the installation -------------------------------------------------------------------


@dataclass
class Installation:
    apps: list[str]
    clusters: list[str]
    client: redis.Redis
    keys: Keys
    sim_base: str
    webhook_url: str
    webhook_token: str
    hook_repo: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    http: requests.Session = field(default_factory=requests.Session)

    @property
    def records(self) -> Records:
        return Records(self.client, self.keys)

    def targets(self, apps: Sequence[str]) -> list[tuple[str, str]]:
        return [(a, c) for a in apps for c in self.clusters]

    def send(self, app_name: str, trigger: str, *, clusters: list[str] | None = None) -> None:
        forced = trigger != "schedule"
        kwargs = {"clusters": clusters} if clusters else {}
        app.send_task("reconciler.reconcile_app", args=(app_name, trigger), kwargs=kwargs,
                      queue=queue_for(forced=forced))  # fmt: skip

    def deployment_url(self, app_name: str, cluster: str) -> str:
        return (f"{self.sim_base}/clusters/{cluster}/apis/apps/v1/namespaces/{app_name}"
                "/deployments/web")  # fmt: skip

    def queues_idle(self) -> bool:
        prefix = self.keys.celery()
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(prefix + FORCED_QUEUE)
        pipe.llen(prefix + SCHEDULED_QUEUE)
        pipe.hlen(self.keys.broker_unacked())
        return not any(pipe.execute())


def sync_all(inst: Installation, apps: Sequence[str]) -> float:
    """A forced sync of every application; seconds until every target recorded Synced."""
    begin = time.perf_counter()
    for name in apps:
        inst.send(name, "manual")
    wanted = set(inst.targets(apps))

    def synced() -> bool:
        done = {(e.application, e.cluster) for e in inst.records.status()
                if e.sync == "Synced"}  # fmt: skip
        return wanted <= done

    wait_until("the first sync", synced, timeout=SYNC_TIMEOUT, procs=inst.procs, every=0.5)
    return time.perf_counter() - begin


def watches_live(inst: Installation) -> None:
    streams = WatchStreams(inst.client, inst.keys, ttl=1)
    wait_until("every cluster's watches live",
               lambda: all(streams.get(c) is not None for c in inst.clusters),
               timeout=120, procs=inst.procs)  # fmt: skip


def spread(apps: Sequence[str], clusters: Sequence[str], n: int) -> list[tuple[str, str]]:
    """``n`` targets cycling over every application and cluster (repeating past all)."""
    order = [(apps[a], clusters[(a + j) % len(clusters)])
             for j in range(len(clusters)) for a in range(len(apps))]  # fmt: skip
    return [order[i % len(order)] for i in range(n)]


def epoch(value: object) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


# -- 1. drift ---------------------------------------------------------------------------


@dataclass
class DriftFigures:
    detected: list[float] = field(default_factory=list)
    healed: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


def drift(inst: Installation, n: int) -> DriftFigures:
    figures = DriftFigures()
    changes = inst.keys.live_changed()
    for i, (app_name, cluster) in enumerate(spread(inst.apps, inst.clusters, n)):
        url = inst.deployment_url(app_name, cluster)
        field_name = Keys.target_field(app_name, cluster)
        replicas = DESIRED_REPLICAS + 1 + i % 3
        answer = inst.http.patch(url, data=json.dumps({"spec": {"replicas": replicas}}),
                                 headers={"Content-Type": "application/merge-patch+json"},
                                 timeout=10)  # fmt: skip
        begin = time.perf_counter()
        answer.raise_for_status()
        rv = int(answer.json()["metadata"]["resourceVersion"])
        detected: float | None = None
        healed: float | None = None
        next_detect = next_heal = begin
        while detected is None or healed is None:
            now = time.perf_counter()
            if now - begin > CHANGE_TIMEOUT:
                break
            if detected is None and now >= next_detect:
                seen = inst.client.hget(changes, field_name)
                if seen is not None and int(seen) >= rv:
                    detected = time.perf_counter() - begin
                next_detect += DETECT_POLL
            if healed is None and now >= next_heal:
                live = inst.http.get(url, timeout=10).json()
                if live["spec"]["replicas"] == DESIRED_REPLICAS:
                    healed = time.perf_counter() - begin
                next_heal += HEAL_POLL
            pending = [t for t, done in ((next_detect, detected), (next_heal, healed))
                       if done is None]  # fmt: skip
            if pending:
                time.sleep(max(0.0, min(pending) - time.perf_counter()))
        if detected is None or healed is None:
            figures.missed.append(f"{app_name} on {cluster}: detected {detected}, healed {healed}")
        if detected is not None:
            figures.detected.append(detected)
        if healed is not None:
            figures.healed.append(healed)
        print(f"  drift {i + 1}/{n} {app_name} on {cluster}: detected {ms(detected)}, "
              f"healed {ms(healed)}", flush=True)  # fmt: skip
        time.sleep(SPACING)
    return figures


# -- 2. webhook -------------------------------------------------------------------------


@dataclass
class PushFigures:
    applied: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


def commit_change(repo: Path, n: int) -> str:
    (repo / "app-0" / "cm-0.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-0}}\n"
        f"data: {{app: '0', n: '0', push: '{n}'}}\n"
    )
    subprocess.run(["git", "commit", "-q", "-am", f"push {n}"], cwd=repo, env=GIT_ENV, check=True)
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=GIT_ENV, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip()


def webhook(inst: Installation, n: int) -> PushFigures:
    figures = PushFigures()
    index = inst.keys.status_index()
    fields = [Keys.target_field(HOOK_APP, c) for c in inst.clusters]
    headers = {"Authorization": f"Bearer {inst.webhook_token}",
               "Content-Type": "application/json"}  # fmt: skip
    for i in range(n):
        commit = commit_change(inst.hook_repo, i + 1)
        body = json.dumps({"repo": str(inst.hook_repo), "ref": "main", "commit": commit})
        sent_at = time.time()
        begin = time.perf_counter()
        answer = inst.http.post(f"{inst.webhook_url}/hooks/git", data=body, headers=headers,
                                timeout=30)  # fmt: skip
        if answer.status_code != 202:
            raise SystemExit(f"webhook answered {answer.status_code}: {answer.text[:300]}")
        applied: float | None = None
        entries: list[dict[str, Any]] = []
        while time.perf_counter() - begin < CHANGE_TIMEOUT:
            tick = time.perf_counter()
            raw = inst.client.hmget(index, fields)
            entries = [json.loads(v) if v is not None else {} for v in raw]
            if all(e.revision == commit and e.sync == "Synced" for e in entries):
                applied = time.perf_counter() - begin
                break
            time.sleep(max(0.0, tick + STATUS_POLL - time.perf_counter()))
        if applied is None:
            done = sum(e.revision == commit for e in entries)
            figures.missed.append(f"push {i + 1}: {done}/{len(fields)} targets at {commit[:8]}")
        else:
            figures.applied.append(applied)
            figures.first.append(min(epoch(e.finished) for e in entries) - sent_at)
        print(f"  push {i + 1}/{n} ({commit[:8]}): on every cluster after {ms(applied)}",
              flush=True)  # fmt: skip
        time.sleep(SPACING)
    return figures


# -- 3. forced beside scheduled -----------------------------------------------------------


@dataclass
class ForcedFigures:
    idle: list[float] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)
    #: Scheduled runs recorded between the forced send and the forced run's end.
    scheduled_before: list[int] = field(default_factory=list)
    #: Messages still in the scheduled queue when the forced run was seen.
    backlog_left: list[int] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


def forced_run(inst: Installation, app_name: str, cluster: str) -> tuple[float | None, float]:
    """Send a forced sync of one target; seconds until it was recorded, and when (epoch)."""
    field_name = Keys.target_field(app_name, cluster)
    index = inst.keys.status_index()
    sent_at = time.time()
    begin = time.perf_counter()
    inst.send(app_name, "manual", clusters=[cluster])
    while time.perf_counter() - begin < CHANGE_TIMEOUT:
        tick = time.perf_counter()
        raw = inst.client.hget(index, field_name)
        entry = json.loads(raw) if raw is not None else {}
        if entry.trigger == "manual" and epoch(entry.finished) >= sent_at:
            return time.perf_counter() - begin, sent_at
        time.sleep(max(0.0, tick + STATUS_POLL - time.perf_counter()))
    return None, sent_at


def forced(inst: Installation, n: int, every_app: Sequence[str]) -> ForcedFigures:
    figures = ForcedFigures()

    def drained(what: str) -> None:
        wait_until(what, inst.queues_idle, timeout=SYNC_TIMEOUT, procs=inst.procs, every=0.1)

    targets = spread(inst.apps, inst.clusters, IDLE_ROUNDS + n)
    for app_name, cluster in targets[:IDLE_ROUNDS]:
        drained("the queues idle")
        took, _ = forced_run(inst, app_name, cluster)
        if took is not None:
            figures.idle.append(took)
        print(f"  forced, idle worker: {app_name} on {cluster} recorded after {ms(took)}",
              flush=True)  # fmt: skip
    scheduled_queue = inst.keys.celery() + SCHEDULED_QUEUE
    for i, (app_name, cluster) in enumerate(targets[IDLE_ROUNDS:]):
        drained("the previous round drained")
        time.sleep(SPACING)
        for name in every_app:
            inst.send(name, "schedule")
        took, sent_at = forced_run(inst, app_name, cluster)
        backlog = int(inst.client.llen(scheduled_queue))
        if took is None:
            figures.missed.append(f"{app_name} on {cluster}")
        else:
            ended = sent_at + took
            before = sum(1 for e in inst.records.status()
                         if e.trigger == "schedule"
                         and sent_at <= epoch(e.finished) <= ended)  # fmt: skip
            figures.busy.append(took)
            figures.scheduled_before.append(before)
            figures.backlog_left.append(backlog)
        first = figures.scheduled_before[-1] if took is not None else "-"
        print(f"  forced {i + 1}/{n} behind a scheduled pass: {app_name} on {cluster} "
              f"recorded after {ms(took)} ({first} scheduled runs ended first, {backlog} "
              "messages still queued)", flush=True)  # fmt: skip
    drained("the last round drained")
    return figures


# -- figures -----------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(seconds: float | None) -> str:
    return "missed" if seconds is None else f"{seconds * 1000:.0f} ms"


def summary(values: Sequence[float], *, with_max: bool = True) -> str:
    if not values:
        return "no samples"
    text = f"p50 {ms(percentile(values, 50))}, p95 {ms(percentile(values, 95))}"
    return f"{text}, max {ms(max(values))} (n={len(values)})" if with_max else text


def report(args: argparse.Namespace, *, drift_f: DriftFigures | None, push_f: PushFigures | None,
           forced_f: ForcedFigures | None, first_sync: float) -> int:  # fmt: skip
    print()
    print(f"latency: {args.apps} applications x {args.clusters} kubesim clusters, one worker "
          f"--concurrency {args.concurrency}, one watcher, one webhook server, kubesim and "
          f"Redis, all on this machine ({os.cpu_count()} cores); first sync "
          f"{first_sync:.1f} s")  # fmt: skip
    missed = 0

    def line(label: str, text: str) -> None:
        print(f"  {label + ':':<52} {text}")

    if drift_f is not None:
        line("drift -> detected by the watcher", summary(drift_f.detected))
        line("drift -> healed (spec.replicas back)", summary(drift_f.healed))
        missed += len(drift_f.missed)
        for text in drift_f.missed:
            print(f"    missed: {text}")
    if push_f is not None:
        line(f"push -> applied on all {args.clusters} clusters", summary(push_f.applied))
        line("push -> first cluster's run finished", summary(push_f.first))
        missed += len(push_f.missed)
        for text in push_f.missed:
            print(f"    missed: {text}")
    if forced_f is not None:
        line("forced sync of one target, idle worker", summary(forced_f.idle, with_max=False))
        line("forced sync behind a queued scheduled pass", summary(forced_f.busy))
        if forced_f.busy:
            line("  scheduled runs that ended first (p50, max)",
                 f"{percentile(forced_f.scheduled_before, 50):.0f}, "
                 f"{max(forced_f.scheduled_before)}")  # fmt: skip
            line("  scheduled messages still queued then (p50, min)",
                 f"{percentile(forced_f.backlog_left, 50):.0f}, "
                 f"{min(forced_f.backlog_left)}")  # fmt: skip
        missed += len(forced_f.missed)
        for text in forced_f.missed:
            print(f"    missed: {text}")
    return 1 if missed else 0


# -- main ---------------------------------------------------------------------------------


@contextlib.contextmanager
def signals_exit() -> Iterator[None]:
    """SIGTERM ends the bench as Ctrl-C does, through every ``finally``."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--drifts", type=int, default=30)
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--forced", type=int, default=10)
    parser.add_argument("--only", choices=["drift", "webhook", "forced"])
    args = parser.parse_args()
    if min(args.apps, args.clusters, args.concurrency) < 1:
        parser.error("--apps, --clusters and --concurrency are at least 1")
    wanted = {args.only} if args.only else {"drift", "webhook", "forced"}
    work = Path(tempfile.mkdtemp(prefix="latency-bench-"))
    apps = [f"app-{i}" for i in range(args.apps)] if wanted & {"drift", "forced"} else []
    clusters = [f"sim-{c + 1}" for c in range(args.clusters)]
    kubeconfig = work / "kubeconfig"
    fleet_file = work / "fleet.yaml"
    if apps:
        write_repo(work / "repo", len(apps))
    write_fleet(fleet_file, repo=work / "repo", kubeconfig=kubeconfig, apps=len(apps),
                clusters=args.clusters)  # fmt: skip
    hook_repo = work / "hook-repo"
    every_app = list(apps)
    if "webhook" in wanted:
        write_repo(hook_repo, 1)
        with fleet_file.open("a") as out:
            out.write(f"  - name: {HOOK_APP}\n"
                      f"    source: {{repo: {hook_repo}, revision: main, path: app-0}}\n"
                      f"    destination: {{namespace: {HOOK_APP}}}\n"
                      "    sync: {interval: 1h}\n")  # fmt: skip
        every_app.append(HOOK_APP)
    prefix = f"latency-{uuid.uuid4().hex[:8]}:"
    token = uuid.uuid4().hex
    print(f"work directory: {work} (component logs there)", flush=True)
    procs = Processes(work)
    client: redis.Redis | None = None
    figures: dict[str, Any] = {}
    first_sync = 0.0
    with signals_exit(), provide_redis() as url:
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("GIT_", "RECONCILER_", "KUBECONFIG"))}  # fmt: skip
        env = {**inherited, "REDIS_URL": url, "RECONCILER_REDIS_PREFIX": prefix,
               "RECONCILER_CONFIG": str(fleet_file), "RECONCILER_CACHE_DIR": str(work / "cache"),
               "RECONCILER_REVISION_TTL": "1", "PYTHONUNBUFFERED": "1"}  # fmt: skip
        reconfigure(app, url=url, prefix=prefix)
        try:
            sim = procs.start("kubesim", ["sim", "--clusters", str(args.clusters),
                                          "--kubeconfig", str(kubeconfig),
                                          "--controller-delay", "0"], env)  # fmt: skip
            wait_until("kubesim's kubeconfig", kubeconfig.exists, timeout=60, procs=[sim])
            server = str(yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"])
            worker = procs.start("worker", ["worker", "--concurrency", str(args.concurrency)], env)
            watcher = procs.start("watcher", ["watcher"], env)
            port = free_port()
            hook = procs.start("webhook", ["webhook", "--port", str(port)],
                               {**env, "RECONCILER_WEBHOOK_TOKEN": token,
                                "RECONCILER_WEBHOOK_RATE_LIMIT": "0"})  # fmt: skip
            client = redis.Redis.from_url(url)
            inst = Installation(apps=apps, clusters=clusters, client=client, keys=Keys(prefix),
                                sim_base=server.split("/clusters/", 1)[0],
                                webhook_url=f"http://127.0.0.1:{port}", webhook_token=token,
                                hook_repo=hook_repo,
                                procs=[sim, worker, watcher, hook])  # fmt: skip
            wait_until("the worker to answer a ping", lambda: app.control.ping(timeout=0.5),
                       timeout=120, procs=inst.procs)  # fmt: skip
            wait_until("the webhook server", lambda: healthy(inst.webhook_url), timeout=60,
                       procs=inst.procs)  # fmt: skip
            first_sync = sync_all(inst, every_app)
            print(f"  first sync of {len(every_app) * len(clusters)} targets: "
                  f"{first_sync:.1f} s", flush=True)  # fmt: skip
            watches_live(inst)
            if "drift" in wanted:
                figures["drift_f"] = drift(inst, args.drifts)
            if "webhook" in wanted:
                figures["push_f"] = webhook(inst, args.pushes)
            if "forced" in wanted:
                figures["forced_f"] = forced(inst, args.forced, every_app)
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                procs.stop_all()
                if client is not None:
                    mine = list(client.scan_iter(match=f"{prefix}*", count=1000))
                    for start in range(0, len(mine), 500):
                        client.delete(*mine[start : start + 500])
                    client.close()
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)
    return report(args, drift_f=figures.get("drift_f"), push_f=figures.get("push_f"),
                  forced_f=figures.get("forced_f"), first_sync=first_sync)  # fmt: skip


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
