"""Worker liveness: who is alive, who holds what, and who is dead.

A worker host that dies (power, OOM killer, SIGKILL of its process group) cannot say so.
Without help its work waits for timeouts made for slow tasks, not dead ones: the broker's
visibility timeout (longer than the hard time limit) for the deliveries it took, the lock
TTL for the targets it held.  A heartbeat per worker turns "silent for a while" into
"dead" within one short window:

* the worker's main process keeps ``Keys.worker_heartbeat(worker)`` alive (``SET PX``,
  refreshed every third of its TTL by a thread, :class:`Pulse`);
* the broker records which worker took which delivery (``Keys.delivery_owners``), so a
  live worker gives a dead one's unacknowledged deliveries back to the queue
  (:meth:`DeliveryOwners.orphans`) and leaves everyone else's alone;
* a target lock's value names its holder (:class:`Holder`: worker, host, pid and the
  pid's start time), so a waiter frees a lock whose holder is dead at once: its worker's
  heartbeat is gone, or the holder ran on this host and its process no longer exists.

A worker whose main process stalls past the TTL is taken for dead: its deliveries run
again elsewhere and its locks are freed, exactly as if its locks had expired.  Its own
renewals then find the locks gone (``TargetLock.lost``) and it stops writing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from reconciler.store.keys import Keys

log = logging.getLogger(__name__)

#: The worker this process belongs to: set in a worker's main process before its pool
#: forks, so pool processes inherit it; "" in processes that are no worker (the CLI).
_worker_id = ""


def new_worker_id(nodename: str) -> str:
    """A fresh identity for a starting worker: its node name and a random suffix.

    Random, so a worker restarted under the same name is not mistaken for the dead one.
    """
    return f"{nodename}.{uuid.uuid4().hex[:8]}"


def set_worker_id(worker: str) -> None:
    """Name the worker this process (and every process it forks) belongs to."""
    global _worker_id  # noqa: PLW0603 - one identity per process, inherited by forks
    _worker_id = worker


def worker_id() -> str:
    """The worker this process belongs to, "" outside a worker."""
    return _worker_id


def _start_time(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot), "" if it is gone.

    With the pid it names one process for good: a pid reused later starts later.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    # Field 22 of stat is starttime; fields[0] is field 3 (state).
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: enough to tell, from another process, that it is dead."""

    worker: str
    host: str
    pid: int
    started: str

    @classmethod
    def this_process(cls) -> Holder:
        pid = os.getpid()
        return cls(worker=worker_id(), host=socket.gethostname(), pid=pid,
                   started=_start_time(pid))  # fmt: skip

    def encode(self) -> str:
        return json.dumps({"w": self.worker, "h": self.host, "p": self.pid, "s": self.started},
                          separators=(",", ":"))  # fmt: skip

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        """The holder a lock value names, or None when it names none (older values)."""
        try:
            data = json.loads(text)
            return cls(worker=str(data["w"]), host=str(data["h"]), pid=int(data["p"]),
                       started=str(data["s"]))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None

    def process_gone(self) -> bool:
        """True when the holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname() or self.pid <= 0:
            return False  # another host: only its worker's heartbeat can tell
        now = _start_time(self.pid)
        return not now or (bool(self.started) and now != self.started)


class Heartbeats:
    """The workers' heartbeat keys."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl

    def beat(self, worker: str) -> None:
        """Say ``worker`` is alive for one more TTL."""
        self.client.set(self.keys.worker_heartbeat(worker), "1", px=max(1, round(self.ttl * 1000)))

    def stop(self, worker: str) -> None:
        """``worker`` stops cleanly: it is gone now, not one TTL later."""
        self.client.delete(self.keys.worker_heartbeat(worker))

    def alive(self, worker: str) -> bool:
        return bool(self.client.exists(self.keys.worker_heartbeat(worker)))

    def alive_many(self, workers: set[str]) -> dict[str, bool]:
        names = sorted(workers)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.keys.worker_heartbeat(name))
        return {name: bool(found) for name, found in zip(names, pipe.execute(), strict=True)}

    def holder_dead(self, holder_text: str) -> bool:
        """Whether the lock holder ``holder_text`` (``Holder.encode``) is known to be dead."""
        holder = Holder.parse(holder_text)
        if holder is None:
            return False
        if holder.process_gone():
            return True
        return bool(holder.worker) and not self.alive(holder.worker)


class DeliveryOwners:
    """Which worker took which broker delivery (written by ``workers.broker``)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def orphans(self, heartbeats: Heartbeats) -> list[str]:
        """Delivery tags whose worker is dead and which are still unacknowledged.

        Entries whose delivery was acknowledged meanwhile are dropped on the way.
        """
        owners = {
            _text(tag): _text(worker)
            for tag, worker in self.client.hgetall(self.keys.delivery_owners()).items()
        }
        if not owners:
            return []
        alive = heartbeats.alive_many(set(owners.values()))
        dead = [tag for tag, worker in owners.items() if not alive[worker]]
        if not dead:
            return []
        pipe = self.client.pipeline(transaction=False)
        for tag in dead:
            pipe.hexists(self.keys.broker_unacked(), tag)
        pending = pipe.execute()
        gone = [tag for tag, still in zip(dead, pending, strict=True) if not still]
        if gone:
            self.client.hdel(self.keys.delivery_owners(), *gone)
        return [tag for tag, still in zip(dead, pending, strict=True) if still]

    def forget(self, tag: str) -> None:
        self.client.hdel(self.keys.delivery_owners(), tag)


class Pulse:
    """The thread of a worker's main process: heartbeat, then ``after_beat`` (the reaper).

    Redis errors are logged and retried on the next beat: a worker must outlive a Redis
    restart, and a reaper that failed once tries again one interval later.
    """

    def __init__(
        self,
        heartbeats: Heartbeats,
        worker: str,
        *,
        after_beat: Callable[[], None] | None = None,
    ) -> None:
        self.heartbeats = heartbeats
        self.worker = worker
        self.after_beat = after_beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat {worker}",
                                        daemon=True)  # fmt: skip

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.heartbeats.ttl)
        try:
            self.heartbeats.stop(self.worker)
        except redis.RedisError as error:
            log.warning("heartbeat of %s not removed (%s)", self.worker, type(error).__name__)

    def _beat(self) -> None:
        try:
            self.heartbeats.beat(self.worker)
        except redis.RedisError as error:
            log.warning("heartbeat of %s failed (%s)", self.worker, type(error).__name__)
            return
        if self.after_beat is not None:
            try:
                self.after_beat()
            except Exception:  # the reaper must never end the heartbeat
                log.exception("restoring dead workers' deliveries failed; retrying next beat")

    def _loop(self) -> None:
        while not self._stop.wait(self.heartbeats.ttl / 3):
            self._beat()


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


class AppliedDeliveries:
    """Which attempts of which target tasks have applied: a redelivery applies once.

    A delivery comes twice when its worker was taken for dead (or its visibility timeout
    passed) while it still ran.  The second copy waits for the target lock, then finds
    its attempt marked here and stops.  Retries are other attempts and run.
    """

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl: float) -> None:
        self.client = client
        self.keys = keys
        self.ttl = ttl

    def applied(self, task_id: str, attempt: int) -> bool:
        return bool(self.client.exists(self.keys.delivery_done(task_id, attempt)))

    def mark(self, task_id: str, attempt: int) -> None:
        self.client.set(self.keys.delivery_done(task_id, attempt), "1",
                        px=max(1, round(self.ttl * 1000)))  # fmt: skip
