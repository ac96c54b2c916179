"""The read API and the venue page as plain aiohttp handlers.

:class:`WebApi` holds what the handlers share (settings, the registry source,
a Redis client per event loop, the snapshot hub). :data:`ROUTES` lists every
route once; :func:`streams.web.install` mounts them on the Faust worker's web
server, and :func:`build_app` on a bare aiohttp application (tests, tools).

Errors are JSON ``{"error": code, "reason": text}``: 404 for an unknown event
or IKM, 400 for a bad query parameter, 503 when Redis cannot be read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from rekap.generations import current_keys
from rekap.httpheaders import add_security_headers
from rekap.names import Keys
from rekap.redisconn import REDIS_ERRORS, AsyncClient, connect
from rekap.registry import RegistrySource
from rekap.settings import Settings
from streams import metrics
from streams.web import queries
from streams.web.live import SnapshotHub

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
OPENAPI_PATH = HERE / "openapi.json"
STATIC = HERE / "static"
#: Seconds without news after which the event stream sends a keep-alive comment,
#: well under the idle timeouts of common proxies (60 s).
KEEPALIVE_S = 15.0
DEFAULT_LIMIT = 10


def _error(status: int, code: str, reason: str) -> web.Response:
    return web.json_response({"error": code, "reason": reason}, status=status)


def secured(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
    """``handler`` with rekap's security headers on its answer (:mod:`rekap.httpheaders`):
    the CSP and framing rules on the venue page and its assets, nosniff and no-store on JSON.
    A response the handler already sent (the event stream) set its own."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        if not response.prepared:
            add_security_headers(response.headers, response.content_type, tls=request.secure)
        return response

    wrapped.__doc__ = handler.__doc__
    return wrapped


