"""Totals messages: absolute, versioned, one per changed key per batch.

After a batch is applied, every event and IKM totals hash its scripts touched
comes back with its absolute contents and ``version`` (:class:`TotalsSnapshot`).
This module turns them into ``rekap.totals.v1`` messages, coalesced to one per
Kafka key (the highest version wins), and keeps the highest version this worker
has published per key so a replay never publishes a lower version after a
higher one.

Message (value, JSON)::

    {"schema": "rekap.totals.v1", "scope": "event" | "ikm", "event_id": ..., "ikm_id": ...,
     "version": 12, "as_of": "2026-...Z", "amount_idr": ..., "gross_idr": ..., "refunds_idr": ...,
     "count": ..., "refund_count": ..., "quantity": ...,
     "channels": {"offline": {"amount_idr": ..., "count": ..., "refunds_idr": ...}, ...}}

Key: ``event_id`` on ``REKAP_TOPIC_TOTALS_EVENT``, ``event_id/ikm_id`` on
``REKAP_TOPIC_TOTALS_IKM`` (:func:`rekap.names.totals_key`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from rekap.names import CHANNEL_FIELDS, CHANNELS, TOTAL_FIELDS, channel_field, totals_key
from rekap.settings import Settings
from streams.apply import TotalsSnapshot

SCHEMA: Final = "rekap.totals.v1"


@dataclass(frozen=True)
class TotalsMessage:
    topic: str
    key: str
    version: int
    value: dict[str, Any]

    def value_bytes(self) -> bytes:
        return json.dumps(self.value, separators=(",", ":"), ensure_ascii=False).encode()


def message_value(snapshot: TotalsSnapshot) -> dict[str, Any]:
    value: dict[str, Any] = {"schema": SCHEMA, "scope": snapshot.scope,
                             "event_id": snapshot.event_id}
    if snapshot.ikm_id is not None:
        value["ikm_id"] = snapshot.ikm_id
    value["version"] = snapshot.version
    value["as_of"] = snapshot.values.get("as_of")
    for name in TOTAL_FIELDS:
        value[name] = snapshot.integer(name)
    value["channels"] = {c: {f: snapshot.integer(channel_field(c, f)) for f in CHANNEL_FIELDS}
                         for c in CHANNELS}
    return value


def to_message(snapshot: TotalsSnapshot, settings: Settings) -> TotalsMessage:
    topic = settings.topic_totals_event if snapshot.scope == "event" else settings.topic_totals_ikm
    return TotalsMessage(topic, totals_key(snapshot.event_id, snapshot.ikm_id), snapshot.version,
                         message_value(snapshot))


def coalesce(snapshots: Iterable[TotalsSnapshot], settings: Settings) -> list[TotalsMessage]:
    """One message per (topic, key): the snapshot with the highest version."""
    best: dict[tuple[str, str], TotalsMessage] = {}
    for snap in snapshots:
        msg = to_message(snap, settings)
        slot = (msg.topic, msg.key)
        if slot not in best or msg.version > best[slot].version:
            best[slot] = msg
    return list(best.values())


class VersionGate:
    """The highest version published per (topic, key) by this process.

    :meth:`fresh` drops messages whose version is not above what was already
    published; :meth:`published` records versions once the broker acknowledged them.
    """

    def __init__(self) -> None:
        self._published: dict[tuple[str, str], int] = {}

    def fresh(self, messages: Iterable[TotalsMessage]) -> list[TotalsMessage]:
        return [m for m in messages if m.version > self._published.get((m.topic, m.key), 0)]

    def published(self, messages: Iterable[TotalsMessage]) -> None:
        for m in messages:
            slot = (m.topic, m.key)
            if m.version > self._published.get(slot, 0):
                self._published[slot] = m.version

    def last(self, topic: str, key: str) -> int:
        return self._published.get((topic, key), 0)
