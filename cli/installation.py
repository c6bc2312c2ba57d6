"""Which installation a command talks to: the context file ``up`` writes, and overrides.

One Redis can serve several installations (every key is prefixed), and ``reconciler up``
may have started an embedded Redis on a port nobody chose.  A command run in another
terminal must find that installation without being told, the way kubectl finds its
cluster through the current kubeconfig context: ``up`` (and the demo) write the
connection of what they started to a context file, and every admin command reads it.

Precedence, highest first, field by field: ``--config`` on the command line, then
``REDIS_URL`` / ``RECONCILER_REDIS_PREFIX`` / ``RECONCILER_CONFIG``, then the context file
(``--context FILE``, ``RECONCILER_CONTEXT``, else ``context.yaml`` in the user's
configuration directory), then the machine's own Redis.  Messages about an empty listing
or a sync nobody took name the installation and where it came from, since the usual
cause is reading another installation than the workers'.

The context file never holds a password: ``up`` writes the Redis URL without userinfo,
and a command that needs a password takes it from ``REDIS_URL``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from reconciler import settings
from reconciler.errors import ConfigError, ReconcilerError, TransientError
from reconciler.settings import DEFAULT_PREFIX, DEFAULT_REDIS_URL

#: The format of the context file, so a later version can read an older one.
CONTEXT_VERSION = 1
_FIELDS = ("redis", "prefix", "config", "webhook", "metrics", "flower", "workdir")

F = TypeVar("F", bound=Callable[..., int])


@dataclass(frozen=True)
class Installation:
    """The connection of one installation, and where each part of it came from."""

    redis_url: str
    prefix: str
    #: The fleet file the installation runs, when known.
    config: str | None = None
    #: ``environment``, ``context FILE`` or ``default``: where the Redis URL came from.
    source: str = "default"
    webhook: str | None = None
    metrics: str | None = None
    flower: str | None = None
    #: The context file that was read, and the pid of the ``up`` that wrote it.
    context_file: Path | None = None
    pid: int | None = None

    def describe(self) -> str:
        """``Redis URL, prefix 'p:'``, and the context file it came from; no password."""
        from reconciler.source import redact_url  # noqa: PLC0415

        return f"Redis {redact_url(self.redis_url)}, prefix {self.prefix!r}{self.origin()}"

    def origin(self) -> str:
        """``, from context FILE`` when the context file named the Redis, else nothing.

        What the environment names, the user chose; a context file was chosen for them,
        and saying so (and whether the ``up`` that wrote it still runs) is what explains
        an empty answer.
        """
        if self.context_file is None or self.source == "environment":
            return ""
        where = f", from context {self.context_file}"
        if self.pid is not None and not _alive(self.pid):
            where += f" (its reconciler up, pid {self.pid}, is not running)"
        return where

    def export(self) -> None:
        """Make this process's Celery app, key prefix and fleet file agree with it.

        The Celery app and ``Keys()`` read the environment when they are made, as they do
        in workers, so exporting is the one way every part of this process sees one
        installation.
        """
        os.environ["REDIS_URL"] = self.redis_url
        os.environ["RECONCILER_REDIS_PREFIX"] = self.prefix
        if self.config:
            os.environ["RECONCILER_CONFIG"] = self.config


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def context_path(explicit: str | None = None) -> Path:
    """The context file: ``explicit`` (``--context``), else the settings' default."""
    return Path(explicit).expanduser() if explicit else settings.load().context_path


def read_context(path: Path) -> dict[str, Any] | None:
    """The context file's fields (None when there is none); ConfigError naming it if bad."""
    from reconciler.yamlio import load_documents  # noqa: PLC0415

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{path}: cannot read the installation context ({reason})") from None
    documents = load_documents(text, source=str(path), error=ConfigError)
    data = documents[0].data if documents else None
    if not isinstance(data, dict) or not isinstance(data.get("redis"), str):
        raise ConfigError(f"{path}: not an installation context (no 'redis' URL); "
                          "delete it or run 'reconciler up' again")  # fmt: skip
    return data


