"""A refund comes through the channel of its sale, also for records that never passed ingest.

Ingest refuses a refund_of outside the token's sale_id namespace; the Redis apply
(``apply_batch.lua``) refuses any refund whose channel is not its sale's, so a record
produced straight to Kafka cannot take back another channel's or a booth's sale either.
"""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest
import redis

from consumers.reconcile import compare, snapshot
from rekap.ledger import fold
from rekap.names import Keys
from rekap.registry import Registry, build_registry, load_registry
from rekap.settings import DEFAULT_REGISTRY, Settings
from tests.streams.test_apply import ROOT, apply_all, as_records
from tests.support.kafka import produce_json, read_all
from tests.support.procs import wait_until
from tests.support.worker import start_worker

pytestmark = pytest.mark.integration

KOKAS = "lagawi-2022-kokas"
IKM = "lampung-ethnica"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


def sale(sale_id: str, channel: str, **changes: Any) -> dict[str, Any]:
    base = {"sale_id": sale_id, "kind": "sale", "ikm_id": IKM, "event_id": ROOT,
            "channel": channel, "amount_idr": 100_000, "quantity": 2,
            "occurred_at": "2022-05-01T10:00:00+07:00"}
    return {**base, **changes}


def refund(sale_id: str, of: str, channel: str, **changes: Any) -> dict[str, Any]:
    return sale(sale_id, channel, **{"kind": "refund", "refund_of": of, "amount_idr": 10_000,
                                     "quantity": 0, **changes})


BOOTH = {"event_id": KOKAS, "booth_id": "kokas-01", "occurred_at": "2022-06-02T10:00:00+07:00"}


async def test_the_script_refuses_a_refund_through_another_channel(
        settings: Settings, redis_client: redis.Redis, registry: Registry) -> None:
    values = [
        sale("mp:tokopedia:lampung-ethnica:1", "marketplace"),
        sale("01G4D3X2N6Q8Z5V7B9C1E3F001", "offline", **BOOTH),
        # Another channel taking back the marketplace sale.
        refund("web:esmartikm:1:refund:1", "mp:tokopedia:lampung-ethnica:1", "website"),
        # An offline refund of it (a booth of the programme would be refused by the contract
        # first; in the same event only the channel differs).
        refund("vx:telkom:2", "mp:tokopedia:lampung-ethnica:1", "virtual_expo"),
        # Online refunds of the booth's sale, in its (booths-only) event and in the programme.
        refund("web:esmartikm:3", "01G4D3X2N6Q8Z5V7B9C1E3F001", "website", event_id=KOKAS,
               occurred_at=BOOTH["occurred_at"]),
        # The sale's own channel may, and its booth.
        refund("mp:tokopedia:lampung-ethnica:1:refund:1", "mp:tokopedia:lampung-ethnica:1",
               "marketplace"),
        refund("01G4D3X2N6Q8Z5V7B9C1E3F002", "01G4D3X2N6Q8Z5V7B9C1E3F001", "offline", **BOOTH),
    ]
    records = as_records(values, settings.topic_sales)
    (result,) = await apply_all(settings, registry, records)
    assert [(o.label, o.detail) for o in result.outcomes] == [
        ("applied", ""), ("applied", ""),
        ("rejected:refund_mismatch",
         f"refund_of mp:tokopedia:lampung-ethnica:1 is a sale of {IKM} through channel marketplace; "
         "a refund "
         "must come through that channel, not website"),
        ("rejected:refund_mismatch",
         f"refund_of mp:tokopedia:lampung-ethnica:1 is a sale of {IKM} through channel marketplace; "
         "a refund "
         "must come through that channel, not virtual_expo"),
        # The contract refuses this one before Redis: the exhibition takes only offline sales.
        ("rejected:channel_not_in_event",
         f"event '{KOKAS}' takes only channel(s) offline, not 'website'"),
        ("applied", ""), ("applied", "")]
    keys = Keys(settings.redis_prefix)
    totals = redis_client.hgetall(keys.event_totals(ROOT, ROOT))
    assert totals[b"ch:marketplace:refunds_idr"] == b"10000"
    assert totals[b"ch:offline:refunds_idr"] == b"10000"
    assert totals[b"refunds_idr"] == b"20000" and totals[b"refund_count"] == b"2"
    # The ledger model (reconcile, rebuild, ground truth) says the same.
    assert compare(fold(records, registry, keys), snapshot(redis_client, keys, "")) == []


async def test_the_script_refuses_an_online_refund_of_a_booth_sale_in_an_open_event(
        settings: Settings, redis_client: redis.Redis) -> None:
    """With the exhibition open to every channel, the contract lets an online refund of a
    booth's sale through: only the script's channel check stands in its way."""
    text = DEFAULT_REGISTRY.read_text()
    assert 'channels = ["offline"]\n' in text
    registry = build_registry(tomllib.loads(text.replace('channels = ["offline"]\n', "")))
    assert registry.events[KOKAS].channels >= {"website", "offline"}
    values = [sale("01G4D3X2N6Q8Z5V7B9C1E3F001", "offline", **BOOTH),
              refund("web:esmartikm:9", "01G4D3X2N6Q8Z5V7B9C1E3F001", "website", event_id=KOKAS,
                     occurred_at=BOOTH["occurred_at"])]
    records = as_records(values, settings.topic_sales)
    (result,) = await apply_all(settings, registry, records)
    assert [o.label for o in result.outcomes] == ["applied", "rejected:refund_mismatch"]
    assert result.outcomes[1].detail.endswith("is a sale of lampung-ethnica through channel "
                                              "offline; a refund must come through that "
                                              "channel, not website")
    keys = Keys(settings.redis_prefix)
    assert b"refunds_idr" not in redis_client.hgetall(keys.event_totals(ROOT, KOKAS))
    assert compare(fold(records, registry, keys), snapshot(redis_client, keys, "")) == []


def test_the_worker_dead_letters_a_refund_produced_straight_to_kafka(
        settings: Settings, redis_client: redis.Redis) -> None:
    good = sale("web:esmartikm:77", "website")
    stolen = refund("mp:tokopedia:lampung-ethnica:77", good["sale_id"], "marketplace")
    booth = sale("01G4D3X2N6Q8Z5V7B9C1E3F077", "offline", **BOOTH)
    online_at_booth = sale("web:esmartikm:78", "website", event_id=KOKAS,
                           occurred_at=BOOTH["occurred_at"])
    produce_json(settings, [good, booth, stolen, online_at_booth])
    worker = start_worker(settings)
    try:
        dead = wait_until(lambda: (lambda m: m if len(m) == 2 else None)(
            read_all(settings, settings.topic_dead_letter)), timeout=30, message="dead letters")
        by_id = {json.loads(json.loads(m.value)["original_text"])["sale_id"]: json.loads(m.value)
                 for m in dead}
        assert by_id[stolen["sale_id"]]["reason"] == "refund_mismatch"
        assert "must come through that channel, not marketplace" in \
            by_id[stolen["sale_id"]]["detail"]
        assert by_id[online_at_booth["sale_id"]]["reason"] == "channel_not_in_event"
        keys = Keys(settings.redis_prefix)
        totals = redis_client.hgetall(keys.event_totals(ROOT, ROOT))
        assert totals[b"count"] == b"2" and b"refunds_idr" not in totals
    finally:
        worker.stop()
