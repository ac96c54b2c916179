"""The de-dup entries in Redis: small, in many buckets, and as exact as the ledger.

Against the real Redis, through :func:`streams.batch.plan_batch` and
:meth:`streams.apply.Applier.apply`, under each test's own prefix.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

import pytest
import redis

from consumers.reconcile import compare, snapshot
from producers.simulator.synthetic import generate
from rekap.contract import Reason
from rekap.ledger import fold
from rekap.names import Keys, dedup_slot
from rekap.registry import Registry, build_registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from streams import batch
from streams.script import read_entry
from tests.streams.test_apply import ROOT, apply_all, as_records

pytestmark = pytest.mark.integration

#: What the de-dup state may cost per booked record once a tree has a few thousand.
BYTES_PER_SALE = 64


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


def dedup_keys(client: redis.Redis, keys: Keys, root: str) -> list[bytes]:
    return list(client.scan_iter(match=keys.dedup(root, 0).removesuffix("0") + "*", count=1000))


async def test_dedup_state_stays_within_64_bytes_per_sale(
        settings: Settings, redis_client: redis.Redis, registry: Registry) -> None:
    values = generate(registry, 6000, seed=5)
    await apply_all(settings, registry, as_records(values, settings.topic_sales), batch=1000)
    keys = Keys(settings.redis_prefix)
    booked = int(redis_client.hget(keys.stats(ROOT), "applied") or 0)
    buckets = dedup_keys(redis_client, keys, ROOT)
    pipe = redis_client.pipeline(transaction=False)
    for key in buckets:
        pipe.memory_usage(key, samples=0)
        pipe.hlen(key)
        pipe.object("encoding", key)
    replies = pipe.execute()
    used, entries, encodings = replies[::3], replies[1::3], replies[2::3]
    # One entry per booked sale or refund; the old single "<ikm>|<sale_id>" hash took ~140-180.
    assert sum(entries) == booked > 5000
    assert set(encodings) == {b"listpack"}
    assert sum(used) / booked <= BYTES_PER_SALE, (sum(used), booked, len(buckets))


def sale(sale_id: str, **changes: Any) -> dict[str, Any]:
    base = {"sale_id": sale_id, "kind": "sale", "ikm_id": "askha-jaya", "event_id": ROOT,
            "channel": "marketplace", "amount_idr": 100_000, "quantity": 4,
            "occurred_at": "2022-05-01T10:00:00+07:00"}
    return {**base, **changes}


def refund(sale_id: str, of: str, amount: int, quantity: int, **changes: Any) -> dict[str, Any]:
    return sale(sale_id, **{"kind": "refund", "refund_of": of, "amount_idr": amount,
                            "quantity": quantity, "occurred_at": "2022-05-09T10:00:00+07:00",
                            **changes})


def ids_in_other_buckets(ikm: str, first: str, n: int) -> list[str]:
    """``n`` refund ids of ``ikm`` whose entries lie in buckets other than ``first``'s and
    each other's."""
    taken = {dedup_slot(ikm, first)[0]}
    out = []
    for i in range(1000):
        bucket = dedup_slot(ikm, f"ref-{i}")[0]
        if bucket not in taken:
            taken.add(bucket)
            out.append(f"ref-{i}")
            if len(out) == n:
                return out
    raise AssertionError("no free buckets")


