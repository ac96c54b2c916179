"""Progress lives with the data: fences decide where the ledger resumes, and lost writes heal.

The script-level tests drive :class:`streams.apply.Applier` against the real
Redis; the end-to-end ones run the real worker and make Redis lose data under
it (every key of the test's prefix deleted, as a restart without persistence
does), then expect the totals to return to the exact truth with no command run.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import replace
from typing import Any

import pytest
import redis

from producers.simulator.synthetic import generate
from rekap.contract import Reason
from rekap.errors import LegacyLedger, RedisLostWrites
from rekap.names import Keys
from rekap.records import UNROUTED, ConsumedRecord
from rekap.redisconn import connect
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from streams.apply import Applier, BatchResult
from streams.batch import BatchPlan, plan_batch
from streams.progress import Progress, known_roots, read_fences
from streams.script import RECORD_FIELDS
from tests.streams.test_apply import as_records
from tests.streams.test_worker import assert_reconciled, wait_counted
from tests.streams.truth import assert_matches, stats
from tests.support.kafka import produce, produce_json
from tests.support.procs import wait_until
from tests.support.worker import start_worker

pytestmark = pytest.mark.integration
ROOT = "lagawi-2022"
REGISTRY = load_registry(DEFAULT_REGISTRY)


def wipe(client: redis.Redis, keys: Keys) -> int:
    """Delete every key of the prefix: what a Redis restarted without persistence holds."""
    found = list(client.scan_iter(match=keys.pattern(), count=1000))
    for start in range(0, len(found), 500):
        client.delete(*found[start:start + 500])
    return len(found)


def metric(worker_url: str, name: str) -> float:
    with urllib.request.urlopen(f"{worker_url}/metrics", timeout=5) as resp:  # noqa: S310
        text = resp.read().decode()
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# ---------------------------------------------------------------- the script --

async def apply_once(settings: Settings, plan: BatchPlan) -> BatchResult:
    """One :meth:`Applier.apply` of ``plan``, on a Redis client of its own."""
    client = connect(settings)
    try:
        return await Applier(client, settings).apply(plan)
    finally:
        await client.aclose()


async def test_every_tree_fence_moves_to_the_batch_end(settings: Settings,
                                                       redis_client: redis.Redis) -> None:
    """A tree without a record in the batch still advances, so the floor is where we stopped."""
    keys = Keys(settings.redis_prefix)
    records = as_records(generate(REGISTRY, 30, seed=3), settings.topic_sales)
    plan = plan_batch(records, REGISTRY, keys, fence_roots=known_roots(REGISTRY))
    result = await apply_once(settings, plan)
    assert not any(o.status == "rejected" for o in result.outcomes)  # UNROUTED got no record
    for root in known_roots(REGISTRY):
        fences = {int(p): int(o) for p, o in
                  redis_client.hgetall(keys.fence(root, settings.topic_sales)).items()}
        assert fences == plan.partitions, root
    progress = Progress()
    progress.applied(result.fences(), plan.partitions)
    assert progress.expected[(UNROUTED, 0)] == plan.partitions[0]


async def test_a_ledger_in_the_old_layout_is_refused(settings: Settings,
                                                     redis_client: redis.Redis) -> None:
    """Applying on top of the pre-bucket de-dup hash would count a resent old sale twice."""
    keys = Keys(settings.redis_prefix)
    client = connect(settings)
    try:
        roots = known_roots(REGISTRY)
        assert (await read_fences(client, settings, roots, [0]))[0][ROOT] == -1
        redis_client.hset(keys.legacy_sales(ROOT), "lampung-ethnica|s1", "old")
        with pytest.raises(LegacyLedger, match="run `rekap rebuild`"):
            await read_fences(client, settings, roots, [0])
    finally:
        await client.aclose()


async def test_a_fence_that_fell_back_refuses_the_batch_and_writes_nothing(
        settings: Settings, redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis_prefix)
    records = as_records(generate(REGISTRY, 40, seed=4), settings.topic_sales)
    first, second = records[:20], records[20:]
    client = connect(settings)
    try:
        applier = Applier(client, settings)
        plan = plan_batch(first, REGISTRY, keys, fence_roots=known_roots(REGISTRY))
        progress = Progress()
        progress.applied((await applier.apply(plan)).fences(), plan.partitions)
        redis_client.delete(keys.fence(ROOT, settings.topic_sales))  # Redis lost the fence
        before = redis_client.hgetall(keys.event_totals(ROOT, ROOT))
        plan2 = plan_batch(second, REGISTRY, keys, fence_roots=known_roots(REGISTRY))
        with pytest.raises(RedisLostWrites) as lost:
            await applier.apply(plan2, expected=progress.expected)
    finally:
        await client.aclose()
    assert {root for root, _ in lost.value.fences} == {ROOT}
    assert all(f == -1 for f in lost.value.fences.values())
    assert redis_client.hgetall(keys.event_totals(ROOT, ROOT)) == before
    assert not redis_client.exists(keys.fence(ROOT, settings.topic_sales))


async def test_a_record_that_breaks_the_script_costs_only_itself(
        settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug (here: a packed amount the script cannot read) is isolated to its record."""
    import streams.apply
    import streams.batch

    keys = Keys(settings.redis_prefix)
    values = [v for v in generate(REGISTRY, 60, seed=5) if v["kind"] == "sale"][:25]
    records = [ConsumedRecord(settings.topic_sales, 0, i, v["ikm_id"].encode(),
                              json.dumps(v).encode()) for i, v in enumerate(values)]
    bad_at = 17
    real = streams.batch.build_group

    def packing_bug(root: str, planned: Any, *args: Any, **kwargs: Any) -> Any:
        group = real(root, planned, *args, **kwargs)
        for i, p in enumerate(group.records):
            if p.record.offset == bad_at and p.sale is not None:
                at = len(RECORD_FIELDS) * i + RECORD_FIELDS.index("amount_idr")
                group.fields[at] = "not-a-number"  # as a bug would pack it
        return group

    monkeypatch.setattr(streams.batch, "build_group", packing_bug)
    monkeypatch.setattr(streams.apply, "build_group", packing_bug)
    plan = plan_batch(records, REGISTRY, keys, fence_roots=known_roots(REGISTRY))
    result = await apply_once(settings, plan)
    labels = {o.record.offset: o.label for o in result.outcomes}
    assert labels[bad_at] == "rejected:internal_error"
    assert sum(1 for v in labels.values() if v == "applied") == len(values) - 1
    (dead,) = result.dead_letters()
    assert dead.record.offset == bad_at and dead.dead_letter is not None
    assert dead.dead_letter[0] == Reason.INTERNAL_ERROR and "script" in dead.dead_letter[1].lower()
    assert_matches(redis_client, values[:bad_at] + values[bad_at + 1:], REGISTRY, keys)
    assert int(redis_client.hget(keys.fence(ROOT, settings.topic_sales), "0")) == len(values) - 1
    assert stats(redis_client, keys, ROOT)["rejected:internal_error"] == 1


