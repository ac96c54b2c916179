"""streams.apply against the real Redis: exact totals, idempotent replays, ledger rules."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
import redis

from producers.simulator.synthetic import generate
from rekap.names import Keys
from rekap.records import ConsumedRecord
from rekap.redisconn import connect
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from streams.apply import Applier, BatchResult
from streams.batch import plan_batch
from tests.streams.truth import assert_matches, redis_totals, stats

pytestmark = pytest.mark.integration
ROOT = "lagawi-2022"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


def as_records(values: list[dict[str, Any]], topic: str, partitions: int = 3) -> list[ConsumedRecord]:
    """Place records as Kafka would: partition by key, offsets growing per partition."""
    next_offset = [0] * partitions
    out = []
    for v in values:
        p = zlib.crc32(v["ikm_id"].encode()) % partitions
        out.append(ConsumedRecord(topic, p, next_offset[p], v["ikm_id"].encode(),
                                  json.dumps(v).encode(), 0))
        next_offset[p] += 1
    return out


async def apply_all(settings: Settings, registry: Registry, records: list[ConsumedRecord],
                    batch: int = 64) -> list[BatchResult]:
    client = connect(settings)
    try:
        applier = Applier(client, settings)
        keys = Keys(settings.redis_prefix)
        return [await applier.apply(plan_batch(records[i:i + batch], registry, keys))
                for i in range(0, len(records), batch)]
    finally:
        await client.aclose()


async def test_generated_stream_matches_ground_truth_and_replay_changes_nothing(
        settings: Settings, redis_client: redis.Redis, registry: Registry) -> None:
    values = generate(registry, 400, seed=11)
    records = as_records(values, settings.topic_sales)
    keys = Keys(settings.redis_prefix)
    await apply_all(settings, registry, records)
    assert_matches(redis_client, values, registry, keys)
    before = redis_totals(redis_client, keys)
    first = stats(redis_client, keys, ROOT)
    unique = len({v["sale_id"] for v in values})
    assert first["applied"] == unique
    assert first["duplicate:sale_id"] == len(values) - unique
    # The same partition ranges again, in other batch sizes: all fenced.
    results = await apply_all(settings, registry, records, batch=97)
    assert redis_totals(redis_client, keys) == before
    assert {o.label for r in results for o in r.outcomes} == {"duplicate:offset"}
    assert stats(redis_client, keys, ROOT)["duplicate:offset"] == len(values)
    # A replay returns the totals it touched, with their current versions.
    touched = {(t.scope, t.event_id, t.ikm_id): t.version for r in results for t in r.totals}
    assert touched[("event", ROOT, None)] == int(redis_client.hget(keys.event_totals(ROOT, ROOT),
                                                                    "version"))


async def test_resend_at_a_later_offset_counts_once(settings: Settings, redis_client: redis.Redis,
                                                     registry: Registry) -> None:
    sale = {"sale_id": "booth-7", "kind": "sale", "ikm_id": "askha-jaya", "event_id": "lagawi-2022",
            "channel": "website", "amount_idr": 75_000, "quantity": 1,
            "occurred_at": "2022-05-01T10:00:00+07:00"}
    keys = Keys(settings.redis_prefix)
    records = as_records([sale, sale], settings.topic_sales)
    (result,) = await apply_all(settings, registry, records)
    assert [o.label for o in result.outcomes] == ["applied", "duplicate:sale_id"]
    assert int(redis_client.hget(keys.event_totals(ROOT, ROOT), "amount_idr")) == 75_000
    assert stats(redis_client, keys, ROOT) == {"applied": 1, "duplicate:sale_id": 1}


async def test_refunds_days_and_rollup(settings: Settings, redis_client: redis.Redis,
                                       registry: Registry) -> None:
    kokas = "lagawi-2022-kokas"
    base = {"kind": "sale", "ikm_id": "rafins-snack", "event_id": kokas, "channel": "offline",
            "booth_id": "kokas-04", "quantity": 3}
    values = [
        {**base, "sale_id": "a", "amount_idr": 300_000, "occurred_at": "2022-06-01T23:30:00Z"},
        {**base, "sale_id": "b", "amount_idr": 50_000, "occurred_at": "2022-06-03T10:00:00+07:00"},
        {**base, "sale_id": "ra", "kind": "refund", "refund_of": "a", "amount_idr": 100_000,
         "quantity": 1, "occurred_at": "2022-06-04T10:00:00+07:00"},
        {**base, "sale_id": "ra2", "kind": "refund", "refund_of": "a", "amount_idr": 200_001,
         "quantity": 0, "occurred_at": "2022-06-04T10:00:00+07:00"},
        {**base, "sale_id": "rb", "kind": "refund", "refund_of": "b", "amount_idr": 50_000,
         "quantity": 3, "occurred_at": "2022-06-04T10:00:00+07:00"},
        {**base, "sale_id": "rx", "kind": "refund", "refund_of": "nope", "amount_idr": 1,
         "quantity": 0, "occurred_at": "2022-06-04T10:00:00+07:00"},
        {**base, "sale_id": "a", "amount_idr": 999, "occurred_at": "2022-06-01T23:30:00Z"},
    ]
    keys = Keys(settings.redis_prefix)
    (result,) = await apply_all(settings, registry, as_records(values, settings.topic_sales))
    assert [o.label for o in result.outcomes] == [
        "applied", "applied", "applied", "rejected:refund_exceeds_sale", "applied",
        "rejected:unknown_refund_target", "rejected:sale_id_conflict"]
    for event in (kokas, ROOT):
        t = {k.decode(): v.decode() for k, v in redis_client.hgetall(keys.event_totals(ROOT, event)).items()}
        assert (t["amount_idr"], t["gross_idr"], t["refunds_idr"]) == ("200000", "350000", "150000")
        assert (t["count"], t["refund_count"], t["quantity"]) == ("2", "2", "2")
        assert t["ch:offline:refunds_idr"] == "150000" and "ch:website:refunds_idr" not in t
        assert t["version"] == "1"
        d = {k.decode(): int(v) for k, v in redis_client.hgetall(keys.event_days(ROOT, event)).items()}
        # 23:30 UTC on 1 June is 06:30 WIB on 2 June; refunds land on the sale's day.
        assert d["2022-06-02:amount_idr"] == 200_000 and d["2022-06-02:refunds_idr"] == 100_000
        assert d.get("2022-06-03:amount_idr", 0) == 0 and d.get("2022-06-03:quantity", 0) == 0
        assert "2022-06-01:count" not in d and "2022-06-04:count" not in d
        assert redis_client.zscore(keys.board(ROOT, event), "rafins-snack") == 200_000
    s = stats(redis_client, keys, ROOT)
    assert s["applied"] == 4 and s["rejected:refund_exceeds_sale"] == 1
    assert s["rejected:unknown_refund_target"] == 1 and s["rejected:sale_id_conflict"] == 1
    ticker = [json.loads(x) for x in redis_client.lrange(keys.ticker(ROOT, ROOT), 0, -1)]
    assert [x["sale_id"] for x in ticker] == ["rb", "ra", "b", "a"]
