"""Redis faults, repeated: a restart with no data, and a Sentinel failover.

Each repetition builds a fresh installation (three kubesim clusters, a Git repository, a
fleet file) on a Redis of its own, starts a real worker, beat and webhook server with the
command line, and runs the very scenario of ``tests/e2e/test_redis_faults.py``:

* **restart** -- redis-server (no persistence) SIGKILLed and started again, empty, on the
  same port;
* **failover** -- a primary, a replica and three Sentinels; the primary SIGKILLed, the
  Sentinels promote the replica.

Just before the fault, ``--forced`` forced syncs (``reconciler sync APP --async``) are
queued for applications on a cluster slowed to 0.5 s per request, so they are still
queued or running when Redis goes.  Per run it prints: seconds to recover (fault to the
first Synced scheduled reconcile; for the restart, from Redis answering again), forced
syncs lost (queued before the fault, never finished within 40 s after it), and the
components that died.  The tests bound these figures; this prints them.

    .venv/bin/python bench/redis_fault_bench.py [--runs 5] [--forced 3] [--only restart]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kubesim  # noqa: E402
from tests.e2e.conftest import CLUSTERS  # noqa: E402
from tests.e2e.test_redis_faults import (  # noqa: E402
    MASTER,
    Figures,
    OwnRedis,
    SentinelSet,
    failover,
    installation,
    restart_empty,
)


def restart_run(tmp: Path, forced: int) -> Figures:
    own = OwnRedis().start()
    try:
        with kubesim.serve(list(CLUSTERS), controller_delay=0.05) as sim, \
                installation(tmp, sim, own.url) as stack:  # fmt: skip
            return restart_empty(stack, own, forced=forced)
    finally:
        own.close()


def failover_run(tmp: Path, forced: int) -> Figures:
    sentinels = SentinelSet().start()
    env = {"RECONCILER_REDIS_SENTINEL_MASTER": MASTER}
    try:
        with kubesim.serve(list(CLUSTERS), controller_delay=0.05) as sim, \
                installation(tmp, sim, sentinels.url, env=env) as stack:  # fmt: skip
            return failover(stack, sentinels, forced=forced)
    finally:
        sentinels.close()


SCENARIOS: dict[str, Callable[[Path, int], Figures]] = {
    "restart": restart_run,
    "failover": failover_run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each scenario")
    parser.add_argument("--forced", type=int, default=3, help="forced syncs queued before")
    parser.add_argument("--only", choices=sorted(SCENARIOS), help="one scenario only")
    args = parser.parse_args()
    for name, run in SCENARIOS.items():
        if args.only and name != args.only:
            continue
        figures: list[Figures] = []
        failed = 0
        for index in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix=f"redis-fault-{name}-") as tmp:
                try:
                    found = run(Path(tmp), args.forced)
                except Exception as exc:  # a scenario that failed is a figure too
                    failed += 1
                    print(f"{name} run {index}: FAILED: {exc}", flush=True)
                    continue
                except BaseException as exc:  # pytest.fail from a wait that timed out
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    failed += 1
                    print(f"{name} run {index}: FAILED: {str(exc).splitlines()[0]}", flush=True)
                    continue
            figures.append(found)
            print(f"{name} run {index}: {found.line()}", flush=True)
        if figures:
            recovery = [f.recovery for f in figures]
            print(
                f"{name}: {len(figures)}/{args.runs} runs completed ({failed} failed); "
                f"recovery median {statistics.median(recovery):.1f}s, max {max(recovery):.1f}s; "
                f"forced syncs lost {sum(f.lost for f in figures)}/"
                f"{sum(f.queued for f in figures)} "
                f"({sum(f.early for f in figures)} finished before the fault); "
                f"processes died {sum(len(f.died) for f in figures)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
