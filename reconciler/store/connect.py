"""The one place that turns the configured Redis into clients: ours, Celery's, RedBeat's.

Redis is used three ways (our store through redis-py, the broker and result backend
through kombu and Celery, the schedule through RedBeat), and each library spells a
Sentinel deployment differently: kombu wants ``sentinel://`` URLs and a ``master_name``
transport option, RedBeat ``redis-sentinel://`` and ``sentinels``/``service_name`` options,
redis-py a ``Sentinel`` object.  Writing the translation once keeps them pointed at the
same primary after a failover, and keeps the reconnect behaviour the same everywhere:

* every client retries a failed connection or timeout with capped exponential backoff
  (a restart or a failover is seconds, not an error to report);
* idle connections are health-checked (a PING every ``RECONCILER_REDIS_HEALTH_CHECK``
  seconds), so a Redis that restarted is found out before a command is lost to it;
* Celery retries its broker connection forever, at start and after a loss, and its result
  backend retries too: a worker, beat or webhook outlives a Redis restart without help.

``REDIS_URL`` is either a plain ``redis://``/``rediss://`` URL or a list of Sentinels,
``sentinel://[:password@]host:port[/db];sentinel://host2:port...`` (kombu's form), with
the master's name in ``RECONCILER_REDIS_SENTINEL_MASTER``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from reconciler import settings
from reconciler.errors import ConfigError

#: Attempts a command makes through a connection error before raising (about 6 s in all).
RETRIES = 6
#: Seconds: cap of the backoff between two attempts.
BACKOFF_CAP = 2.0
#: Seconds to connect before an attempt counts as failed.
CONNECT_TIMEOUT = 5.0
_SENTINEL = "sentinel://"


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: one URL, or the Sentinels that know the primary's address."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    password: str | None = None
    health_check: float = 10.0

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)


def target(url: str | None = None, *, master: str | None = None) -> RedisTarget:
    """The configured Redis (``url`` or ``REDIS_URL``), parsed once for every client."""
    conf = settings.load()
    url = url or conf.redis
    if not url.startswith(_SENTINEL):
        return RedisTarget(url=url, health_check=conf.redis_health_check)
    sentinels: list[tuple[str, int]] = []
    db, password = 0, None
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        if parsed.scheme != "sentinel" or not parsed.hostname:
            raise ConfigError(f"REDIS_URL: {part!r} is not sentinel://host:port")
        sentinels.append((parsed.hostname, parsed.port or 26379))
        if parsed.password:
            password = unquote(parsed.password)
        if parsed.path.strip("/"):
            try:
                db = int(parsed.path.strip("/"))
            except ValueError as exc:
                raise ConfigError(f"REDIS_URL: database {parsed.path!r} is not a number") from exc
    return RedisTarget(
        url=_sentinel_url(sentinels, db, password),
        sentinels=tuple(sentinels),
        master=master or conf.redis_sentinel_master,
        db=db,
        password=password,
        health_check=conf.redis_health_check,
    )


def _sentinel_url(sentinels: list[tuple[str, int]], db: int, password: str | None) -> str:
    """The Sentinel list with the password and database on every part.

    kombu reads them from the first part only and, when it fails over to the next
    Sentinel, takes that part's own (none): a broker that lost its first Sentinel would
    then log in without the password, or read database 0.
    """
    auth = f":{quote(password, safe='')}@" if password else ""
    return ";".join(f"sentinel://{auth}{host}:{port}/{db}" for host, port in sentinels)


def _retry() -> Retry:
    return Retry(ExponentialWithJitterBackoff(cap=BACKOFF_CAP, base=0.1), RETRIES)


def client(
    where: RedisTarget | str | None = None,
    *,
    socket_timeout: float = 30.0,
    decode_responses: bool = False,
) -> redis.Redis:
    """A redis-py client for our store: retrying, health-checked, Sentinel-aware."""
    found = where if isinstance(where, RedisTarget) else target(where)
    options: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": found.health_check,
        "retry": _retry(),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "decode_responses": decode_responses,
    }
    if not found.is_sentinel:
        return redis.Redis.from_url(found.url, **options)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(found.sentinels),
        sentinel_kwargs={"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
        password=found.password,
        db=found.db,
    )
    # master_for asks the Sentinels for the primary on every (re)connect, so a client
    # follows a failover as soon as its retry reconnects.
    master: redis.Redis = sentinel.master_for(found.master, **options)  # type: ignore[no-untyped-call]
    return master


def answers(url: str, *, timeout: float = 1.0) -> bool:
    """Whether the Redis at ``url`` (plain, or the primary its Sentinels name) answers PING.

    One attempt within ``timeout`` seconds, no retries: a probe that says "not there"
    quickly, for the command line's start and for ``reconciler up`` choosing a Redis.
    """
    try:
        found = target(url)
    except (ConfigError, ValueError):
        return False
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    try:
        if found.is_sentinel:
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(found.sentinels), sentinel_kwargs=dict(options),
                password=found.password, db=found.db,
            )  # fmt: skip
            probe: redis.Redis = sentinel.master_for(found.master, **options)  # type: ignore[no-untyped-call]
        else:
            probe = redis.Redis.from_url(found.url, **options)
    except ValueError:
        return False
    try:
        return bool(probe.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        probe.close()


def celery_settings(where: RedisTarget | str | None = None) -> dict[str, Any]:
    """Broker, result backend and RedBeat settings for one Redis (plain or Sentinel).

    The caller merges them with its own transport options (key prefix, visibility...).
    """
    found = where if isinstance(where, RedisTarget) else target(where)
    connection = {
        "socket_timeout": 30,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "retry_on_timeout": True,
        "health_check_interval": int(found.health_check),
    }
    transport: dict[str, Any] = dict(connection)
    backend: dict[str, Any] = {"retry_policy": {"timeout": 10.0}}
    redbeat: dict[str, Any] = {"health_check_interval": int(found.health_check),
                               "socket_connect_timeout": CONNECT_TIMEOUT}  # fmt: skip
    redbeat_url = found.url
    if found.is_sentinel:
        sentinel_kwargs = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
        if found.password:
            sentinel_kwargs["password"] = found.password  # type: ignore[assignment]
        transport.update(master_name=found.master, sentinel_kwargs=sentinel_kwargs)
        backend.update(master_name=found.master, sentinel_kwargs=sentinel_kwargs)
        host, port = found.sentinels[0]
        redbeat_url = f"redis-sentinel://{host}:{port}/{found.db}"
        redbeat = {
            "sentinels": list(found.sentinels),
            "service_name": found.master,
            "socket_timeout": 5.0,
            "db": found.db,
            "password": found.password,
            "sentinel_kwargs": sentinel_kwargs,
        }
    return {
        "broker_url": found.url,
        "result_backend": found.url,
        "broker_transport_options": transport,
        "result_backend_transport_options": backend,
        # Reconnect forever, at start and after a loss (Celery's default gives up at 100).
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": CONNECT_TIMEOUT,
        "redis_backend_health_check_interval": int(found.health_check),
        "redis_socket_timeout": 30.0,
        "redis_socket_connect_timeout": CONNECT_TIMEOUT,
        "redis_retry_on_timeout": True,
        "redis_socket_keepalive": True,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 20,
        "redbeat_redis_url": redbeat_url,
        "redbeat_redis_options": redbeat,
    }
