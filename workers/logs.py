"""One log format for every component of an installation.

Workers, beat, the webhook server, Flower (and the watcher) are separate processes whose
logs an operator reads side by side, or ships to one collector.  Left alone each speaks
its own dialect: Celery's ``[2024-05-01 12:00:00,123: INFO/MainProcess]``, Tornado's
``[I 240501 12:00:00 web:2246]``, Python's bare ``INFO:name:message``; none says which
component wrote the line, and none gives the timezone.  So every component logs through
:func:`configure_logging`, one line per record::

    2024-05-01T12:00:00.123+00:00 INFO worker reconciler.workers: retrying web/prod in 2.1s

``RECONCILER_LOG_FORMAT=json`` writes one JSON object per line instead (``ts``, ``level``,
``component``, ``logger``, ``message``, then the record's extras), for collectors that
parse fields rather than text.  ``RECONCILER_LOG_LEVEL`` sets the level of every
component.  Inside a Celery task, a line also names the task and its id, as Celery's own
task format does (``reconciler.reconcile_target[9f1c…]``), whichever logger wrote it.

URLs in messages lose their userinfo (``https://***@github.com/...``) on the way out: a
credential that slipped into a message, an exception or an extra does not reach the log.

The Celery application (``workers.app``) calls :func:`prepare_command` when the command
line starts ``worker``, ``beat`` or ``flower`` through it, and Celery's ``setup_logging``
signal is answered here, so Celery installs no handler of its own.  The webhook server
calls :func:`configure_logging` from its ``run()``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

import celery
from celery._state import get_current_task
from celery.signals import beat_init, celeryd_after_setup, celeryd_init, setup_logging
from celery.utils.log import get_multiprocessing_logger

from reconciler.errors import ConfigError
from reconciler.fleet import redact_url
from reconciler.settings import Settings
from reconciler.settings import load as load_settings

__all__ = [
    "COMMANDS",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_component",
    "prepare_command",
    "redact",
    "resolve_level",
]

log = logging.getLogger("reconciler.logs")

#: Celery subcommands that are components of an installation, each logging under its name.
COMMANDS = ("worker", "beat", "flower")
#: Values of ``RECONCILER_LOG_FORMAT``.
FORMATS = ("text", "json")
_LEVELS = {
    "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING,
    "WARN": logging.WARNING, "ERROR": logging.ERROR, "CRITICAL": logging.CRITICAL,
}  # fmt: skip
#: A URL, up to whatever cannot be part of one in a message (space, quotes, brackets).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")
#: Attributes every LogRecord has: anything else on a record is an extra.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "task_name", "task_id",
}  # fmt: skip
#: Marks the handlers installed here, so a second call replaces them.
_OURS = "_reconciler_handler"

_component: str | None = None


def redact(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced by ``***``."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def _redacted(value: Any) -> Any:
    """An extra's value with every string in it redacted (dicts and lists walked)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(key): _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC with milliseconds: ``2024-05-01T12:00:00.123+00:00``."""
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds")


