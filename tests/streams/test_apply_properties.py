"""Property: the Redis apply equals the ledger model under at-least-once delivery.

Hypothesis draws a small sales topic over the shipped registry (valid sales,
refunds of every kind, resends, sale_id conflicts, invalid records; see
:mod:`tests.support.ledger_strategies`), places it on partitions by key, and
delivers it to :meth:`streams.apply.Applier.apply` the way Kafka and a crashing
Faust would: random batches interleaving partitions, and crashes (after the
apply or in the middle of a batch, before the commit) that replay everything
after the last commit, re-split differently. Against the real Redis, with a
fresh key prefix per example, it checks:

1. every totals hash, day hash, board and the stats hash equal the ledger fold
   of the topic partition by partition (what ``rekap reconcile`` computes),
   whatever the interleaving of partitions in the deliveries: de-duplication
   is scoped to the record key, so no outcome depends on it even where a
   ``sale_id`` is reused by another IKM. Every record's outcome equals the
   ledger's label the first time, then ``duplicate:offset`` with the same
   dead-letter reason on every re-delivery;
2. per tree: records = applied + duplicate:sale_id + rejected, and
   deliveries = that + duplicate:offset; the fences end at the last offsets;
3. no total, channel, day or board value is ever negative and
   amount_idr == gross_idr - refunds_idr in every totals hash, after every delivery;
4. the version of a totals hash never decreases, and grows (by one) exactly
   when a delivery changed its integers; the totals an apply returns are the
   hashes as they are in Redis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import defaultdict
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hypothesis_settings

from consumers.reconcile import BOOKKEEPING_FIELDS, compare, parse_key, snapshot
from rekap.ledger import Ledger
from rekap.names import Keys
from rekap.records import ConsumedRecord, classify
from rekap.redisconn import connect
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from streams.apply import Applier, BatchResult
from streams.batch import BatchPlan, plan_batch
from tests.support.ledger_strategies import (
    EVENTS,
    IKMS,
    ROOT,
    Delivery,
    Record,
    Step,
    deliveries,
    place,
    sale_streams,
    steps,
)

pytestmark = pytest.mark.integration

Coords = tuple[int, int]  # (partition, offset)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


def totals_keys(keys: Keys, registry: Registry) -> list[str]:
    """Every totals hash the generated streams can touch (all under ROOT)."""
    out = [keys.event_totals(ROOT, e) for e in EVENTS]
    out += [keys.ikm_totals(ROOT, e, i) for e in EVENTS for i in IKMS]
    return out


def read_hashes(client: redis.Redis, names: list[str]) -> dict[str, dict[str, str]]:
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    return {name: {f.decode(): v.decode() for f, v in h.items()}
            for name, h in zip(names, pipe.execute(), strict=True)}


def integers(h: dict[str, str]) -> dict[str, int]:
    """The defended integers of a totals hash; zero fields dropped."""
    return {f: int(v) for f, v in h.items() if f not in BOOKKEEPING_FIELDS and int(v) != 0}


def check_totals_hash(name: str, h: dict[str, int]) -> None:
    assert all(v >= 0 for v in h.values()), (name, h)
    assert h.get("amount_idr", 0) == h.get("gross_idr", 0) - h.get("refunds_idr", 0), (name, h)


class Run:
    """One example: deliver, watch every totals hash between deliveries, remember first applies."""

    def __init__(self, client: redis.Redis, applier: Applier, settings: Settings,
                 registry: Registry) -> None:
        self.client, self.applier, self.settings, self.registry = client, applier, settings, registry
        self.keys = Keys(settings.redis_prefix)
        self.watched = totals_keys(self.keys, registry)
        self.fence: dict[tuple[str, int], int] = {}          # (root, partition) -> high offset
        self.first: list[tuple[str, ConsumedRecord]] = []    # (root, record), first applies
        self.outcomes: dict[tuple[str, Coords], list[Any]] = defaultdict(list)
        self.delivered: dict[str, int] = defaultdict(int)    # root -> record deliveries
        self.seen = read_hashes(client, self.watched)        # watched hashes now

    async def deliver_all(self, plan: list[Delivery]) -> None:
        for d in plan:
            await self.deliver(d)

    async def deliver(self, d: Delivery) -> None:
        plan = plan_batch(d.records, self.registry, self.keys)
        if d.cut is not None:
            # Redis failed (or the worker died) after the first `cut` groups of the batch.
            plan = BatchPlan(plan.groups[:d.cut], plan.rejections, plan.size, plan.partitions)
        before = self.seen  # nothing else writes under this example's prefix
        result: BatchResult = await self.applier.apply(plan)
        after = self.seen = read_hashes(self.client, self.watched)
        for name in self.watched:
            old, new = integers(before[name]), integers(after[name])
            v0, v1 = int(before[name].get("version", 0)), int(after[name].get("version", 0))
            assert v1 == v0 + (old != new), (name, v0, v1, old, new)
            check_totals_hash(name, new)
        for snap in result.totals:
            name = (self.keys.event_totals(snap.root, snap.event_id) if snap.ikm_id is None
                    else self.keys.ikm_totals(snap.root, snap.event_id, snap.ikm_id))
            assert snap.values == after[name], name
        for group, gres in zip(plan.groups, result.groups, strict=True):
            assert len(gres.outcomes) == len(group.records)
            for planned, outcome in zip(group.records, gres.outcomes, strict=True):
                r = planned.record
                self.delivered[group.root] += 1
                self.outcomes[(group.root, (r.partition, r.offset))].append(outcome)
                if r.offset > self.fence.get((group.root, r.partition), -1):
                    self.fence[(group.root, r.partition)] = r.offset
                    self.first.append((group.root, r))
            # Every group's fence ends at the batch's end of each partition, records or not.
            for partition, end in plan.partitions.items():
                key = (group.root, partition)
                self.fence[key] = max(self.fence.get(key, -1), end)
            assert gres.fences == {p: f for (rt, p), f in self.fence.items()
                                   if rt == group.root and p in plan.partitions}

    def verify(self, all_records: list[ConsumedRecord]) -> None:
        registry, keys = self.registry, self.keys
        # The model: the ledger fold of the topic partition by partition, not in the order the
        # deliveries interleaved the partitions.
        ledger = Ledger(keys)
        labels: dict[tuple[str, Coords], str] = {}
        for r in sorted(all_records, key=lambda r: (r.partition, r.offset)):
            root, planned = classify(r, registry)
            reason = planned.rejection.reason if planned.rejection is not None else None
            labels[(root, (r.partition, r.offset))] = ledger.apply(root, planned.sale, reason,
                                                                   registry)
        # Every record was applied exactly once (first) and fenced on every later delivery.
        assert len(labels) == len(all_records)
        assert {(root, (r.partition, r.offset)) for root, r in self.first} == set(labels)
        for coords, label in labels.items():
            first, *again = self.outcomes[coords]
            assert first.label == label, (coords, first, label)
            want_dead = label.split(":", 1)[1] if label.startswith("rejected:") else None
            for o in (first, *again):
                assert (o.dead_letter[0] if o.dead_letter else None) == want_dead, (coords, o)
            assert all(o.label == "duplicate:offset" for o in again), (coords, again)
            event(label)  # --hypothesis-show-statistics lists what the examples covered
        event(f"replayed records: {sum(len(v) > 1 for v in self.outcomes.values()) > 0}")
        # 1. every totals/day hash, board and stats counter equals the fold.
        trees = snapshot(self.client, Keys(self.settings.redis_prefix), self.settings.topic_sales)
        assert compare(ledger, trees) == []
        assert {parse_key(k, keys)[0] for k in ledger.hashes} <= {ROOT}  # type: ignore[index]
        for root, tree in trees.items():
            # 2. the ledger identity, and every delivery counted once.
            routed = sum(1 for (rt, _c) in labels if rt == root)
            counted = sum(v for k, v in tree.stats.items() if k != "duplicate:offset")
            assert counted == routed == ledger.records[root], (root, tree.stats)
            assert sum(tree.stats.values()) == self.delivered[root], (root, tree.stats)
            assert tree.fences == {p: off for (rt, p), off in self.fence.items() if rt == root}
            # 3. nothing negative anywhere; net = gross - refunds in every totals hash.
            for name, h in tree.hashes.items():
                assert all(v >= 0 for v in h.values()), (name, h)
                if not name.endswith(":days"):
                    check_totals_hash(name, h)
                    assert name in self.watched, name
            for name, board in tree.boards.items():
                assert all(v >= 0 for v in board.values()), (name, board)


def test_apply_equals_ledger_under_at_least_once_delivery(
        settings: Settings, redis_client: redis.Redis, registry: Registry) -> None:
    loop = asyncio.new_event_loop()
    client = connect(settings)
    counter = itertools.count()

    @hypothesis_settings(max_examples=50, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                         print_blob=False, report_multiple_bugs=False)
    @given(stream=sale_streams(registry), program=steps)
    def prop(stream: list[Record], program: list[Step]) -> None:
        prefix = f"{settings.redis_prefix}:x{next(counter)}"
        own = dataclasses.replace(settings, redis_prefix=prefix)
        parts = place(stream, own.topic_sales)
        plan = deliveries(parts, program)
        run = Run(redis_client, Applier(client, own), own, registry)
        try:
            loop.run_until_complete(run.deliver_all(plan))
            run.verify([r for p in parts for r in p])
        finally:
            stale = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
            if stale:
                redis_client.delete(*stale)

    try:
        prop()
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()
