"""The booth app: a cashier page for tablets and phones, served by ingest.

Routes::

    GET  /booth/            the app (static/booth/index.html)
    GET  /booth/{asset}     its script, style, service worker, manifest and icon
    GET  /v1/booth/me       the booth behind a booth token: event, IKM (401/403 otherwise)
    POST /v1/booth/pair     {"code": ...} → {"booth_id": ..., "token": ...}, once per code

Both API routes take from ingest's per-address bucket for failed authentication
(:mod:`producers.ingest.limits`): ``/me`` when the token is bad, ``/pair`` on every
attempt, before the code is checked.

The page is static: no templating, no inline script or style (it runs under the
strict CSP ingest puts on it), relative URLs only (so it works unchanged behind
TLS or a reverse proxy). Sales go through the ordinary ``POST /v1/sales``.

Every asset is answered ``Cache-Control: no-cache``: the service worker keeps
the app shell for offline use, and the browser's own cache must never hand an
old ``sw.js`` or app file to a new service worker version.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from producers import pairing
from producers.ingest import limits
from producers.ingest.auth import authenticate

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static" / "booth"
#: The files of the app and their content types; nothing else under /booth/ is served.
ASSETS = {
    "index.html": "text/html",
    "app.js": "text/javascript",
    "app.css": "text/css",
    "sw.js": "text/javascript",
    "manifest.webmanifest": "application/manifest+json",
    "icon.svg": "image/svg+xml",
}
#: A pairing request is one short code: anything bigger is not one.
MAX_PAIR_BODY = 1024
#: Reasons of the booth routes, beside ingest's.
FORBIDDEN = "not_a_booth_token"
BAD_PAIRING_REQUEST = "bad_pairing_request"
TOKEN_REVOKED = "token_revoked"  # noqa: S105 - a reason name, not a secret
PAIRING_UNAVAILABLE = "pairing_unavailable"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/booth", _to_app)
    app.router.add_get("/booth/", _index)
    app.router.add_get("/booth/{asset}", _asset)
    app.router.add_get("/v1/booth/me", _me)
    app.router.add_post("/v1/booth/pair", _pair)


def _error(status: int, reason: str, detail: str) -> web.Response:
    return web.json_response({"error": {"reason": reason, "detail": detail}}, status=status,
                             headers={"Cache-Control": "no-store"})


def _file(name: str) -> web.Response:
    return web.Response(body=(STATIC / name).read_bytes(), content_type=ASSETS[name],
                        charset=None if name == "icon.svg" else "utf-8",
                        headers={"Cache-Control": "no-cache"})


async def _to_app(request: web.Request) -> web.StreamResponse:
    # The service worker's scope is /booth/, so the app must live under the slash.
    raise web.HTTPMovedPermanently("/booth/")


async def _index(request: web.Request) -> web.Response:
    return _file("index.html")


async def _asset(request: web.Request) -> web.Response:
    name = request.match_info["asset"]
    if name not in ASSETS:
        return _error(404, "not_found", f"no booth app file {name!r}")
    return _file(name)


def _state(request: web.Request) -> Any:
    # Imported here: app.py imports this module to register the routes.
    from producers.ingest.app import STATE

    return request.app[STATE]


def booth_profile(registry: Any, booth_id: str) -> dict[str, Any] | None:
    """What the app needs to know about its booth, or None if the registry lost it."""
    booth = registry.booths.get(booth_id)
    event = registry.events.get(booth.event) if booth else None
    if booth is None or event is None:
        return None
    ikm = [{"id": i, "name": registry.ikm[i].name if i in registry.ikm else i}
           for i in sorted(booth.ikm)]
    return {
        "booth_id": booth.id,
        "event": {"id": event.id, "name": event.name, "timezone": event.timezone,
                  "starts_on": event.starts_on.isoformat(), "ends_on": event.ends_on.isoformat(),
                  "max_sale_idr": event.max_sale_idr},
        "ikm": ikm,
    }


async def _me(request: web.Request) -> web.Response:
    # Imported here: app.py imports this module to register the routes.
    from producers.ingest.app import authenticated

    principal = await authenticated(request)
    if isinstance(principal, web.Response):
        return principal
    if principal.kind != "booth":
        return _error(403, FORBIDDEN, "this is a channel token; the booth app needs a booth token")
    profile = booth_profile(_state(request).registry_source.current(), principal.name)
    if profile is None:
        return _error(403, FORBIDDEN, f"booth {principal.name!r} is not in the registry")
    return web.json_response(profile, headers={"Cache-Control": "no-store"})


async def _read_code(request: web.Request) -> str | web.Response:
    if request.content_length is not None and request.content_length > MAX_PAIR_BODY:
        return _error(400, BAD_PAIRING_REQUEST, f"a pairing request is under {MAX_PAIR_BODY} bytes")
    try:
        body = await request.content.read(MAX_PAIR_BODY + 1)
    except (OSError, ValueError, web.HTTPException) as exc:
        return _error(400, BAD_PAIRING_REQUEST, f"unreadable body: {exc}")
    if len(body) > MAX_PAIR_BODY:
        return _error(400, BAD_PAIRING_REQUEST, f"a pairing request is under {MAX_PAIR_BODY} bytes")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _error(400, BAD_PAIRING_REQUEST, 'send {"code": "<pairing code>"} as JSON')
    code = data.get("code") if isinstance(data, dict) else None
    if not isinstance(code, str) or not pairing.CODE_PATTERN.match(code):
        return _error(400, BAD_PAIRING_REQUEST, 'send {"code": "<pairing code>"}: the code from '
                                                "the link, letters, digits, - and _")
    return code


async def _pair(request: web.Request) -> web.Response:
    # Before the code is looked at: slows guessing (a code has 144 bits; this bounds the noise).
    refused = limits.address_limited(request)
    if refused is not None:
        return refused
    code = await _read_code(request)
    if isinstance(code, web.Response):
        return code
    state = _state(request)
    tokens_path = state.settings.booth_tokens_path
    if tokens_path is None:
        return _error(404, "unknown_code", "this ingest has no token file, so no pairing codes")
    try:
        result = await asyncio.to_thread(pairing.redeem, pairing.store_path(tokens_path), code)
    except pairing.PairingStoreError as exc:
        log.error("pairing refused: %s", exc)
        return _error(503, PAIRING_UNAVAILABLE, "the pairing store is unusable; tell the operator")
    if isinstance(result, pairing.Refusal):
        return _error(result.http, result.reason, result.detail)
    # The code is spent either way; a token replaced or revoked since the link was made
    # would pair a tablet that cannot send anything.
    principal = authenticate(result.token, state.registry_source.current(), state.tokens.current())
    if principal is None or principal.kind != "booth" or principal.name != result.booth_id:
        return _error(410, TOKEN_REVOKED, "the token of this link was replaced or revoked: "
                                          "ask for a new link")
    log.info("booth %s paired a device", result.booth_id)
    return web.json_response({"booth_id": result.booth_id, "token": result.token},
                             headers={"Cache-Control": "no-store"})
