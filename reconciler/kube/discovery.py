"""API discovery that clusters serving the same APIs share, one parsed copy per process.

The kubernetes client's ``LazyDiscoverer`` keeps, per client, every group/version it has
looked at parsed into ``Resource`` objects (about 90 KiB for a kubesim cluster, more for
a real one).  A fleet is mostly clusters of a few versions with the same CRDs: they serve
the same documents, and a process that speaks to a thousand of them held a thousand
copies.  ``SharedDiscoverer`` is that discoverer, unchanged in what it does (lazy per
group/version, everything read again when a search finds nothing, a cache file per API
server), except that each group/version it parses is content-addressed: resources equal
to ones another cluster already has are that cluster's copy, held as long as one client
refers to it (``DiscoveryCache``, a weak index by digest).

What a cluster serves stays its own.  The map of its groups and versions is per client,
and each group/version is read from the cluster itself before it is shared: a CRD added
to one cluster changes that cluster's document, so its digest, and never the entry that
other clusters hold.  A search that misses refreshes the cluster's own discovery, as the
library's does.

Shared ``Resource`` objects belong to no client (``client=None``): the library binds each
to the ``DynamicClient`` that made it, which would keep one cluster's connection pool
alive through another's discovery.  Requests go through ``DynamicClient.request`` with a
path; the library's shortcuts that call through a resource (``resource.get()``) are not
used on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import weakref
from collections.abc import Mapping
from typing import Any, ClassVar

from kubernetes.dynamic.discovery import CacheEncoder, LazyDiscoverer, ResourceGroup


class SharedResources(dict[str, list[Any]]):
    """One group/version's resources by kind, as the library parses them; shared."""

    __slots__ = ("__weakref__",)


class DiscoveryCache:
    """Parsed group/versions by digest of their content, held while a client uses them.

    Thread-safe: the watcher discovers many clusters at once from its threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_digest: weakref.WeakValueDictionary[str, SharedResources] = (
            weakref.WeakValueDictionary()
        )

    def share(self, resources: Mapping[str, list[Any]]) -> SharedResources:
        """The one copy of ``resources`` (these, unbound from their client, when new)."""
        if isinstance(resources, SharedResources):
            return resources
        digest = _digest(resources)
        with self._lock:
            found = self._by_digest.get(digest)
            if found is not None:
                return found
            made = SharedResources(resources)
            for listed in made.values():
                for resource in listed:
                    resource.client = None
            self._by_digest[digest] = made
            return made

    def __len__(self) -> int:
        """Distinct parsed group/versions alive in this process."""
        with self._lock:
            return len(self._by_digest)


#: The process's cache (a worker pool process, beat, the watcher each have their own).
SHARED = DiscoveryCache()


def _digest(resources: Mapping[str, list[Any]]) -> str:
    # What the library writes to its cache file: prefix, group, version, preferred, and
    # every field the server sent of each resource and subresource.
    text = json.dumps(resources, cls=CacheEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SharedDiscoverer(LazyDiscoverer):
    """``LazyDiscoverer`` whose parsed group/versions come from ``DiscoveryCache``, and
    whose cache file is replaced atomically (a host's workers share it)."""

    cache: ClassVar[DiscoveryCache] = SHARED

    def get_resources_for_api_version(
        self, prefix: str, group: str, version: str, preferred: bool
    ) -> SharedResources:
        """One group/version read from this cluster, then shared if another has it too."""
        found = super().get_resources_for_api_version(prefix, group, version, preferred)
        return self.cache.share(found)

    def discover(self) -> None:
        """The library's lazy discovery; then the group/versions it holds already (read
        from the cache file, or its built-in ``List``) become the shared copies."""
        super().discover()
        tree: Any = self._cache.get("resources") or {}  # prefix -> group -> version
        for groups in tree.values():
            for versions in groups.values():
                for entry in versions.values():
                    if isinstance(entry, ResourceGroup) and entry.resources:
                        entry.resources = self.cache.share(entry.resources)

    def _write_cache(self) -> None:
        path = getattr(self, "_Discoverer__cache_file", "")
        if not path:
            return
        try:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".discovery-")
            with os.fdopen(fd, "w") as out:
                json.dump(self._cache, out, cls=CacheEncoder)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs a rediscovery


__all__ = ["SHARED", "DiscoveryCache", "SharedDiscoverer", "SharedResources"]
