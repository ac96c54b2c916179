from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from rekap.contract import Reason, Rejection, Sale, parse_sale
from rekap.registry import Registry, load_registry
from rekap.settings import DEFAULT_REGISTRY

REG: Registry = load_registry(DEFAULT_REGISTRY)


def sale(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "sale_id": "01HZZSALE0000000000000001", "kind": "sale", "ikm_id": "littlemonq",
        "event_id": "lagawi-2022-kokas", "channel": "offline", "booth_id": "kokas-03",
        "amount_idr": 125_000, "quantity": 2, "occurred_at": "2022-06-01T10:15:00+07:00",
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def parse(record: dict[str, Any], key: str | None = "littlemonq") -> Sale | Rejection:
    return parse_sale(json.dumps(record).encode(), REG, key.encode() if key else None)


def test_a_valid_sale_keeps_unknown_fields_and_knows_its_day() -> None:
    result = parse(sale(promo="LAGAWI10"))
    assert isinstance(result, Sale)
    assert result.day == date(2022, 6, 1)
    assert result.extra == {"promo": "LAGAWI10"}
    assert json.loads(result.to_bytes())["promo"] == "LAGAWI10"
    again = parse_sale(result.to_bytes(), REG, b"littlemonq")
    assert again == result


def test_late_evening_utc_lands_in_the_next_wib_day() -> None:
    result = parse(sale(occurred_at="2022-06-01T23:30:00Z"))
    assert isinstance(result, Sale) and result.day == date(2022, 6, 2)


@pytest.mark.parametrize(("record", "reason"), [
    (sale(sale_id=None), Reason.MISSING_FIELD),
    (sale(amount_idr="125000"), Reason.WRONG_TYPE),
    (sale(amount_idr=125000.0), Reason.WRONG_TYPE),
    (sale(amount_idr=True), Reason.WRONG_TYPE),
    (sale(sale_id="has space"), Reason.BAD_ID),
    # A trailing newline is not part of an id (a "$" pattern would let it through).
    (sale(sale_id="h-1\n"), Reason.BAD_ID),
    (sale(schema_version=2), Reason.UNSUPPORTED_VERSION),
    (sale(kind="void"), Reason.UNKNOWN_KIND),
    (sale(channel="tiktok"), Reason.UNKNOWN_CHANNEL),
    (sale(amount_idr=0), Reason.NON_POSITIVE_AMOUNT),
    (sale(amount_idr=-5), Reason.NON_POSITIVE_AMOUNT),
    (sale(amount_idr=100_000_001), Reason.AMOUNT_TOO_LARGE),
    (sale(quantity=0), Reason.BAD_QUANTITY),
    (sale(occurred_at="2022-06-01 10:15:00"), Reason.BAD_TIMESTAMP),
    (sale(occurred_at="2022-06-31T10:15:00+07:00"), Reason.BAD_TIMESTAMP),
    (sale(event_id="lagawi-2099"), Reason.UNKNOWN_EVENT),
    (sale(ikm_id="ikm-hantu"), Reason.UNKNOWN_IKM),
    (sale(occurred_at="2022-06-07T00:10:00+07:00"), Reason.OUTSIDE_EVENT_WINDOW),
    (sale(occurred_at="2022-05-31T16:59:59Z"), Reason.OUTSIDE_EVENT_WINDOW),
    (sale(booth_id=None), Reason.BOOTH_REQUIRED),
    (sale(booth_id="kokas-99"), Reason.UNKNOWN_BOOTH),
    (sale(booth_id="kokas-01"), Reason.BOOTH_NOT_ALLOWED),
    (sale(kind="refund"), Reason.REFUND_WITHOUT_TARGET),
    (sale(refund_of="01HZZSALE0000000000000000"), Reason.REFUND_WITHOUT_TARGET),
])
def test_each_rejection_names_its_reason(record: dict[str, Any], reason: Reason) -> None:
    result = parse(record, key=record.get("ikm_id"))
    assert isinstance(result, Rejection), result
    assert result.reason is reason
    assert result.detail


@pytest.mark.parametrize("channel", ["marketplace", "website", "virtual_expo"])
def test_an_online_sale_in_the_booths_only_exhibition_is_rejected(channel: str) -> None:
    result = parse(sale(channel=channel, booth_id=None))
    assert isinstance(result, Rejection) and result.reason is Reason.CHANNEL_NOT_IN_EVENT
    assert "lagawi-2022-kokas" in result.detail and channel in result.detail
    # The same sale in the programme, which takes every channel, is fine.
    assert isinstance(parse(sale(channel=channel, booth_id=None, event_id="lagawi-2022",
                                 occurred_at="2022-04-01T10:00:00+07:00")), Sale)


def test_ikm_not_in_event() -> None:
    raw = REG.events["lagawi-2022-kokas"]
    narrowed = Registry(events={**REG.events, raw.id: type(raw)(**{**raw.__dict__,
                        "ikm": raw.ikm - {"littlemonq"}})}, ikm=REG.ikm, booths=REG.booths)
    result = parse_sale(json.dumps(sale()).encode(), narrowed, b"littlemonq")
    assert isinstance(result, Rejection) and result.reason is Reason.IKM_NOT_IN_EVENT


@pytest.mark.parametrize(("raw", "reason"), [
    (b"{not json", Reason.MALFORMED_JSON),
    (b"\xff\xfe", Reason.MALFORMED_JSON),
    (b"[1, 2]", Reason.NOT_AN_OBJECT),
])
def test_undecodable_records(raw: bytes, reason: Reason) -> None:
    result = parse_sale(raw, REG, b"x")
    assert isinstance(result, Rejection) and result.reason is reason


def test_the_record_key_must_be_the_ikm() -> None:
    for key in ("pisang-shamiya", None):
        result = parse(sale(), key=key)
        assert isinstance(result, Rejection) and result.reason is Reason.KEY_MISMATCH


def test_refunds_may_take_back_zero_units_but_sales_may_not() -> None:
    refund = parse(sale(kind="refund", sale_id="R1", refund_of="S1", quantity=0))
    assert isinstance(refund, Sale) and refund.refund_of == "S1"
    assert isinstance(parse(sale(quantity=0)), Rejection)


def test_online_channels_need_no_booth() -> None:
    result = parse(sale(channel="marketplace", booth_id=None, event_id="lagawi-2022",
                        occurred_at="2022-04-02T19:00:00+07:00"))
    assert isinstance(result, Sale) and result.booth_id is None
