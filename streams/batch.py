"""Batch planning: consumed records in, one Lua call per event tree out. Pure, no I/O.

A batch of sales-topic records is validated with :func:`rekap.contract.parse_sale`
and split by the *root* of each record's event (:meth:`Registry.root`): every key
of one tree shares a Redis hash tag, so each tree is applied by one atomic script
call (:mod:`streams.apply`). The plan for a tree is its :class:`RootGroup`: the
records in consumption order, the ``KEYS`` list (built only with
:class:`rekap.names.Keys`) and the ``ARGV`` tail the script reads.

Where each record goes
----------------------
* a valid sale or refund → the group of its event's root, with the event chain
  (event and every ancestor) its totals roll up into;
* an invalid record whose ``event_id`` is still a registered event → that root's
  group, marked rejected: the script fences it and counts ``rejected:<reason>``
  in the tree's ``stats`` atomically with the tree's fence;
* an invalid record with no resolvable root (bad JSON, unknown event, …) → the
  pseudo-root :data:`UNROUTED` (keys under the tag ``{_unrouted}``), whose group
  only fences and counts.

So every record belongs to exactly one group, is fenced exactly once, and the
ledger identity holds per tree: records = applied + duplicate:sale_id + rejected
(``duplicate:offset`` counts re-deliveries of records already counted).
Validation rejections are also listed in :attr:`BatchPlan.rejections` for the
dead-letter topic.

ARGV of one group (the apply prepends ``as_of`` as ``ARGV[1]``)::

    ARGV[2] topic   ARGV[3] ticker length   ARGV[4] E = number of events
    ARGV[5] P = number of (event, ikm) pairs   ARGV[6] N = number of records
    then N × RECORD_ARGS values per record, in this order:
      partition, offset, op ('s' sale | 'r' refund | 'x' rejected before Redis),
      sale_id, ikm_id, event_id, channel, day (YYYY-MM-DD, local), amount_idr,
      quantity, refund_of ('' if none), chain event indexes (csv, 0-based),
      chain pair indexes (csv, parallel), ticker JSON (or the reason for 'x'),
      occurred_at

KEYS of one group::

    1 fence  2 stats  3 sales  4 rejects
    5 + 4e … 8 + 4e      event e: totals, days, board, ticker
    5 + 4E + 2i, +1      pair i (event, ikm): totals, days
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from rekap.contract import Reason, Rejection, Sale, parse_sale
from rekap.names import TICKER_LENGTH, Keys
from rekap.registry import Registry

#: The pseudo-root of records whose event cannot be resolved.
UNROUTED: Final = "_unrouted"
#: Values per record in ARGV (see the module docstring).
RECORD_ARGS: Final = 15
#: ARGV values before the first record, ``as_of`` included.
HEADER_ARGS: Final = 6
#: Fields of a packed record in the ``sales`` hash (field ``<ikm_id>|<sale_id>``), joined by ``|``
#: (ids never hold ``|``).
#: ``channel`` and ``day`` of a refund are those of the sale it refunds (where it was booked).
SALE_RECORD_FIELDS: Final = ("ikm_id", "event_id", "channel", "day", "amount_idr", "quantity",
                             "refunded_idr", "refunded_quantity", "kind", "refund_of")


@dataclass(frozen=True)
class ConsumedRecord:
    """One record as read from the sales topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None

    @property
    def coordinates(self) -> str:
        """``<topic>/<partition>/<offset>``: the dead-letter key and the ``rejects`` field."""
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class PlannedRecord:
    record: ConsumedRecord
    sale: Sale | None = None
    rejection: Rejection | None = None


@dataclass
class RootGroup:
    """Everything the script needs for one tree of one batch."""

    root: str
    records: list[PlannedRecord]
    events: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    keys: list[str]
    argv: list[str]
    #: Totals hash key of each event in :attr:`events`, and of each pair in :attr:`pairs`.
    event_totals_keys: dict[str, str] = field(default_factory=dict)
    ikm_totals_keys: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class BatchPlan:
    groups: list[RootGroup]
    #: Validation rejections (before Redis), in consumption order.
    rejections: list[tuple[ConsumedRecord, Rejection]]
    size: int