def test_a_planner_failure_costs_only_its_record(settings: Settings,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.batch as batch

    real = batch.classify

    def flaky(record: ConsumedRecord, registry: Registry) -> Any:
        if record.offset == 2:
            raise RuntimeError("planner bug")
        return real(record, registry)

    monkeypatch.setattr(batch, "classify", flaky)
    values = [v for v in generate(REGISTRY, 20, seed=6) if v["kind"] == "sale"][:5]
    records = [ConsumedRecord("s", 0, i, v["ikm_id"].encode(), json.dumps(v).encode())
               for i, v in enumerate(values)]
    plan = batch.plan_batch(records, REGISTRY, Keys("p"))
    assert [(r.offset, j.reason) for r, j in plan.rejections] == [(2, Reason.INTERNAL_ERROR)]
    assert "RuntimeError: planner bug" in plan.rejections[0][1].detail
    assert sum(len(g.records) for g in plan.groups) == 5


# ------------------------------------------------------------ the real worker --

def test_redis_emptied_mid_stream_heals_by_itself(settings: Settings,
                                                  redis_client: redis.Redis) -> None:
    settings = replace(settings, batch_max=50)
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 1200, seed=41)
    with start_worker(settings) as worker:
        produce_json(settings, values[:600])
        wait_counted(redis_client, keys, 600, message="first half")
        assert wipe(redis_client, keys) > 0
        produce_json(settings, values[600:])
        wait_counted(redis_client, keys, len(values), timeout=90,
                     message="every record counted again after Redis lost everything")
        assert_matches(redis_client, values, REGISTRY, keys)
        assert metric(worker.url, "rekap_redis_lost_writes_total") >= 1
        assert metric(worker.url, "rekap_records_replayed_total") >= 600
        wait_until(lambda: not redis_client.exists(keys.recovering()), timeout=10,
                   message="the recovering mark cleared")
    assert_reconciled(settings)


def test_redis_emptied_while_no_sale_arrives_heals_by_itself(settings: Settings,
                                                             redis_client: redis.Redis) -> None:
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 500, seed=42)
    bad = [(b"k", b"{not json"), (b"k", b"[" * 100_000)]
    with start_worker(settings):
        produce_json(settings, values)
        produce(settings, settings.topic_sales, bad)
        wait_counted(redis_client, keys, len(values) + 2, message="all applied")
        wipe(redis_client, keys)
        # Nothing more is produced: only the progress check can notice.
        wait_counted(redis_client, keys, len(values) + 2, timeout=30,
                     message="replayed without a new sale")
        assert_matches(redis_client, values, REGISTRY, keys)
        unrouted = stats(redis_client, keys, UNROUTED)
        assert unrouted.get("rejected:malformed_json", 0) \
            + unrouted.get("rejected:nesting_too_deep", 0) == 2
    assert_reconciled(settings)


def test_restart_onto_an_emptied_redis_resumes_from_the_fences(settings: Settings,
                                                              redis_client: redis.Redis) -> None:
    """Kafka's committed offsets say "done"; Redis says nothing: Redis wins, the ledger replays."""
    keys = Keys(settings.redis_prefix)
    values = generate(REGISTRY, 800, seed=43)
    with start_worker(settings):  # a graceful stop at the end: the group's offsets are committed
        produce_json(settings, values[:500])
        wait_counted(redis_client, keys, 500, message="applied")
    wipe(redis_client, keys)
    produce_json(settings, values[500:])
    with start_worker(settings) as worker:
        wait_counted(redis_client, keys, len(values), timeout=90,
                     message="replayed from the beginning")
        assert_matches(redis_client, values, REGISTRY, keys)
        assert metric(worker.url, "rekap_records_replayed_total") >= 500
    assert_reconciled(settings)
