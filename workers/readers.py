"""Who may read what the HTTP listeners show: ``/metrics`` and the fleet page.

The webhook's listener faces the Git providers, often the internet.  What it reads out
(application and cluster names, failure counts, the fleet's state) is an inventory an
attacker would like, so on any address but a loopback one a reader presents
``RECONCILER_HTTP_TOKEN``, as ``Authorization: Bearer TOKEN`` (Prometheus'
``authorization`` block) or as the password of basic auth (a browser's prompt, any user
name).  ``RECONCILER_HTTP_INSECURE`` (``--insecure``) serves them to anyone, for a
listener nobody else can reach.  ``/healthz`` and the webhook itself are not behind it:
a load balancer's probe carries no token, and a push carries its own signature.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from reconciler.settings import Settings

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_CHALLENGE = 'Basic realm="reconciler", charset="UTF-8"'


def is_loopback(host: str) -> bool:
    """Whether a listener on ``host`` can only be reached from this machine."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name, or "" / "0.0.0.0"-like wildcards: assume reachable


@dataclass(frozen=True)
class ReadAccess:
    """The rule one listener applies to readers: anyone, or holders of the token."""

    token: str | None = None
    anonymous: bool = False

    @classmethod
    def for_listener(cls, host: str, env: Settings) -> ReadAccess:
        """The rule for a listener on ``host``: open on loopback or when told, else the token."""
        token = env.http_token.get_secret_value() if env.http_token else None
        return cls(token=token, anonymous=env.http_insecure or is_loopback(host))

    def allows(self, request: web.Request) -> bool:
        """Whether ``request`` may read (constant-time comparison of the token)."""
        if self.anonymous:
            return True
        if not self.token:
            return False
        presented = _presented(request.headers.get("Authorization", ""))
        return presented is not None and hmac.compare_digest(
            presented.encode("utf-8"), self.token.encode("utf-8")
        )

    def guard(self, handler: _Handler) -> _Handler:
        """``handler`` answering 401 (with a challenge) to a reader without the token."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if self.allows(request):
                return await handler(request)
            reason = (
                "a token is required: Authorization: Bearer $RECONCILER_HTTP_TOKEN"
                if self.token
                else "RECONCILER_HTTP_TOKEN is not set: this listener serves no readers "
                "(or run with --insecure where nobody else can reach it)"
            )
            return web.Response(
                status=401, text=reason + "\n", headers={"WWW-Authenticate": _CHALLENGE}
            )

        return guarded


def _presented(header: str) -> str | None:
    """The token in an ``Authorization`` header: a bearer token or basic auth's password."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _, sep, password = decoded.partition(":")
        return password if sep else None
    return None
