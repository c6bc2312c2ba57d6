"""The broker transport: kombu's Redis transport, knowing which worker took what.

kombu emulates acknowledgements on Redis: a delivered message waits in the ``unacked``
hash (its delivery time in ``unacked_index``) until the worker acks it, and any worker
gives it back to its queue once it has waited for the visibility timeout.  That timeout
must outlast the longest task, so a worker host that dies (its whole process group, main
process included, so nobody runs ``reject_on_worker_lost``) delays its deliveries by
minutes.  This transport adds two things:

* the owner of each delivery: ``QoS.append`` writes ``Keys.delivery_owners`` (tag ->
  worker id) before kombu records the delivery, and every path that removes it (ack,
  reject, restore) removes the owner too.  :func:`restore_dead_workers`, run by every
  live worker after each of its heartbeats, gives back exactly the deliveries of workers
  whose heartbeat is gone, with kombu's own restore (a WATCH transaction);
* a channel that can still reach Redis once its connection has been closed.  After a
  broker connection is lost (a Redis restart), Celery collects and closes the old
  connection, which sets its transport's ``client`` to None; the old channel's QoS still
  holds the deliveries of running tasks, and restoring or acking them later rebuilds the
  channel's pool from ``transport.client``: ``AttributeError: 'NoneType' object has no
  attribute 'hostname'`` in kombu's ``_connparams``, raised in the middle of a restore.
  The channel keeps its connection's details from the start and uses them then.
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis

from reconciler.store.heartbeat import DeliveryOwners, Heartbeats, worker_id
from reconciler.store.keys import DELIVERY_OWNERS

log = logging.getLogger("reconciler.workers")


class QoS(kombu_redis.QoS):
    """kombu's ack emulation, recording the worker that took each delivery."""

    def append(self, message: Any, delivery_tag: str) -> None:
        worker = worker_id()
        if worker:
            # First: a delivery recorded as unacknowledged always has its owner.
            with self.channel.conn_or_acquire() as client:
                client.hset(DELIVERY_OWNERS, delivery_tag, worker)
        super().append(message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        return super()._remove_from_indices(delivery_tag, pipe).hdel(DELIVERY_OWNERS,
                                                                     delivery_tag)  # fmt: skip


class _KeepsConnection:
    """A channel keeping its connection's details from the start (see the module's doc)."""

    connection: Any

    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        self._origin = connection
        self._conninfo = connection.client
        super().__init__(connection, *args, **kwargs)  # type: ignore[call-arg]

    def _connparams(self, asynchronous: bool = False) -> Any:
        transport = self.connection if self.connection is not None else self._origin
        closed = transport.client is None
        saved, self.connection = self.connection, transport
        if closed:
            transport.client = self._conninfo
        try:
            return super()._connparams(asynchronous=asynchronous)  # type: ignore[misc]
        finally:
            self.connection = saved
            if closed:
                transport.client = None


class Channel(_KeepsConnection, kombu_redis.Channel):
    """kombu's Redis channel, with :class:`QoS` and its connection's details kept."""

    QoS = QoS


class SentinelChannel(_KeepsConnection, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (primary asked of the Sentinels), the same way."""

    QoS = QoS


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with :class:`SentinelChannel`."""

    Channel = SentinelChannel


def transport_for(url: str) -> str | None:
    """The transport class (as Celery's ``broker_transport``) for a broker URL.

    ``rediss://`` keeps kombu's own choice: kombu turns TLS on from the URL's scheme
    only when it picks the transport itself.
    """
    scheme = url.partition("://")[0]
    return {"redis": "workers.broker:Transport",
            "sentinel": "workers.broker:SentinelTransport"}.get(scheme)  # fmt: skip


def restore_dead_workers(connection: Any, owners: DeliveryOwners, heartbeats: Heartbeats) -> int:
    """Give the deliveries of dead workers back to their queues; how many were given back.

    ``connection`` is a kombu connection to the broker (this transport).  kombu's
    ``restore_by_tag`` moves a delivery from ``unacked`` to the front of its queue in one
    transaction, and does nothing if another worker restored or acked it first.
    """
    tags = owners.orphans(heartbeats)
    if not tags:
        return 0
    qos = connection.default_channel.qos
    for tag in tags:
        qos.restore_by_tag(tag)
        owners.forget(tag)
    log.warning("gave back %d delivery(ies) of dead workers to the queue", len(tags))
    return len(tags)
