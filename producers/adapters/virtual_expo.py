"""The Telkom virtual expo's transaction export: a CSV batch (``samples/virtual-expo.csv``).

Columns (header row required, extra columns ignored)::

    trx_id,tenant_id,trx_time,sku,qty,total_idr,status,ref_trx_id

* ``tenant_id`` is the IKM id; ``trx_time`` is WIB when it carries no offset
  (``2022-03-25 14:02:11``); ``total_idr`` is whole rupiah (``250000`` or ``250.000``).
* ``status`` ``SETTLED`` → sale ``vx:telkom:<trx_id>``; ``REFUND`` → refund
  ``vx:telkom:<trx_id>`` of ``vx:telkom:<ref_trx_id>``; ``PENDING``/``FAILED`` → ignored.

Each row is mapped on its own: a bad row is rejected with its line number and
the others still count. Importing the same file twice yields the same sale_ids.
"""

from __future__ import annotations

import csv
import io

from producers.adapters.common import (
    Item,
    Reject,
    amount_idr,
    count,
    event_for,
    id_part,
    make_id,
    sale,
    timestamp,
)
from rekap.contract import Reason
from rekap.names import CHANNEL_ID_PREFIX
from rekap.registry import Registry

CHANNEL = "virtual_expo"
#: The channel's sale_id namespace (rekap.names): ingest holds its tokens to it.
PREFIX = CHANNEL_ID_PREFIX["virtual_expo"]
PROVIDER = "telkom"
REQUIRED = ("trx_id", "tenant_id", "trx_time", "qty", "total_idr", "status")


def map_csv(text: str, registry: Registry) -> list[Item]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        return [Item("header", Reject(Reason.MISSING_FIELD,
                                      f"CSV header lacks column(s) {', '.join(missing)}").rejection)]
    return [_row(row, reader.line_num, registry) for row in reader]


def _row(row: dict[str, str | None], line: int, registry: Registry) -> Item:
    ref = f"line {line}"
    try:
        trx = id_part((row.get("trx_id") or "").strip(), "trx_id")
        ref = f"line {line} ({trx})"
        tenant = id_part((row.get("tenant_id") or "").strip(), "tenant_id")
        status = (row.get("status") or "").strip().upper()
        if status not in ("SETTLED", "REFUND"):
            return Item(ref, None)
        when = timestamp((row.get("trx_time") or "").strip(), "trx_time")
        event = event_for(registry, tenant, when, (row.get("event_id") or "").strip() or None)
        refund_of = None
        if status == "REFUND":
            refund_of = make_id(PREFIX, PROVIDER, id_part((row.get("ref_trx_id") or "").strip(),
                                                        "ref_trx_id"))
        return Item(ref, sale(
            sale_id=make_id(PREFIX, PROVIDER, trx), ikm_id=tenant, event_id=event, channel=CHANNEL,
            amount=amount_idr((row.get("total_idr") or "").strip(), "total_idr"),
            quantity=count((row.get("qty") or "").strip(), "qty", minimum=0 if refund_of else 1),
            occurred_at=when, sku=(row.get("sku") or "").strip() or None, refund_of=refund_of,
            source={"provider": PROVIDER, "trx_id": trx}))
    except Reject as rej:
        return Item(ref, rej.rejection)