def write_context(path: Path, **fields: Any) -> None:
    """Write the context of a running installation atomically, readable by its owner only.

    The Redis URL loses its userinfo: the file names where the installation is, never a
    secret of it.
    """
    from reconciler.store.keys import without_userinfo  # noqa: PLC0415
    from reconciler.yamlio import dump  # noqa: PLC0415

    data: dict[str, Any] = {"version": CONTEXT_VERSION}
    for name in _FIELDS:
        if fields.get(name) is not None:
            data[name] = str(fields[name])
    data["redis"] = without_userinfo(str(fields["redis"]))
    data["pid"] = int(fields.get("pid") or os.getpid())
    data["written"] = datetime.now(UTC).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".context.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("# The installation 'reconciler up' started; read by the reconciler CLI.\n")
        handle.write(dump(data))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def remove_context(path: Path, *, pid: int) -> None:
    """Remove the context file if it is still the one written by ``pid`` (``up`` exiting)."""
    with contextlib.suppress(ConfigError):
        data = read_context(path)
        if data is not None and data.get("pid") == pid:
            path.unlink(missing_ok=True)


@functools.cache
def _resolve(context: str | None) -> Installation:
    env = settings.load()
    path = context_path(context)
    data = read_context(path) if (context or not env.redis_url) else None
    if context and data is None:
        raise ConfigError(f"{path}: no such installation context")
    if env.redis_url:
        source, redis_url = "environment", env.redis_url
    elif data is not None:
        source, redis_url = f"context {path}", str(data["redis"])
    else:
        source, redis_url = "default", DEFAULT_REDIS_URL
    ctx = data or {}
    return Installation(
        redis_url=redis_url,
        prefix=env.redis_prefix or str(ctx.get("prefix") or DEFAULT_PREFIX),
        config=env.config or (str(ctx["config"]) if ctx.get("config") else None),
        source=source,
        webhook=ctx.get("webhook"),
        metrics=ctx.get("metrics"),
        flower=ctx.get("flower"),
        context_file=path if data is not None else None,
        pid=int(ctx["pid"]) if isinstance(ctx.get("pid"), int) else None,
    )


#: The ``--context`` option of this invocation (set once by the command group).
_context_option: list[str | None] = [None]


def use_context(path: str | None) -> None:
    """Record ``--context FILE`` for this invocation, before any command reads it."""
    _context_option[0] = path
    _resolve.cache_clear()


def current() -> Installation:
    """The installation this invocation talks to (resolved once, then exported)."""
    found = _resolve(_context_option[0])
    found.export()
    return found


def installation() -> str:
    """How messages name the installation read: Redis, prefix, and where they came from."""
    return current().describe()


def require_redis() -> str:
    """The installation's Redis URL, after checking it answers (TransientError otherwise)."""
    from reconciler.source import redact_url  # noqa: PLC0415
    from reconciler.store.provision import redis_answers  # noqa: PLC0415

    found = current()
    if not redis_answers(found.redis_url):
        hint = ("start it again with 'reconciler up'" if found.origin()
                else "set REDIS_URL, or use 'reconciler up'")  # fmt: skip
        raise TransientError(
            f"Redis at {redact_url(found.redis_url)}{found.origin()} does not answer ({hint})"
        )
    return found.redis_url


def redis_client() -> Any:
    """A client of the checked installation Redis."""
    from reconciler.store import connect  # noqa: PLC0415

    return connect.client(require_redis(), socket_timeout=30)


def guarded(command: F) -> F:
    """``command`` with Redis that stops answering mid-command reported as an error, exit 1.

    ``require_redis`` checks before a command starts, but Redis (the broker, the result
    backend, the status index) can go away between two reads; redis-py and kombu then
    raise their own exceptions, and Celery's result backend, once its reconnects are
    spent, a ``RuntimeError`` with the connection error as its cause.  Any of them would
    reach the user as a traceback.
    """

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> int:
        try:
            return command(*args, **kwargs)
        except ReconcilerError:
            raise
        except Exception as exc:
            lost = _lost_redis(exc)
            if lost is None:
                raise
            raise TransientError(f"Redis stopped answering ({installation()}): {lost}") from exc

    return run  # type: ignore[return-value]


def _lost_redis(exc: BaseException) -> BaseException | None:
    """The connection error of Redis behind ``exc`` (itself or a cause), if there is one."""
    import redis as redis_lib  # noqa: PLC0415
    from kombu.exceptions import OperationalError  # noqa: PLC0415

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, redis_lib.ConnectionError | redis_lib.TimeoutError | OperationalError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
