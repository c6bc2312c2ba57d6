"""``reconciler up``: the whole platform in one command, for a laptop, a demo or a test.

Starts Redis (``REDIS_URL`` when it answers, else the embedded one), then each component
as a child process of its own — workers, beat, the watcher, the webhook server and
Flower — exactly as they run on many hosts, with a live status table.  ``--demo`` first
starts simulated clusters and writes a local Git repository of sample applications and a
fleet file.
Ctrl-C or SIGTERM stops every child, then Redis and the simulator.

A component that exits on its own is started again after a back-off that doubles up to a
cap (a beat that lost Redis for a moment must not leave the fleet unscheduled until someone
notices), and one that keeps crashing keeps being retried at the capped pace.  On Linux
every child is also tied to ``up`` by the kernel's parent-death signal: if ``up`` is
killed with SIGKILL and cannot stop them itself, each gets SIGTERM.  For a worker that is
a warm shutdown, and its prefork pool processes follow it because Celery ties them to the
worker the same way; no worker is left consuming from Redis for a fleet file that may
already be gone.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from cli.installation import context_path, remove_context, write_context
from reconciler.errors import ConfigError, TransientError
from reconciler.fleet import Fleet, load_fleet
from reconciler.lifetime import DEATH_SIGNAL, STOP_SIGNALS, tie_to_parent
from reconciler.settings import DEFAULT_PREFIX
from reconciler.settings import load as load_settings
from reconciler.store import connect
from reconciler.store.provision import free_port, provide_redis
from reconciler.store.records import Records


def describe_exit(returncode: int | None) -> str:
    """``code 3`` or ``killed by SIGKILL``, as people read an exit status."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"code {returncode}"


@dataclass(frozen=True)
class RestartPolicy:
    """How long ``up`` waits before starting a child that exited on its own again.

    The first restart waits ``initial`` seconds and each quick crash after it doubles the
    wait up to ``cap``, so a component that cannot start does not spin; a child that ran for
    ``reset_after`` seconds counts as healthy again and its next restart is quick.
    """

    initial: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, previous: float | None, *, ran_for: float) -> float:
        """The wait before the next start, given the last wait and how long the child ran."""
        if previous is None or ran_for >= self.reset_after:
            return self.initial
        return min(previous * 2, self.cap)


@dataclass
class Child:
    """One component process, where its output goes, and its restart history."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    #: ``time.monotonic()`` of the latest start.
    started_at: float = 0.0
    #: How many times it was started again after exiting on its own.
    restarts: int = 0
    #: The wait before the latest restart, the base of the next back-off.
    backoff: float | None = None
    #: When it is due to start again, while it is down.
    restart_at: float | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        """Start it, output appended to its log file, in its own process group.

        The child gets SIGTERM if this process dies without stopping it.  SIGINT and
        SIGTERM are held back until the child is recorded, so a stop that arrives meanwhile
        cannot leave a started child that nobody knows to stop.
        """
        self._close_log()
        self._log_file = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.process = subprocess.Popen(
                self.argv, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=tie_to_parent(os.getpid(), DEATH_SIGNAL),  # noqa: PLW1509
            )  # fmt: skip
            self.started_at = time.monotonic()
            self.restart_at = None
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def note(self, line: str) -> None:
        """Append a line of ``up``'s own to the child's log, where its readers look."""
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(f"--- reconciler up {time.strftime('%Y-%m-%d %H:%M:%S')}: {line}\n")

    def alive(self) -> bool:
        """Still running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group (a worker finishes or requeues its task), SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def command(*args: str) -> list[str]:
    """A ``reconciler`` subcommand run with this interpreter."""
    return [sys.executable, "-m", "cli", *args]


@contextmanager
def simulated_clusters(workdir: Path, names: Sequence[str]) -> Iterator[str]:
    """kubesim in a child process; yields the kubeconfig path once it is written."""
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    sim = Child("kubesim", command("sim", "--clusters", str(len(names)), "--kubeconfig",
                                   str(kubeconfig), "--controller-delay", "0.5"),
                workdir / "kubesim.log")  # fmt: skip
    sim.start(dict(os.environ))
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            if not sim.alive() or time.monotonic() > deadline:
                raise TransientError(f"kubesim did not start; see {sim.log}")
            time.sleep(0.05)
        yield str(kubeconfig)
    finally:
        sim.stop()


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop


