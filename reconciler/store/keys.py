"""Every Redis key name of the platform, in one place (as rq's ``Job.key_for``).

Locks, caches, the status index and the history are read and written by workers, beat,
the webhook receiver and the CLI, on many hosts.  If each of them spelt key names itself,
one typo would split the state in two without any error.  So every name comes from
``Keys``, and every name starts with one prefix (``RECONCILER_REDIS_PREFIX``, default
``reconciler:``) so one Redis can serve several installations side by side.

Names are built only from checked parts: application and cluster names must be DNS-1123
labels (the fleet file guarantees it), commits must be hex object names, anything else
that comes from outside (revisions, webhook delivery ids, render options) is kept only
when it is short and plainly safe and is hashed otherwise.  Repository URLs are always
hashed, with any userinfo removed first, so a credential never reaches a key name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler import settings
from reconciler.errors import ConfigError
from reconciler.repourl import RepoURL

#: Environment variable naming the prefix, so installations sharing a Redis stay apart.
PREFIX_ENV = "RECONCILER_REDIS_PREFIX"

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_COMMIT = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
# Kept verbatim in a key name: no separator (':'), no glob characters, no spaces.
_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/@+-]{0,127}")
# A prefix must not contain glob characters: ``Keys.pattern`` feeds it to SCAN MATCH.
_SAFE_PREFIX = re.compile(r"[A-Za-z0-9._:/@+-]{1,64}")
#: Name of the delivery-owner hash inside the broker's key prefix (``Keys.delivery_owners``).
DELIVERY_OWNERS = "unacked_owner"


def default_prefix(environ: Mapping[str, str] | None = None) -> str:
    """``RECONCILER_REDIS_PREFIX`` when set and not empty, else ``reconciler:``."""
    return settings.load(environ).prefix


def digest(value: str, *, length: int = 32) -> str:
    """A short hex SHA-256 of ``value``: a fixed-size, safe stand-in in key names."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:length]


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: what may be hashed, logged or shown."""
    return RepoURL.parse(url).without_userinfo


def repo_hash(url: str) -> str:
    """Hash of a repository URL without its userinfo, so credentials never shape a key.

    The same repository reached with and without a token shares one cache entry.
    """
    return digest(without_userinfo(url))


def check_name(value: str, *, what: str) -> str:
    """``value`` when it is a DNS-1123 label, else ``ConfigError`` naming ``what``."""
    if not isinstance(value, str) or not _DNS1123_LABEL.fullmatch(value):
        raise ConfigError(
            f"{value!r}: {what} name must be a DNS-1123 label (lowercase letters, digits "
            "and '-', at most 63 characters)"
        )
    return value


def _part(value: str) -> str:
    """``value`` itself when it is plainly safe in a key name, else a marked hash of it.

    ``=`` never occurs in a safe part, so a hashed part cannot collide with a verbatim one.
    """
    if _SAFE_PART.fullmatch(value):
        return value
    return f"sha256={digest(value)}"


@dataclass(frozen=True)
class Keys:
    """Names of the platform's Redis keys under one prefix.

    ``Keys()`` reads ``RECONCILER_REDIS_PREFIX``; tests pass a prefix of their own.
    """

    prefix: str = field(default_factory=default_prefix)

    def __post_init__(self) -> None:
        if not _SAFE_PREFIX.fullmatch(self.prefix):
            raise ConfigError(
                f"{PREFIX_ENV}={self.prefix!r}: a key prefix is 1 to 64 letters, digits "
                "and '._:/@+-' (no spaces or glob characters)"
            )

    def _target(self, kind: str, app: str, cluster: str) -> str:
        app = check_name(app, what="application")
        cluster = check_name(cluster, what="cluster")
        return f"{self.prefix}{kind}:{app}:{cluster}"

    # -- targets ------------------------------------------------------------------------

    def lock(self, app: str, cluster: str) -> str:
        """String: the token of the worker reconciling this target (``SET NX PX``)."""
        return self._target("lock", app, cluster)

    def history(self, app: str, cluster: str) -> str:
        """List: this target's outcomes as JSON, newest first, capped."""
        return self._target("history", app, cluster)

    def forced_pending(self, app: str, cluster: str) -> str:
        """String: set while a forced sync of this target waits in the queue."""
        return self._target("forced", app, cluster)

    def status_index(self) -> str:
        """Hash: one field per target (``target_field``), the summary of its last outcome."""
        return f"{self.prefix}status"

    @staticmethod
    def target_field(app: str, cluster: str) -> str:
        """Field of a target in ``status_index``: ``app/cluster`` (unambiguous for labels)."""
        return f"{check_name(app, what='application')}/{check_name(cluster, what='cluster')}"

    @staticmethod
    def app_fields(app: str) -> str:
        """HSCAN MATCH pattern of ``app``'s fields in ``status_index``."""
        return f"{check_name(app, what='application')}/*"

    # -- workers and clusters under faults ----------------------------------------------

    def worker_heartbeat(self, worker: str) -> str:
        """String: present while worker ``worker`` (its main process) is alive; short TTL."""
        return f"{self.prefix}worker:{_part(worker)}"

    def delivery_owners(self) -> str:
        """Hash: broker delivery tag -> the worker that took it (``DELIVERY_OWNERS``).

        Beside the broker's ``unacked`` hash, under the broker's prefix, so a dead
        worker's unacknowledged deliveries can be given back at once.
        """
        return f"{self.celery()}{DELIVERY_OWNERS}"

    def broker_unacked(self) -> str:
        """Hash: the broker's unacknowledged deliveries by tag (kombu's ``unacked``)."""
        return f"{self.celery()}unacked"

    def delivery_done(self, task_id: str, attempt: int) -> str:
        """String: set once attempt ``attempt`` of target task ``task_id`` has applied."""
        return f"{self.prefix}done:{_part(task_id)}:{int(attempt)}"

    def cluster_slots(self, cluster: str) -> str:
        """Sorted set: holders of the cluster's reconcile slots, scored by expiry (ms)."""
        return f"{self.prefix}slots:{check_name(cluster, what='cluster')}"

    def breaker(self, cluster: str) -> str:
        """Hash: the cluster's circuit breaker (state, failures, next retry, probe)."""
        return f"{self.prefix}breaker:{check_name(cluster, what='cluster')}"

    def breaker_pattern(self) -> str:
        """SCAN MATCH pattern of every cluster's circuit breaker."""
        return f"{self.prefix}breaker:*"

    def scheduled_pending(self, app: str, cluster: str) -> str:
        """String: set while a scheduled run of this target waits in the queue."""
        return self._target("scheduled", app, cluster)

    # -- the watcher ---------------------------------------------------------------------

    def watch_lease(self, cluster: str) -> str:
        """String: the watcher replica watching this cluster (``SET NX PX``, renewed)."""
        return f"{self.prefix}watch-lease:{check_name(cluster, what='cluster')}"

    def watch_stream(self, cluster: str) -> str:
        """Hash: the cluster's watch (holder, since when it has missed nothing); short TTL."""
        return f"{self.prefix}watch:{check_name(cluster, what='cluster')}"

    def live_changed(self) -> str:
        """Hash: ``target_field`` -> resourceVersion of the last change the watcher saw to
        one of the target's objects (status updates excluded)."""
        return f"{self.prefix}live-changed"

    def watch_pending(self, app: str, cluster: str) -> str:
        """String: set while a reconcile the watcher queued for this target waits."""
        return self._target("watch-queued", app, cluster)

    # -- fleet ---------------------------------------------------------------------------

    def rollout(self, app: str) -> str:
        """String: the JSON state of ``app``'s progressive rollout (``reconciler.rollout``)."""
        return f"{self.prefix}rollout:{check_name(app, what='application')}"

    def deferred(self) -> str:
        """Hash: ``target_field`` -> JSON ``{"at": epoch, "trigger": ...}`` of a run a sync
        window stopped, to be run when the window lets it (``store.deferred``)."""
        return f"{self.prefix}deferred"

    def notified(self, endpoint: str, app: str, cluster: str | None, event: str) -> str:
        """String: set while ``endpoint`` was told of ``event`` on the target (or on the
        application, ``cluster`` None) and it has not cleared; expires after the fold."""
        where = f"{check_name(app, what='application')}:{check_name(cluster, what='cluster')}" if (
            cluster) else check_name(app, what="application")  # fmt: skip
        return f"{self.prefix}notified:{_part(endpoint)}:{where}:{_part(event)}"

    def rolled_back(self) -> str:
        """Hash: ``target_field`` -> JSON of a target's rollback (``store.rollback``)."""
        return f"{self.prefix}rolled-back"

    def rollout_queued(self, app: str) -> str:
        """String: set while a decision on ``app``'s rollout waits in the queue."""
        return f"{self.prefix}rollout-queued:{check_name(app, what='application')}"

    def suspended(self) -> str:
        """Set: names of the applications whose reconciles are suspended."""
        return f"{self.prefix}suspended"

    def initialised(self) -> str:
        """String: present once beat has rebuilt this installation's state in this Redis.

        Its absence on a Redis that served the installation before means Redis restarted
        empty: beat then rebuilds the schedule and suspensions from durable sources.
        """
        return f"{self.prefix}initialised"

    def fleet(self) -> str:
        """Hash: whether the fleet file is valid, since when, and the fleet in force.

        Written by workers, beat and the webhook server (``reconciler.store.fleet_state``).
        """
        return f"{self.prefix}fleet"

    # -- sources and rendering ---------------------------------------------------------

    def revision(self, repo: str, revision: str) -> str:
        """String: the commit ``revision`` of ``repo`` resolved to, cached briefly.

        ``repo`` is the repository URL; it is hashed here, never stored.
        """
        return f"{self.prefix}revision:{repo_hash(repo)}:{_part(revision)}"

    def fetch_flight(self, repo: str) -> str:
        """String: short lock held by the one process fetching ``repo`` right now."""
        return f"{self.prefix}flight:{repo_hash(repo)}"

    def render(self, commit: str, path_key: str) -> str:
        """String: compressed rendered objects of ``path_key`` (path and options) at ``commit``.

        A commit's content never changes, so neither does its render.
        """
        if not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
            raise ValueError(f"{commit!r} is not a full hex commit id")
        return f"{self.prefix}render:{commit}:{digest(path_key)}"

    # -- metrics -------------------------------------------------------------------------

    def metrics_reconciles(self) -> str:
        """Hash: reconciles per ``application/cluster/result`` (Synced, Failed, skipped...)."""
        return f"{self.prefix}metrics:reconciles"

    def metrics_git_fetches(self) -> str:
        """String: Git fetches made by every worker (single-flight keeps it per commit)."""
        return f"{self.prefix}metrics:git_fetches"

    def metrics_git_fetch_failures(self) -> str:
        """Hash: failed Git fetches per repository URL (redacted), capped."""
        return f"{self.prefix}metrics:git_fetch_failures"

    def metrics_duration(self) -> str:
        """Hash: duration histogram per ``application/cluster``: buckets, sum and count."""
        return f"{self.prefix}metrics:duration"

    def metrics_series(self) -> str:
        """Set: applications and ``application/cluster`` pairs with series of their own."""
        return f"{self.prefix}metrics:series"

    def metrics_series_counts(self) -> str:
        """Hash: the size of ``metrics_series``: applications (field ``""``), clusters per
        application (field: its name), checked against the caps."""
        return f"{self.prefix}metrics:series_counts"

    def metrics_cluster_reachable(self) -> str:
        """Hash: per cluster, 1 or 0: whether its last reconcile reached its API server."""
        return f"{self.prefix}metrics:cluster_reachable"

    def metrics_webhook_deliveries(self) -> str:
        """Hash: webhook deliveries per ``provider/result``."""
        return f"{self.prefix}metrics:webhook_deliveries"

    # -- entry points --------------------------------------------------------------------

    def webhook_seen(self, delivery_id: str) -> str:
        """String: set once a webhook delivery was handled, so redeliveries are ignored."""
        return f"{self.prefix}webhook:{_part(delivery_id)}"

    def webhook_push(self, identity: str) -> str:
        """String: set while a push (repository, ref, commit) counts as queued, so the same
        push under another delivery id queues nothing.  ``identity`` is hashed."""
        return self.webhook_push_token(digest(identity))

    def webhook_push_token(self, token: str) -> str:
        """``webhook_push`` by the hash of the identity (what a fan-out task is given)."""
        if not re.fullmatch(r"[0-9a-f]{32}", token):
            raise ConfigError(f"{token!r} is not a push token")
        return f"{self.prefix}webhook-push:{token}"

    def redbeat(self) -> str:
        """Key prefix for RedBeat's schedule entries (its ``redbeat_key_prefix``)."""
        return f"{self.prefix}redbeat:"

    def celery(self) -> str:
        """Key prefix for Celery's results (``global_keyprefix`` transport option)."""
        return f"{self.prefix}celery:"

    def pattern(self) -> str:
        """SCAN MATCH pattern of every key of this installation (admin clean-up, tests)."""
        return f"{self.prefix}*"
