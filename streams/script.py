"""The wire codec of ``lua/apply_batch.lua``: what goes into a call and what comes back.

The one place the script's argument layout is named, and the layout of the
de-dup entries it keeps. Python packs records with :func:`pack_sale` and
:func:`pack_rejected` in the order of :data:`RECORD_FIELDS`; the script reads
them by the same names, because :func:`script_source` writes the layout into
the script as Lua constants (``R_SALE_ID``, ``E_DAY``, ``S_AMOUNT_IDR``, …)
where its ``-- @layout`` line stands. Change a tuple here and both sides move.

KEYS of one call (built by :func:`streams.batch.build_group`)::

    fence, stats, rejects, then per event its totals, days, board and ticker,
    then per (event, ikm) pair its totals and days, then the de-dup buckets
    (``P:{R}:dedup:<b>``) the records' ``sale_bucket``/``target_bucket`` index.

ARGV of one call::

    ARGV[1] as_of   ARGV[2] topic   ARGV[3] ticker length
    ARGV[4] E = number of events   ARGV[5] P = number of (event, ikm) pairs
    ARGV[6] N = number of records
    ARGV[7] the records: one JSON array of N × len(RECORD_FIELDS) strings
    ARGV[8] the fences: one JSON array, three strings per partition of the batch
            (partition, expected fence, batch end)

The reply is one JSON document: ``[[outcome, detail, ...], [totals of event
0..E-1 as HGETALL arrays], [totals of pair 0..P-1], [partition, fence, ...]]``,
or ``{"lost": [partition, fence, ...]}`` when a fence fell below the expected one.

De-dup entries
--------------
Each booked record leaves one entry in its tree's de-dup buckets
(:func:`rekap.names.dedup_slot` gives the bucket and the field); the value is
bytes, as small as the ledger rules allow, because there is one per sale
forever::

    sale    event code (4) | channel code (1) | local day (3)
            | "amount_idr,quantity,refunded_idr,refunded_quantity"
    refund  event code (4) | REFUND_CODE (1)  | fingerprint of amount and refund_of (4)

* the *event code* (:func:`event_code`) answers "same event?" for a resend and a
  refund; :func:`tree_event_codes` finds events of one tree that share one, whose
  records are then rejected (``internal_error``) rather than packed, so the
  answer is exact;
* the channel letter and the day (``date.toordinal()``, 3 bytes big-endian:
  every date Python has) are where a refund of the sale is booked; the script
  turns them back into the same ``channel`` and ``YYYY-MM-DD`` strings, and
  rejects a refund whose own ``channel`` (R_CHANNEL) is another
  (``refund_mismatch``: a refund comes through its sale's channel);
* the sale's numbers are what refunds are checked against and add up to;
* a refund is never a refund target, so it keeps only what tells a resend from
  a conflict. Its fingerprint is 4 bytes of a hash: a refund resent under the
  same sale_id with another amount or refund_of is told apart from an identical
  resend except with odds of 2**-32, and either way nothing is booked.

Python builds every entry (:func:`sale_entry`) and its field; the script only
compares entries and rewrites a sale's refunded numbers. Binary values travel
in the JSON of ARGV[7] as hex, which the script decodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib.resources import files
from typing import Final

import orjson

from rekap.contract import Sale
from rekap.errors import RedisLostWrites
from rekap.names import Channel
from rekap.registry import Registry

SCRIPT_NAME: Final = "apply_batch.lua"

#: Fields of one packed record in ARGV[7], in order. ``op`` is 's' (sale), 'r' (refund) or
#: 'x' (rejected before Redis, ``ticker`` then holds the reason); ``day`` is the local day
#: (YYYY-MM-DD); ``chain_events``/``chain_pairs`` are the csv indexes (0-based) of the event
#: chain's events and (event, ikm) pairs in KEYS. ``sale_bucket`` and ``target_bucket`` are
#: the indexes (0-based) among the call's de-dup buckets in KEYS of the bucket of the
#: record's own entry and of its refund target's ('' for a sale); ``sale_digest`` and
#: ``target_digest`` are those entries' fields and ``entry`` is the entry the record is
#: booked under, all three in hex.
RECORD_FIELDS: Final = ("partition", "offset", "op", "sale_id", "ikm_id", "event_id", "channel",
                        "day", "amount_idr", "quantity", "refund_of", "chain_events",
                        "chain_pairs", "ticker", "occurred_at", "sale_bucket", "sale_digest",
                        "target_bucket", "target_digest", "entry")

#: The fixed head of a sale's de-dup entry: (part, bytes), in order. A refund's entry
#: shares ``event`` and ``kind`` and then holds its fingerprint (see the module docstring).
SALE_HEAD: Final = (("event", 4), ("kind", 1), ("day", 3))
#: The decimal numbers after a sale entry's head, joined by ``,``.
SALE_NUMBERS: Final = ("amount_idr", "quantity", "refunded_idr", "refunded_quantity")
#: Bytes of a refund's fingerprint (after ``event`` and ``kind``).
REFUND_FINGERPRINT_BYTES: Final = 4
#: Where each part of SALE_HEAD lies in an entry, and where a sale's numbers start.
_HEAD: Final = {name: slice(sum(w for _, w in SALE_HEAD[:i]), sum(w for _, w in SALE_HEAD[:i + 1]))
                for i, (name, _) in enumerate(SALE_HEAD)}
_NUMBERS_AT: Final = sum(w for _, w in SALE_HEAD)

#: The ``kind`` byte of a sale entry: its channel. Stored in Redis, so a letter is never
#: changed or reused; a new channel gets a new one (not :data:`REFUND_CODE`).
CHANNEL_CODES: Final[Mapping[Channel, str]] = {
    "offline": "o", "marketplace": "m", "virtual_expo": "v", "website": "w"}
#: The ``kind`` byte of a refund entry.
REFUND_CODE: Final = "r"

#: ARGV values before the records: as_of, topic, ticker length, E, P, N.
HEADER_ARGS: Final = 6

_LAYOUT_MARKER = "-- @layout"


def _lua_constants() -> str:
    lines = ["-- Generated by streams/script.py from RECORD_FIELDS, SALE_HEAD, SALE_NUMBERS and "
             "CHANNEL_CODES.",
             f"local NF = {len(RECORD_FIELDS)}"]
    lines += [f"local R_{name.upper()} = {i}" for i, name in enumerate(RECORD_FIELDS, 1)]
    start = 1
    for name, width in SALE_HEAD:
        lines += [f"local E_{name.upper()} = {start}",
                  f"local E_{name.upper()}_END = {start + width - 1}"]
        start += width
    lines.append(f"local E_NUMBERS = {start}")
    lines += [f"local S_{name.upper()} = {i}" for i, name in enumerate(SALE_NUMBERS, 1)]
    lines.append(f'local REFUND_CODE = "{REFUND_CODE}"')
    lines.append("local CHANNEL_OF_CODE = { "
                 + ", ".join(f'{code} = "{ch}"' for ch, code in CHANNEL_CODES.items()) + " }")
    return "\n".join(lines)


@cache
def script_source() -> str:
    """The script's text with the layout constants in place of its ``-- @layout`` line."""
    text = files("streams").joinpath("lua", SCRIPT_NAME).read_text(encoding="utf-8")
    if text.count(_LAYOUT_MARKER + "\n") != 1:
        raise RuntimeError(f"{SCRIPT_NAME} must hold exactly one '{_LAYOUT_MARKER}' line")
    return text.replace(_LAYOUT_MARKER + "\n", _lua_constants() + "\n")


