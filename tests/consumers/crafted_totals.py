"""Totals messages made by hand, shaped exactly as the worker publishes them (streams.totals)."""

from __future__ import annotations

import json
from typing import Any

from rekap.names import CHANNELS, totals_key
from rekap.settings import Settings
from tests.support.kafka import produce


def totals_doc(event_id: str, ikm_id: str | None, version: int, amount_idr: int,
               refunds_idr: int = 0, count: int = 1) -> dict[str, Any]:
    channels = {c: {"amount_idr": 0, "count": 0, "refunds_idr": 0} for c in CHANNELS}
    channels["offline"] = {"amount_idr": amount_idr, "count": count, "refunds_idr": refunds_idr}
    doc: dict[str, Any] = {"schema": "rekap.totals.v1", "scope": "event" if ikm_id is None else "ikm",
                           "event_id": event_id}
    if ikm_id is not None:
        doc["ikm_id"] = ikm_id
    doc.update(version=version, as_of="2022-06-02T03:04:05.000Z", amount_idr=amount_idr,
               gross_idr=amount_idr + refunds_idr, refunds_idr=refunds_idr, count=count,
               refund_count=1 if refunds_idr else 0, quantity=count, channels=channels)
    return doc


def send_totals(settings: Settings, docs: list[dict[str, Any]]) -> None:
    """Produce ``docs`` to the totals topic of their scope, keyed as the worker keys them, in order."""
    # One key always lands on one partition, so per-key order is the order given.
    for scope, topic in (("event", settings.topic_totals_event), ("ikm", settings.topic_totals_ikm)):
        records = [(totals_key(d["event_id"], d.get("ikm_id")).encode(), json.dumps(d).encode())
                   for d in docs if d["scope"] == scope]
        if records:
            produce(settings, topic, records)
