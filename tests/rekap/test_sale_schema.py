"""The published JSON Schema says what rekap.contract validates."""

from __future__ import annotations

import json
from importlib.resources import files

import jsonschema
import pytest

from rekap.contract import Sale, parse_sale
from rekap.names import CHANNELS
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY

SCHEMA = json.loads(files("rekap").joinpath("data", "sale-event.v1.schema.json").read_text())
GOOD = [
    {"sale_id": "01J0000000000000000000001", "kind": "sale", "ikm_id": "lampung-ethnica",
     "event_id": "lagawi-2022-kokas", "channel": "offline", "booth_id": "kokas-01",
     "amount_idr": 125000, "quantity": 2, "occurred_at": "2022-06-01T10:15:00+07:00",
     "sku": "tapis-01", "note": "unknown fields are kept"},
    {"sale_id": "tokped:INV/2022/04/1", "kind": "sale", "ikm_id": "pisang-shamiya",
     "event_id": "lagawi-2022", "channel": "marketplace", "amount_idr": 45000, "quantity": 3,
     "occurred_at": "2022-04-02T03:00:00Z", "schema_version": 1},
    {"sale_id": "r-1", "kind": "refund", "refund_of": "01J0000000000000000000001",
     "ikm_id": "lampung-ethnica", "event_id": "lagawi-2022-kokas", "channel": "offline",
     "booth_id": "kokas-01", "amount_idr": 5000, "quantity": 0,
     "occurred_at": "2022-06-02T10:15:00.123+07:00"},
]
BAD = [
    {**GOOD[0], "channel": "tiktok"},
    {**GOOD[0], "amount_idr": 0},
    {**GOOD[0], "amount_idr": 1.5},
    {**GOOD[0], "kind": "refund"},
    {**GOOD[1], "refund_of": "x"},
    {**GOOD[0], "booth_id": None},
    {**GOOD[0], "occurred_at": "2022-06-01 10:15"},
    {k: v for k, v in GOOD[1].items() if k != "sale_id"},
]


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("record", GOOD)
def test_good_records_pass_schema_and_contract(record: dict) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(record)
    reg = load_registry(DEFAULT_REGISTRY)
    assert isinstance(parse_sale(json.dumps(record), reg, record["ikm_id"]), Sale)


@pytest.mark.parametrize("record", BAD)
def test_bad_records_fail_schema_and_contract(record: dict) -> None:
    assert not jsonschema.Draft202012Validator(SCHEMA).is_valid(record)
    reg = load_registry(DEFAULT_REGISTRY)
    assert not isinstance(parse_sale(json.dumps(record), reg, record.get("ikm_id")), Sale)


def test_enums_match_the_code() -> None:
    props = SCHEMA["properties"]
    assert tuple(props["channel"]["enum"]) == CHANNELS
    assert set(props["kind"]["enum"]) == {"sale", "refund"}
    assert SCHEMA["additionalProperties"] is True
