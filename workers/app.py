"""The Celery application: broker, result backend and queues, all on Redis.

Settings that make reconciles safe to run on many hosts:

* JSON only, and task arguments that are names (application, cluster, trigger, commit):
  never credentials or manifests, because Flower shows arguments to anyone who opens it;
* ``acks_late`` with ``reject_on_worker_lost`` and prefetch 1: a worker killed in the
  middle of a reconcile leaves its task in the queue for another worker;
* soft and hard time limits, and a broker visibility timeout longer than the hard limit,
  so a slow task is not delivered twice while it still runs;
* two queues, forced work (admin syncs, webhooks) and scheduled work, consumed in sorted
  order so a free worker always takes forced work first, whatever the scheduled backlog;
* every key under the installation's prefix, so one Redis serves several installations;
* reconcile jobs that read in Flower as people think of them (``workers.flower``): a
  name per target set on every message, and Flower's tasks page showing results;
* one log format for worker, beat and Flower (``workers.logs``), set up as the app starts
  each of them;
* a broker transport that knows which worker took each delivery (``workers.broker``), so
  the deliveries of a worker whose heartbeat stopped go back to the queue at once, not
  after the visibility timeout.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery import Celery
from celery.app.amqp import AMQP
from kombu.entity import Queue

from reconciler.settings import load as load_settings
from reconciler.store import connect
from reconciler.store.keys import Keys
from workers.broker import transport_for
from workers.flower import apply_flower_defaults, name_task_message
from workers.logs import prepare_command

#: Queue names sort forced-first: the broker is consumed in "sorted" order.
FORCED_QUEUE = "reconciler-forced"
SCHEDULED_QUEUE = "reconciler-scheduled"
#: Seconds: a reconcile that takes longer is stopped (soft first, then killed).
SOFT_TIME_LIMIT = load_settings().task_soft_limit
HARD_TIME_LIMIT = SOFT_TIME_LIMIT * 1.2 + 10
#: Seconds before the broker hands an unacknowledged task (its worker died) to another
#: worker.  Longer than the hard limit, so a task is never delivered twice while it runs.
VISIBILITY_TIMEOUT = max(
    load_settings().visibility_timeout or HARD_TIME_LIMIT * 2,
    HARD_TIME_LIMIT + 5,
)


def redis_url() -> str:
    """Broker and backend URL: ``REDIS_URL`` (``reconciler up`` sets it for its children)."""
    return load_settings().redis


def route_label() -> str:
    """Cluster label whose value picks target queues (``RECONCILER_ROUTE_LABEL``), or ""."""
    return load_settings().route_label


def queue_for(*, forced: bool, route: str = "") -> str:
    """The queue of a task: forced or scheduled, optionally for one routing label value."""
    base = FORCED_QUEUE if forced else SCHEDULED_QUEUE
    return f"{base}.{route}" if route else base


def queues_for(routes: list[str]) -> list[str]:
    """Queues a worker consumes: the shared ones and those of its routing values."""
    names = [FORCED_QUEUE, SCHEDULED_QUEUE]
    for route in routes:
        names += [queue_for(forced=True, route=route), queue_for(forced=False, route=route)]
    return names


class ReconcilerAMQP(AMQP):  # type: ignore[misc]  # Celery is untyped
    """Celery's message factory, naming each reconcile job as Flower shows it.

    Every task message, whoever sends it (beat, the CLI, the webhook server, a fan-out,
    a retry), is built here, so this is the one place that names them all.
    """

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        name_task_message(message.headers, message.body, message.sent_event)
        return message


class ReconcilerCelery(Celery):  # type: ignore[misc]  # Celery is untyped
    """The Celery app, logging in the platform's format whichever component it starts.

    The command line starts worker, beat and Flower through the app (``worker_main``,
    ``start``); both come here, where the command's logging is set up before Celery or
    Flower parses anything (:func:`workers.logs.prepare_command`).
    """

    def start(self, argv: list[str] | None = None) -> Any:
        return super().start(argv=prepare_command(sys.argv if argv is None else argv))


def create_app() -> Celery:
    """A configured Celery app (settings read from the environment now)."""
    # The reconciles, the fleet's own tasks (rollouts, ticks), and notifications.
    tasks = ["workers.tasks", "workers.fleet_tasks", "workers.notifications"]
    app = ReconcilerCelery("reconciler", include=tasks, amqp=ReconcilerAMQP)
    app.conf.update(settings(redis_url(), Keys()))
    return app


def reconfigure(celery_app: Celery, *, url: str, prefix: str) -> None:
    """Point an app (before its first use) at another Redis and key prefix.

    Also exports them to the environment, so the process's runtime and any child process
    agree with it.  Used by ``reconciler up`` and by tests that provision Redis late.
    """
    os.environ["REDIS_URL"] = url
    os.environ["RECONCILER_REDIS_PREFIX"] = prefix
    celery_app.conf.update(settings(url, Keys(prefix)))


def settings(url: str, keys: Keys) -> dict[str, object]:
    """Every Celery and RedBeat setting, for one Redis and key prefix."""
    # Where Redis is and how to reconnect to it (plain or Sentinel) comes from the one
    # place that makes Redis clients; only this installation's options are added here.
    redis_conf = connect.celery_settings(url)
    transport = {
        **redis_conf.pop("broker_transport_options"),
        "visibility_timeout": int(VISIBILITY_TIMEOUT),
        # Look for tasks whose worker died at least four times per visibility timeout
        # (kombu's default sweep is every 10 s x 10 = 100 s, far later than the timeout).
        "unacked_restore_interval": max(1, min(10, int(VISIBILITY_TIMEOUT) // 4)),
        "unacked_restore_throttle": 1,
        "queue_order_strategy": "sorted",
        "global_keyprefix": keys.celery(),
    }
    backend_transport = {
        **redis_conf.pop("result_backend_transport_options"),
        "global_keyprefix": keys.celery(),
    }
    return dict(
        **redis_conf,
        # kombu's Redis or Sentinel transport, recording which worker took which delivery
        # so a dead worker's are given back at once (``workers.broker``).
        broker_transport=transport_for(str(redis_conf.get("broker_url", url))),
        broker_transport_options=transport,
        result_backend_transport_options=backend_transport,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=SOFT_TIME_LIMIT,
        task_time_limit=HARD_TIME_LIMIT,
        task_track_started=True,
        result_extended=True,
        # A task's result serves ``sync --wait`` and Flower's first look; the record of
        # every outcome is the history.  Kept a day, results would cost each target a
        # result per interval (megabytes a day at a 30 s interval).
        result_expires=int(load_settings().result_ttl),
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_default_queue=SCHEDULED_QUEUE,
        task_queues=[Queue(FORCED_QUEUE), Queue(SCHEDULED_QUEUE)],
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        redbeat_key_prefix=keys.redbeat(),
        # Seconds a dead beat keeps the schedule locked before a standby beat takes over.
        redbeat_lock_timeout=load_settings().beat_lock_timeout,
        beat_max_loop_interval=5,
        timezone="UTC",
    )


app = create_app()
apply_flower_defaults(os.environ)
