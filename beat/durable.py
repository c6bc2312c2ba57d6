"""Beat's copies of state that must outlive Redis, kept in the fleet's clusters.

Suspensions live in Redis for speed, but an operator's ``suspend`` must survive a Redis
that restarts empty (``reconciler.store.suspension`` says why the copies are ConfigMaps in
``reconciler-system``).  Only beat's leader writes them, and only when the set changed
since it last wrote it, so a steady fleet costs no API calls.  A cluster that could not
be read while restoring is read (and merged) before it is ever written, so its copy is
never overwritten by a set that was restored without it.  A cluster that cannot be
reached is tried again at most every ``RETRY_EVERY`` seconds, so a blackholed API server
cannot stall beat's loop past its lease.

Beat speaks to a cluster here once per pass over the fleet (a restore, a changed set), so
it keeps no client between passes: a pass's clients are closed when it ends, and beat's
memory does not grow with the fleet.  Building them again costs no request (the
kubeconfig and discovery are cached; see ``reconciler.kube``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler import inventory as inv
from reconciler.engine import write_system_configmap
from reconciler.errors import ReconcilerError
from reconciler.fleet import Cluster, Fleet
from reconciler.kube import ClientFactory, KubeClient
from reconciler.source import default_cache_dir
from reconciler.store.suspension import CONFIGMAP_NAME, durable_copy, from_durable_copy

log = logging.getLogger("reconciler.beat")

#: Seconds between two attempts at a cluster that did not answer.
RETRY_EVERY = 30.0


class SuspensionCopies:
    """The durable copies of the suspended set, one per cluster of the fleet."""

    def __init__(self, clients: ClientFactory | None = None) -> None:
        self.clients = clients or ClientFactory(cache_dir=Path(default_cache_dir()),
                                                timeout=(3.0, 10.0))  # fmt: skip
        #: Cluster name -> the set last written there (or read from there).
        self._written: dict[str, frozenset[str]] = {}
        #: Clusters whose copy a restore could not read: read and merged before any write.
        self.pending: set[str] = set()
        self._failed_at: dict[str, float] = {}

    @contextmanager
    def _pass(self) -> Iterator[None]:
        """One pass over the fleet; its clients are closed at its end."""
        try:
            yield
        finally:
            self.clients.clear()

    def _client(self, cluster: Cluster) -> KubeClient:
        return self.clients.for_cluster(
            name=cluster.name, context=cluster.context, kubeconfig=cluster.kubeconfig
        )

    def _read_one(self, cluster: Cluster) -> set[str]:
        names = from_durable_copy(self._client(cluster).get("", "ConfigMap", inv.NAMESPACE,
                                                            CONFIGMAP_NAME))  # fmt: skip
        self._written[cluster.name] = frozenset(names)
        return names

    def read(self, fleet: Fleet) -> tuple[set[str], list[str]]:
        """The union of every reachable cluster's copy, and the clusters that failed.

        Clusters that failed stay pending: :meth:`merge_pending` reads them later.
        """
        found: set[str] = set()
        unreachable: list[str] = []
        with self._pass():
            for cluster in fleet.clusters:
                try:
                    found |= self._read_one(cluster)
                except ReconcilerError as exc:
                    log.warning("suspensions: cluster %s did not answer (%s); read again "
                                "later", cluster.name, exc)  # fmt: skip
                    unreachable.append(cluster.name)
                    self._failed_at[cluster.name] = time.monotonic()
        self.pending = set(unreachable)
        return found, unreachable

    def merge_pending(self, fleet: Fleet) -> set[str]:
        """Suspensions from pending clusters that answer now (to add to Redis)."""
        found: set[str] = set()
        with self._pass():
            for cluster in fleet.clusters:
                if cluster.name not in self.pending or not self._due(cluster.name):
                    continue
                try:
                    found |= self._read_one(cluster)
                except ReconcilerError:
                    self._failed_at[cluster.name] = time.monotonic()
                    continue
                self.pending.discard(cluster.name)
        self.pending &= {cluster.name for cluster in fleet.clusters}
        return found

    def write(self, fleet: Fleet, suspended: set[str]) -> int:
        """Bring every cluster's copy to ``suspended``; returns how many were written."""
        wanted = frozenset(suspended)
        written = 0
        with self._pass():
            for cluster in fleet.clusters:
                if (cluster.name in self.pending or self._written.get(cluster.name) == wanted
                        or not self._due(cluster.name)):  # fmt: skip
                    continue
                manifest = durable_copy(wanted)
                try:
                    write_system_configmap(self._client(cluster), manifest)
                except ReconcilerError as exc:
                    if cluster.name not in self._failed_at:
                        log.warning("suspensions not copied to cluster %s yet: %s",
                                    cluster.name, exc)  # fmt: skip
                    self._failed_at[cluster.name] = time.monotonic()
                    continue
                self._failed_at.pop(cluster.name, None)
                self._written[cluster.name] = wanted
                written += 1
        return written

    def _due(self, cluster: str) -> bool:
        failed = self._failed_at.get(cluster)
        return failed is None or time.monotonic() - failed >= RETRY_EVERY

    def close(self) -> None:
        self.clients.close()
