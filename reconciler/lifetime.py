"""Child processes that die with their parent, even when the parent is SIGKILLed.

``reconciler up`` and the embedded Redis start long-lived children: a worker consuming
from Redis with a fleet file that may be gone, or a Redis server nobody will stop, must
not outlive the process that started it.  Linux's parent-death signal does it from the
kernel side, so no cleanup code has to run in the dying parent.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

#: ``prctl(2)`` option that sets the signal a process gets when its parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: What a child gets when its parent dies without stopping it: the signal of an orderly stop.
DEATH_SIGNAL = signal.SIGTERM
#: The signals ``up`` answers; held back while it starts a child (``cli.supervisor``).
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once in the parent: a forked child of a threaded process
    must not run the dynamic loader (billiard's ``set_pdeathsig`` does, on every call)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _load_prctl()


def tie_to_parent(parent: int, death_signal: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get ``death_signal`` when ``parent`` dies.

    It takes no locks and loads nothing, so it is safe in a child forked from a threaded
    process.  The kernel sends the signal when the *thread* that forked the child ends, so
    children are only ever started from the main thread.  A parent that died between fork
    and prctl is caught by comparing the parent pid afterwards.  The stop signals that were
    blocked around the fork are unblocked here, as the mask survives exec.
    """

    def tie() -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
            if os.getppid() != parent:
                os.kill(os.getpid(), death_signal)

    return tie
