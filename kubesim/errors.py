"""API errors as the real API server reports them: a ``Status`` object with reason and code.

Clients branch on ``reason`` and ``code`` (kubectl prints ``Error from server (NotFound)``,
the Python client raises ``ApiException`` with ``status``), so every failure the simulator
returns goes through this one type.
"""

from __future__ import annotations

from typing import Any

#: HTTP code -> the reason a real server pairs with it.
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """A failed API call; ``status()`` is the body the server sends."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> ApiError:
        """An error that answers with a ``Status`` built elsewhere (e.g. validation's 422)."""
        return cls(
            int(status.get("code", 500)),
            str(status.get("message", "")),
            reason=str(status.get("reason", "")) or None,
            details=status.get("details"),
        )

    def status(self) -> dict[str, Any]:
        """The ``Status`` object for the response body."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified(kind_plural: str, group: str) -> str:
    """``deployments.apps`` / ``configmaps``: how messages name a resource."""
    return f"{kind_plural}.{group}" if group else kind_plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    """``deployments.apps "web" not found``."""
    return ApiError(
        404,
        f'{qualified(plural, group)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    """``configmaps "x" already exists``."""
    return ApiError(
        409,
        f'{qualified(plural, group)} "{name}" already exists',
        reason="AlreadyExists",
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    """A 409 Conflict, e.g. a stale resourceVersion on update."""
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        reason="Conflict",
        details={"name": name, "group": group, "kind": plural},
    )


def bad_request(message: str) -> ApiError:
    """A 400 BadRequest."""
    return ApiError(400, message)
