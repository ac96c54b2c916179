"""Synthetic valid sale streams with refunds and resends, for the benchmarks and the tests.

Unlike ``rekap simulate`` (the paced, realistic Lagawi Fest programme of
:mod:`producers.simulator.scenario`), this is a plain seeded list whose ground
truth is easy to recompute: ``bench.throughput`` drains it, and the stream and
consumer tests feed it to the worker and check the totals.

:func:`generate` returns valid sale and refund objects (dicts, as producers send
them) for both Lagawi Fest events and every channel: sales across the days of
each event (some at 23:30 UTC, which is the next WIB day; only the channels the
event takes), partial and full refunds of earlier sales that never exceed them,
each through its sale's channel (and booth), and a few identical resends.
Refunds always come after their sale in the same IKM's key, so in one
partition, so the ledger sees them in order.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

from rekap.registry import Registry

CHANNELS = ("offline", "marketplace", "virtual_expo", "website")


def booth_of(registry: Registry, event_id: str, ikm_id: str) -> str | None:
    for booth in registry.booths.values():
        if booth.event == event_id and ikm_id in booth.ikm:
            return booth.id
    return None


def generate(registry: Registry, n: int, seed: int = 7, *, resend_every: int = 40,
             refund_share: float = 0.12, prefix: str = "g") -> list[dict[str, Any]]:
    """``n`` records (sales, refunds and identical resends), in send order."""
    rng = random.Random(seed)
    events = sorted(registry.events.values(), key=lambda e: e.id)
    out: list[dict[str, Any]] = []
    sales: list[dict[str, Any]] = []
    refunded: dict[str, tuple[int, int]] = {}
    i = 0
    while len(out) < n:
        i += 1
        if resend_every and i % resend_every == 0 and sales:
            out.append(dict(rng.choice(sales)))
            continue
        if sales and rng.random() < refund_share:
            sale = rng.choice(sales)
            done_amount, done_qty = refunded.get(sale["sale_id"], (0, 0))
            left = sale["amount_idr"] - done_amount
            if left <= 0:
                continue
            full = rng.random() < 0.4
            amount = left if full else rng.randint(1, left)
            qty = (sale["quantity"] - done_qty) if full else rng.randint(0, sale["quantity"] - done_qty)
            refunded[sale["sale_id"]] = (done_amount + amount, done_qty + qty)
            refund = {k: v for k, v in sale.items() if k not in ("sale_id", "refund_of")}
            refund.update(sale_id=f"{prefix}-r{i}", kind="refund", refund_of=sale["sale_id"],
                          amount_idr=amount, quantity=qty)
            out.append(refund)
            continue
        event = rng.choice(events)
        ikm = rng.choice(sorted(event.ikm))
        channel = rng.choice([c for c in CHANNELS if c in event.channels])
        booth = booth_of(registry, event.id, ikm)
        if channel == "offline" and booth is None:
            if "website" not in event.channels:
                continue
            channel = "website"
        days = (event.ends_on - event.starts_on).days
        day = event.starts_on + timedelta(days=rng.randint(0, days))
        if rng.random() < 0.1 and day < event.ends_on:
            # 23:30 UTC the evening before: 06:30 WIB on ``day``.
            at = datetime.combine(day - timedelta(days=1), time(23, 30), tzinfo=UTC)
            occurred = at.isoformat().replace("+00:00", "Z")
        else:
            occurred = f"{day.isoformat()}T{rng.randint(9, 21):02d}:{rng.randint(0, 59):02d}:00+07:00"
        sale = {
            "sale_id": f"{prefix}-s{i}", "kind": "sale", "ikm_id": ikm, "event_id": event.id,
            "channel": channel, "amount_idr": rng.randint(1, 400) * 1000 + rng.choice((0, 500)),
            "quantity": rng.randint(1, 5), "occurred_at": occurred, "sku": f"sku-{rng.randint(1, 9)}",
        }
        if channel == "offline":
            sale["booth_id"] = booth
        sales.append(sale)
        out.append(sale)
    return out