def resolve_root(record: ConsumedRecord, registry: Registry) -> str:
    """The root of a record's ``event_id`` if it names a registered event, else :data:`UNROUTED`."""
    try:
        data = json.loads(record.value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return UNROUTED
    event_id = data.get("event_id") if isinstance(data, dict) else None
    if isinstance(event_id, str) and event_id in registry.events:
        return registry.root(event_id)
    return UNROUTED


def classify(record: ConsumedRecord, registry: Registry) -> tuple[str, PlannedRecord]:
    """Validate one record and find its root; never raises on bad input."""
    if record.value is None:
        return UNROUTED, PlannedRecord(record, rejection=Rejection(
            Reason.NOT_AN_OBJECT, "record has no value (a tombstone)"))
    result = parse_sale(record.value, registry, record.key)
    if isinstance(result, Sale):
        return registry.root(result.event_id), PlannedRecord(record, sale=result)
    return resolve_root(record, registry), PlannedRecord(record, rejection=result)


#: One encoder for every ticker entry (``json.dumps`` with options builds a new one per call).
_encode_ticker = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def ticker_entry(sale: Sale, occurred_at: str | None = None) -> str:
    return _encode_ticker({
        "sale_id": sale.sale_id, "kind": sale.kind, "ikm_id": sale.ikm_id,
        "event_id": sale.event_id, "channel": sale.channel, "amount_idr": sale.amount_idr,
        "quantity": sale.quantity,
        "occurred_at": sale.occurred_at.isoformat() if occurred_at is None else occurred_at,
    })


def plan_batch(records: Iterable[ConsumedRecord], registry: Registry, keys: Keys,
               ticker_length: int = TICKER_LENGTH) -> BatchPlan:
    """Group ``records`` (in consumption order) by root and build each group's KEYS and ARGV."""
    by_root: dict[str, list[PlannedRecord]] = {}
    rejections: list[tuple[ConsumedRecord, Rejection]] = []
    size = 0
    for record in records:
        size += 1
        root, planned = classify(record, registry)
        by_root.setdefault(root, []).append(planned)
        if planned.rejection is not None:
            rejections.append((record, planned.rejection))
    groups = [build_group(root, planned, registry, keys, ticker_length)
              for root, planned in by_root.items()]
    return BatchPlan(groups=groups, rejections=rejections, size=size)


def build_group(root: str, planned: Sequence[PlannedRecord], registry: Registry, keys: Keys,
                ticker_length: int = TICKER_LENGTH) -> RootGroup:
    topics = {p.record.topic for p in planned}
    if len(topics) != 1:
        raise ValueError(f"a group reads one topic, got {sorted(topics)}")
    topic = topics.pop()
    event_index: dict[str, int] = {}
    pair_index: dict[tuple[str, str], int] = {}
    # (event_id, ikm_id) -> the two csv index lists of its chain; few distinct per batch.
    chain_csv: dict[tuple[str, str], tuple[str, str]] = {}
    record_args: list[str] = []
    extend = record_args.extend
    for p in planned:
        r = p.record
        sale = p.sale
        if sale is None:
            assert p.rejection is not None
            extend((str(r.partition), str(r.offset), "x", "", "", "", "", "", "0", "0", "",
                    "", "", str(p.rejection.reason), ""))
            continue
        slot = (sale.event_id, sale.ikm_id)
        csv = chain_csv.get(slot)
        if csv is None:
            chain = registry.chain(sale.event_id)
            ev_idx = [event_index.setdefault(e, len(event_index)) for e in chain]
            pr_idx = [pair_index.setdefault((e, sale.ikm_id), len(pair_index)) for e in chain]
            csv = chain_csv[slot] = (",".join(map(str, ev_idx)), ",".join(map(str, pr_idx)))
        occurred_at = sale.occurred_at.isoformat()
        extend((
            str(r.partition), str(r.offset), "s" if sale.kind == "sale" else "r", sale.sale_id,
            sale.ikm_id, sale.event_id, sale.channel, sale.day.isoformat(), str(sale.amount_idr),
            str(sale.quantity), sale.refund_of or "", csv[0], csv[1],
            ticker_entry(sale, occurred_at), occurred_at,
        ))
    events = tuple(event_index)
    pairs = tuple(pair_index)
    key_list = [keys.fence(root, topic), keys.stats(root), keys.sales(root), keys.rejects(root)]
    for e in events:
        key_list += [keys.event_totals(root, e), keys.event_days(root, e), keys.board(root, e),
                     keys.ticker(root, e)]
    for e, i in pairs:
        key_list += [keys.ikm_totals(root, e, i), keys.ikm_days(root, e, i)]
    argv = [topic, str(ticker_length), str(len(events)), str(len(pairs)), str(len(planned))]
    argv += record_args
    return RootGroup(
        root=root, records=list(planned), events=events, pairs=pairs, keys=key_list, argv=argv,
        event_totals_keys={e: keys.event_totals(root, e) for e in events},
        ikm_totals_keys={(e, i): keys.ikm_totals(root, e, i) for e, i in pairs})
