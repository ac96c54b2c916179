"""The security headers of every rekap HTTP answer: one set, used by ingest and the worker web.

Pages (the booth app under ``/booth/`` on ingest, the venue screen on the
worker) load only their own script, style, images and service worker, cannot
be framed, and send no referrer: the booth app holds a token, and the venue
screen is shown on public displays. Both are written for this policy: no
inline script or style, no CDN.

JSON (and other data: the event stream, ``/metrics``) is never sniffed into
something else and never cached on the way, since it carries live totals or
per-item answers.

``Strict-Transport-Security`` only on an answer that went over TLS: sent over
plain HTTP it would be ignored, and it must never pin a plain-HTTP dev setup.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Final

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "manifest-src 'self'; worker-src 'self'")

PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
DATA_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
#: One year, the usual minimum for preload lists; no includeSubDomains, since rekap does not
#: know what else runs under the same domain.
HSTS: Final = ("Strict-Transport-Security", "max-age=31536000")

#: Content types answered with :data:`DATA_HEADERS`; every other one is treated as a page
#: (HTML, and the scripts, styles and service worker it loads).
DATA_TYPES: Final = frozenset({"application/json", "text/event-stream", "text/plain"})


def add_security_headers(headers: MutableMapping[str, str], content_type: str, *,
                         tls: bool) -> None:
    """Add the headers for an answer of ``content_type`` to ``headers``.

    A header the handler set itself is kept (the booth app's assets say
    ``Cache-Control: no-cache`` so its service worker can revalidate them).
    """
    for name, value in (DATA_HEADERS if content_type in DATA_TYPES else PAGE_HEADERS).items():
        if name not in headers:
            headers[name] = value
    if tls:
        headers[HSTS[0]] = HSTS[1]