class WebApi:
    """Handlers of the read API and the venue page; all state is read from Redis."""

    def __init__(self, settings: Settings, source: RegistrySource | None = None) -> None:
        self.settings = settings
        self.source = source or RegistrySource(settings.registry_path)
        self.keys = Keys(settings.redis_prefix)
        self._clients: dict[asyncio.AbstractEventLoop, AsyncClient] = {}
        self.hub = SnapshotHub(self.client, self.reader)
        self._openapi = OPENAPI_PATH.read_bytes()
        self._page = (STATIC / "venue.html").read_text(encoding="utf-8")

    # -- shared ------------------------------------------------------------
    def client(self) -> AsyncClient:
        """The Redis client of the running loop (a client must not cross loops)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = connect(self.settings)
        return client

    async def reader(self) -> queries.Reader:
        """The reader of one request: keys of the generation readers read now (a rebuild
        moves it, :mod:`rekap.generations`), the current registry."""
        keys = await current_keys(self.client(), self.keys)
        return queries.Reader(keys, self.source.current())

    async def close(self) -> None:
        await self.hub.close()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def _answer(self, query: Callable[[queries.Reader], queries.Query[Any]]) -> web.Response:
        try:
            result = await queries.run(self.client(), query(await self.reader()))
        except queries.NotFound as exc:
            return _error(404, "not_found", str(exc))
        except REDIS_ERRORS as exc:
            metrics.REDIS_ERRORS.labels(operation="read").inc()
            log.warning("read API cannot read Redis: %s", exc)
            return _error(503, "unavailable", "the totals store (Redis) cannot be read; retry shortly")
        return web.json_response(result, headers={"Cache-Control": "no-store"})

    # -- read API ----------------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    async def events(self, request: web.Request) -> web.Response:
        return await self._answer(queries.events)

    async def summary(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        return await self._answer(lambda r: queries.summary(r, event_id))

    async def leaderboard(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        raw = request.query.get("limit", str(DEFAULT_LIMIT))
        try:
            limit = int(raw)
        except ValueError:
            limit = 0
        if not 1 <= limit <= queries.MAX_LIMIT:
            return _error(400, "bad_request",
                          f"limit must be an integer from 1 to {queries.MAX_LIMIT}, got {raw!r}")
        return await self._answer(lambda r: queries.leaderboard(r, event_id, limit))

    async def ikm(self, request: web.Request) -> web.Response:
        event_id, ikm_id = request.match_info["event_id"], request.match_info["ikm_id"]
        return await self._answer(lambda r: queries.ikm(r, event_id, ikm_id))

    async def snapshot(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        return await self._answer(lambda r: queries.snapshot(r, event_id))

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: a ``snapshot`` now and after every change of the event."""
        event_id = request.match_info["event_id"]
        if event_id not in self.source.current().events:
            return _error(404, "not_found", f"event {event_id!r} is not in the registry")
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                   "X-Accel-Buffering": "no"}
        add_security_headers(headers, "text/event-stream", tls=request.secure)
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        # Tell EventSource to reconnect quickly after a worker restart.
        await resp.write(b"retry: 1000\n\n")
        try:
            async for snap in self.hub.subscribe(event_id, wait_s=KEEPALIVE_S):
                if snap is None:
                    await resp.write(b": keep-alive\n\n")
                    continue
                data = json.dumps(snap, ensure_ascii=False, separators=(",", ":"))
                await resp.write(f"event: snapshot\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the screen went away, or the worker stops
        return resp

    # -- venue page --------------------------------------------------------
    async def venue_root(self, request: web.Request) -> web.Response:
        registry = self.source.current()
        roots = [e.id for e in registry.events.values() if e.parent is None]
        if not roots:
            return _error(404, "not_found", "the registry has no events")
        # Returned, not raised: Faust's web sensors expect every view to return a response.
        return web.Response(status=302, headers={"Location": f"/venue/{roots[0]}"})

    async def venue(self, request: web.Request) -> web.Response:
        event_id = request.match_info["event_id"]
        ev = self.source.current().events.get(event_id)
        if ev is None:
            return web.Response(status=404, content_type="text/html", charset="utf-8",
                                text="<!doctype html><meta charset=utf-8><title>Tidak ditemukan"
                                     "</title><p>Acara tidak ditemukan.</p>")
        html = (self._page.replace("{{event_id}}", _html_escape(ev.id))
                .replace("{{event_name}}", _html_escape(ev.name)))
        return web.Response(text=html, content_type="text/html", charset="utf-8",
                            headers={"Cache-Control": "no-store"})

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"venue.css": "text/css", "venue.js": "application/javascript"}
        if name not in types:
            return _error(404, "not_found", f"no asset {name!r}")
        return web.Response(body=(STATIC / name).read_bytes(), content_type=types[name],
                            charset="utf-8", headers={"Cache-Control": "no-cache"})


def _html_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


#: (name, path, WebApi method) of every GET route.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("rekap-openapi", "/api/v1/openapi.json", "openapi"),
    ("rekap-events", "/api/v1/events", "events"),
    ("rekap-summary", "/api/v1/events/{event_id}/summary", "summary"),
    ("rekap-leaderboard", "/api/v1/events/{event_id}/leaderboard", "leaderboard"),
    ("rekap-ikm", "/api/v1/events/{event_id}/ikm/{ikm_id}", "ikm"),
    ("rekap-snapshot", "/api/v1/events/{event_id}/snapshot", "snapshot"),
    ("rekap-stream", "/api/v1/events/{event_id}/stream", "stream"),
    ("rekap-venue-root", "/venue/", "venue_root"),
    ("rekap-venue", "/venue/{event_id}", "venue"),
    ("rekap-asset", "/static/{name}", "asset"),
)


def build_app(api: WebApi) -> web.Application:
    """A bare aiohttp application serving the same routes as the worker."""
    app = web.Application()
    for name, path, method in ROUTES:
        app.router.add_get(path, secured(getattr(api, method)), name=name)

    async def _close(_: web.Application) -> None:
        await api.close()

    app.on_cleanup.append(_close)
    return app