@dataclass(frozen=True)
class UpOptions:
    """What ``reconciler up`` was asked for."""

    config: str | None
    demo: bool
    workers: int
    concurrency: int
    flower_port: int
    webhook_port: int
    workdir: Path
    until_synced: float | None = None
    no_flower: bool = False
    restart: RestartPolicy = field(default_factory=RestartPolicy)


def up(options: UpOptions) -> int:
    """Run the stack until interrupted (or until every target is synced, if asked)."""
    options.workdir.mkdir(parents=True, exist_ok=True)
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    try:
        with ExitStack() as stack:
            asked = load_settings()
            redis_url = stack.enter_context(provide_redis())
            embedded = redis_url != asked.redis_url
            env = dict(os.environ)
            env["REDIS_URL"] = redis_url
            if options.demo:
                from cli.demo import DEMO_CLUSTERS, create_demo  # noqa: PLC0415

                kubeconfig = stack.enter_context(
                    simulated_clusters(options.workdir, [c.name for c in DEMO_CLUSTERS])
                )
                fleet_path = str(create_demo(options.workdir, kubeconfig=kubeconfig,
                                             clusters=DEMO_CLUSTERS))  # fmt: skip
                env["KUBECONFIG"] = kubeconfig
                env.setdefault("RECONCILER_CACHE_DIR", str(options.workdir / "cache"))
            else:
                fleet_path = options.config or asked.config or ""
                if not fleet_path:
                    raise ConfigError("pass --config FILE (or set RECONCILER_CONFIG), or --demo")
            fleet = load_fleet(fleet_path)
            env["RECONCILER_CONFIG"] = os.path.abspath(fleet_path)
            flower_auth_file = _flower_credentials(options, env)
            children = _children(options)
            for child in children:
                child.start(env)
            context = _write_context(options, env, redis_url)
            stack.callback(remove_context, context, pid=os.getpid())
            _banner(options, fleet, redis_url, embedded=embedded,
                    flower_auth_file=flower_auth_file, children=children,
                    context=context)  # fmt: skip
            _first_pass(fleet, env)
            return _watch(options, fleet, env, children)
    except Stop:
        print("\nstopping…", flush=True)
        return 0
    finally:
        # No restarts from here on, and a second Ctrl-C does not cut the stopping short:
        # whatever is left when ``up`` exits gets its parent-death signal anyway.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        for child in reversed(children):
            child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _write_context(options: UpOptions, env: dict[str, str], redis_url: str) -> Path:
    """Tell the command line where this installation is (see ``cli.installation``)."""
    path = context_path()
    host = "127.0.0.1"
    write_context(
        path, redis=redis_url, prefix=env.get("RECONCILER_REDIS_PREFIX") or DEFAULT_PREFIX,
        config=env["RECONCILER_CONFIG"], workdir=options.workdir,
        webhook=f"http://{host}:{options.webhook_port}/hooks/git",
        metrics=_metrics_url(options),
        flower=None if options.no_flower else f"http://{host}:{options.flower_port}",
        pid=os.getpid(),
    )  # fmt: skip
    return path


def _metrics_url(options: UpOptions) -> str:
    """Where ``/metrics`` is served: its own port when one is set, else the webhook's."""
    env = load_settings()
    if env.metrics_port:
        return f"http://{env.metrics_host}:{env.metrics_port}/metrics"
    return f"http://127.0.0.1:{options.webhook_port}/metrics"


def _first_pass(fleet: Fleet, env: dict[str, str]) -> None:
    """Queue one run of every application now, so a fresh stack does not wait for the
    schedule's spread-out first runs (up to one interval) before showing anything."""
    from reconciler.outcome import Trigger  # noqa: PLC0415
    from workers.app import app, reconfigure  # noqa: PLC0415

    reconfigure(app, url=env["REDIS_URL"], prefix=env.get("RECONCILER_REDIS_PREFIX") or
                DEFAULT_PREFIX)  # fmt: skip
    from workers.dispatch import enqueue_app  # noqa: PLC0415

    for application in fleet.applications:
        enqueue_app(application.name, trigger=Trigger.SCHEDULE)