async def test_refunds_and_resends_across_buckets_and_calls(
        settings: Settings, redis_client: redis.Redis, registry: Registry) -> None:
    keys = Keys(settings.redis_prefix)
    r1, r2, r3 = ids_in_other_buckets("askha-jaya", "s1", 3)
    first = [sale("s1"), refund(r1, "s1", 30_000, 1), sale("s1", channel="website")]
    second = [refund(r1, "s1", 30_000, 1),                 # the same refund again
              refund(r1, "s1", 30_001, 1),                 # its sale_id, other content
              refund(r2, "s1", 70_001, 0),                 # beyond what is left
              refund(r3, "s1", 70_000, 3),                 # exactly what is left
              refund("r9", r1, 1, 0),                      # a refund of a refund
              sale(r1),                                    # a sale under a refund's id
              sale("s1", amount_idr=1)]                    # the sale's id, other amount
    values = first + second
    records = as_records(values, settings.topic_sales)
    # Two calls: the second reads what the first wrote, from buckets other than its own.
    results = [*await apply_all(settings, registry, records[:3]),
               *await apply_all(settings, registry, records[3:])]
    outcomes = [(o.label, o.detail) for r in results for o in r.outcomes]
    assert [label for label, _ in outcomes] == [
        "applied", "applied", "duplicate:sale_id",
        "duplicate:sale_id", "rejected:sale_id_conflict", "rejected:refund_exceeds_sale",
        "applied", "rejected:refund_mismatch", "rejected:sale_id_conflict",
        "rejected:sale_id_conflict"]
    details = [detail for _, detail in outcomes]
    assert details[4] == f"sale_id {r1} of askha-jaya is already used by a refund in this event"
    assert details[5] == ("refunds of s1 would total 100001 IDR / 1 units, the sale was "
                          "100000 IDR / 4 units")
    assert details[7] == f"refund_of {r1} is a refund of askha-jaya, not a sale in {ROOT}"
    assert details[8] == f"sale_id {r1} of askha-jaya is already used by a refund in this event"
    assert details[9] == ("sale_id s1 of askha-jaya is already used by a sale of 100000 IDR "
                          "in this event")
    # The sale's entry holds what was refunded; the refunds went to its day.
    bucket, field = dedup_slot("askha-jaya", "s1")
    raw = redis_client.hget(keys.dedup(ROOT, bucket), field)
    assert isinstance(raw, bytes)
    entry = read_entry(raw)
    assert entry.numbers == {"amount_idr": 100_000, "quantity": 4, "refunded_idr": 100_000,
                             "refunded_quantity": 4}
    assert (entry.channel, entry.day) == ("marketplace", date(2022, 5, 1))
    totals = redis_client.hgetall(keys.event_totals(ROOT, ROOT))
    assert totals[b"ch:marketplace:refunds_idr"] == b"100000" and b"ch:website:count" not in totals
    assert b"ch:website:refunds_idr" not in totals
    days = redis_client.hgetall(keys.event_days(ROOT, ROOT))
    assert days[b"2022-05-01:refunds_idr"] == b"100000" and b"2022-05-09:refunds_idr" not in days
    assert compare(fold(records, registry, keys), snapshot(redis_client, keys, "")) == []


async def test_refund_of_a_sale_in_another_event_of_the_tree_is_a_mismatch(
        settings: Settings, redis_client: redis.Redis, registry: Registry) -> None:
    kokas = {"event_id": "lagawi-2022-kokas", "occurred_at": "2022-06-03T10:00:00+07:00",
             "channel": "offline", "booth_id": "kokas-05"}
    values = [sale("k1", **kokas), refund("k1r", "k1", 1, 0, occurred_at="2022-06-03T11:00:00+07:00"),
              sale("k1", amount_idr=100_000)]
    (result,) = await apply_all(settings, registry, as_records(values, settings.topic_sales))
    assert [(o.label, o.detail) for o in result.outcomes] == [
        ("applied", ""),
        ("rejected:refund_mismatch",
         f"refund_of k1 is a sale of askha-jaya in another event, not in {ROOT}"),
        ("rejected:sale_id_conflict",
         "sale_id k1 of askha-jaya is already used by a sale of 100000 IDR in another event")]


def wide_registry() -> Registry:
    """One event over every day a sale can carry, in UTC, with one IKM."""
    return build_registry({
        "ikm": [{"id": "ikm-a"}],
        "events": [{"id": "wide", "timezone": "UTC", "starts_on": date(1, 1, 1),
                    "ends_on": date(9999, 12, 31), "ikm": ["ikm-a"]}]})


