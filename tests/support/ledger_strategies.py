"""Hypothesis strategies for the apply-vs-ledger property (tests/streams/test_apply_properties.py).

:func:`sale_streams` draws a small sales topic as producers would send it: a list
of ``(key, value)`` Kafka records over the shipped registry (both Lagawi Fest
events, a handful of IKM, all four channels, booths for offline) mixing valid
sales, refunds through their sale's channel (partial, full, exceeding) and bad ones
(of an unknown sale, of a refund, of another IKM's or event's sale, through
another channel), identical resends, reused ``sale_id`` with other
content (a conflict within the IKM, a distinct sale in another IKM: the key
scopes it), and invalid records (several rejection reasons, routed to the tree or
unroutable).

:func:`place` puts the records on partitions the way Kafka does (by key, offsets
growing per partition), and :func:`deliveries` draws how a crashing consumer
hands them to the apply: random batches interleaving partitions, commits of
some partitions now and then, and crashes that rewind to the committed offsets
(a crash after the apply, before the commit), possibly in the middle of a batch
(only the first groups of its plan applied).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final, TypeVar

from hypothesis import strategies as st

from rekap.records import ConsumedRecord
from rekap.registry import Registry

ROOT: Final = "lagawi-2022"
KOKAS: Final = "lagawi-2022-kokas"
EVENTS: Final = (ROOT, KOKAS)
#: Five IKM of both events, spread over the three partitions by crc32(key) % 3.
IKMS: Final = ("lampung-ethnica", "littlemonq", "kopi-way-tebu", "askha-jaya", "pisang-shamiya")
CHANNELS: Final = ("marketplace", "virtual_expo", "website", "offline")
PARTITIONS: Final = 3

#: Local days per event (inside the window) and how a time is written on the wire.
DAYS: Final = {ROOT: ("2022-03-20", "2022-04-15", "2022-06-03", "2022-06-17"),
               KOKAS: ("2022-06-01", "2022-06-03", "2022-06-06")}
#: A day both events accept (a refund posted under the other event of the tree).
SHARED_DAY: Final = "2022-06-03"

Record = tuple[bytes | None, bytes | None]
T = TypeVar("T")


def _at(day: str, style: int) -> str:
    """A time whose WIB day is ``day``: +07:00, UTC the evening before (23:30Z), or +00:00."""
    if style == 1:
        prev = date.fromisoformat(day) - timedelta(days=1)
        return f"{prev.isoformat()}T23:30:00Z"
    if style == 2:
        return f"{day}T02:15:00+00:00"
    return f"{day}T10:00:00+07:00"


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _booths(registry: Registry, ikm: str) -> list[str]:
    return sorted(b.id for b in registry.booths.values() if b.event == KOKAS and ikm in b.ikm)


def sized_lists(elements: st.SearchStrategy[T], lo: int, hi: int) -> st.SearchStrategy[list[T]]:
    """Lists whose length is spread over lo..hi (``st.lists`` mostly draws short ones)."""
    return st.integers(lo, hi).flatmap(lambda n: st.lists(elements, min_size=n, max_size=n))


class Choices:
    """Reads one drawn op's integers as choices: ``pick`` one of a sequence, an ``int`` in range.

    Every op and delivery step is a fixed-shape tuple of integers drawn up front and
    interpreted here, so shrinking can drop or zero an op without derailing the rest
    (drawing choice by choice from growing lists made a failing example take minutes
    to shrink). Zero is always the simplest choice.
    """

    def __init__(self, values: Sequence[int]) -> None:
        self._values = values
        self._i = 0

    def _next(self) -> int:
        v = self._values[self._i % len(self._values)]
        self._i += 1
        return v

    def pick(self, seq: Sequence[T]) -> T:
        return seq[self._next() % len(seq)]

    def int(self, lo: int, hi: int) -> int:
        return lo + self._next() % (hi - lo + 1)

    def chance(self, one_in: int) -> bool:
        return self._next() % one_in == 0


#: One op: its kind (index into OPS, so repeats weigh), then the integers it reads.
OPS: Final = ("sale", "sale", "sale", "refund", "refund", "resend", "conflict", "bad_refund",
              "invalid")
_CHOICES: Final = 10
ops = st.tuples(st.integers(0, len(OPS) - 1), st.integers(0, 59),
                st.tuples(*[st.integers(0, 2**20)] * _CHOICES))

INVALID: Final = ("malformed_json", "not_an_object", "tombstone", "non_positive_amount",
                  "unknown_channel", "outside_event_window", "booth_required",
                  "booth_not_allowed", "unknown_event", "key_mismatch", "unknown_ikm",
                  "amount_too_large", "bad_timestamp", "refund_without_target", "wrong_type")


def _valid_sale(c: Choices, registry: Registry, sale_id: str) -> dict[str, Any]:
    event = c.pick(EVENTS)
    ikm = c.pick(IKMS)
    channel = c.pick(CHANNELS)
    if channel == "offline":
        event = KOKAS
    elif event == KOKAS and not c.chance(4):
        # The exhibition takes booths only: an online sale belongs to the programme, but now
        # and then one tries the exhibition (channel_not_in_event).
        event = ROOT
    day = c.pick(DAYS[event])
    style = c.int(0, 2)
    how = c.int(0, 5)
    amount = ((1_000, 25_000, 150_000)[how] if how < 3 else
              registry.events[event].max_sale_idr if how == 3 else c.int(1, 300_000))
    sale: dict[str, Any] = {
        "sale_id": sale_id, "kind": "sale", "ikm_id": ikm, "event_id": event,
        "channel": channel, "amount_idr": amount, "quantity": c.int(1, 4),
        "occurred_at": _at(day, style),
    }
    if channel == "offline":
        sale["booth_id"] = c.pick(_booths(registry, ikm))
    if c.chance(2):
        sale["sku"] = f"sku-{c.int(1, 3)}"
    if c.chance(10):
        sale["note"] = "unknown fields are kept"
    return sale


def _refund(target: dict[str, Any], sale_id: str, amount: int, quantity: int,
            day: str, channel: str | None = None) -> dict[str, Any]:
    """A refund of ``target``, through its channel (and booth) unless ``channel`` says another."""
    out = {"sale_id": sale_id, "kind": "refund", "refund_of": target["sale_id"],
           "ikm_id": target["ikm_id"], "event_id": target["event_id"],
           "channel": channel or target["channel"],
           "amount_idr": amount, "quantity": quantity, "occurred_at": _at(day, 0)}
    if out["channel"] == "offline" and "booth_id" in target:
        out["booth_id"] = target["booth_id"]
    return out


def build_stream(program: Sequence[tuple[int, int, tuple[int, ...]]],
                 registry: Registry) -> list[Record]:
    """Interpret drawn ops as ``(key, value)`` records in send order."""
    out: list[Record] = []
    sales: list[dict[str, Any]] = []     # every valid sale sent (refund targets)
    refunds: list[dict[str, Any]] = []
    serial = iter(range(1_000_000))

    def emit(obj: dict[str, Any]) -> None:
        out.append((obj["ikm_id"].encode(), _encode(obj)))  # key = ikm_id

    for kind, variant, values in program:
        # ``variant`` picks the flavour of the op (refund mode, rejection reason, ...).
        op, c = OPS[kind], Choices(values)
        if not sales and op != "invalid":
            op = "sale"  # nothing to refund, resend or reuse yet
        if op == "sale":
            sale = _valid_sale(c, registry, f"s{next(serial)}")
            sales.append(sale)
            emit(sale)
        elif op == "refund":
            target = c.pick(sales[::-1])  # the latest sale is the simplest target
            a, q = target["amount_idr"], target["quantity"]
            mode = ("full", "partial", "partial", "exceed_amount", "exceed_quantity")[variant % 5]
            if mode == "full":
                amount, qty = a, q
            elif mode == "partial":
                amount, qty = c.int(1, a), c.int(0, q)
            elif mode == "exceed_amount":
                amount, qty = a + c.int(1, 1_000), q
            else:
                amount, qty = a, q + 1
            refund = _refund(target, f"r{next(serial)}", amount, qty,
                             c.pick(DAYS[target["event_id"]]))
            refunds.append(refund)
            emit(refund)
        elif op == "bad_refund":
            target = c.pick(sales[::-1])
            how = ("unknown", "of_refund", "other_ikm", "other_event", "other_channel")[variant % 5]
            refund = _refund(target, f"r{next(serial)}", 1, 0, SHARED_DAY, "website")
            if how == "other_channel":
                # Through a channel other than its sale's (only the apply can tell).
                refund = _refund(target, refund["sale_id"], 1, 0, SHARED_DAY,
                                 c.pick([ch for ch in CHANNELS[:3] if ch != target["channel"]]))
            if how == "unknown":
                refund["refund_of"] = f"ghost{next(serial)}"
            elif how == "of_refund" and refunds:
                victim = c.pick(refunds[::-1])
                refund.update(refund_of=victim["sale_id"], ikm_id=victim["ikm_id"],
                              event_id=victim["event_id"])
            elif how == "other_ikm":
                refund["ikm_id"] = c.pick([i for i in IKMS if i != target["ikm_id"]])
            elif how == "other_event":
                refund["event_id"] = KOKAS if target["event_id"] == ROOT else ROOT
            refunds.append(refund)
            emit(refund)
        elif op == "resend":
            # The same bytes again at a later offset (a booth that resends).
            out.append(c.pick(out[::-1]))
        elif op == "conflict":
            prior = dict(c.pick((sales + refunds)[::-1]))
            change = ("amount", "ikm", "harmless")[variant % 3]
            if change == "amount":
                prior["amount_idr"] += 1
            elif change == "ikm":
                prior["ikm_id"] = c.pick([i for i in IKMS if i != prior["ikm_id"]])
                if prior["channel"] == "offline":
                    prior["booth_id"] = "kokas-kasir"
            else:
                # Only ikm, event, amount, kind and refund_of identify a sale: a resend
                # with another sku, quantity or time is still the same sale.
                prior["sku"] = "sku-resent"
                if prior["kind"] == "sale":
                    prior["quantity"] += 1
            emit(prior)
        else:
            out.append(_invalid(c, INVALID[variant % len(INVALID)], registry,
                                f"bad{next(serial)}"))
    return out


def sale_streams(registry: Registry, max_size: int = 60) -> st.SearchStrategy[list[Record]]:
    """``(key, value)`` records in send order (see the module docstring)."""
    return sized_lists(ops, 1, max_size).map(lambda program: build_stream(program, registry))


def _invalid(c: Choices, reason: str, registry: Registry, sale_id: str) -> Record:
    base = _valid_sale(c, registry, sale_id)
    key = base["ikm_id"].encode()
    if reason == "malformed_json":
        return key, b'{"sale_id": "' + sale_id.encode() + b'", '
    if reason == "not_an_object":
        return key, b"[1, 2, 3]"
    if reason == "tombstone":
        return key, None
    if reason == "non_positive_amount":
        base["amount_idr"] = c.pick((0, -5_000))
    elif reason == "unknown_channel":
        base["channel"] = "fax"
    elif reason == "outside_event_window":
        base["occurred_at"] = c.pick((
            "2022-06-18T10:00:00+07:00" if base["event_id"] == ROOT else "2022-06-07T10:00:00+07:00",
            # 17:30 UTC on the last day is 00:30 WIB the next day.
            "2022-06-17T17:30:00Z" if base["event_id"] == ROOT else "2022-06-06T17:30:00Z"))
    elif reason == "booth_required":
        base.update(channel="offline", event_id=KOKAS, occurred_at=_at(SHARED_DAY, 0))
        base.pop("booth_id", None)
    elif reason == "booth_not_allowed":
        other = next(i for i in IKMS if i != base["ikm_id"])
        booth = next(b for b in _booths(registry, other) if b != "kokas-kasir")
        base.update(channel="offline", booth_id=booth, occurred_at=_at(SHARED_DAY, 0),
                    event_id=c.pick(EVENTS))
        if base["event_id"] == ROOT:
            base["booth_id"] = "kokas-kasir"  # a kokas booth may not post in the programme
    elif reason == "unknown_event":
        base["event_id"] = "lagawi-2099"
    elif reason == "key_mismatch":
        key = next(i for i in IKMS if i != base["ikm_id"]).encode()
    elif reason == "unknown_ikm":
        base["ikm_id"] = "bukan-ikm"
        key = b"bukan-ikm"
    elif reason == "amount_too_large":
        base["amount_idr"] = registry.events[base["event_id"]].max_sale_idr + 1
    elif reason == "bad_timestamp":
        base["occurred_at"] = "2022-06-03 10:00"
    elif reason == "refund_without_target":
        base["kind"] = "refund"
    elif reason == "wrong_type":
        base["amount_idr"] = str(base["amount_idr"])
    return key, _encode(base)


def partition_of(key: bytes | None) -> int:
    return 0 if key is None else zlib.crc32(key) % PARTITIONS


def place(records: list[Record], topic: str) -> list[list[ConsumedRecord]]:
    """Records on their partitions (by key), offsets growing per partition from 0."""
    parts: list[list[ConsumedRecord]] = [[] for _ in range(PARTITIONS)]
    for key, value in records:
        p = partition_of(key)
        parts[p].append(ConsumedRecord(topic, p, len(parts[p]), key, value, 0))
    return parts


@dataclass(frozen=True)
class Delivery:
    """One batch handed to the apply, and what happens to the consumer after it."""

    records: tuple[ConsumedRecord, ...]
    #: Apply only the first ``cut`` groups of the plan, then crash (None: the whole plan).
    cut: int | None = None
    #: After the apply: commit these partitions' positions, or crash (rewind to the commits).
    commit: tuple[int, ...] = ()
    crash: bool = False


FATES: Final = ("go", "commit", "crash", "crash_mid_batch")
MAX_BATCH: Final = 12
#: One consumer step: batch size, three (partition pick, count) chunks, fate, commit mask, cut.
steps = sized_lists(st.tuples(
    st.integers(1, MAX_BATCH),
    st.tuples(*[st.tuples(st.integers(0, 2), st.integers(1, MAX_BATCH))] * 3),
    st.integers(0, len(FATES) - 1), st.integers(0, 2**PARTITIONS - 1), st.integers(0, 1),
), 0, 30)

Step = tuple[int, tuple[tuple[int, int], ...], int, int, int]


def deliveries(parts: list[list[ConsumedRecord]], program: Sequence[Step],
               max_crashes: int = 5) -> list[Delivery]:
    """How an at-least-once consumer that crashes now and then delivers ``parts``.

    Each step polls a batch (chunks of the partitions in the step's order, filled
    up from the others), applies it, then goes on, commits some partitions, or
    crashes: after the apply, or after only ``cut`` groups of it; the consumer
    then resumes from the committed positions. When the steps run out, the rest
    is delivered without crashes, so every record is applied in the end.
    """
    pos = [0] * len(parts)
    committed = [0] * len(parts)
    crashes = 0
    out: list[Delivery] = []

    def poll(size: int, chunks: Sequence[tuple[int, int]]) -> tuple[ConsumedRecord, ...]:
        batch: list[ConsumedRecord] = []
        for pick, count in (*chunks, *((p, MAX_BATCH) for p in range(len(parts)))):
            ready = [p for p in range(len(parts)) if pos[p] < len(parts[p])]
            if not ready or len(batch) >= size:
                break
            p = ready[pick % len(ready)]
            chunk = parts[p][pos[p]:pos[p] + min(count, size - len(batch))]
            batch += chunk
            pos[p] += len(chunk)
        return tuple(batch)

    def pending() -> bool:
        return any(pos[p] < len(parts[p]) for p in range(len(parts)))

    for size, chunks, fate_i, mask, cut in program:
        if not pending():
            break
        batch = poll(size, chunks)
        fate = FATES[fate_i]
        if fate.startswith("crash") and crashes < max_crashes:
            crashes += 1
            out.append(Delivery(batch, cut=cut if fate == "crash_mid_batch" else None,
                                crash=True))
            pos = list(committed)
        elif fate == "go":
            out.append(Delivery(batch))
        else:
            which = tuple(p for p in range(len(parts)) if mask >> p & 1)
            for p in which:
                committed[p] = pos[p]
            out.append(Delivery(batch, commit=which))
    while pending():
        out.append(Delivery(poll(MAX_BATCH, ())))
    return out
