"""The target lock: at most one worker reconciles an (application, cluster) at a time.

Beat, webhooks and admins may all ask for the same target at once, and Celery may run
those tasks on different hosts; two applies racing on one cluster would fight over fields
and prune each other's objects.  The lock is the classic single-Redis pattern:

* ``SET key token NX PX ttl`` with a random token, so only one holder exists and a holder
  that dies frees the target after ``ttl``;
* release and renewal compare the token first (Lua, atomic), so a worker whose lock
  expired and was taken by another can never delete or extend the new holder's lock;
* while held as a context manager, a background thread renews it every ``ttl / 3``; when
  a renewal finds the token gone, ``lost`` becomes True and the holder should stop writing;
* the value names its holder after the random part (``reconciler.store.heartbeat.Holder``),
  so a waiter that learns the holder is dead (``is_dead``) deletes that very value and
  takes the target at once instead of waiting out the TTL.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import redis
from redis.commands.core import Script

from reconciler.errors import LockBusy
from reconciler.store.keys import Keys

log = logging.getLogger(__name__)

#: Default seconds a lock lives without renewal: a dead worker frees its target this fast.
DEFAULT_TTL = 30.0

# KEYS[1]: the lock key.  ARGV[1]: the caller's token.
# Deletes the key only when it still holds the caller's token.  Returns 1 if deleted, else 0.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# KEYS[1]: the lock key.  ARGV[1]: the caller's token.  ARGV[2]: the new TTL in milliseconds.
# Extends the key's TTL only when it still holds the caller's token.  Returns 1 if
# extended, else 0.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


@dataclass(frozen=True)
class _Scripts:
    release: Script
    renew: Script


# Registered once per process, as redis-py's own Lock does: ``register_script`` only hashes
# the text, every call passes its own client, and a Script loads itself into a server that
# answers NOSCRIPT.
_scripts: _Scripts | None = None
_scripts_lock = threading.Lock()


def _scripts_for(client: redis.Redis) -> _Scripts:
    global _scripts  # noqa: PLW0603 - a lazily built, immutable, per-process registration
    with _scripts_lock:
        if _scripts is None:
            _scripts = _Scripts(client.register_script(_RELEASE), client.register_script(_RENEW))
        return _scripts


#: First and longest pause between two polls of a busy lock, in seconds.
FIRST_POLL = 0.01
MAX_POLL = 0.5


def jittered(delay: float) -> float:
    """``delay`` with "equal jitter": between half of it and all of it, so pollers drift apart."""
    return delay / 2 + random.uniform(0, delay / 2)


def holder_of(value: str) -> str:
    """The holder part of a lock value ("" when the value names none)."""
    _, _, holder = value.partition(" ")
    return holder


class TargetLock:
    """A Redis lock with a random token; see the module docstring.

    ``wait`` is how long ``__enter__`` tries before raising ``LockBusy``.  One object is
    one holder: it is not reentrant and not meant to be shared between threads (its own
    renewal thread aside).
    """

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        *,
        ttl: float = DEFAULT_TTL,
        wait: float = 0.0,
        holder: str = "",
        is_dead: Callable[[str], bool] | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"lock ttl must be positive, not {ttl!r}")
        self.client = client
        self.key = key
        self.ttl = ttl
        self.wait = wait
        self.holder = holder
        self.is_dead = is_dead
        self._scripts = _scripts_for(client)
        self._token: str | None = None
        self._lost = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @classmethod
    def for_target(
        cls,
        client: redis.Redis,
        keys: Keys,
        *,
        app: str,
        cluster: str,
        ttl: float = DEFAULT_TTL,
        wait: float = 0.0,
        holder: str = "",
        is_dead: Callable[[str], bool] | None = None,
    ) -> TargetLock:
        """The lock of one (application, cluster) target."""
        return cls(client, keys.lock(app, cluster), ttl=ttl, wait=wait, holder=holder,
                   is_dead=is_dead)  # fmt: skip

    @property
    def token(self) -> str | None:
        """This holder's token while it believes it holds the lock, else None."""
        return self._token

    @property
    def held(self) -> bool:
        """True from a successful ``acquire`` until ``release`` or a detected loss."""
        return self._token is not None and not self._lost

    @property
    def lost(self) -> bool:
        """True once a renewal found the lock expired or taken by another holder."""
        return self._lost

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    def acquire(self, wait: float = 0.0) -> bool:
        """Try to take the lock until ``wait`` seconds have passed (0: try once).

        Polls with exponential backoff and jitter, so many workers waiting for one target
        do not hammer Redis in step.
        """
        if self._token is not None and not self._lost:
            raise RuntimeError(f"{self.key}: this lock object already holds the lock")
        token = secrets.token_hex(16) + (f" {self.holder}" if self.holder else "")
        deadline = time.monotonic() + max(0.0, wait)
        delay = FIRST_POLL
        while True:
            if self.client.set(self.key, token, nx=True, px=self._ttl_ms):
                self._token = token
                self._lost = False
                return True
            if self._free_if_holder_dead():
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(remaining, jittered(delay)))
            delay = min(delay * 2, MAX_POLL)

    def _free_if_holder_dead(self) -> bool:
        """Delete the lock when its holder is known dead; True if this call deleted it.

        Compare-and-delete of the value read, so a lock taken meanwhile by a live
        holder is never touched.
        """
        if self.is_dead is None:
            return False
        current = self.client.get(self.key)
        if current is None:
            return True  # released or expired between SET and GET: try again now
        value = current.decode("utf-8", "replace") if isinstance(current, bytes) else current
        holder = holder_of(value)
        if not holder or not self.is_dead(holder):
            return False
        if self._scripts.release(keys=[self.key], args=[value], client=self.client):
            log.warning("%s: holder is dead, lock released before its TTL: %s", self.key, holder)
            return True
        return False

    def renew(self) -> bool:
        """Reset the TTL if the lock is still ours; False (and ``lost``) when it is not."""
        token = self._token
        if token is None:
            return False
        if self._scripts.renew(keys=[self.key], args=[token, self._ttl_ms], client=self.client):
            return True
        self._lost = True
        return False

    def release(self) -> bool:
        """Delete the lock if it is still ours; True when it was.  Never touches another's."""
        self._stop_renewing()
        token, self._token = self._token, None
        if token is None:
            return False
        return bool(self._scripts.release(keys=[self.key], args=[token], client=self.client))

    # -- context manager with renewal ---------------------------------------------------

    def __enter__(self) -> TargetLock:
        if not self.acquire(self.wait):
            raise LockBusy(f"{self.key}: held by another worker (waited {self.wait:g}s)")
        self._start_renewing()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.release()
        except redis.RedisError as error:
            # The lock expires by itself; do not hide the block's own exception behind this.
            log.warning(
                "%s: could not release the lock (%s); it expires by itself",
                self.key,
                type(error).__name__,
            )

    def _start_renewing(self) -> None:
        self._stop = threading.Event()
        self._renewer = threading.Thread(
            target=self._renew_loop, args=(self._stop,), name=f"renew {self.key}", daemon=True
        )
        self._renewer.start()

    def _stop_renewing(self) -> None:
        self._stop.set()
        renewer, self._renewer = self._renewer, None
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join()

    def _renew_loop(self, stop: threading.Event) -> None:
        interval = self.ttl / 3
        last_ok = time.monotonic()
        while not stop.wait(interval):
            try:
                if not self.renew():
                    log.warning("%s: lock lost (expired or taken by another holder)", self.key)
                    return
                last_ok = time.monotonic()
            except redis.RedisError as error:
                # Redis unreachable: the lock may still be ours until the TTL has run out
                # since the last successful renewal; past that, assume the worst.
                if time.monotonic() - last_ok >= self.ttl:
                    log.warning(
                        "%s: lock presumed lost, Redis unreachable (%s)",
                        self.key,
                        type(error).__name__,
                    )
                    self._lost = True
                    return
