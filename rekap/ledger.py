"""The ledger model: a pure fold of sales-topic records into expected Redis contents.

The one Python statement of how a record moves the totals. The only other is
``streams/lua/apply_batch.lua``, which applies the same rules inside Redis; the
property tests (``tests/streams/test_apply_properties.py``) hold the two equal.
Everything else that needs to know what the totals must be folds records here:
``rekap reconcile`` and ``rekap rebuild``, the simulator's ground truth, the
benchmarks' verification and the tests. No I/O.

The rules, per record in topic order (per partition; a ``sale_id`` is unique per
IKM, the record key, so partitions never depend on each other):

* invalid → ``rejected:<reason>`` (:mod:`rekap.contract`);
* ``(ikm_id, sale_id)`` seen before → ``duplicate:sale_id`` if event, amount, kind
  and ``refund_of`` are equal, else ``rejected:sale_id_conflict``;
* a refund whose target is not a booked sale of the same IKM →
  ``rejected:unknown_refund_target``; of another event or channel, or itself a refund →
  ``rejected:refund_mismatch`` (a refund comes through its sale's channel); taking
  back more rupiah or units than are left → ``rejected:refund_exceeds_sale``;
* otherwise ``applied``: the event and every ancestor (:meth:`Registry.chain`),
  for the event and for the IKM, add a sale / subtract a refund. **A refund is
  booked on its sale's local day** (and channel, which is its own), whatever its
  own day, so a day's net never goes below zero and a day closes with its own sales.

Only the *defended* numbers are modelled: every integer field of the totals
and day hashes, the leaderboards and the per-tree ``stats`` identity. The
``version``/``as_of``/``last_sale_*`` bookkeeping, the ticker and the fences
are not: they depend on batching and wall-clock time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from rekap.contract import Reason, Sale
from rekap.names import Keys, channel_field, day_field
from rekap.records import ConsumedRecord, classify
from rekap.registry import Registry

#: Fields of a totals hash that depend on batching or wall-clock time, not on the ledger.
BOOKKEEPING_FIELDS: Final = frozenset({"version", "as_of", "last_sale_at", "last_sale_id",
                                       "last_amount_idr"})


@dataclass
class _Booked:
    sale: Sale
    channel: str
    day: str
    refunded: int = 0
    refunded_qty: int = 0


@dataclass
class Ledger:
    """Expected contents, keyed by the real Redis key names."""

    keys: Keys
    #: hash key -> field -> integer (zero fields may be absent)
    hashes: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    #: board key -> ikm -> net amount
    boards: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    #: root -> counter -> n (applied, duplicate:sale_id, rejected:<reason>)
    stats: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    #: root -> records routed to it
    records: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: root -> (ikm_id, sale_id) -> booked sale; a sale_id is unique per IKM (rekap.names)
    _sales: dict[str, dict[tuple[str, str], _Booked]] = field(
        default_factory=lambda: defaultdict(dict))

    def _add(self, key: str, name: str, n: int) -> None:
        h = self.hashes[key]
        h[name] = h.get(name, 0) + n

    def _count(self, root: str, label: str) -> None:
        s = self.stats[root]
        s[label] = s.get(label, 0) + 1

    @property
    def total_amount(self) -> int:
        """Net rupiah of every root event (the programme totals)."""
        return sum(h.get("amount_idr", 0) for k, h in self.hashes.items()
                   if _is_root_event_key(k, self.keys))

    def apply(self, root: str, sale: Sale | None, rejection: Reason | None,
              registry: Registry) -> str:
        """Fold one record; return its outcome label (applied / duplicate:… / rejected:…)."""
        self.records[root] += 1
        label = self._outcome(root, sale, rejection, registry)
        self._count(root, label)
        return label

    def _outcome(self, root: str, sale: Sale | None, rejection: Reason | None,
                 registry: Registry) -> str:
        if sale is None:
            return f"rejected:{rejection}"
        sales = self._sales[root]
        prior = sales.get((sale.ikm_id, sale.sale_id))
        if prior is not None:
            p = prior.sale
            same = (p.event_id, p.amount_idr, p.kind, p.refund_of or "") == (
                sale.event_id, sale.amount_idr, sale.kind, sale.refund_of or "")
            return "duplicate:sale_id" if same else f"rejected:{Reason.SALE_ID_CONFLICT}"
        channel: str = sale.channel
        day = sale.day.isoformat()
        if sale.kind == "refund":
            target = sales.get((sale.ikm_id, sale.refund_of or ""))
            if target is None:
                return f"rejected:{Reason.UNKNOWN_REFUND_TARGET}"
            t = target.sale
            if t.kind != "sale" or t.event_id != sale.event_id or target.channel != sale.channel:
                return f"rejected:{Reason.REFUND_MISMATCH}"
            if (target.refunded + sale.amount_idr > t.amount_idr
                    or target.refunded_qty + sale.quantity > t.quantity):
                return f"rejected:{Reason.REFUND_EXCEEDS_SALE}"
            target.refunded += sale.amount_idr
            target.refunded_qty += sale.quantity
            channel, day = target.channel, target.day
        sales[(sale.ikm_id, sale.sale_id)] = _Booked(sale, channel, day)
        a, q = sale.amount_idr, sale.quantity
        refund = sale.kind == "refund"
        for event in registry.chain(sale.event_id):
            for key in (self.keys.event_totals(root, event),
                        self.keys.ikm_totals(root, event, sale.ikm_id)):
                if refund:
                    self._add(key, "amount_idr", -a)
                    self._add(key, "refunds_idr", a)
                    self._add(key, "refund_count", 1)
                    self._add(key, "quantity", -q)
                    self._add(key, channel_field(channel, "amount_idr"), -a)
                    self._add(key, channel_field(channel, "refunds_idr"), a)
                else:
                    self._add(key, "amount_idr", a)
                    self._add(key, "gross_idr", a)
                    self._add(key, "count", 1)
                    self._add(key, "quantity", q)
                    self._add(key, channel_field(channel, "amount_idr"), a)
                    self._add(key, channel_field(channel, "count"), 1)
            for key in (self.keys.event_days(root, event),
                        self.keys.ikm_days(root, event, sale.ikm_id)):
                if refund:
                    self._add(key, day_field(day, "amount_idr"), -a)
                    self._add(key, day_field(day, "refunds_idr"), a)
                    self._add(key, day_field(day, "quantity"), -q)
                else:
                    self._add(key, day_field(day, "amount_idr"), a)
                    self._add(key, day_field(day, "count"), 1)
                    self._add(key, day_field(day, "quantity"), q)
            board = self.boards[self.keys.board(root, event)]
            board[sale.ikm_id] = board.get(sale.ikm_id, 0) + (-a if refund else a)
        return "applied"


def _is_root_event_key(key: str, keys: Keys) -> bool:
    # P:{R}:ev:R — the totals hash of a root event itself.
    parsed = keys.parse(key)
    return parsed is not None and parsed[1] == f"ev:{parsed[0]}"


def fold(records: Iterable[ConsumedRecord], registry: Registry, keys: Keys,
         limits: Mapping[tuple[str, int], int] | None = None) -> Ledger:
    """Fold records in topic order (per partition) into a :class:`Ledger`.

    ``limits`` maps (root, partition) to the last offset to include (what
    Redis says it applied: its fence); records above it are skipped. Without
    it every record counts.
    """
    ledger = Ledger(keys)
    for record in records:
        root, planned = classify(record, registry)
        if limits is not None and record.offset > limits.get((root, record.partition), -1):
            continue
        reason = planned.rejection.reason if planned.rejection is not None else None
        ledger.apply(root, planned.sale, reason, registry)
    return ledger


def fold_sent(records: Iterable[tuple[bytes | None, bytes | None]], registry: Registry,
              keys: Keys) -> Ledger:
    """Fold ``(key, value)`` records in the order they were sent (one producer's stream).

    Equal to the topic's fold partition by partition, since every decision depends
    only on the order of records with the same key.
    """
    return fold((ConsumedRecord("", 0, offset, key, value)
                 for offset, (key, value) in enumerate(records)), registry, keys)
