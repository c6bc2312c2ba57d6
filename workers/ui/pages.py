"""The fleet page's aiohttp handlers: read once, build the view, render a template.

Each request reads what it shows in a few Redis round trips (the status index whole, the
rollbacks whole, the rollouts of the page's applications only) on a thread, so a slow
Redis never stalls the event loop; the view is built by :mod:`workers.ui.view` and
rendered by Jinja2 with autoescaping on, so an application name, an error message or a
diff is always text, never markup.  The page is behind the same rule as ``/metrics``
(:class:`workers.readers.ReadAccess`), and sends no credential anywhere: it shows
outcomes (which never hold one) and repository URLs with their userinfo redacted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import redis
from aiohttp import web
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from reconciler.errors import ConfigError
from reconciler.repourl import without_userinfo
from reconciler.settings import Settings
from reconciler.settings import load as load_settings
from reconciler.store.keys import Keys
from reconciler.store.records import Records
from reconciler.store.rollback import Rollbacks
from reconciler.store.rollout import Rollouts
from workers.fleet_file import FleetSource
from workers.readers import ReadAccess
from workers.ui import view

__all__ = ["DEFAULT_FLOWER_URL", "FLOWER_URL_ENV", "FleetPage"]

log = logging.getLogger("reconciler.webhook")

#: Where the target page links to Flower; ``reconciler flower`` listens there by default.
FLOWER_URL_ENV = "RECONCILER_FLOWER_URL"
DEFAULT_FLOWER_URL: str = Settings.model_fields["flower_url"].default
#: Seconds between two reloads of the matrix by the page's script.
REFRESH_SECONDS = 5
#: Files under ``static/`` the page serves, with their content types.
_STATIC = {"fleet.css": "text/css", "fleet.js": "text/javascript"}
#: Same-origin scripts and styles only, no frames: an injected string could run nothing.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def templates() -> Environment:
    """The page's Jinja2 environment: autoescaped, and an unknown name is an error."""
    env = Environment(
        loader=PackageLoader("workers.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["refresh_seconds"] = REFRESH_SECONDS
    env.globals["statuses"] = view.STATUSES
    return env


def flower_url(environ: dict[str, str] | None = None) -> str:
    """Flower's address from ``RECONCILER_FLOWER_URL`` (userinfo dropped), else the default."""
    value = load_settings(environ).flower_url.strip()
    if not value.startswith(("http://", "https://")):
        return DEFAULT_FLOWER_URL
    return without_userinfo(value).rstrip("/")


class FleetPage:
    """``/ui`` (the matrix) and ``/ui/target/{app}/{cluster}`` of one installation."""

    def __init__(
        self,
        *,
        fleet: FleetSource,
        client: redis.Redis,
        keys: Keys,
        flower: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.fleet = fleet
        self.records = Records(client, keys)
        self.rollbacks = Rollbacks(client, keys)
        self.rollouts = Rollouts(client, keys)
        self.flower = flower or flower_url()
        self.now = now
        self.env = templates()

    def register(self, router: web.UrlDispatcher, readers: ReadAccess) -> None:
        """Add the page's routes to ``router``, each behind ``readers``."""
        router.add_get("/ui", readers.guard(self.index))
        router.add_get("/ui/target/{app}/{cluster}", readers.guard(self.target))
        router.add_get("/ui/static/{name}", readers.guard(self.static))

    # -- handlers ----------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        filters = view.Filters.parse(request.query.items())
        partial = request.query.get("partial") == "1"
        return await self._answer(lambda: self._index(filters, partial=partial))

    async def target(self, request: web.Request) -> web.Response:
        app, cluster = request.match_info["app"], request.match_info["cluster"]
        return await self._answer(lambda: self._target(app, cluster))

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        body = resources.files("workers.ui").joinpath("static", name).read_bytes()
        headers = {**_HEADERS, "Cache-Control": "max-age=300"}
        return web.Response(body=body, content_type=_STATIC[name], headers=headers)

    # -- reading and rendering (on a thread) ---------------------------------------------

    async def _answer(self, build: Callable[[], tuple[int, str]]) -> web.Response:
        try:
            status, html = await asyncio.to_thread(build)
        except ConfigError as exc:
            # No valid fleet was ever read: say so, the file's own message names the place.
            status, html = 503, self._render("error.html", title="Fleet file invalid",
                                             message=str(exc))  # fmt: skip
        except (redis.RedisError, OSError) as exc:
            log.error("fleet page: cannot read Redis: %s", type(exc).__name__)
            message = f"cannot reach Redis: {type(exc).__name__}"
            status, html = 503, self._render("error.html", title="Redis unavailable",
                                             message=message)  # fmt: skip
        response = web.Response(text=html, status=status, content_type="text/html",
                                charset="utf-8", headers=_HEADERS)  # fmt: skip
        # A page of 50 rows by 50 clusters is a few hundred KiB of repetitive markup.
        response.enable_compression()
        return response

    def _index(self, filters: view.Filters, *, partial: bool) -> tuple[int, str]:
        fleet = self.fleet.get()
        selection = view.select(fleet, self.records.status(), filters=filters)
        rollouts = self.rollouts.read_many(selection.page_applications)
        matrix = view.matrix(selection, rolled_back=self.rollbacks.all(), rollouts=rollouts)
        name = "_matrix.html" if partial else "index.html"
        return 200, self._render(name, matrix=matrix, updated=self._stamp())

    def _target(self, app: str, cluster: str) -> tuple[int, str]:
        fleet = self.fleet.get()
        found = view.find_target(fleet, app, cluster)
        if isinstance(found, view.NotFound):
            return 404, self._render("notfound.html", missing=found)
        application, where = found
        page = view.target_page(
            fleet,
            application,
            where,
            status=self.records.entry(app, cluster),
            history=self.records.history(app, cluster, n=view.HISTORY),
            rolled_back=self.rollbacks.get(app, cluster),
            rollout=self.rollouts.read(app),
            flower_url=self.flower,
            now=self.now(),
        )
        return 200, self._render("target.html", target=page, updated=self._stamp())

    def _render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def _stamp(self) -> str:
        return self.now().astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
