"""Capture a sale at the booth, and sync the outbox to ingest with retries.

``sync`` sends pending sales in batches to ``POST /v1/sales`` and marks each
sale from ingest's per-item answer: ``accepted`` → sent, ``rejected`` (4xx) →
rejected with the reason, ``unavailable`` (503) → stays pending. Network
errors and answers that are not per-item are retried with
:data:`~producers.ingest.client.BOOTH_BACKOFF` (full jitter, so forty booths
coming back on the venue Wi-Fi at once do not hammer ingest in step). A kill at
any point is safe: a sale is marked sent only after ingest acknowledged it; if
the process dies between the acknowledgement and the mark, the next sync sends
it again and the worker de-duplicates it by sale_id.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ulid import ULID

from producers.booth.outbox import Outbox, Pending
from producers.ingest.client import BOOTH_BACKOFF, IngestClient, Retry
from rekap.contract import Rejection, validate_sale
from rekap.days import zone
from rekap.errors import ConfigError, RekapError
from rekap.registry import Registry

log = logging.getLogger(__name__)


def capture(registry: Registry, booth_id: str, *, ikm: str, amount: int, quantity: int = 1,
            sku: str | None = None, channel: str = "offline", event: str | None = None,
            refund_of: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """A new sale dict: ULID sale_id minted now, occurred_at in the event's zone with its offset."""
    booth = registry.booths.get(booth_id)
    if booth is None and event is None:
        raise ConfigError(f"booth {booth_id!r} is not in the registry; give --event or fix REKAP_BOOTH_ID")
    event_id = event or booth.event  # type: ignore[union-attr]
    ev = registry.events.get(event_id)
    if ev is None:
        raise ConfigError(f"event {event_id!r} is not in the registry")
    moment = (now or datetime.now(zone(ev.timezone))).astimezone(zone(ev.timezone))
    sale: dict[str, Any] = {
        "schema_version": 1, "sale_id": str(ULID()), "kind": "refund" if refund_of else "sale",
        "ikm_id": ikm, "event_id": event_id, "channel": channel, "booth_id": booth_id,
        "amount_idr": amount, "quantity": quantity,
        "occurred_at": moment.isoformat(timespec="seconds"),
    }
    if sku:
        sale["sku"] = sku
    if refund_of:
        sale["refund_of"] = refund_of
    return sale


def record(registry: Registry, outbox_path: Path, booth_id: str, **fields: Any
           ) -> dict[str, Any] | Rejection:
    """Capture a sale (``fields`` as for :func:`capture`) and store it in the outbox.

    A sale the contract rejects is returned as the Rejection and stored nowhere (no
    outbox is created for it): ingest would refuse it anyway, and the staff can fix
    it while the customer is still at the booth.
    """
    sale = capture(registry, booth_id, **fields)
    checked = validate_sale(dict(sale), registry)
    if isinstance(checked, Rejection):
        return checked
    with Outbox(outbox_path, create=True) as outbox:
        outbox.record(sale)
    return sale


@dataclass
class SyncReport:
    sent: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    pending_left: int = 0
    errors: list[str] = field(default_factory=list)


class AuthError(RekapError):
    """Ingest refused the booth token (401): retrying cannot help."""


def sync(outbox: Outbox, url: str, token: str, *, batch: int = 100, max_attempts: int = 10,
         deadline_s: float | None = None, timeout_s: float = 30.0,
         rng: random.Random | None = None, sleep: Callable[[float], None] = time.sleep,
         on_batch: Callable[[SyncReport], None] | None = None,
         tls: ssl.SSLContext | None = None) -> SyncReport:
    """Send every pending sale; returns when none is pending, or attempts/deadline run out.

    ``max_attempts`` counts consecutive failed requests: a request that settles its
    whole batch starts the count again. ``tls`` verifies an https ingest
    (:func:`rekap.tls.client_context`); None: the system's CAs.
    """
    report = SyncReport()
    started = time.monotonic()
    retry = Retry(BOOTH_BACKOFF, max_attempts, rng or random.Random(), sleep)
    with IngestClient(url, token, timeout_s=timeout_s, tls=tls) as client:
        while True:
            todo = outbox.pending(batch)
            if not todo:
                break
            if deadline_s is not None and time.monotonic() - started > deadline_s:
                report.errors.append("deadline reached")
                break
            outbox.attempted(p.sale_id for p in todo)
            report.requests += 1
            progressed = _send_batch(client, outbox, todo, report)
            if on_batch:
                on_batch(report)
            if progressed:
                retry.reset()
                continue
            report.retries += 1
            if not retry.failed():
                report.errors.append(f"gave up after {retry.failures} failed attempts")
                break
    report.pending_left = outbox.counts()["pending"]
    return report


def _send_batch(client: IngestClient, outbox: Outbox, todo: list[Pending], report: SyncReport) -> bool:
    """One request; True if ingest settled every item of it (sent or rejected)."""
    reply = client.post_sales([p.payload for p in todo])
    if not reply.reached:
        report.errors.append(f"ingest unreachable: {reply.text}")
        log.warning("ingest unreachable, will retry: %s", reply.text)
        return False
    if reply.status == 401:
        raise AuthError("ingest refused the booth token (401): check REKAP_BOOTH_TOKEN")
    results = reply.results(expected=len(todo))
    if results is None:
        if reply.status == 413 and len(todo) > 1:
            # Too large: the next round sends the first half only (sync picks it up again).
            report.errors.append("batch too large")
            return _send_batch(client, outbox, todo[: len(todo) // 2], report)
        report.errors.append(f"ingest answered {reply.status}")
        log.warning("ingest answered %s, will retry", reply.status)
        return False
    sent = [p.sale_id for p, r in zip(todo, results, strict=True) if r["status"] == "accepted"]
    rejected = [(p.sale_id, r["error"]["reason"], r["error"].get("detail") or "")
                for p, r in zip(todo, results, strict=True) if r["status"] == "rejected"]
    outbox.mark_sent(sent)
    outbox.mark_rejected(rejected)
    report.sent += len(sent)
    report.rejected += len(rejected)
    return len(sent) + len(rejected) == len(todo)
