"""Orders from the esmartikm.id website (``samples/website-orders.json``)::

    {"orders": [{"order_no": "ESI-2022-000123", "merchant_id": "pisang-shamiya",
                 "created_at": "2022-04-20T19:05:11+07:00", "payment_status": "settlement",
                 "lines": [{"sku": "PS-COKLAT", "qty": 3, "unit_price": 35000}],
                 "grand_total": 105000,
                 "refunds": [{"refund_no": "R1", "amount": 35000, "qty": 1,
                              "refunded_at": "2022-04-21T09:00:00+07:00"}]}]}

A single order object is accepted too. ``payment_status`` ``settlement`` (or
``paid``) → a sale ``web:esmartikm:<order_no>``; any other status → ignored.
Each entry of ``refunds`` → a refund ``web:esmartikm:<order_no>:refund:<refund_no>``.
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

CHANNEL = "website"
#: The channel's sale_id namespace (rekap.names): ingest holds its tokens to it.
PREFIX = CHANNEL_ID_PREFIX["website"]
SITE = "esmartikm"
PAID = frozenset({"settlement", "paid", "capture"})


def map_orders(payload: Any, registry: Registry) -> list[Item]:
    if isinstance(payload, dict) and "orders" in payload:
        orders = payload["orders"]
        if not isinstance(orders, list):
            return [Item("orders", Reject(Reason.WRONG_TYPE, "orders must be a list").rejection)]
    else:
        orders = [payload]
    out: list[Item] = []
    for order in orders:
        out.extend(_order(order, registry))
    return out


def _order(order: Any, registry: Registry) -> list[Item]:
    ref = str(order.get("order_no")) if isinstance(order, dict) else "?"
    try:
        if not isinstance(order, dict):
            raise Reject(Reason.NOT_AN_OBJECT, "an order is a JSON object")
        order_no = id_part(order.get("order_no"), "order_no")
        merchant = id_part(order.get("merchant_id"), "merchant_id")
        status = order.get("payment_status")
        if not isinstance(status, str) or status not in PAID:
            return [Item(ref, None)]
        lines = order.get("lines")
        if not isinstance(lines, list) or not lines:
            raise Reject(Reason.MISSING_FIELD, "lines must be a non-empty list")
        quantity, total, sku = order_lines(lines, "lines", "unit_price")
        if "grand_total" in order and amount_idr(order["grand_total"], "grand_total") != total:
            raise Reject(Reason.WRONG_TYPE, f"grand_total {order['grand_total']} differs from the "
                                            f"sum of the lines {total}")
        created = timestamp(order.get("created_at"), "created_at")
        event = event_for(registry, merchant, created, order.get("event_id"))
        sale_id = make_id(PREFIX, SITE, order_no)
        out = [Item(ref, sale(sale_id=sale_id, ikm_id=merchant, event_id=event, channel=CHANNEL,
                              amount=total, quantity=quantity, occurred_at=created,
                              sku=sku,
                              source={"site": SITE, "order_no": order_no}))]
    except Reject as rej:
        return [Item(ref, rej.rejection)]
    refunds = order.get("refunds") or []
    if not isinstance(refunds, list):
        return [*out, Item(f"{ref}/refunds", Reject(Reason.WRONG_TYPE, "refunds must be a list").rejection)]
    for refund in refunds:
        rref = f"{ref}/refund"
        try:
            if not isinstance(refund, dict):
                raise Reject(Reason.NOT_AN_OBJECT, "a refund is a JSON object")
            refund_no = id_part(refund.get("refund_no"), "refund_no")
            rref = f"{ref}/{refund_no}"
            out.append(Item(rref, sale(
                sale_id=make_id(sale_id, "refund", refund_no), ikm_id=merchant, event_id=event,
                channel=CHANNEL, amount=amount_idr(refund.get("amount"), "refunds.amount"),
                quantity=count(refund.get("qty", 0), "refunds.qty", minimum=0),
                occurred_at=timestamp(refund.get("refunded_at") or created, "refunded_at"),
                refund_of=sale_id, source={"site": SITE, "order_no": order_no})))
        except Reject as rej:
            out.append(Item(rref, rej.rejection))
    return out
