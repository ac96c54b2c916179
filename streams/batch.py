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

Every tree's fence also moves past the records of *other* trees: a batch
names the highest offset it holds of each partition (:attr:`BatchPlan.partitions`)
and every group's script call advances its fence to it. Trees with no record in
the batch get a fence-only group (``fence_roots``), so after each applied batch
all trees' fences agree, and the lowest fence of a partition over all trees is
where the ledger must resume (:mod:`streams.progress`).

ARGV of one group (the apply prepends ``as_of`` as ``ARGV[1]``; ``ARGV[8]``, the
partitions' expected and new fences, is added at apply time too)::

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

from rekap.contract import Reason, Rejection, Sale, decode_object, sale_from_object
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
    #: Highest offset of each partition in the batch: every group's fence advances to it.
    partitions: dict[int, int] = field(default_factory=dict)
    #: Lowest offset of each partition in the batch: Redis must hold everything below it.
    starts: dict[int, int] = field(default_factory=dict)
    #: What the plan was made with, so a group can be planned again in parts.
    registry: Registry | None = None
    ticker_length: int = TICKER_LENGTH


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
               ticker_length: int = TICKER_LENGTH, fence_roots: Iterable[str] = ()) -> BatchPlan:
    """Group ``records`` (in consumption order) by root and build each group's KEYS and ARGV.

    ``fence_roots``: trees that get a group even without a record of this batch,
    so that their fences advance with the others (the worker passes every known
    tree; see the module docstring).
    """
    by_root: dict[str, list[PlannedRecord]] = {}
    rejections: list[tuple[ConsumedRecord, Rejection]] = []
    partitions: dict[int, int] = {}
    starts: dict[int, int] = {}
    topic = ""
    size = 0
    for record in records:
        size += 1
        topic = record.topic
        if record.offset > partitions.get(record.partition, -1):
            partitions[record.partition] = record.offset
        starts.setdefault(record.partition, record.offset)
        try:
            root, planned = classify(record, registry)
        except Exception as exc:  # a bug, not the input: it costs this record only
            root, planned = UNROUTED, PlannedRecord(record, rejection=internal_error(exc))
        by_root.setdefault(root, []).append(planned)
        if planned.rejection is not None:
            rejections.append((record, planned.rejection))
    if size:
        for root in fence_roots:
            by_root.setdefault(root, [])
    groups = [build_group(root, planned, registry, keys, ticker_length, topic=topic)
              for root, planned in by_root.items()]
    return BatchPlan(groups=groups, rejections=rejections, size=size, partitions=partitions,
                     starts=starts, registry=registry, ticker_length=ticker_length)


def internal_error(exc: BaseException) -> Rejection:
    """The rejection of a record that made rekap itself fail (a bug): reason and exception text."""
    return Rejection(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:500])


def build_group(root: str, planned: Sequence[PlannedRecord], registry: Registry, keys: Keys,
                ticker_length: int = TICKER_LENGTH, *, topic: str | None = None) -> RootGroup:
    """The script call of one tree: its records' fields packed, its KEYS listed.

    A record whose packing raises (a bug) is packed as rejected with
    ``internal_error`` instead, so it cannot cost the others their place.
    """
    topics = {p.record.topic for p in planned} | ({topic} if topic else set())
    if len(topics) != 1:
        raise ValueError(f"a group reads one topic, got {sorted(topics)}")
    topic = topics.pop()
    planned = list(planned)
    event_index: dict[str, int] = {}
    pair_index: dict[tuple[str, str], int] = {}
    # (event_id, ikm_id) -> the two csv index lists of its chain; few distinct per batch.
    chain_csv: dict[tuple[str, str], tuple[str, str]] = {}
    record_args: list[str] = []
    extend = record_args.extend
    for i, p in enumerate(planned):
        r = p.record
        sale = p.sale
        if sale is not None:
            try:
                slot = (sale.event_id, sale.ikm_id)
                csv = chain_csv.get(slot)
                if csv is None:
                    chain = registry.chain(sale.event_id)
                    ev_idx = [event_index.setdefault(e, len(event_index)) for e in chain]
                    pr_idx = [pair_index.setdefault((e, sale.ikm_id), len(pair_index))
                              for e in chain]
                    csv = chain_csv[slot] = (",".join(map(str, ev_idx)),
                                             ",".join(map(str, pr_idx)))
                occurred_at = sale.occurred_at.isoformat()
                extend((
                    str(r.partition), str(r.offset), "s" if sale.kind == "sale" else "r",
                    sale.sale_id, sale.ikm_id, sale.event_id, sale.channel, sale.day.isoformat(),
                    str(sale.amount_idr), str(sale.quantity), sale.refund_of or "", csv[0],
                    csv[1], ticker_entry(sale, occurred_at), occurred_at,
                ))
                continue
            except Exception as exc:  # a bug, not the input: reject this record only
                p = planned[i] = PlannedRecord(r, rejection=internal_error(exc))
        assert p.rejection is not None
        extend((str(r.partition), str(r.offset), "x", "", "", "", "", "", "0", "0", "",
                "", "", str(p.rejection.reason), ""))
    events = tuple(event_index)
    pairs = tuple(pair_index)
    key_list = [keys.fence(root, topic), keys.stats(root), keys.sales(root), keys.rejects(root)]
    for e in events:
        key_list += [keys.event_totals(root, e), keys.event_days(root, e), keys.board(root, e),
                     keys.ticker(root, e)]
    for e, ikm in pairs:
        key_list += [keys.ikm_totals(root, e, ikm), keys.ikm_days(root, e, ikm)]
    argv = [topic, str(ticker_length), str(len(events)), str(len(pairs)), str(len(planned))]
    argv += record_args
    return RootGroup(
        root=root, records=planned, events=events, pairs=pairs, keys=key_list, argv=argv,
        event_totals_keys={e: keys.event_totals(root, e) for e in events},
        ikm_totals_keys={(e, ikm): keys.ikm_totals(root, e, ikm) for e, ikm in pairs})
