"""Ingest over real HTTP into the real broker: auth, scope, validation reasons, batches."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.producers.conftest import Ingest
from tests.support.kafka import read_all

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "producers" / "samples"


def booth_sale(n: int = 1, **changes: Any) -> dict[str, Any]:
    sale = json.loads((SAMPLES / "booth-sale.json").read_text())
    sale["sale_id"] = f"01G4D3X2N6Q8Z5V7B9C1E3F{n:03d}"
    sale.update(changes)
    return {k: v for k, v in sale.items() if v is not None}


def topic_ids(ingest: Ingest) -> list[str]:
    return [json.loads(r.value)["sale_id"] for r in read_all(ingest.settings, ingest.settings.topic_sales)]


async def test_accepted_sale_is_in_the_topic_keyed_by_ikm(ingest: Ingest) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        resp = await client.post("/v1/sales", json=booth_sale(), headers=ingest.booth("kokas-01"))
    assert resp.status_code == 202, resp.text
    assert resp.json()["result"]["status"] == "accepted"
    records = read_all(ingest.settings, ingest.settings.topic_sales)
    assert [(r.key, json.loads(r.value)["sale_id"]) for r in records] == \
        [(b"lampung-ethnica", booth_sale()["sale_id"])]


@pytest.mark.parametrize(("headers", "status", "reason"), [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Bearer not-a-real-token"}, 401, "unauthorized"),
    ({"Authorization": "Basic a29rYXM6MDE="}, 401, "unauthorized"),
])
async def test_missing_or_wrong_token_is_401_and_nothing_is_produced(
        ingest: Ingest, headers: dict[str, str], status: int, reason: str) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        resp = await client.post("/v1/sales", json=booth_sale(), headers=headers)
    assert resp.status_code == status
    assert resp.json()["error"]["reason"] == reason
    assert topic_ids(ingest) == []


@pytest.mark.parametrize(("token", "sale", "reason"), [
    # kokas-02 belongs to pisang-shamiya: it may not post for lampung-ethnica
    ("kokas-02", booth_sale(ikm_id="lampung-ethnica", booth_id=None), "booth_not_allowed"),
    ("kokas-01", booth_sale(booth_id="kokas-02"), "booth_not_allowed"),
    ("kokas-01", booth_sale(event_id="lagawi-2022"), "booth_not_allowed"),
    ("kokas-01", booth_sale(channel="marketplace"), "booth_not_allowed"),
])
async def test_booth_outside_its_scope_is_403_and_nothing_is_produced(
        ingest: Ingest, token: str, sale: dict[str, Any], reason: str) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        resp = await client.post("/v1/sales", json=sale, headers=ingest.booth(token))
    assert resp.status_code == 403, resp.text
    assert resp.json()["error"]["reason"] == reason
    assert topic_ids(ingest) == []


async def test_channel_token_posts_only_its_channel(ingest: Ingest) -> None:
    online = booth_sale(channel="website", event_id="lagawi-2022", booth_id=None,
                        sale_id="web:esmartikm:T-1")
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        wrong = await client.post("/v1/sales", json=online, headers=ingest.channel("marketplace"))
        offline = await client.post("/v1/sales", json=booth_sale(), headers=ingest.channel("website"))
        right = await client.post("/v1/sales", json=online, headers=ingest.channel("website"))
    assert (wrong.status_code, wrong.json()["error"]["reason"]) == (403, "channel_not_allowed")
    assert (offline.status_code, offline.json()["error"]["reason"]) == (403, "channel_not_allowed")
    assert right.status_code == 202
    assert topic_ids(ingest) == ["web:esmartikm:T-1"]


def _invalid(reason: str) -> dict[str, Any] | bytes:
    sale = booth_sale()
    if reason == "malformed_json":
        return b'{"sale_id": "x", '
    if reason == "missing_field":
        del sale["amount_idr"]
    elif reason == "wrong_type":
        sale["amount_idr"] = "350000"
    elif reason == "bad_timestamp":
        sale["occurred_at"] = "01/06/2022 13:45"
    elif reason == "non_positive_amount":
        sale["amount_idr"] = -5
    elif reason == "amount_too_large":
        sale["amount_idr"] = 100_000_001
    elif reason == "outside_event_window":
        sale["occurred_at"] = "2022-06-07T10:00:00+07:00"
    elif reason == "unknown_kind":
        sale["kind"] = "gift"
    elif reason == "refund_without_target":
        sale["kind"] = "refund"
    return sale


@pytest.mark.parametrize(("reason", "status"), [
    ("malformed_json", 400), ("missing_field", 400), ("wrong_type", 400), ("bad_timestamp", 400),
    ("unknown_kind", 400), ("non_positive_amount", 422), ("amount_too_large", 422),
    ("outside_event_window", 422), ("refund_without_target", 422),
])
async def test_each_invalid_sale_gets_its_reason(ingest: Ingest, reason: str, status: int) -> None:
    body = _invalid(reason)
    kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        resp = await client.post("/v1/sales", headers=ingest.booth("kokas-01"), **kwargs)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["reason"] == reason
    assert resp.json()["error"]["detail"]
    assert topic_ids(ingest) == []


async def test_body_over_the_cap_is_413(ingest: Ingest) -> None:
    big = {"sales": [booth_sale(n, sku="X" * 2000) for n in range(600)]}
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        resp = await client.post("/v1/sales", json=big, headers=ingest.booth("kokas-01"))
    assert resp.status_code == 413
    assert resp.json()["error"]["reason"] == "body_too_large"
    assert topic_ids(ingest) == []


async def test_batch_answers_per_item_and_produces_only_the_good_ones(ingest: Ingest) -> None:
    good = [booth_sale(n) for n in range(1, 4)]
    bad = booth_sale(9, amount_idr=0)
    foreign = booth_sale(8, ikm_id="littlemonq")
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        resp = await client.post("/v1/sales", json={"sales": [good[0], bad, good[1], foreign, good[2]]},
                                 headers=ingest.booth("kokas-01"))
        again = await client.post("/v1/sales", json={"sales": good}, headers=ingest.booth("kokas-01"))
    assert resp.status_code == 207
    got = [(r["status"], r["http_status"], r.get("error", {}).get("reason")) for r in resp.json()["results"]]
    assert got == [("accepted", 202, None), ("rejected", 422, "non_positive_amount"),
                   ("accepted", 202, None), ("rejected", 403, "booth_not_allowed"),
                   ("accepted", 202, None)]
    assert again.status_code == 202  # a retried batch is accepted again; the worker de-dups
    ids = topic_ids(ingest)
    assert sorted(set(ids)) == sorted(s["sale_id"] for s in good)
    assert len(ids) == 6


async def test_health_readiness_and_metrics(ingest: Ingest) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        await client.post("/v1/sales", json=booth_sale(), headers=ingest.booth("kokas-01"))
        await client.post("/v1/sales", json=booth_sale(2, amount_idr=0), headers=ingest.booth("kokas-01"))
        await client.post("/v1/sales", json=booth_sale(3))
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
    assert health.status_code == 200
    assert ready.status_code == 200, ready.text
    assert 'rekap_ingest_requests_total{outcome="accepted"} 1.0' in metrics
    assert 'rekap_ingest_requests_total{outcome="unauthorized"} 1.0' in metrics
    assert 'rekap_ingest_items_total{outcome="rejected",reason="non_positive_amount"} 1.0' in metrics
    assert "rekap_ingest_request_seconds_bucket" in metrics


async def test_channel_routes_map_samples_and_redelivery_keeps_ids(ingest: Ingest) -> None:
    paid = (SAMPLES / "marketplace-paid.json").read_bytes()
    returned = (SAMPLES / "marketplace-returned.json").read_bytes()
    orders = (SAMPLES / "website-orders.json").read_bytes()
    csv = (SAMPLES / "virtual-expo.csv").read_bytes()
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        for _ in range(2):  # a re-delivered webhook, a re-imported export
            r1 = await client.post("/v1/channels/marketplace/webhook", content=paid,
                                   headers=ingest.channel("marketplace"))
            r2 = await client.post("/v1/channels/marketplace/webhook", content=returned,
                                   headers=ingest.channel("marketplace"))
            r3 = await client.post("/v1/channels/website/orders", content=orders,
                                   headers=ingest.channel("website"))
            r4 = await client.post("/v1/channels/virtual-expo/import", content=csv,
                                   headers=ingest.channel("virtual_expo"))
            assert [r.status_code for r in (r1, r2, r3, r4)] == [202] * 4, [r.text for r in (r1, r2, r3, r4)]
        wrong = await client.post("/v1/channels/website/orders", content=orders,
                                  headers=ingest.channel("marketplace"))
    assert wrong.status_code == 403
    ids = topic_ids(ingest)
    assert len(ids) == 2 * len(set(ids))
    assert set(ids) == {
        "mp:tokopedia:lampung-ethnica:INV-20220321-0001",
        "mp:tokopedia:lampung-ethnica:INV-20220321-0001:refund:1",
        "web:esmartikm:ESI-2022-000123", "web:esmartikm:ESI-2022-000123:refund:R1",
        "web:esmartikm:ESI-2022-000124",
        "vx:telkom:VX220325-0001", "vx:telkom:VX220325-0002", "vx:telkom:VX220326-0003",
        "vx:telkom:VX220326-0004"}


def test_samples_are_not_mutated_by_helpers() -> None:
    sale = booth_sale()
    copy.deepcopy(sale)["amount_idr"] = 1
    assert booth_sale()["amount_idr"] == 350000
