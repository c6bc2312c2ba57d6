"""Every environment variable the platform reads, in one place.

The components of one installation (worker, beat, webhook, watcher, Flower, the command
line) are separate processes that ``reconciler up`` or an orchestrator starts with one
environment. Reading that environment here, and nowhere else, is what keeps their
defaults equal (one Redis default, one fleet file variable) and gives an operator one
page listing every knob.

``load()`` reads the environment each time it is called rather than once per process:
``up`` exports the installation's connection to its children after start-up, and tests
pass a mapping of their own. Validating forty strings costs microseconds; values on a hot
path are read once by the module that uses them.

Credentials (Git tokens and passwords, webhook secrets, Flower's login) are ``SecretStr``:
a ``Settings`` printed, logged or put in a task result shows ``**********``, never the
value. Their names are listed here; the code that needs a value asks for it by name and
hands it straight to the one process that uses it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: The Redis of a machine that runs its own, when nothing names another.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Every key of an installation starts with this unless told otherwise.
DEFAULT_PREFIX = "reconciler:"

#: Per-host Git tokens: ``RECONCILER_GIT_TOKEN_GITHUB_COM`` is the token for github.com.
GIT_HOST_TOKEN_PREFIX = "RECONCILER_GIT_TOKEN_"


def _env(name: str) -> Any:
    return Field(default=None, validation_alias=name)


class Settings(BaseModel):
    """The environment of one process, validated, with each variable's meaning.

    Field names are what the code says; aliases are the variables operators set. A value
    left unset is None (or the documented default), so "unset" and "set to the default"
    stay distinguishable where that matters (``REDIS_URL`` unset lets ``up`` start an
    embedded Redis; set, it must answer).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # --- one installation's connection -------------------------------------------------
    #: Broker, result backend, locks and records (``REDIS_URL``).
    redis_url: str | None = _env("REDIS_URL")
    #: Master name the Sentinels know the primary by, when ``REDIS_URL`` names Sentinels
    #: (``sentinel://host:26379;sentinel://host2:26379/0``)
    #: (``RECONCILER_REDIS_SENTINEL_MASTER``).
    redis_sentinel_master: str = Field(
        default="mymaster", validation_alias="RECONCILER_REDIS_SENTINEL_MASTER"
    )
    #: Seconds between health checks (a PING) of an idle Redis connection, so a Redis
    #: that restarted is noticed before a command fails (``RECONCILER_REDIS_HEALTH_CHECK``).
    redis_health_check: float = Field(
        default=10.0, ge=0, validation_alias="RECONCILER_REDIS_HEALTH_CHECK"
    )
    #: Prefix of every key of this installation (``RECONCILER_REDIS_PREFIX``).
    redis_prefix: str | None = _env("RECONCILER_REDIS_PREFIX")
    #: The fleet file every component reads (``RECONCILER_CONFIG``).
    config: str | None = _env("RECONCILER_CONFIG")
    #: The installation context file the command line reads (``RECONCILER_CONTEXT``);
    #: default: ``reconciler/context.yaml`` in the user's configuration directory.
    context: str | None = _env("RECONCILER_CONTEXT")
    #: Git mirrors and render scratch space (``RECONCILER_CACHE_DIR``).
    cache_dir: str | None = _env("RECONCILER_CACHE_DIR")
    #: Where kubectl finds clusters (``KUBECONFIG``, colon-separated as kubectl reads it).
    kubeconfig: str | None = _env("KUBECONFIG")

    # --- workers ---------------------------------------------------------------------------
    #: Worker processes; 0 means one per CPU (``RECONCILER_WORKER_CONCURRENCY``).
    worker_concurrency: int = Field(default=0, validation_alias="RECONCILER_WORKER_CONCURRENCY")
    #: Queues a worker consumes besides the default (``RECONCILER_ROUTES``, comma-separated).
    routes: tuple[str, ...] = Field(default=(), validation_alias="RECONCILER_ROUTES")
    #: Cluster label whose value picks a target's queue (``RECONCILER_ROUTE_LABEL``).
    route_label: str = Field(default="", validation_alias="RECONCILER_ROUTE_LABEL")
    #: Seconds a target task may run before it is told to stop (``RECONCILER_TASK_SOFT_LIMIT``).
    task_soft_limit: float = Field(default=300.0, validation_alias="RECONCILER_TASK_SOFT_LIMIT")
    #: Broker visibility timeout; 0 means twice the hard limit
    #: (``RECONCILER_VISIBILITY_TIMEOUT``).
    visibility_timeout: float = Field(default=0.0, validation_alias="RECONCILER_VISIBILITY_TIMEOUT")
    #: Seconds a target lock lives without renewal (``RECONCILER_LOCK_TTL``).
    lock_ttl: float = Field(default=60.0, validation_alias="RECONCILER_LOCK_TTL")
    #: Seconds a worker's heartbeat lives without refresh (refreshed every third of it);
    #: a worker silent this long is dead: its deliveries go back to the queue and the
    #: target locks it held are released (``RECONCILER_WORKER_HEARTBEAT_TTL``).
    heartbeat_ttl: float = Field(
        default=10.0, gt=0, validation_alias="RECONCILER_WORKER_HEARTBEAT_TTL"
    )
    #: Reconciles of one cluster running at once, fleet-wide; a target over the limit
    #: is deferred, not waited for; 0 means no limit (``RECONCILER_CLUSTER_CONCURRENCY``).
    cluster_concurrency: int = Field(
        default=4, ge=0, validation_alias="RECONCILER_CLUSTER_CONCURRENCY"
    )
    #: Consecutive transient failures of a cluster that open its circuit breaker; 0
    #: turns the breaker off (``RECONCILER_BREAKER_FAILURES``).
    breaker_failures: int = Field(default=3, ge=0, validation_alias="RECONCILER_BREAKER_FAILURES")
    #: Seconds an open breaker waits before one probe run (``RECONCILER_BREAKER_COOLDOWN``).
    breaker_cooldown: float = Field(
        default=30.0, gt=0, validation_alias="RECONCILER_BREAKER_COOLDOWN"
    )
    #: Last runs of a cluster whose failing share also opens its breaker, so a cluster
    #: failing half its requests is left alone although some runs get through
    #: (``RECONCILER_BREAKER_WINDOW``).
    breaker_window: int = Field(default=10, ge=1, validation_alias="RECONCILER_BREAKER_WINDOW")
    #: Share of those runs failing transiently that opens the breaker; 0 leaves only the
    #: consecutive count (``RECONCILER_BREAKER_FAILURE_RATE``).
    breaker_failure_rate: float = Field(
        default=0.5, ge=0, le=1, validation_alias="RECONCILER_BREAKER_FAILURE_RATE"
    )
    #: Fewest runs in the window before the share is judged, so one early failure does
    #: not open it (``RECONCILER_BREAKER_MIN_RUNS``).
    breaker_min_runs: int = Field(default=5, ge=1, validation_alias="RECONCILER_BREAKER_MIN_RUNS")
    #: Seconds a resolved branch revision is trusted before Git is asked again
    #: (``RECONCILER_REVISION_TTL``).
    revision_ttl: float = Field(default=10.0, validation_alias="RECONCILER_REVISION_TTL")
    #: Seconds Celery keeps a task's result in Redis (``RECONCILER_RESULT_TTL``); the
    #: history keeps every outcome regardless.
    result_ttl: float = Field(default=3600.0, ge=60, validation_alias="RECONCILER_RESULT_TTL")
    #: A scheduled run reads the cluster at least every this many runs of a target, even
    #: when the watcher saw no change: a safety net against a missed event
    #: (``RECONCILER_FULL_COMPARE_EVERY``; 1: every run reads the cluster).
    full_compare_every: int = Field(
        default=10, ge=1, validation_alias="RECONCILER_FULL_COMPARE_EVERY"
    )
    #: Seconds a watcher's lease on a cluster lives (renewed every third of it); a dead
    #: watcher's clusters are taken over within it (``RECONCILER_WATCH_LEASE_TTL``).
    watch_lease_ttl: float = Field(
        default=15.0, gt=0, validation_alias="RECONCILER_WATCH_LEASE_TTL"
    )
    #: Cluster clients one process keeps (a worker pool process, beat, the watcher, the
    #: command line); beyond it the least recently used is closed and rebuilt when next
    #: needed, from the kubeconfig and the shared discovery, without a request
    #: (``RECONCILER_KUBE_CLIENTS``).  Raise it to the fleet's size where building a
    #: client is dear (an exec plugin that takes a second to give a token).
    kube_clients: int = Field(default=100, ge=1, validation_alias="RECONCILER_KUBE_CLIENTS")
    #: kubectl used for kustomize (``RECONCILER_KUBECTL``); default: the one installed
    #: beside this Python, then PATH.
    kubectl: str | None = _env("RECONCILER_KUBECTL")
    #: helm for ``engine: binary`` charts (``RECONCILER_HELM``); default: PATH.
    helm: str | None = _env("RECONCILER_HELM")

    # --- beat ------------------------------------------------------------------------------
    #: Seconds between beat's re-reads of the fleet file (``RECONCILER_BEAT_SYNC``).
    beat_sync: float = Field(default=5.0, validation_alias="RECONCILER_BEAT_SYNC")
    #: Seconds a beat's leadership lock lives (``RECONCILER_BEAT_LOCK_TIMEOUT``).
    beat_lock_timeout: int = Field(default=30, validation_alias="RECONCILER_BEAT_LOCK_TIMEOUT")

    # --- webhook and metrics ---------------------------------------------------------------
    #: Address the webhook listens on (``RECONCILER_WEBHOOK_HOST``).
    webhook_host: str = Field(default="127.0.0.1", validation_alias="RECONCILER_WEBHOOK_HOST")
    #: Port of a separate ``/metrics`` listener; 0 serves it beside the webhook
    #: (``RECONCILER_METRICS_PORT``).
    metrics_port: int = Field(default=0, validation_alias="RECONCILER_METRICS_PORT")
    #: Address of that listener (``RECONCILER_METRICS_HOST``).
    metrics_host: str = Field(default="127.0.0.1", validation_alias="RECONCILER_METRICS_HOST")
    #: Clusters per application with series of their own on the reconcile metrics; runs
    #: on further clusters count under ``cluster="_other"``, so a large fleet cannot flood
    #: Prometheus; 0 folds every cluster (``RECONCILER_METRICS_MAX_CLUSTERS``).
    metrics_max_clusters: int = Field(
        default=100, ge=0, validation_alias="RECONCILER_METRICS_MAX_CLUSTERS"
    )
    #: Seconds a push, by repository, ref and commit, is queued at most once whatever
    #: its delivery id; redeliveries inside it are answered as duplicates
    #: (``RECONCILER_WEBHOOK_REPLAY_WINDOW``).
    webhook_replay_window: float = Field(
        default=600.0, gt=0, validation_alias="RECONCILER_WEBHOOK_REPLAY_WINDOW"
    )
    #: Requests per minute one source address may send to ``/hooks/git`` (a burst of that
    #: many, then evenly); 0 turns the limit off (``RECONCILER_WEBHOOK_RATE_LIMIT``).
    webhook_rate_limit: int = Field(
        default=120, ge=0, validation_alias="RECONCILER_WEBHOOK_RATE_LIMIT"
    )
    #: Token a reader of ``/metrics`` (and the fleet page) presents on a listener that is
    #: not on a loopback address, as ``Authorization: Bearer`` or as the password of
    #: basic auth (``RECONCILER_HTTP_TOKEN``).
    http_token: SecretStr | None = _env("RECONCILER_HTTP_TOKEN")
    #: Serve ``/metrics`` (and the fleet page) without a token on every address
    #: (``RECONCILER_HTTP_INSECURE``): only where nobody else can reach.
    http_insecure: bool = Field(default=False, validation_alias="RECONCILER_HTTP_INSECURE")
    webhook_github_secret: SecretStr | None = _env("RECONCILER_WEBHOOK_GITHUB_SECRET")
    webhook_gitlab_token: SecretStr | None = _env("RECONCILER_WEBHOOK_GITLAB_TOKEN")
    webhook_token: SecretStr | None = _env("RECONCILER_WEBHOOK_TOKEN")

    # --- logs ------------------------------------------------------------------------------
    #: Log level of every component (``RECONCILER_LOG_LEVEL``).
    log_level: str = Field(default="INFO", validation_alias="RECONCILER_LOG_LEVEL")
    #: ``text`` (one line a record) or ``json`` (one object a line) (``RECONCILER_LOG_FORMAT``).
    log_format: str = Field(default="text", validation_alias="RECONCILER_LOG_FORMAT")

    # --- Flower ----------------------------------------------------------------------------
    #: ``user:password`` guarding Flower (``FLOWER_BASIC_AUTH``; Flower reads it itself).
    flower_basic_auth: SecretStr | None = _env("FLOWER_BASIC_AUTH")
    #: Where readers reach Flower, for the fleet page's links to a target's jobs
    #: (``RECONCILER_FLOWER_URL``; any user name and password in it are dropped).
    flower_url: str = Field(
        default="http://127.0.0.1:5555", validation_alias="RECONCILER_FLOWER_URL"
    )

    # --- Git credentials -------------------------------------------------------------------
    git_token: SecretStr | None = _env("RECONCILER_GIT_TOKEN")
    git_username: str | None = _env("RECONCILER_GIT_USERNAME")
    git_password: SecretStr | None = _env("RECONCILER_GIT_PASSWORD")
    #: Private key for SSH remotes (``RECONCILER_GIT_SSH_KEY_FILE``).
    git_ssh_key_file: str | None = _env("RECONCILER_GIT_SSH_KEY_FILE")
    #: known_hosts for SSH remotes (``RECONCILER_GIT_SSH_KNOWN_HOSTS``).
    git_ssh_known_hosts: str | None = _env("RECONCILER_GIT_SSH_KNOWN_HOSTS")
    #: ``RECONCILER_GIT_TOKEN_<HOST>`` by host variable suffix (``GITHUB_COM``).
    git_host_tokens: dict[str, SecretStr] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_host_tokens(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            tokens = {
                key[len(GIT_HOST_TOKEN_PREFIX) :]: value
                for key, value in data.items()
                if key.startswith(GIT_HOST_TOKEN_PREFIX) and value
            }
            data = {**data, "git_host_tokens": tokens}
        return data

    @field_validator("routes", mode="before")
    @classmethod
    def _split_routes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator(
        "redis_url", "redis_prefix", "config", "context", "cache_dir", "kubeconfig", "kubectl",
        "helm", "git_username", "git_ssh_key_file", "git_ssh_known_hosts", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator(
        "webhook_github_secret", "webhook_gitlab_token", "webhook_token", "flower_basic_auth",
        "http_token",
        "git_token", "git_password", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    # --- derived values, each with its one default -----------------------------------------
    @property
    def redis(self) -> str:
        """The Redis URL to use: ``REDIS_URL``, else the machine's own."""
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def prefix(self) -> str:
        """The key prefix: ``RECONCILER_REDIS_PREFIX``, else ``reconciler:``."""
        return self.redis_prefix or DEFAULT_PREFIX

    @property
    def cache_path(self) -> Path:
        """Git mirrors and scratch space: ``RECONCILER_CACHE_DIR``, else ``~/.cache/reconciler``."""
        return Path(os.path.expanduser(self.cache_dir or "~/.cache/reconciler"))

    @property
    def context_path(self) -> Path:
        """The installation context file: ``RECONCILER_CONTEXT``, else the user config dir."""
        if self.context:
            return Path(os.path.expanduser(self.context))
        from platformdirs import user_config_path  # noqa: PLC0415  (only the CLI needs it)

        return user_config_path("reconciler") / "context.yaml"

    def git_host_token(self, host_suffix: str) -> SecretStr | None:
        """The token for one Git host (``GITHUB_COM`` for github.com), if one is set."""
        return self.git_host_tokens.get(host_suffix)


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of ``environ`` (``os.environ`` now, when not given)."""
    return Settings.model_validate(dict(os.environ if environ is None else environ))