async def test_a_refund_lands_on_its_sales_day_for_any_date(
        settings: Settings, redis_client: redis.Redis) -> None:
    """The script turns a sale entry's 3-byte day back into the sale's YYYY-MM-DD."""
    registry = wide_registry()
    rng = random.Random(3)
    days = [date(1, 1, 3), date(4, 2, 29), date(1600, 2, 29), date(1700, 3, 1), date(1900, 2, 28),
            date(1900, 3, 1), date(1969, 12, 31), date(1970, 1, 1), date(2000, 2, 29),
            date(2000, 12, 31), date(2022, 6, 2), date(2100, 3, 1), date(2400, 2, 29),
            date(9999, 12, 29)]
    days += [date(1, 1, 3) + timedelta(days=rng.randrange(3_652_000)) for _ in range(300)]
    values = []
    for i, day in enumerate(days):
        values.append({"sale_id": f"s{i}", "kind": "sale", "ikm_id": "ikm-a", "event_id": "wide",
                       "channel": "website", "amount_idr": 1000 + i, "quantity": 1,
                       "occurred_at": f"{day.isoformat()}T12:00:00+00:00"})
        # The refund itself is dated the day before: only the sale's day may show it.
        values.append({"sale_id": f"r{i}", "kind": "refund", "refund_of": f"s{i}",
                       "ikm_id": "ikm-a", "event_id": "wide", "channel": "website",
                       "amount_idr": 1, "quantity": 0,
                       "occurred_at": f"{(day - timedelta(days=1)).isoformat()}T12:00:00+00:00"})
    records = as_records(values, settings.topic_sales)
    results = await apply_all(settings, registry, records, batch=500)
    assert {o.label for r in results for o in r.outcomes} == {"applied"}
    keys = Keys(settings.redis_prefix)
    fields = [k.decode() for k in redis_client.hgetall(keys.event_days("wide", "wide"))
              if isinstance(k, bytes)]
    assert {k for k in fields if k.endswith(":refunds_idr")} == {f"{d.isoformat()}:refunds_idr"
                                                                for d in days}
    assert compare(fold(records, registry, keys), snapshot(redis_client, keys, "")) == []


async def test_a_forced_digest_collision_is_a_conflict_not_a_second_booking(
        settings: Settings, redis_client: redis.Redis, registry: Registry,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two (ikm, sale_id) share an entry only if 90 bits of BLAKE2b agree (odds ~4e-12 at
    10**8 records per tree). Were they to, the later record with other content would be
    rejected (and dead-lettered) as a sale_id conflict, never booked twice or silently."""
    real = dedup_slot
    monkeypatch.setattr(batch, "dedup_slot",
                        lambda ikm, sale_id: real(ikm, "same" if sale_id in ("a", "b") else sale_id))
    values = [sale("a"), sale("b", amount_idr=5)]
    (result,) = await apply_all(settings, registry, as_records(values, settings.topic_sales))
    assert [o.label for o in result.outcomes] == ["applied", "rejected:sale_id_conflict"]
    assert [o.dead_letter[0] if o.dead_letter else None for o in result.outcomes] == [
        None, Reason.SALE_ID_CONFLICT]


async def test_events_sharing_an_event_code_are_set_aside_not_confused(
        settings: Settings, redis_client: redis.Redis) -> None:
    """Two events of one tree whose 4-byte codes collide: their records are rejected as
    internal_error (the registry must rename one), never compared by the shared code;
    the tree's other events go on."""
    window = {"timezone": "UTC", "starts_on": date(2024, 1, 1), "ends_on": date(2024, 1, 2),
              "ikm": ["ikm-a"]}
    registry = build_registry({
        "ikm": [{"id": "ikm-a"}],
        "events": [{"id": "expo-25478", **window},
                   {"id": "expo-54993", "parent": "expo-25478", **window},
                   {"id": "expo-1", "parent": "expo-25478", **window}]})
    values = [{"sale_id": f"s-{event}", "kind": "sale", "ikm_id": "ikm-a", "event_id": event,
               "channel": "website", "amount_idr": 10, "quantity": 1,
               "occurred_at": "2024-01-01T10:00:00+00:00"}
              for event in ("expo-54993", "expo-1")]
    (result,) = await apply_all(settings, registry, as_records(values, settings.topic_sales))
    shared, other = result.outcomes
    assert shared.label == "rejected:internal_error"
    assert "share the de-dup code" in shared.detail and "rename one" in shared.detail
    assert other.label == "applied"
    (bucket,) = dedup_keys(redis_client, Keys(settings.redis_prefix), "expo-25478")
    assert redis_client.hlen(bucket) == 1
