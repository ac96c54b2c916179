"""Marketplace order webhooks (the IKM's landing pages on Tokopedia, Shopee, Bukalapak ...).

One webhook is one order status change (``samples/marketplace-paid.json``)::

    {"marketplace": "tokopedia", "shop_id": "lampung-ethnica", "order_id": "INV-20220321-0001",
     "status": "paid", "paid_at": "2022-03-21T10:15:00+07:00", "updated_at": "...",
     "items": [{"sku": "TAPIS-S", "qty": 2, "price_idr": 125000}], "total_idr": 250000,
     "refund_idr": 250000, "refund_qty": 2, "refund_seq": 1, "event_id": "lagawi-2022"}

* ``paid`` → a sale ``mp:<marketplace>:<shop_id>:<order_id>``, amount ``total_idr``
  (or the sum of the items; both given and different → rejected).
* ``cancelled`` / ``returned`` after payment → a refund of that sale,
  ``mp:<marketplace>:<shop_id>:<order_id>:refund:<refund_seq or 1>``, amount
  ``refund_idr`` (default: the whole order), at ``updated_at``.
* ``cancelled`` before payment (no ``paid_at``) → nothing to count (ignored).
* any other status (``created``, ``shipped`` ...) → ignored.

``shop_id`` is the IKM id the shop is registered under; ``event_id`` is optional
(default: the programme running on that day).
"""

from __future__ import annotations

from typing import Any

from producers.adapters.common import (
    Item,
    Reject,
    amount_idr,
    count,
    event_for,
    id_part,
    make_id,
    order_lines,
    sale,
    timestamp,
)
from rekap.contract import Reason
from rekap.names import CHANNEL_ID_PREFIX
from rekap.registry import Registry

CHANNEL = "marketplace"
#: The channel's sale_id namespace (rekap.names): ingest holds its tokens to it.
PREFIX = CHANNEL_ID_PREFIX["marketplace"]
PAID = "paid"
REFUNDING = frozenset({"cancelled", "returned", "refunded"})


def map_webhook(payload: Any, registry: Registry) -> list[Item]:
    """Map one webhook body (or a list of them) to sale/refund items."""
    bodies = payload if isinstance(payload, list) else [payload]
    return [_one(body, registry) for body in bodies]


def _one(body: Any, registry: Registry) -> Item:
    ref = str(body.get("order_id")) if isinstance(body, dict) else "?"
    try:
        if not isinstance(body, dict):
            raise Reject(Reason.NOT_AN_OBJECT, "a webhook is a JSON object")
        market = id_part(body.get("marketplace"), "marketplace")
        shop = id_part(body.get("shop_id"), "shop_id")
        order = id_part(body.get("order_id"), "order_id")
        status = body.get("status")
        if not isinstance(status, str):
            raise Reject(Reason.MISSING_FIELD, "status is required")
        base_id = make_id(PREFIX, market, shop, order)
        source = {"marketplace": market, "order_id": order, "status": status}
        if status != PAID and status not in REFUNDING:
            return Item(ref, None)
        if status in REFUNDING and not body.get("paid_at"):
            return Item(ref, None)  # cancelled before payment: no sale to take back
        quantity, total, sku = _order_lines(body)
        paid_at = timestamp(body.get("paid_at"), "paid_at")
        event = event_for(registry, shop, paid_at, body.get("event_id"))
        if status == PAID:
            return Item(ref, sale(sale_id=base_id, ikm_id=shop, event_id=event, channel=CHANNEL,
                                  amount=total, quantity=quantity, occurred_at=paid_at, sku=sku,
                                  source=source))
        seq = count(body.get("refund_seq", 1), "refund_seq")
        refund = amount_idr(body.get("refund_idr", total), "refund_idr")
        if refund > total:
            raise Reject(Reason.REFUND_EXCEEDS_SALE, f"refund_idr {refund} exceeds the order's {total}")
        refund_qty = count(body.get("refund_qty", quantity if refund == total else 0),
                           "refund_qty", minimum=0)
        when = timestamp(body.get("updated_at") or body.get("paid_at"), "updated_at")
        return Item(ref, sale(sale_id=make_id(base_id, "refund", str(seq)), ikm_id=shop,
                              event_id=event, channel=CHANNEL, amount=refund, quantity=refund_qty,
                              occurred_at=when, sku=sku, refund_of=base_id, source=source))
    except Reject as rej:
        return Item(ref, rej.rejection)


def _order_lines(body: dict[str, Any]) -> tuple[int, int, str | None]:
    items = body.get("items")
    total = body.get("total_idr")
    if items is None:
        if total is None:
            raise Reject(Reason.MISSING_FIELD, "an order needs items or total_idr")
        return count(body.get("quantity", 1), "quantity"), amount_idr(total, "total_idr"), None
    if not isinstance(items, list) or not items:
        raise Reject(Reason.WRONG_TYPE, "items must be a non-empty list")
    quantity, line_total, sku = order_lines(items, "items", "price_idr")
    if total is not None and amount_idr(total, "total_idr") != line_total:
        raise Reject(Reason.WRONG_TYPE,
                     f"total_idr {total} differs from the sum of the items {line_total}")
    return quantity, line_total, sku

