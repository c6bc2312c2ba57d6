"""The platform's own error hierarchy.

Every failure a user can see is one of these, so the engine can decide in one place
whether to retry (``TransientError``: timeouts, 5xx, 429, lock busy, a cluster or Git server
that cannot be reached) or to record and wait for the source to change (``PermanentError``:
bad configuration, invalid manifests, 4xx validation).  Messages start with the thing that
is wrong: ``file:line``, ``Kind/namespace/name`` or the fleet file entry, as kopf and Flux do.
Library exceptions are chained as ``__cause__`` and never shown raw, so credentials in
URLs or headers cannot leak through them.
"""

from __future__ import annotations

from dataclasses import dataclass


class ReconcilerError(Exception):
    """Base of every error the platform raises on purpose."""

    #: Whether trying again later, without any change to the source, may succeed.
    retryable: bool = False


class PermanentError(ReconcilerError):
    """Retrying without a change to the source or configuration cannot help."""

    retryable = False


class TransientError(ReconcilerError):
    """A passing condition; the caller should retry with backoff.

    ``delay`` is a hint in seconds (for example from a 429 ``Retry-After``), or None.
    """

    retryable = True

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ConfigError(PermanentError):
    """The fleet file (or a command line) is invalid: exit code 2, nothing runs."""


class SourceError(PermanentError):
    """A manifest source is unusable: unknown revision, dangerous URL, unreadable path."""


class SourceUnavailable(TransientError):
    """The Git server could not be reached or the fetch timed out."""


class RenderError(PermanentError):
    """Manifests could not be turned into objects; the message names ``file:line``."""


@dataclass(frozen=True)
class Cause:
    """One reason the API server gave for refusing an object (``details.causes``)."""

    field: str
    message: str
    reason: str = ""


class ClusterError(ReconcilerError):
    """An error answered by (or on the way to) a Kubernetes API server.

    The message starts with the object or request concerned (``Deployment.apps/ns/web:``),
    written once, where the error is made: callers show ``str(error)`` as it is.  Callers
    branch on the type (``NotFound``, ``Conflict``, ``Invalid``, ``ClusterUnavailable``),
    not on ``status``, which is kept for messages and metrics.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str = "",
        causes: tuple[Cause, ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.causes = causes


class ClusterRejected(ClusterError, PermanentError):
    """The API server refused the request (4xx): retrying the same request cannot help."""


class NotFound(ClusterRejected):
    """404: the object, its namespace or its kind does not exist."""


class Conflict(ClusterRejected):
    """409: another field manager owns the fields, or the object changed under us."""


class Invalid(ClusterRejected):
    """422: the object fails validation; ``causes`` name the fields."""

    @property
    def immutable_fields(self) -> tuple[str, ...]:
        """Fields the server refuses to change on an existing object.

        kube-apiserver says so in two shapes: ``field is immutable`` on the field, and
        ``Forbidden: updates to ... are forbidden`` / ``spec is immutable`` on a parent.
        """
        found: list[str] = []
        for cause in self.causes:
            text = cause.message.lower()
            if "immutable" in text or ("forbidden" in text and "updates to" in text) or (
                cause.reason == "FieldValueForbidden" and "may not change" in text
            ):
                found.append(cause.field or "spec")
        if not found and "field is immutable" in str(self).lower():
            found.append("spec")
        return tuple(dict.fromkeys(found))


class ClusterUnavailable(ClusterError, TransientError):
    """The cluster did not answer: connection refused, timeout, 5xx or 429."""

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        ClusterError.__init__(self, message, status=status, reason=reason)
        self.delay = None


class LockBusy(TransientError):
    """Another worker holds the target's lock."""
