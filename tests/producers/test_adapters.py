"""Channel adapters on the shipped sample payloads (pure, no I/O)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from producers.adapters import marketplace, virtual_expo, website
from producers.adapters.common import Item
from rekap.contract import Rejection, Sale, validate_sale
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY

SAMPLES = Path(__file__).resolve().parents[2] / "producers" / "samples"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry(DEFAULT_REGISTRY)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def valid(items: list[Item], registry: Registry) -> list[Sale]:
    out = []
    for item in items:
        assert isinstance(item.result, dict), item
        sale = validate_sale(dict(item.result), registry)
        assert isinstance(sale, Sale), sale
        out.append(sale)
    return out


def test_marketplace_paid_then_returned_is_a_sale_and_its_refund(registry: Registry) -> None:
    (paid,) = valid(marketplace.map_webhook(sample("marketplace-paid.json"), registry), registry)
    (refund,) = valid(marketplace.map_webhook(sample("marketplace-returned.json"), registry), registry)
    assert (paid.sale_id, paid.kind, paid.amount_idr, paid.quantity, paid.event_id, paid.channel) == (
        "mp:tokopedia:lampung-ethnica:INV-20220321-0001", "sale", 250_000, 2, "lagawi-2022",
        "marketplace")
    assert (refund.sale_id, refund.refund_of, refund.amount_idr, refund.quantity) == (
        paid.sale_id + ":refund:1", paid.sale_id, 125_000, 1)
    assert str(refund.day) == "2022-03-24"


def test_redelivered_webhook_maps_to_the_same_sale(registry: Registry) -> None:
    once = marketplace.map_webhook(sample("marketplace-paid.json"), registry)
    twice = marketplace.map_webhook(sample("marketplace-paid.json"), registry)
    assert once == twice


def test_marketplace_cancel_before_payment_and_other_statuses_are_ignored(registry: Registry) -> None:
    assert marketplace.map_webhook(sample("marketplace-cancelled-unpaid.json"), registry)[0].ignored
    shipped = {**sample("marketplace-paid.json"), "status": "shipped"}
    assert marketplace.map_webhook(shipped, registry)[0].ignored


@pytest.mark.parametrize(("change", "reason"), [
    ({"order_id": "INV 2022 0001"}, "bad_id"),
    ({"order_id": None}, "missing_field"),
    ({"total_idr": 999}, "wrong_type"),
    ({"items": [{"sku": "X", "qty": 0, "price_idr": 1000}], "total_idr": None}, "bad_quantity"),
    ({"paid_at": "kemarin sore"}, "bad_timestamp"),
    ({"shop_id": "toko-tidak-ada"}, "unknown_ikm"),
    ({"paid_at": "2022-07-01T10:00:00+07:00"}, "outside_event_window"),
])
def test_malformed_webhooks_are_rejected_with_a_reason(registry: Registry, change: dict[str, Any],
                                                         reason: str) -> None:
    body = {**sample("marketplace-paid.json"), **change}
    (item,) = marketplace.map_webhook(body, registry)
    assert isinstance(item.result, Rejection)
    assert item.result.reason == reason


def test_refund_larger_than_the_order_is_rejected(registry: Registry) -> None:
    body = {**sample("marketplace-returned.json"), "refund_idr": 300_000}
    (item,) = marketplace.map_webhook(body, registry)
    assert isinstance(item.result, Rejection) and item.result.reason == "refund_exceeds_sale"


def test_website_orders_map_sales_refunds_and_skip_unpaid(registry: Registry) -> None:
    items = website.map_orders(sample("website-orders.json"), registry)
    assert [i.ignored for i in items] == [False, False, False, True]
    sales = valid(items[:3], registry)
    assert [(s.sale_id, s.kind, s.amount_idr, s.quantity) for s in sales] == [
        ("web:esmartikm:ESI-2022-000123", "sale", 105_000, 3),
        ("web:esmartikm:ESI-2022-000123:refund:R1", "refund", 35_000, 1),
        ("web:esmartikm:ESI-2022-000124", "sale", 307_000, 3),
    ]
    assert website.map_orders(sample("website-orders.json"), registry) == items


def test_website_order_with_wrong_total_is_rejected_others_still_map(registry: Registry) -> None:
    payload = sample("website-orders.json")
    payload["orders"][1]["grand_total"] = 1
    items = website.map_orders(payload, registry)
    assert isinstance(items[2].result, Rejection) and items[2].result.reason == "wrong_type"
    assert isinstance(items[0].result, dict)


def test_virtual_expo_csv_import_and_reimport(registry: Registry) -> None:
    text = (SAMPLES / "virtual-expo.csv").read_text()
    items = virtual_expo.map_csv(text, registry)
    assert [i.ignored for i in items] == [False, False, False, False, True]
    sales = valid(items[:4], registry)
    assert [(s.sale_id, s.kind, s.amount_idr, s.refund_of) for s in sales] == [
        ("vx:telkom:VX220325-0001", "sale", 180_000, None),
        ("vx:telkom:VX220325-0002", "sale", 145_000, None),
        ("vx:telkom:VX220326-0003", "sale", 1_250_000, None),
        ("vx:telkom:VX220326-0004", "refund", 90_000, "vx:telkom:VX220325-0001"),
    ]
    assert sales[0].occurred_at.isoformat() == "2022-03-25T14:02:11+07:00"  # naive → WIB
    assert virtual_expo.map_csv(text, registry) == items


def test_virtual_expo_bad_rows_rejected_by_line(registry: Registry) -> None:
    text = ("trx_id,tenant_id,trx_time,sku,qty,total_idr,status,ref_trx_id\n"
            "VX1,askha-jaya,2022-03-25 14:02:11,A,1,12.5,SETTLED,\n"
            "VX2,askha-jaya,2022-03-25 14:02:11,A,1,0,SETTLED,\n"
            "VX3,askha-jaya,2022-03-25 14:02:11,A,1,100000,REFUND,\n"
            "VX4,askha-jaya,2022-03-25 14:02:11,A,1,100000,SETTLED,\n")
    items = virtual_expo.map_csv(text, registry)
    reasons = [i.result.reason if isinstance(i.result, Rejection) else "ok" for i in items]
    assert reasons == ["wrong_type", "non_positive_amount", "missing_field", "ok"]
    assert items[0].ref.startswith("line 2")
    missing = virtual_expo.map_csv("trx_id,tenant_id\nA,B\n", registry)
    assert isinstance(missing[0].result, Rejection) and missing[0].result.reason == "missing_field"