@cache
def event_code(event_id: str) -> bytes:
    """The 4 bytes that stand for ``event_id`` in de-dup entries."""
    return hashlib.blake2b(event_id.encode(), digest_size=_HEAD["event"].stop).digest()


@dataclass(frozen=True)
class TreeEventCodes:
    """The event codes of one tree (:func:`tree_event_codes`)."""

    root: str
    codes: Mapping[str, bytes]
    #: event -> another event of the tree with the same code.
    shared: Mapping[str, str]

    def of(self, event_id: str) -> bytes:
        """``event_id``'s code; :class:`ValueError` if another event of the tree shares it.

        Two events with one code could not be told apart by the script (a refund of
        a sale of the other would pass as "same event"), so their records are not
        packed at all until one is renamed. Other events' records are unaffected:
        their codes differ from both.
        """
        other = self.shared.get(event_id)
        if other is not None:
            raise ValueError(f"events {other!r} and {event_id!r} of tree {self.root!r} share the "
                             f"de-dup code {event_code(event_id).hex()}: rename one of them in "
                             "the registry")
        return self.codes[event_id]


def tree_event_codes(registry: Registry, root: str) -> TreeEventCodes:
    """The event code of every event of tree ``root``, and which of them share one
    (about one registry in 10**6 with 100 events in a tree)."""
    codes: dict[str, bytes] = {}
    first: dict[bytes, str] = {}
    shared: dict[str, str] = {}
    for event_id in registry.events:
        if registry.root(event_id) != root:
            continue
        code = codes[event_id] = event_code(event_id)
        other = first.setdefault(code, event_id)
        if other != event_id:
            shared[event_id] = other
            shared.setdefault(other, event_id)
    return TreeEventCodes(root, codes, shared)


def sale_entry(sale: Sale, event: bytes) -> bytes:
    """The de-dup entry ``sale`` is booked under (a refund's with its fingerprint)."""
    if sale.kind == "refund":
        fingerprint = hashlib.blake2b(f"{sale.amount_idr}|{sale.refund_of}".encode(),
                                      digest_size=REFUND_FINGERPRINT_BYTES).digest()
        return event + REFUND_CODE.encode() + fingerprint
    day = sale.day.toordinal().to_bytes(_NUMBERS_AT - _HEAD["day"].start, "big")
    numbers = f"{sale.amount_idr},{sale.quantity},0,0"
    return event + CHANNEL_CODES[sale.channel].encode() + day + numbers.encode()