class _Formatter(logging.Formatter):
    """What both formats share: the component, the task, the redacted message."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def _message(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except (TypeError, ValueError) as exc:  # a bad %-format must not lose the record
            message = f"{record.msg!r} (unformattable arguments: {type(exc).__name__})"
        return redact(message)

    def _exception(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return redact("\n".join(parts))


class TextFormatter(_Formatter):
    """``<ts> <LEVEL> <component> <logger>[ <task>[<id>]]: <message>``, one line a record.

    A message or traceback of several lines continues on lines indented by two spaces,
    so a line that starts with a timestamp always starts a record.
    """

    def format(self, record: logging.LogRecord) -> str:
        task = ""
        task_id = getattr(record, "task_id", None)
        if task_id:
            task = f" {getattr(record, 'task_name', '') or 'task'}[{task_id}]"
        head = f"{_timestamp(record)} {record.levelname} {self.component} {record.name}{task}"
        text = f"{head}: {self._message(record).lstrip()}"
        exception = self._exception(record)
        if exception:
            text = f"{text}\n{exception}"
        lines = [line.rstrip() for line in text.rstrip().splitlines()]
        return "\n  ".join(line for line in lines if line)


class JsonFormatter(_Formatter):
    """One JSON object a record: ``ts``, ``level``, ``component``, ``logger``, ``message``.

    The record's extras follow (``logger.info(..., extra={"delivery": ...})``), then
    ``task_name`` and ``task_id`` inside a task, and ``exception`` with a traceback.  A
    value JSON cannot hold is written as its ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "message": self._message(record),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_") and name not in entry:
                entry[name] = _redacted(value)
        task_id = getattr(record, "task_id", None)
        if task_id:
            entry["task_name"] = getattr(record, "task_name", None)
            entry["task_id"] = task_id
        exception = self._exception(record)
        if exception:
            entry["exception"] = exception
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TaskContext(logging.Filter):
    """Adds the running Celery task's name and id to every record made inside it.

    Celery's own ``TaskFormatter`` does this for task loggers only; done on the handler,
    it covers the platform's loggers too (``reconciler.workers``, the engine's).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None):
            return True
        task = get_current_task()
        request = getattr(task, "request", None) if task is not None else None
        task_id = getattr(request, "id", None)
        if task_id:
            record.task_name = getattr(task, "name", None)
            record.task_id = task_id
        return True


def resolve_level(settings: Settings, fallback: str | int | None = None) -> int:
    """The level to log at: ``RECONCILER_LOG_LEVEL`` when set, else ``fallback``, else INFO.

    ``fallback`` is what a command line asked for (``--loglevel``); the installation's
    variable wins over it because ``reconciler up`` and orchestrators set one environment
    for every component, while each component's ``--loglevel`` has a default of its own.
    """
    if "log_level" in settings.model_fields_set or fallback in (None, ""):
        return _level(settings.log_level, "RECONCILER_LOG_LEVEL")
    assert fallback is not None
    return _level(fallback, "--loglevel")


def _level(value: str | int, what: str) -> int:
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.isdigit():
        return int(text)
    if text not in _LEVELS:
        raise ConfigError(f"{what}={value!r}: must be one of debug, info, warning, error, critical")
    return _LEVELS[text]


def _stream() -> IO[str]:
    # The process's real stderr: Celery may later replace sys.stderr with a proxy that
    # logs what is written to it, and a handler writing there would loop.
    return sys.__stderr__ or sys.stderr


def configure_logging(
    component: str, *, level: str | int | None = None, settings: Settings | None = None
) -> int:
    """Log every record of this process in the platform's format, as ``component``.

    ``level`` is the command line's ``--loglevel``, used when ``RECONCILER_LOG_LEVEL`` is
    not set.  Handlers that write to the terminal (Python's ``basicConfig``, Tornado's,
    one installed by an earlier call) are replaced; others (files, a test's capture) stay.
    Raises ConfigError naming the variable when the format or level is not one we know.
    Returns the level in force.
    """
    global _component  # noqa: PLW0603 - one component per process, by design
    settings = settings or load_settings()
    chosen = settings.log_format.strip().lower()
    if chosen not in FORMATS:
        raise ConfigError(f"RECONCILER_LOG_FORMAT={settings.log_format!r}: must be text or json")
    resolved = resolve_level(settings, level)
    handler = logging.StreamHandler(_stream())
    formatter = JsonFormatter(component) if chosen == "json" else TextFormatter(component)
    handler.setFormatter(formatter)
    handler.addFilter(_TaskContext())
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False) or _writes_to_terminal(old):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(resolved)
    logging.captureWarnings(True)
    _component = component
    return resolved


def _writes_to_terminal(handler: logging.Handler) -> bool:
    """A plain stream handler on stdout or stderr: one that would print a second format."""
    streams = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s}
    return type(handler) is logging.StreamHandler and id(handler.stream) in streams


def current_component() -> str | None:
    """The component this process logs as, once :func:`configure_logging` ran."""
    return _component


def _option(argv: Sequence[str], *names: str) -> str | None:
    """The value of the first of ``names`` in ``argv`` (``--name value`` or ``--name=value``)."""
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                return argv[index + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg[len(name) + 1 :]
    return None


def prepare_command(argv: Sequence[str]) -> list[str]:
    """Set up logging for the Celery command in ``argv``, and the argv to run it with.

    Called by the Celery app's ``start`` (which ``worker_main`` calls too) before the
    command parses anything, so even its first line is in the platform's format:

    * ``worker`` and ``beat``: Celery's banner, printed rather than logged, is turned off
      (``--quiet``); its facts are logged instead (:func:`_worker_started`), and
      ``--loglevel`` is set to the level in force, so Celery agrees with it;
    * ``flower``: Tornado is told the level (``--logging``), since it sets the root level
      from its own option as it parses the command line.

    Any other command (``inspect``, ``purge``...) is left as it is.
    """
    args = list(argv)
    command = next((arg for arg in args if arg in COMMANDS), None)
    if command is None:
        return args
    asked = _option(args, "--loglevel", "-l") if command != "flower" else None
    level = configure_logging(command, level=asked)
    name = logging.getLevelName(level)
    name = name if isinstance(name, str) and not name.startswith("Level ") else str(level)
    if command == "flower":
        if _option(args, "--logging") is None:
            args.append(f"--logging={name.lower()}")
        return args
    args = [arg for arg in args if not arg.startswith(("--loglevel=", "-l="))]
    for flag in ("--loglevel", "-l"):
        while flag in args:
            at = args.index(flag)
            del args[at : at + 2]
    position = args.index(command)
    args[position + 1 : position + 1] = ["--loglevel", name]
    if "--quiet" not in args and "-q" not in args:
        args.insert(0, "--quiet")
    return args


# --------------------------------------------------------------------------------------
# Celery's signals
# --------------------------------------------------------------------------------------


@celeryd_init.connect
def _worker_init(**_: Any) -> None:
    """A worker is starting: its component name, for ``celery worker`` run directly."""
    global _component  # noqa: PLW0603
    _component = _component or "worker"


@setup_logging.connect
def _celery_setup_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery asks to set up logging (worker and beat, as they start): ours, not Celery's.

    Answering the signal at all keeps Celery from installing handlers of its own.  A
    process that embeds the app without starting a component through it (a test's
    in-process worker) keeps its own logging: the component is unknown there.
    """
    component = _component or _click_command()
    if component is None:
        return
    handler_level = configure_logging(component, level=loglevel)
    multiprocessing = get_multiprocessing_logger()
    if multiprocessing is not None:
        # billiard's logger does not propagate; Celery gives it the root's handler at ERROR.
        multiprocessing.handlers = list(logging.getLogger().handlers)
        multiprocessing.setLevel(max(handler_level, logging.ERROR))


def _click_command() -> str | None:
    """The Celery subcommand running now (``celery -A workers.app beat`` run directly)."""
    import click  # noqa: PLC0415 - Celery's command line is click; only asked here

    context = click.get_current_context(silent=True)
    name = context.info_name if context is not None else None
    return name if name in COMMANDS else None


@celeryd_after_setup.connect
def _worker_started(sender: str, instance: Any, **_: Any) -> None:
    """What Celery's banner says, as a log line: node, version, pool size and queues.

    Also sends stray writes to stdout and stderr (a library's print) through logging, as
    a Celery worker does by default, so they too arrive in the platform's format.
    """
    if _component is None:
        return
    queues = sorted(instance.app.amqp.queues.consume_from or ())
    log.info("%s starting: Celery %s, %s processes, queues %s", sender, celery.__version__,
             instance.concurrency, ", ".join(queues))  # fmt: skip
    conf = instance.app.conf
    if conf.worker_redirect_stdouts:
        instance.app.log.redirect_stdouts(conf.worker_redirect_stdouts_level)


@beat_init.connect
def _beat_started(sender: Any, **_: Any) -> None:
    """What beat's banner says, as a log line: its scheduler and how often it wakes."""
    if _component is None:
        return
    scheduler = getattr(sender, "scheduler_cls", None)
    name = scheduler if isinstance(scheduler, str) else getattr(scheduler, "__name__", "?")
    log.info("beat starting: Celery %s, scheduler %s, max interval %ss", celery.__version__,
             name, getattr(sender, "max_interval", "?"))  # fmt: skip
