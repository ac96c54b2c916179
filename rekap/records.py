"""Sales-topic records as every stage sees them: what was consumed, and what it is.

The worker plans batches from these (:mod:`streams.batch`), reconcile and rebuild
fold them (:mod:`rekap.ledger`), and the tests generate them. :func:`classify` is
the one place a raw record becomes a sale or a rejection routed to its event tree.
Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rekap.contract import Reason, Rejection, Sale, decode_object, sale_from_object
from rekap.registry import Registry

#: The pseudo-root of records whose event cannot be resolved.
UNROUTED: Final = "_unrouted"


@dataclass(frozen=True)
class ConsumedRecord:
    """One record as read from the sales topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, timestamp_ms: int | None = None) -> None:
        # The fields above, written out: the frozen dataclass's own __init__ sets each with
        # object.__setattr__ (~0.4 µs here), and the worker makes one of these per record.
        # tests/rekap/test_contract_decode.py keeps the two in step.
        self.__dict__.update(topic=topic, partition=partition, offset=offset, key=key,
                             value=value, timestamp_ms=timestamp_ms)

    @property
    def coordinates(self) -> str:
        """``<topic>/<partition>/<offset>``: the dead-letter key and the ``rejects`` field."""
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class PlannedRecord:
    """A consumed record with its verdict: a valid sale, or why it is rejected."""

    record: ConsumedRecord
    sale: Sale | None = None
    rejection: Rejection | None = None

    def __init__(self, record: ConsumedRecord, sale: Sale | None = None,
                 rejection: Rejection | None = None) -> None:
        # As ConsumedRecord's: one per record, so no object.__setattr__ per field.
        self.__dict__.update(record=record, sale=sale, rejection=rejection)


def classify(record: ConsumedRecord, registry: Registry) -> tuple[str, PlannedRecord]:
    """Validate one record and find its root; never raises on bad input.

    The value is decoded once: an invalid record whose ``event_id`` still names a
    registered event is fenced and counted in that event's tree, any other in
    :data:`UNROUTED`.
    """
    data = decode_object(record.value)
    if isinstance(data, Rejection):
        return UNROUTED, PlannedRecord(record, rejection=data)
    result = sale_from_object(data, registry, record.key)
    if isinstance(result, Sale):
        return registry.root(result.event_id), PlannedRecord(record, sale=result)
    event_id = data.get("event_id")
    root = registry.root(event_id) if isinstance(event_id, str) and event_id in registry.events \
        else UNROUTED
    return root, PlannedRecord(record, rejection=result)


def internal_error(exc: BaseException) -> Rejection:
    """The rejection of a record that made rekap itself fail (a bug): reason and exception text."""
    return Rejection(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:500])
