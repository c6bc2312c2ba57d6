"""End-to-end harness: real worker, beat, webhook and Flower processes.

A :class:`Stack` is one installation of the platform for one test: simulated clusters
(kubesim, in this process, served over HTTP), a real Git repository, a fleet file, and
an environment with a Redis key prefix of the test's own, so no two tests ever see each
other's tasks, locks, schedules or outcomes.  Components run as subprocesses of the real
``reconciler`` command, each in a process group of its own, with its output in a log file
that is printed when the test fails.  Teardown kills every process group it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client, config

import kubesim
from kubesim.runtime import SimHandle
from tests.gitrepo import GitRepo
from tests.kubesim.conftest import kubectl_binary

T = TypeVar("T")

CLUSTERS = ("sim-1", "sim-2", "sim-3")
#: Cluster labels: sim-1 and sim-3 are production, sim-2 is not.
LABELS = {"sim-1": {"env": "prod"}, "sim-2": {"env": "dev"}, "sim-3": {"env": "prod"}}
#: A credential the processes are given; it must never show up in task arguments,
#: results, histories or Flower.
FAKE_GIT_TOKEN = "ghp_e2eFakeToken" + uuid.uuid4().hex
#: Seconds a component gets to stop on SIGTERM before its whole group is killed.
STOP_GRACE = 4.0
#: Environment variables of the test runner that must not leak into the stack.
_SCRUBBED_PREFIXES = ("RECONCILER_", "FLOWER_", "CELERY_", "KUBECONFIG", "REDIS_URL")

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: cfg}}
data: {{key: "{value}"}}
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
          resources: {limits: {cpu: 100m, memory: 64Mi}}
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Proc:
    """A component started by the stack: its process (a group leader) and its log."""

    name: str
    popen: subprocess.Popen[Any]
    log: Path | None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Stack:
    """One installation of the platform for one test."""

    tmp: Path
    sim: SimHandle
    repo: GitRepo
    kubeconfig: str
    fleet_path: Path
    env: dict[str, str]
    redis_url: str
    prefix: str
    procs: list[Proc] = field(default_factory=list)
    _apis: dict[str, client.ApiClient] = field(default_factory=dict)
    #: The simulated clusters of the fleet file, with their labels.
    labels: dict[str, dict[str, str]] = field(default_factory=lambda: dict(LABELS))

    # -- Git and the fleet -----------------------------------------------------------------

    def write_app(self, path: str, value: str = "1", *, deployment: bool = True) -> None:
        """Manifests of a small application under ``path`` (not committed)."""
        self.repo.write(f"{path}/cm.yaml", CONFIGMAP.format(value=value))
        if deployment:
            self.repo.write(f"{path}/web.yaml", DEPLOYMENT)

    def app(
        self,
        name: str,
        *,
        path: str | None = None,
        clusters: dict[str, Any] | None = None,
        interval: str = "5s",
        **sync: Any,
    ) -> dict[str, Any]:
        """A fleet-file application entry; its namespace is its name."""
        return {
            "name": name,
            "source": {"repo": str(self.repo.path), "revision": "main", "path": path or name},
            "destination": {"namespace": name,
                            "clusters": clusters or {"names": list(self.labels)}},
            "sync": {"interval": interval, **sync},
        }

    def write_fleet(self, *applications: dict[str, Any]) -> None:
        """The fleet file: the simulated clusters and ``applications``."""
        fleet = {
            "clusters": [
                {"name": name, "kubeconfig": self.kubeconfig, "labels": labels}
                for name, labels in self.labels.items()
            ],
            "applications": list(applications),
        }
        tmp = self.fleet_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(fleet, sort_keys=False))
        tmp.replace(self.fleet_path)

    # -- processes -------------------------------------------------------------------------

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        """Start ``reconciler ARGS`` in a new process group, output to ``<name>.log``."""
        log = self.tmp / f"{name}.log"
        suffix = 1
        while log.exists():
            suffix += 1
            log = self.tmp / f"{name}-{suffix}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "cli", *args],
                env={**self.env, **(env or {})},
                cwd=self.tmp,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(log.stem, popen, log)
        self.procs.append(proc)
        return proc

    def worker(self, *, concurrency: int = 2, env: dict[str, str] | None = None) -> Proc:
        """A worker, started and ready to consume (its log says so)."""
        name = f"worker{sum(p.name.startswith('worker') for p in self.procs) + 1}"
        proc = self.start(
            name,
            "worker",
            f"--concurrency={concurrency}",
            f"--hostname={name}@%h",
            env=env,
        )
        log = proc.log
        assert log is not None
        self.wait_until(
            lambda: proc.alive() and " ready." in tail(log, 400),
            timeout=45,
            what=f"{proc.name} to be ready",
            procs=[proc],
        )
        return proc

    def beat(self) -> Proc:
        return self.start("beat", "beat")

    def cli(
        self, *args: str, timeout: float = 90, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``reconciler ARGS`` to completion; its process group is killed on timeout."""
        popen = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            env={**self.env, **(env or {})},
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
            out, err = popen.communicate()
            pytest.fail(
                f"reconciler {' '.join(args)} did not finish in {timeout}s\n"
                f"stdout: {out}\nstderr: {err}\n{self.logs()}"
            )
        return subprocess.CompletedProcess(popen.args, popen.returncode, out, err)

    def cli_async(self, *args: str) -> subprocess.Popen[str]:
        """Start ``reconciler ARGS`` without waiting (killed at teardown if still running)."""
        popen = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            env=self.env,
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(Proc(f"cli-{popen.pid}", popen, None))
        return popen

    def cli_json(self, *args: str, timeout: float = 90) -> Any:
        """``reconciler ARGS -o json``, which must exit 0; its parsed output."""
        done = self.cli(*args, "-o", "json", timeout=timeout)
        assert done.returncode == 0, (
            f"reconciler {' '.join(args)} exited {done.returncode}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        return json.loads(done.stdout)

    def status(self, app: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """``reconciler status [APP] -o json`` keyed by (application, cluster)."""
        rows = self.cli_json("status", *([app] if app else []), timeout=30)
        return {(row["application"], row["cluster"]): row for row in rows}

    def history(self, app: str, cluster: str) -> list[dict[str, Any]]:
        """``reconciler history APP --cluster NAME -o json``, newest first."""
        items: list[dict[str, Any]] = self.cli_json("history", app, "--cluster", cluster)
        return items

    # -- waiting ---------------------------------------------------------------------------

    def logs(self, procs: list[Proc] | None = None, lines: int = 40) -> str:
        """The tails of the components' logs, for failure messages."""
        parts = []
        for proc in procs if procs is not None else self.procs:
            if proc.log is None:
                continue
            state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
            parts.append(f"----- {proc.name} ({state}) -----\n{tail(proc.log, lines)}")
        return "\n".join(parts)

    def wait_until(
        self,
        check: Callable[[], T],
        *,
        timeout: float,
        what: str,
        every: float = 0.3,
        procs: list[Proc] | None = None,
    ) -> T:
        """Poll ``check`` until it returns something truthy; fail with the logs' tails."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = check()
            except AssertionError as exc:  # a check may assert to explain itself
                last = exc
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"timed out after {timeout}s waiting for {what}; last: {last!r}\n"
                    + self.logs(procs),
                    pytrace=False,
                )
            time.sleep(every)

    def wait_synced(
        self,
        targets: list[tuple[str, str]],
        *,
        commit: str,
        timeout: float,
        health: str | None = "Healthy",
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """Wait until ``status`` shows every target Synced (and healthy) at ``commit``."""

        def ready() -> dict[tuple[str, str], dict[str, Any]] | None:
            rows = self.status()
            for target in targets:
                row = rows.get(target)
                if row is None or row["sync"] != "Synced" or row["revision"] != commit:
                    return None
                if health and row["health"] != health:
                    return None
            return rows

        return self.wait_until(ready, timeout=timeout, what=f"{targets} Synced at {commit[:12]}")

    # -- clusters --------------------------------------------------------------------------

    def kubectl(self, cluster: str, *args: str, check: bool = True) -> str:
        """The real kubectl against one simulated cluster."""
        done = subprocess.run(
            [kubectl_binary(), "--kubeconfig", self.kubeconfig, "--context", cluster, *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def core(self, cluster: str) -> client.CoreV1Api:
        if cluster not in self._apis:
            self._apis[cluster] = config.new_client_from_config(
                config_file=self.kubeconfig, context=cluster
            )
        return client.CoreV1Api(self._apis[cluster])

    def configmap(self, cluster: str, namespace: str) -> dict[str, str] | None:
        """The data of the application's ConfigMap ``cfg``, or None when it is absent."""
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            found = self.core(cluster).read_namespaced_config_map("cfg", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found.data or {})

    # -- teardown --------------------------------------------------------------------------

    def stop(self, proc: Proc, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group of ``proc`` and reap its leader."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)

    def close(self) -> None:
        """SIGTERM every group, SIGKILL what is left after a grace period, then check."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            # Pool children may outlive their leader: kill the group whatever its state.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=10)
        for api in self._apis.values():
            api.close()
        survivors = [p.pid for p in self.procs if _group_alive(p.pid)]
        assert not survivors, f"process groups outlived the test: {survivors}"


def _group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still exists (zombies aside)."""
    deadline = time.monotonic() + 5
    while True:
        alive = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            state, pgrp = fields[0], int(fields[2])
            if pgrp == pgid and state != "Z":
                alive = True
                break
        if not alive:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.1)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item, so fixtures know whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def chromium_path() -> str:
    """The Chromium binary the browser tests drive (skipped, or failed in CI, without it)."""
    from tests.e2e.browser import chromium  # noqa: PLC0415

    return chromium()


@pytest.fixture
def screenshots(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """Where a browser test's screenshots go; its module's ``SCREENSHOTS`` names the
    folder under ``$RECONCILER_TEST_ARTIFACTS``."""
    from tests.e2e.browser import screenshot_folder  # noqa: PLC0415

    yield from screenshot_folder(tmp_path, getattr(request.module, "SCREENSHOTS", "browser"))


@pytest.fixture
def cluster_labels() -> dict[str, dict[str, str]]:
    """The simulated clusters and their labels; a module needing others overrides it."""
    return dict(LABELS)


@pytest.fixture
def sim(cluster_labels: dict[str, dict[str, str]]) -> Iterator[SimHandle]:
    """Simulated clusters of this test's own (faults and request logs included)."""
    with kubesim.serve(list(cluster_labels), controller_delay=0.05) as handle:
        yield handle


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    sim: SimHandle,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    cluster_labels: dict[str, dict[str, str]],
) -> Iterator[Stack]:
    """A whole installation: kubesim, a Git repo, a fleet file and a private Redis prefix."""
    repo = GitRepo(tmp_path / "repo")
    repo.path.mkdir()
    repo.git("init", "-q", "-b", "main")
    kubeconfig = sim.write_kubeconfig(str(tmp_path / "kubeconfig"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    bindir = str(Path(sys.executable).parent)
    env.update(
        PATH=f"{bindir}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONUNBUFFERED="1",
        REDIS_URL=redis_url,
        RECONCILER_REDIS_PREFIX=redis_prefix,
        RECONCILER_CONFIG=str(tmp_path / "fleet.yaml"),
        RECONCILER_CACHE_DIR=str(tmp_path / "cache"),
        KUBECONFIG=kubeconfig,
        RECONCILER_REVISION_TTL="1",
        RECONCILER_BEAT_SYNC="1",
        RECONCILER_GIT_TOKEN=FAKE_GIT_TOKEN,
    )
    state = Stack(
        tmp=tmp_path,
        sim=sim,
        repo=repo,
        kubeconfig=kubeconfig,
        fleet_path=tmp_path / "fleet.yaml",
        env=env,
        redis_url=redis_url,
        prefix=redis_prefix,
        labels=dict(cluster_labels),
    )
    try:
        yield state
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(textwrap.indent(state.logs(lines=200), "  "))
        state.close()
