"""Targets rolled back to an earlier revision, whose automatic sync waits for ``resume``.

``reconciler rollback`` applies an earlier revision from a target's history; the next
scheduled run, push or heal would apply Git's revision again at once, so, as Argo CD
does, the target's automatic sync stops until an operator resumes it.  One hash per
installation, a field per target (``app/cluster``), read in one round trip by ``status``
and the fleet page.  The fan-out keeps ``wanted`` current (the revision Git names now),
so a rolled-back target shows what it runs and what it would run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import redis

from reconciler.store.keys import Keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolledBack:
    """One target's rollback."""

    #: The revision it was rolled back to (and runs, once its run succeeded).
    revision: str
    #: What it ran before (None: unknown).
    replaced: str | None = None
    #: The revision Git names now, as the last fan-out resolved it (None: not seen yet).
    wanted: str | None = None
    #: When, by whom (``user@host``) and why.
    at: str = ""
    by: str = ""
    reason: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def _entry(raw: bytes | str | None) -> RolledBack | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return RolledBack(**{k: v for k, v in data.items() if k in RolledBack.__dataclass_fields__})
    except (TypeError, ValueError):
        log.warning("an unreadable rollback entry; taken as none")
        return None


# Change a field only while it exists: a ``resume`` between the read and this write must
# not bring the rollback back.
_REPLACE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Rollbacks:
    """The rolled-back targets of one installation."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._replace = client.register_script(_REPLACE)

    def pin(self, app: str, cluster: str, rollback: RolledBack) -> None:
        self.client.hset(self.keys.rolled_back(), self.keys.target_field(app, cluster),
                         rollback.to_json())  # fmt: skip

    def get(self, app: str, cluster: str) -> RolledBack | None:
        field = self.keys.target_field(app, cluster)
        return _entry(self.client.hget(self.keys.rolled_back(), field))

    def of_app(self, app: str) -> dict[str, RolledBack]:
        """Cluster -> rollback, for ``app``'s rolled-back targets."""
        found = {}
        for field, raw in self.client.hscan_iter(self.keys.rolled_back(),
                                                 match=self.keys.app_fields(app)):  # fmt: skip
            entry = _entry(raw)
            if entry is not None:
                found[_text(field).split("/", 1)[1]] = entry
        return found

    def all(self) -> dict[tuple[str, str], RolledBack]:
        """(application, cluster) -> rollback, for every rolled-back target."""
        found = {}
        for field, raw in self.client.hgetall(self.keys.rolled_back()).items():
            entry = _entry(raw)
            app, _, cluster = _text(field).partition("/")
            if entry is not None and cluster:
                found[(app, cluster)] = entry
        return found

    def release(self, app: str, clusters: Iterable[str] | None = None) -> list[str]:
        """Resume automatic sync of ``app``'s rolled-back targets (all, or ``clusters``');
        returns the clusters released."""
        held = self.of_app(app)
        chosen = [c for c in (held if clusters is None else clusters) if c in held]
        if chosen:
            self.client.hdel(self.keys.rolled_back(),
                             *[self.keys.target_field(app, c) for c in chosen])  # fmt: skip
        return chosen

    def saw_wanted(self, app: str, held: dict[str, RolledBack], commit: str) -> None:
        """Record that Git names ``commit`` now, on ``app``'s rolled-back targets ``held``."""
        stale = {c: r for c, r in held.items() if r.wanted != commit}
        if not stale:
            return
        pipe = self.client.pipeline(transaction=False)
        for cluster, entry in stale.items():
            updated = RolledBack(**{**asdict(entry), "wanted": commit})
            self._replace(keys=[self.keys.rolled_back()],
                          args=[self.keys.target_field(app, cluster), updated.to_json()],
                          client=pipe)  # fmt: skip
        pipe.execute()
