"""Capture a sale at the booth, and sync the outbox to ingest with retries.

``sync`` sends pending sales in batches to ``POST /v1/sales`` and marks each
sale from ingest's per-item answer: ``accepted`` → sent, ``rejected`` (4xx) →
rejected with the reason, ``unavailable`` (503) → stays pending. Network
errors and 503/5xx answers are retried with exponential backoff and full
jitter, so forty booths coming back on the venue Wi-Fi at once do not
hammer ingest in step. A kill at any point is safe: a sale is marked sent only
after ingest acknowledged it; if the process dies between the acknowledgement
and the mark, the next sync sends it again and the worker de-duplicates it by
sale_id.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ulid import ULID

from producers.booth.outbox import Outbox
from rekap.days import zone
from rekap.errors import ConfigError, RekapError
from rekap.registry import Registry

log = logging.getLogger(__name__)

#: Retry policy: the first wait is about BASE_S, doubling up to CAP_S.
BASE_S = 0.5
CAP_S = 30.0


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


def backoff_s(attempt: int, rng: random.Random, base: float = BASE_S, cap: float = CAP_S) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng.uniform(0, min(cap, base * 2 ** attempt))


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
         on_batch: Callable[[SyncReport], None] | None = None) -> SyncReport:
    """Send every pending sale; returns when none is pending, or attempts/deadline run out."""
    import httpx

    rng = rng or random.Random()
    report = SyncReport()
    started = time.monotonic()
    failures = 0
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s, headers=headers) as client:
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
                failures = 0
                continue
            failures += 1
            report.retries += 1
            if failures >= max_attempts:
                report.errors.append(f"gave up after {failures} failed attempts")
                break
            sleep(backoff_s(failures, rng))
    report.pending_left = outbox.counts()["pending"]
    return report


def _send_batch(client: Any, outbox: Outbox, todo: list[Any], report: SyncReport) -> bool:
    """One request; True if ingest settled every item of it (sent or rejected)."""
    import httpx

    try:
        resp = client.post("/v1/sales", json={"sales": [p.payload for p in todo]})
    except httpx.TransportError as exc:
        report.errors.append(f"ingest unreachable: {exc}")
        log.warning("ingest unreachable, will retry: %s", exc)
        return False
    if resp.status_code == 401:
        raise AuthError("ingest refused the booth token (401): check REKAP_BOOTH_TOKEN")
    try:
        results = resp.json().get("results")
    except ValueError:
        results = None
    if results is None or len(results) != len(todo):
        if resp.status_code == 413 and len(todo) > 1:
            # Too large: the next round sends the first half only (sync picks it up again).
            report.errors.append("batch too large")
            return _send_batch(client, outbox, todo[: len(todo) // 2], report)
        report.errors.append(f"ingest answered {resp.status_code}")
        log.warning("ingest answered %s, will retry", resp.status_code)
        return False
    sent = [p.sale_id for p, r in zip(todo, results, strict=True) if r["status"] == "accepted"]
    rejected = [(p.sale_id, r["error"]["reason"], r["error"].get("detail") or "")
                for p, r in zip(todo, results, strict=True) if r["status"] == "rejected"]
    outbox.mark_sent(sent)
    outbox.mark_rejected(rejected)
    report.sent += len(sent)
    report.rejected += len(rejected)
    return len(sent) + len(rejected) == len(todo)