def _flower_credentials(options: UpOptions, env: dict[str, str]) -> Path | None:
    """Basic auth for Flower: the caller's, or generated into a 0600 file (never printed)."""
    if options.no_flower or env.get("FLOWER_BASIC_AUTH"):
        return None
    path = options.workdir / "flower-credentials"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"admin:{secrets.token_urlsafe(18)}\n")
    env["FLOWER_BASIC_AUTH"] = path.read_text().strip()
    return path


def _children(options: UpOptions) -> list[Child]:
    logs = options.workdir / "logs"
    logs.mkdir(exist_ok=True)
    children = []
    for i in range(1, options.workers + 1):
        argv = command("worker", "--hostname", f"worker{i}@%h")
        if options.concurrency:
            argv += ["--concurrency", str(options.concurrency)]
        children.append(Child(f"worker{i}", argv, logs / f"worker{i}.log"))
    children.append(Child("beat", command("beat"), logs / "beat.log"))
    children.append(Child("watcher", command("watcher"), logs / "watcher.log"))
    children.append(Child("webhook", command("webhook", "--port", str(options.webhook_port)),
                          logs / "webhook.log"))  # fmt: skip
    if not options.no_flower:
        children.append(Child("flower", command("flower", "--port", str(options.flower_port)),
                              logs / "flower.log"))  # fmt: skip
    return children


def _banner(
    options: UpOptions, fleet: Fleet, redis_url: str, *, embedded: bool,
    flower_auth_file: Path | None, children: list[Child], context: Path,
) -> None:  # fmt: skip
    from reconciler.source import redact_url  # noqa: PLC0415

    print(f"reconciler up: {len(fleet.applications)} applications, {len(fleet.clusters)} "
          f"clusters, fleet {fleet.path}")  # fmt: skip
    print(f"  redis    {redact_url(redis_url)}{' (embedded)' if embedded else ''}")
    print(f"  webhook  http://127.0.0.1:{options.webhook_port}/hooks/git   "
          f"metrics {_metrics_url(options)}")  # fmt: skip
    if not options.no_flower:
        where = f" (login in {flower_auth_file})" if flower_auth_file else ""
        print(f"  flower   http://127.0.0.1:{options.flower_port}{where}")
    print(f"  logs     {options.workdir / 'logs'}  ({', '.join(c.name for c in children)})")
    print(f"  context  {context}: 'reconciler status' in another terminal reads this "
          "installation")  # fmt: skip
    if options.demo:
        print(f"  demo     apps repository {options.workdir / 'apps'}; sync one now with "
              "'reconciler sync guestbook'")  # fmt: skip
    print("Ctrl-C stops everything.", flush=True)


def _watch(options: UpOptions, fleet: Fleet, env: dict[str, str], children: list[Child]) -> int:
    """Print the status table when it changes, restart children that exit, and stop when
    every target is synced (if asked)."""
    deadline = time.monotonic() + options.until_synced if options.until_synced else None
    expected = {(a.name, c.name) for a in fleet.applications for c in fleet.targets(a)}

    from reconciler.store.keys import Keys  # noqa: PLC0415

    client = connect.client(env["REDIS_URL"], socket_timeout=5)
    records = Records(client, Keys(env.get("RECONCILER_REDIS_PREFIX") or DEFAULT_PREFIX))
    try:
        return _watch_loop(options, records, expected, children, deadline, env)
    finally:
        client.close()


def _watch_loop(
    options: UpOptions, records: Records, expected: set[tuple[str, str]],
    children: list[Child], deadline: float | None, env: dict[str, str],
) -> int:  # fmt: skip
    shown = ""
    next_status = 0.0
    live = _live_table()
    try:
        while True:
            now = time.monotonic()
            due = tend(children, env, options.restart, now=now)
            if now >= next_status:
                next_status = now + 1.0
                table, synced = _status(records, expected)
                if live is not None:
                    live.update(_rich_table(table, children), refresh=True)
                elif table != shown:
                    print(table, flush=True)
                    shown = table
                if deadline is not None:
                    if synced:
                        print("every target is Synced", flush=True)
                        return 0
                    if now > deadline:
                        print("not every target is Synced in time", file=sys.stderr)
                        return 1
            wake = next_status if due is None else min(next_status, due)
            time.sleep(max(0.0, wake - time.monotonic()))

    finally:
        if live is not None:
            live.stop()


