"""No bytes make the sale parser raise; every rejection names a reason and says why, briefly."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rekap.contract import MAX_RECORD_BYTES, Reason, Rejection, Sale, parse_sale
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY

REG = load_registry(DEFAULT_REGISTRY)
GOOD = {"sale_id": "h-1", "kind": "sale", "ikm_id": "seruit-kita", "event_id": "lagawi-2022",
        "channel": "website", "amount_idr": 20_000, "quantity": 1,
        "occurred_at": "2022-04-10T10:00:00+07:00"}

HOSTILE_VALUES = st.one_of(
    st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(), st.booleans(),
    st.none(), st.lists(st.integers(), max_size=3),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59",
                     "2022-06-01T10:00:00+99:99", "2022-06-01T10:00:00.1234567891+07:00",
                     "\ud800", "x" * 5000]))


def check(result: Sale | Rejection) -> None:
    if isinstance(result, Sale):
        again = parse_sale(result.to_bytes(), REG, result.ikm_id.encode())
        assert again == result
        result.occurred_at.timestamp()
    else:
        assert isinstance(result.reason, Reason)
        assert result.detail and len(result.detail) <= 400, result.detail[:500]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    check(parse_sale(raw, REG, b"seruit-kita"))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(GOOD)), HOSTILE_VALUES)
def test_a_valid_sale_with_one_hostile_field_never_raises(name: str, value: object) -> None:
    raw = json.dumps({**GOOD, name: value}).encode("utf-8", "surrogatepass")
    check(parse_sale(raw, REG, b"seruit-kita"))


@pytest.mark.parametrize(("raw", "reason"), [
    (b"[" * 100_000, Reason.NESTING_TOO_DEEP),
    (b'{"a":' * 100_000, Reason.NESTING_TOO_DEEP),
    (json.dumps(GOOD).replace('"amount_idr": 20000', '"amount_idr": ' + "1" * 5000).encode(),
     Reason.NUMBER_TOO_LONG),
    (json.dumps(GOOD)[:-1].encode() + b', "extra": ' + b"9" * 5000 + b"}", Reason.NUMBER_TOO_LONG),
    (b'{"sale_id": "\xff\xfe"}', Reason.MALFORMED_JSON),
    (json.dumps({**GOOD, "sku": "\ud800"}).encode(), Reason.INVALID_TEXT),
    (json.dumps({**GOOD, "\udfff": 1}).encode(), Reason.INVALID_TEXT),
    (json.dumps(GOOD)[:-1].encode() + b', "x": NaN}', Reason.MALFORMED_JSON),
    (json.dumps(GOOD).replace("20000", "Infinity").encode(), Reason.MALFORMED_JSON),
    (json.dumps({**GOOD, "occurred_at": "0001-01-01T00:00:00+14:00"}).encode(),
     Reason.BAD_TIMESTAMP),
    (json.dumps({**GOOD, "occurred_at": "9999-12-31T23:59:59-23:59"}).encode(),
     Reason.BAD_TIMESTAMP),
    (b" " * (MAX_RECORD_BYTES + 1), Reason.RECORD_TOO_LARGE),
    (json.dumps({**GOOD, "sku": "x" * 10_000_000}).encode(), Reason.RECORD_TOO_LARGE),
    (None, Reason.NOT_AN_OBJECT),
])
def test_each_hostile_kind_has_its_reason(raw: bytes | None, reason: Reason) -> None:
    result = parse_sale(raw, REG, b"seruit-kita")
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result
    check(result)