@dataclass(frozen=True)
class Entry:
    """A de-dup entry read back (:func:`read_entry`); the numbers are a sale's only."""

    event: bytes
    kind: str
    channel: Channel | None
    day: date | None
    numbers: dict[str, int]


def read_entry(raw: bytes) -> Entry:
    """Decode a de-dup entry, for inspection and tests (the script reads them itself)."""
    event, code = raw[_HEAD["event"]], raw[_HEAD["kind"]].decode()
    if code == REFUND_CODE:
        return Entry(event, "refund", None, None, {})
    channel = next(ch for ch, c in CHANNEL_CODES.items() if c == code)
    numbers = raw[_NUMBERS_AT:].decode().split(",")
    return Entry(event, "sale", channel, date.fromordinal(int.from_bytes(raw[_HEAD["day"]], "big")),
                 dict(zip(SALE_NUMBERS, map(int, numbers), strict=True)))


#: A record's de-dup entry as :func:`pack_sale` takes it: (index of its bucket among the
#: call's buckets, field).
Slot = tuple[int, bytes]


def pack_sale(partition: int, offset: int, sale: Sale, chain_events: str, chain_pairs: str,
              ticker: str, occurred_at: str, slot: Slot, target: Slot | None,
              event: bytes) -> tuple[str, ...]:
    """A valid sale or refund's fields, in :data:`RECORD_FIELDS` order.

    ``slot`` locates the record's own de-dup entry, ``target`` its refund target's
    (None for a sale); ``event`` is its event's :func:`event_code`.
    """
    return (str(partition), str(offset), "s" if sale.kind == "sale" else "r", sale.sale_id,
            sale.ikm_id, sale.event_id, sale.channel, sale.day.isoformat(), str(sale.amount_idr),
            str(sale.quantity), sale.refund_of or "", chain_events, chain_pairs, ticker,
            occurred_at, str(slot[0]), slot[1].hex(),
            "" if target is None else str(target[0]), "" if target is None else target[1].hex(),
            sale_entry(sale, event).hex())


def pack_rejected(partition: int, offset: int, reason: str) -> tuple[str, ...]:
    """A record rejected before Redis, in :data:`RECORD_FIELDS` order: fenced and counted only."""
    return (str(partition), str(offset), "x", "", "", "", "", "", "0", "0", "", "", "", reason, "",
            "", "", "", "", "")


def _encode(values: Sequence[str]) -> str:
    # Every value is a string, so cjson in the script gives back exactly these strings.
    return orjson.dumps(values).decode()


def fence_args(root: str, partitions: Mapping[int, int],
               expected: Mapping[tuple[str, int], int]) -> str:
    """ARGV[8] for tree ``root``: partition, expected fence (-1 if unknown), batch end — for
    every partition of the batch. ``expected`` maps (root, partition) to a fence."""
    flat: list[str] = []
    for partition, end in partitions.items():
        flat += [str(partition), str(expected.get((root, partition), -1)), str(end)]
    return _encode(flat)


NO_FENCES: Final = "[]"


def wire_args(header: Sequence[str], records: Sequence[str], as_of: str,
              fences: str = NO_FENCES) -> list[str | bytes]:
    """The script's ARGV from a group's header (topic, ticker length, E, P, N) and packed records.

    The records travel as one JSON value instead of one ARGV value per field:
    redis-py packs each ARGV value in Python, the JSON array is encoded in C (as bytes,
    which redis-py sends as they are).
    """
    return [as_of, *header, orjson.dumps(records), fences]


@dataclass(frozen=True)
class Reply:
    """The script's reply, decoded: flat (outcome, detail) pairs, totals per event and per
    pair as field → value, and each partition's fence after the call."""

    outcomes: list[str]
    event_totals: list[dict[str, str]]
    pair_totals: list[dict[str, str]]
    fences: dict[int, int]


def decode_reply(raw: bytes | str, root: str, n_events: int, n_pairs: int) -> Reply:
    """Read one reply; :class:`RedisLostWrites` if the script found a fence below the expected."""
    doc = orjson.loads(raw)
    if isinstance(doc, dict):
        lost = doc["lost"]
        raise RedisLostWrites({(root, int(p)): int(f)
                               for p, f in zip(lost[::2], lost[1::2], strict=True)})
    flat, ev_totals, pair_totals, fences = doc
    # cjson encodes an empty Lua table as an object.
    fences = fences or []
    return Reply(
        outcomes=flat or [],
        event_totals=[_pairs(v) for v in ev_totals] if ev_totals else [{}] * n_events,
        pair_totals=[_pairs(v) for v in pair_totals] if pair_totals else [{}] * n_pairs,
        fences={int(p): int(f) for p, f in zip(fences[::2], fences[1::2], strict=True)})


def _pairs(flat: list[str] | dict[str, str]) -> dict[str, str]:
    # An empty HGETALL reply comes back from cjson as {}.
    if isinstance(flat, dict):
        return {}
    return dict(zip(flat[::2], flat[1::2], strict=True))
