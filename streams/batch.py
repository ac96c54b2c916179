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

The layout of KEYS and ARGV, and the packing of each record, are
:mod:`streams.script`'s. KEYS of one group: fence, stats, rejects, then per
event of the group its totals, days, board and ticker, then per (event, ikm)
pair its totals and days, then the de-dup buckets its records' entries and
refund targets fall in (:func:`rekap.names.dedup_slot`), so that the script
touches no key it was not given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import orjson

from rekap.contract import Rejection, Sale
from rekap.names import TICKER_LENGTH, Keys, dedup_slot
from rekap.records import UNROUTED, ConsumedRecord, PlannedRecord, classify, internal_error
from rekap.registry import Registry
from streams.script import Slot, TreeEventCodes, pack_rejected, pack_sale, tree_event_codes


@dataclass
class RootGroup:
    """Everything the script needs for one tree of one batch."""

    root: str
    topic: str
    records: list[PlannedRecord]
    events: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    #: The script's KEYS (see :mod:`streams.script`).
    keys: list[str]
    #: ARGV[2..6]: topic, ticker length, number of events, of pairs, of records.
    header: tuple[str, ...]
    #: The records packed by :mod:`streams.script`, ``len(RECORD_FIELDS)`` values each.
    fields: list[str]


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
    #: The key layout (generation) the groups' KEYS were built with, and the records in
    #: consumption order: a rebuild's switch makes the worker plan the batch again.
    keys: Keys | None = None
    records: list[ConsumedRecord] = field(default_factory=list)


def ticker_entry(sale: Sale, occurred_at: str | None = None) -> str:
    """The venue ticker's JSON of one sale: compact, UTF-8 (orjson: a tenth of json's cost,
    the same text for the strings and integers of a valid sale)."""
    return orjson.dumps({
        "sale_id": sale.sale_id, "kind": sale.kind, "ikm_id": sale.ikm_id,
        "event_id": sale.event_id, "channel": sale.channel, "amount_idr": sale.amount_idr,
        "quantity": sale.quantity,
        "occurred_at": sale.occurred_at.isoformat() if occurred_at is None else occurred_at,
    }).decode()


def plan_batch(records: Iterable[ConsumedRecord], registry: Registry, keys: Keys,
               ticker_length: int = TICKER_LENGTH, fence_roots: Iterable[str] = ()) -> BatchPlan:
    """Group ``records`` (in consumption order) by root and build each group's KEYS and ARGV.

    ``fence_roots``: trees that get a group even without a record of this batch,
    so that their fences advance with the others (the worker passes every known
    tree; see the module docstring).
    """
    records = list(records)
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
                     starts=starts, registry=registry, ticker_length=ticker_length,
                     keys=keys, records=records)


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
    bucket_index: dict[int, int] = {}
    event_codes: TreeEventCodes | None = None

    def entry_slot(ikm_id: str, sale_id: str) -> Slot:
        bucket, field = dedup_slot(ikm_id, sale_id)
        return bucket_index.setdefault(bucket, len(bucket_index)), field

    # (event_id, ikm_id) -> the two csv index lists of its chain; few distinct per batch.
    chain_csv: dict[tuple[str, str], tuple[str, str]] = {}
    fields: list[str] = []
    extend = fields.extend
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
                if event_codes is None:
                    event_codes = tree_event_codes(registry, root)
                occurred_at = sale.occurred_at.isoformat()
                target = (None if sale.refund_of is None
                          else entry_slot(sale.ikm_id, sale.refund_of))
                extend(pack_sale(r.partition, r.offset, sale, csv[0], csv[1],
                                 ticker_entry(sale, occurred_at), occurred_at,
                                 entry_slot(sale.ikm_id, sale.sale_id), target,
                                 event_codes.of(sale.event_id)))
                continue
            except Exception as exc:  # a bug, not the input: reject this record only
                p = planned[i] = PlannedRecord(r, rejection=internal_error(exc))
        assert p.rejection is not None
        extend(pack_rejected(r.partition, r.offset, str(p.rejection.reason)))
    events = tuple(event_index)
    pairs = tuple(pair_index)
    key_list = [keys.fence(root, topic), keys.stats(root), keys.rejects(root)]
    for e in events:
        key_list += [keys.event_totals(root, e), keys.event_days(root, e), keys.board(root, e),
                     keys.ticker(root, e)]
    for e, ikm in pairs:
        key_list += [keys.ikm_totals(root, e, ikm), keys.ikm_days(root, e, ikm)]
    key_list += [keys.dedup(root, bucket) for bucket in bucket_index]
    header = (topic, str(ticker_length), str(len(events)), str(len(pairs)), str(len(planned)))
    return RootGroup(root=root, topic=topic, records=planned, events=events, pairs=pairs,
                     keys=key_list, header=header, fields=fields)
