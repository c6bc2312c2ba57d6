"""Notifications in the workers: which endpoints hear of an event, folding, and the POST.

A reconcile never waits for a notification: the target task decides which endpoints
want the events its outcome raised (``reconciler.notify``), claims each fold, and queues
one ``notify`` task per message; that task POSTs, retrying with backoff on a 5xx answer
or a connection that fails, and gives up on a 4xx (the endpoint refuses it: retrying
will not change that).  The endpoint's URL and header values come from the environment
of the worker that sends (``urlFromEnv``, ``headersFromEnv``), never from task arguments,
results or logs, which name the endpoint only.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterable, Sequence
from typing import Any

import redis
import urllib3
from celery import Task

from reconciler.errors import ConfigError
from reconciler.fleet import Fleet
from reconciler.fleet.model import Notification
from reconciler.notify import Event, payload
from reconciler.store.keys import Keys
from reconciler.store.notified import Notified
from workers.app import app, queue_for

log = logging.getLogger("reconciler.notify")

NOTIFY_TASK = "reconciler.notify"
#: Seconds a POST may take (connect and read) before it counts as failed.
TIMEOUT = 10.0
#: Attempts of one message after the first, with exponential backoff and jitter.
RETRIES = 5
BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0
_HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(total=TIMEOUT), retries=False)


def dispatch(client: redis.Redis, keys: Keys, fleet: Fleet, events: Sequence[Event],
             cleared: Iterable[str] = (), *, app_name: str,
             cluster_name: str | None) -> int:  # fmt: skip
    """Queue a message per endpoint that wants each event and was not told within its
    fold; forget the folds of the ``cleared`` kinds.  Returns the messages queued.

    Light on purpose (Redis and a Celery message): the watcher calls it too.
    """
    endpoints = fleet.notifications
    if not endpoints:
        return 0
    folds = Notified(client, keys)
    kinds = list(cleared)
    if kinds:
        folds.clear([e.name for e in endpoints], app_name, cluster_name, kinds)
    try:
        member = fleet.cluster(cluster_name) if cluster_name else None
    except ConfigError:
        member = None
    queued = 0
    for event in events:
        for endpoint in endpoints:
            if not endpoint.wants(event.kind, event.application, member):
                continue
            if not folds.claim(endpoint.name, event.application, event.cluster, event.kind,
                               fold=endpoint.fold):  # fmt: skip
                continue
            app.send_task(NOTIFY_TASK, args=(endpoint.name, event.to_dict()),
                          queue=queue_for(forced=True))  # fmt: skip
            queued += 1
    return queued


def _endpoint(fleet: Fleet, name: str) -> Notification | None:
    return next((e for e in fleet.notifications if e.name == name), None)


def _secret(name: str) -> str | None:
    """An environment variable the fleet file names (a URL or a header value)."""
    value = os.environ.get(name)
    return value if value else None


def backoff(retries: int) -> float:
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * (2**retries))
    return random.uniform(ceiling / 2, ceiling)  # jitter, not security


@app.task(name=NOTIFY_TASK, bind=True, ignore_result=False, max_retries=RETRIES)
def notify(self: Task, endpoint_name: str, event: dict[str, Any]) -> dict[str, Any]:
    """POST one event to one endpoint; 5xx and failed connections are retried."""
    from workers.runtime import runtime  # noqa: PLC0415 - the watcher imports this module

    rt = runtime()
    endpoint = _endpoint(rt.fleet(), endpoint_name)
    told = {"endpoint": endpoint_name, "event": event.get("kind"),
            "application": event.get("application"), "cluster": event.get("cluster")}  # fmt: skip
    if endpoint is None:
        return {**told, "skipped": "the endpoint left the fleet file"}
    url = endpoint.url or (_secret(endpoint.url_from_env) if endpoint.url_from_env else None)
    if not url:
        log.warning("notification %s: $%s is not set on this worker; %s not sent",
                    endpoint.name, endpoint.url_from_env, event.get("kind"))  # fmt: skip
        return {**told, "skipped": f"${endpoint.url_from_env} is not set"}
    headers = {"Content-Type": "application/json", "User-Agent": "reconciler"}
    for header, variable in endpoint.headers_from_env.items():
        value = _secret(variable)
        if value is not None:
            headers[header] = value
    body = json.dumps(payload(endpoint.format, Event.from_dict(event))).encode()
    try:
        answer = _HTTP.request("POST", url, body=body, headers=headers)
        status: int | None = answer.status
    except urllib3.exceptions.HTTPError as exc:
        # Never the URL in the message: it may be the credential itself.
        status, why = None, type(exc).__name__
    else:
        why = f"HTTP {status}"
    if status is not None and status < 400:
        return {**told, "status": status, "attempt": self.request.retries + 1}
    if status is not None and status < 500:
        log.warning("notification %s refused %s (%s); not retried", endpoint.name,
                    event.get("kind"), why)  # fmt: skip
        return {**told, "status": status, "failed": why}
    if self.request.retries >= RETRIES:
        log.warning("notification %s: %s not delivered after %d attempts (%s)", endpoint.name,
                    event.get("kind"), self.request.retries + 1, why)  # fmt: skip
        return {**told, "status": status, "failed": why}
    delay = backoff(self.request.retries)
    log.info("notification %s: %s, again in %.1fs", endpoint.name, why, delay)
    raise self.retry(countdown=delay)
