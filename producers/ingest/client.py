"""The client side of ingest's HTTP API: one POST, its answer, and the retry policy.

Used by everything that sends to ingest: the booth's ``sync``
(:mod:`producers.booth.client`), the simulator's ``--via ingest``
(:mod:`producers.simulator.run`) and ``rekap import --via ingest``
(:mod:`producers.importer`). Each caller decides what a failed answer means for
it (a booth keeps the sale pending, the simulator gives up, an import exits 3);
this module only sends, reads the answer and paces the retries.

An answer is per-item (``{"results": [...]}``, one entry per sale or row, see
:mod:`producers.ingest.outcomes`) or whole-request (``{"error": {...}}``: 401,
413, a single sale's rejection, a proxy's 503 ...). A network error is an
answer too, with no status, so callers handle every case in one place.
"""

from __future__ import annotations

import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

from producers.ingest.outcomes import Status
from rekap.backoff import Backoff

if TYPE_CHECKING:
    import httpx

STATUSES = frozenset(get_args(Status))


@dataclass(frozen=True)
class Reply:
    """Ingest's answer to one request, or the failure to get one."""

    #: The HTTP status; None when ingest could not be reached (``text`` says why).
    status: int | None
    #: The decoded JSON body; None when the body is not JSON (or there is no answer).
    doc: Any = None
    #: The body as text, or the network error.
    text: str = ""

    @property
    def reached(self) -> bool:
        return self.status is not None

    def results(self, expected: int | None = None) -> list[dict[str, Any]] | None:
        """The per-item results, or None when this is not a per-item answer.

        With ``expected``, an answer with another number of items is not one either
        (a proxy's or an older ingest's answer cannot be matched item by item).
        """
        results = self.doc.get("results") if isinstance(self.doc, dict) else None
        if not isinstance(results, list) or not all(
                isinstance(r, dict) and r.get("status") in STATUSES for r in results):
            return None
        if expected is not None and len(results) != expected:
            return None
        return results

    @property
    def reason(self) -> str | None:
        """The reason of a whole-request error answer (``{"error": {"reason": ...}}``)."""
        error = self.doc.get("error") if isinstance(self.doc, dict) else None
        reason = error.get("reason") if isinstance(error, dict) else None
        return reason if isinstance(reason, str) else None


class IngestClient:
    """HTTP to one ingest with one bearer token; a context manager holding the connection."""

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 30.0,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: the context that verifies an https ingest (:func:`rekap.tls.client_context`,
        which trusts ``REKAP_TLS_CA``); None: the system's CAs. Never unverified."""
        import httpx  # here, not at the top: ``rekap booth record`` never sends

        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, headers=headers,
                                    verify=tls if tls is not None else True)

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def post(self, path: str, *, json: Any = None, content: bytes | None = None,
             content_type: str | None = None, token: str | None = None) -> Reply:
        """POST ``json`` (encoded by httpx) or raw ``content``; ``token`` overrides the client's."""
        import httpx

        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            resp = self._client.post(path, json=json, content=content, headers=headers or None)
        except httpx.TransportError as exc:
            return Reply(None, None, str(exc))
        return _reply(resp)

    def post_sales(self, sales: list[dict[str, Any]] | None = None, *, body: bytes | None = None,
                   token: str | None = None) -> Reply:
        """``POST /v1/sales``: a batch of sale dicts, or a ready-made JSON ``body``."""
        if body is not None:
            return self.post("/v1/sales", content=body, content_type="application/json", token=token)
        return self.post("/v1/sales", json={"sales": sales}, token=token)


def _reply(resp: httpx.Response) -> Reply:
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    return Reply(resp.status_code, doc, resp.text)


#: Booths: the first wait is about 0.5 s, doubling up to 30 s, full jitter.
BOOTH_BACKOFF = Backoff(base_s=0.5, cap_s=30.0)
#: The simulator, one client: 0.2 s doubling up to 10 s, at least half of it so a Kafka
#: outage is waited out rather than retried at once.
SIMULATOR_BACKOFF = Backoff(base_s=0.2, cap_s=10.0, floor=0.5)


@dataclass
class Retry:
    """Counts failed attempts and sleeps between them.

    ``failed()`` after each failure: False when ``max_attempts`` failures are reached
    (give up, no sleep), else sleeps the backoff for this failure and returns True.
    ``reset()`` after progress, for a caller whose limit is on consecutive failures.
    """

    backoff: Backoff
    max_attempts: int
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep
    failures: int = 0

    def failed(self) -> bool:
        self.failures += 1
        if self.failures >= self.max_attempts:
            return False
        self.sleep(self.backoff.wait_s(self.failures, self.rng))
        return True

    def reset(self) -> None:
        self.failures = 0