def tend(
    children: Sequence[Child], env: dict[str, str], policy: RestartPolicy, *, now: float
) -> float | None:
    """Notice children that exited and start those whose back-off is over.

    Returns the earliest time a child is due to start again, so the caller can sleep until
    then and no longer.  Called from the main thread only (see ``_tie_to_parent``).
    """
    due: float | None = None
    for child in children:
        if child.restart_at is None:
            if child.alive():
                continue
            code = child.process.returncode if child.process else None
            ran_for = now - child.started_at
            child.backoff = policy.delay(child.backoff, ran_for=ran_for)
            child.restart_at = now + child.backoff
            message = (f"{child.name} exited ({describe_exit(code)}) after {ran_for:.1f} s; "
                       f"restarting in {child.backoff:g} s")  # fmt: skip
            child.note(message)
            print(f"{time.strftime('%H:%M:%S')} {message}; see {child.log}", file=sys.stderr,
                  flush=True)  # fmt: skip
        if child.restart_at is not None and now >= child.restart_at:
            child.restarts += 1
            child.note(f"restart {child.restarts}")
            child.start(env)
            pid = child.process.pid if child.process else "?"
            print(f"{time.strftime('%H:%M:%S')} {child.name} restarted (pid {pid}, "
                  f"restart {child.restarts})", file=sys.stderr, flush=True)  # fmt: skip
        if child.restart_at is not None:
            due = child.restart_at if due is None else min(due, child.restart_at)
    return due


def _live_table() -> Any:
    """A rich Live display of the status table on a terminal; None when piped or logged.

    On a terminal the table is redrawn in place, with each child's state under it; in a
    log (``up`` under a supervisor, the demo in CI) a table is printed when it changes,
    so the log reads as a history.
    """
    if not sys.stdout.isatty():
        return None
    from rich.live import Live  # noqa: PLC0415

    live = Live(auto_refresh=False, transient=False)
    live.start()
    return live


def _rich_table(text: str, children: Sequence[Child]) -> Any:
    """The plain status table as a rich renderable, with the children's states below."""
    from rich.console import Group  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    lines = text.splitlines()
    table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    header = lines[0].split() if lines else []
    for name in header:
        table.add_column(name)
    colours = {"Synced": "green", "Healthy": "green", "OutOfSync": "yellow",
               "Progressing": "cyan", "Failed": "bold red", "Degraded": "bold red"}  # fmt: skip
    for line in lines[1:]:
        cells = line.split()
        if len(cells) == len(header):
            table.add_row(*(Text(c, style=colours.get(c, "")) for c in cells))
    states = "  ".join(f"{c.name} {'up' if c.alive() else 'restarting'}" for c in children)
    return Group(table, Text(states, style="dim"))


def _status(records: Records, expected: set[tuple[str, str]]) -> tuple[str, bool]:
    """The status table as text, and whether every expected target is Synced."""
    import redis  # noqa: PLC0415

    try:
        rows = records.status()
    except redis.RedisError:
        return "status: Redis does not answer", False
    lines = [f"{'APPLICATION':14} {'CLUSTER':10} {'REVISION':10} {'SYNC':10} {'HEALTH':12} DRIFT"]
    seen = set()
    for row in rows:
        seen.add((row.application, row.cluster))
        lines.append(f"{row.application:14} {row.cluster:10} {(row.revision or '-')[:8]:10} "
                     f"{row.sync:10} {row.health:12} {row.drift_count}")  # fmt: skip
    synced = expected <= seen and all(
        r.sync == "Synced" for r in rows if (r.application, r.cluster) in expected
    )
    return "\n".join(lines), synced


def default_ports() -> tuple[int, int]:
    """Flower and webhook ports: 5555 and 8088 unless taken, then free ones."""
    return (_port_or_free(5555), _port_or_free(8088))


def _port_or_free(port: int) -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port
