"""The fast paths of the sale parser change its cost, never its answers.

:func:`decode_object` reads a flat object with orjson and everything else with
:mod:`json` (the reference): the two must give the same object, to the type of
each value and the order of the keys, and the same rejection with the same
detail. orjson differs from :mod:`json` in ways the contract cares about
(integers past 64 bits become floats, NaN/Infinity, lone surrogates, 1e999, a
BOM are refused), so each such input is pinned here, and the property tests
compare the two readings on sale-shaped and hostile input.

The validator's checks run in a fixed order (the first that fails is the
reason); the examples of records with two faults pin that order. The frozen
records that are built once per record spell out their ``__init__``; the last
tests keep those in step with the declared fields.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rekap import contract
from rekap.contract import Reason, Rejection, Sale, decode_object, parse_sale
from rekap.records import ConsumedRecord, PlannedRecord
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY
from tests.rekap.test_contract_hostile import DOCUMENTS, GOOD, KEY, VALID, mutated_sales

REG = load_registry(DEFAULT_REGISTRY)


def reference(raw: bytes | str) -> dict[str, Any] | Rejection:
    """The record read by :mod:`json` alone: what decode_object answered before orjson."""
    assert raw and len(raw) <= contract.MAX_RECORD_BYTES
    text = contract._text_of(raw)
    return text if isinstance(text, Rejection) else contract._decode_text(text)


def strict(result: object) -> str:
    """Equal only if equal in type too (1, 1.0 and True are == in Python) and in key order."""
    if isinstance(result, Rejection):
        return f"rejected {result.reason.value}: {result.detail}"
    return json.dumps(result, default=repr) + repr(result)


def same_as_reference(raw: bytes | str) -> dict[str, Any] | Rejection:
    result = decode_object(raw)
    assert strict(result) == strict(reference(raw))
    return result


def _with(raw_field: str, raw_value: str, base: dict[str, Any] = GOOD) -> bytes:
    rest = {k: v for k, v in base.items() if k != raw_field}
    return (json.dumps(rest)[:-1] + f', "{raw_field}": {raw_value}}}').encode()


# --- where orjson and json part ----------------------------------------------------------

@pytest.mark.parametrize("literal", [
    "18446744073709551615", "18446744073709551616", "9223372036854775808", "-9223372036854775808",
    "-9223372036854775809", "1" * 30, "-" + "9" * 300, "-0", "0"])
def test_integers_stay_exact_integers(literal: str) -> None:
    # orjson reads an integer past 64 bits as a float: such a record must be read by json.
    result = same_as_reference(_with("note", literal))
    assert isinstance(result, dict)
    assert type(result["note"]) is int and result["note"] == int(literal)


def test_a_huge_amount_is_too_large_not_a_float() -> None:
    result = parse_sale(_with("amount_idr", "1" + "0" * 25), REG, KEY)
    assert isinstance(result, Rejection) and result.reason is Reason.AMOUNT_TOO_LARGE


@pytest.mark.parametrize(("literal", "kind"), [
    ("10.5", float), ("1.0", float), ("-0.0", float), ("1E2", float), ("1e-400", float),
    ("2.2250738585072011e-308", float), ("123456789012345678901234567890.5", float),
    ("true", bool), ("null", type(None)), ('"\\u00e9\\ud83d\\ude00\\/"', str), ("[1, 2.5]", list),
    ('{"a": {"b": 1}}', dict)])
def test_other_values_read_as_json_reads_them(literal: str, kind: type) -> None:
    result = same_as_reference(_with("note", literal))
    assert isinstance(result, dict) and type(result["note"]) is kind


@pytest.mark.parametrize(("raw", "reason"), [
    (_with("note", "1e999"), Reason.NUMBER_TOO_LONG),
    (_with("amount_idr", "-1E400"), Reason.NUMBER_TOO_LONG),
    (_with("note", "NaN"), Reason.MALFORMED_JSON),
    (_with("quantity", "-Infinity"), Reason.MALFORMED_JSON),
    (_with("sku", r'"\ud800"'), Reason.INVALID_TEXT),
    (_with("sku", r'"\udc00"'), Reason.INVALID_TEXT),
    (_with("sku", r'"\ud800\u0041"'), Reason.INVALID_TEXT),
    (_with(r"\ud83d", "1"), Reason.INVALID_TEXT),
    (b'{"sku": "\xed\xa0\x80"}', Reason.MALFORMED_JSON),  # a surrogate encoded (CESU)
    (b'{"sku": "\xc0\x80"}', Reason.MALFORMED_JSON),  # an overlong NUL
    (b'{"sku": "\xf4\x90\x80\x80"}', Reason.MALFORMED_JSON),  # past U+10FFFF
    (b'{"sku": "\x01"}', Reason.MALFORMED_JSON),
    (b'{"a": 1}x', Reason.MALFORMED_JSON),
    (b'{"a": 01}', Reason.MALFORMED_JSON),
    (b'{"a": 1,}', Reason.MALFORMED_JSON),
    (b'{"a": 1', Reason.MALFORMED_JSON),
    (b"[1, 2]", Reason.NOT_AN_OBJECT),
])
def test_refusals_keep_their_reason_and_detail(raw: bytes, reason: Reason) -> None:
    result = same_as_reference(raw)
    assert isinstance(result, Rejection) and result.reason is reason


@pytest.mark.parametrize("raw", [
    b"\xef\xbb\xbf" + json.dumps(GOOD).encode(),  # a UTF-8 BOM, which orjson refuses
    json.dumps(GOOD).encode("utf-16"),
    json.dumps(GOOD).encode("utf-32-le"),
    b" \n\t" + json.dumps(GOOD).encode() + b"\r\n ",
    json.dumps(GOOD, indent=2).encode(),
    json.dumps({**GOOD, "note": "Kopi Lampung – é ü 😀"}, ensure_ascii=False).encode(),
    json.dumps(GOOD),  # text handed in as str
])
def test_records_json_accepts_are_accepted_alike(raw: bytes | str) -> None:
    assert isinstance(same_as_reference(raw), dict)
    assert isinstance(parse_sale(raw, REG, KEY), Sale)


def test_the_last_of_duplicate_keys_wins_in_the_first_ones_place() -> None:
    raw = b'{"sku": "a", "amount_idr": "x", ' + json.dumps(GOOD).encode()[1:-1] + b', "sku": "b"}'
    result = same_as_reference(raw)
    assert isinstance(result, dict) and list(result)[:2] == ["sku", "amount_idr"]
    sale = parse_sale(raw, REG, KEY)
    assert isinstance(sale, Sale) and sale.sku == "b" and sale.amount_idr == GOOD["amount_idr"]


# --- both readings agree on anything -----------------------------------------------------

def fuzz(examples: int) -> hypothesis_settings:
    return hypothesis_settings(max_examples=examples, deadline=None, derandomize=True, database=None)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2 ** 70), 2 ** 70), st.floats(),
    st.text(max_size=8), st.sampled_from(["sale", "refund", "offline", "website", "littlemonq",
                                          "lagawi-2022", "kokas-03", "h 1", "x\n", ""]))
FIELDS = [*sorted(GOOD), "schema_version", "refund_of", "sku", "booth_id", "note"]


@st.composite
def sale_texts(draw: st.DrawFn) -> str:
    """A valid sale with fields dropped, replaced (any type) or repeated, laid out in any way."""
    pairs = list(draw(st.sampled_from(VALID)).items())
    for _ in range(draw(st.integers(0, 4))):
        name = draw(st.sampled_from(FIELDS))
        how = draw(st.integers(0, 2))
        if how == 0:
            pairs = [(k, v) for k, v in pairs if k != name]
        else:  # 1: replace, 2: repeat with another value
            pairs = [(k, v) for k, v in pairs if k != name or how == 2] + [(name, draw(SCALARS))]
    pairs = draw(st.permutations(pairs))
    comma, colon = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    ascii_only = draw(st.booleans())
    return "{" + comma.join(json.dumps(k) + colon + json.dumps(v, ensure_ascii=ascii_only)
                            for k, v in pairs) + "}"


@fuzz(600)
@given(text=sale_texts())
def test_sale_shaped_records_read_alike(text: str) -> None:
    same_as_reference(text.encode())
    result = parse_sale(text.encode(), REG, KEY)
    assert isinstance(result, Sale | Rejection)


@fuzz(400)
@given(text=DOCUMENTS)
def test_hostile_documents_read_alike(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    if raw and len(raw) <= contract.MAX_RECORD_BYTES:
        same_as_reference(raw)


@fuzz(300)
@given(record=mutated_sales())
def test_sales_with_a_hostile_field_read_alike(record: tuple[str, bytes]) -> None:
    same_as_reference(record[0].encode("utf-8", "surrogatepass"))


@fuzz(300)
@given(raw=st.binary(min_size=1, max_size=300))
def test_random_bytes_read_alike(raw: bytes) -> None:
    same_as_reference(raw)
    same_as_reference(b"{" + raw)


# --- the order of the checks -------------------------------------------------------------

@pytest.mark.parametrize(("changes", "reason"), [
    ({"schema_version": 2, "sale_id": None}, Reason.UNSUPPORTED_VERSION),
    ({"sale_id": "a b", "kind": None}, Reason.BAD_ID),
    ({"sale_id": 5, "kind": "void"}, Reason.WRONG_TYPE),
    ({"kind": 1, "ikm_id": None}, Reason.WRONG_TYPE),
    ({"kind": "void", "ikm_id": "a b"}, Reason.UNKNOWN_KIND),
    ({"ikm_id": None, "event_id": 3}, Reason.MISSING_FIELD),
    ({"event_id": "a b", "channel": "tiktok"}, Reason.BAD_ID),
    ({"channel": ["web"], "amount_idr": "1"}, Reason.WRONG_TYPE),
    ({"channel": "tiktok", "amount_idr": "1"}, Reason.UNKNOWN_CHANNEL),
    ({"amount_idr": True, "quantity": None}, Reason.WRONG_TYPE),
    ({"quantity": None, "occurred_at": 5}, Reason.MISSING_FIELD),
    ({"occurred_at": 5, "booth_id": 5}, Reason.WRONG_TYPE),
    ({"booth_id": "a b", "sku": 5}, Reason.BAD_ID),
    ({"sku": 5, "refund_of": "a b"}, Reason.WRONG_TYPE),
    ({"refund_of": "a b", "amount_idr": 0}, Reason.BAD_ID),
    ({"amount_idr": 0, "occurred_at": "yesterday"}, Reason.NON_POSITIVE_AMOUNT),
    ({"refund_of": "h-0", "occurred_at": "yesterday"}, Reason.REFUND_WITHOUT_TARGET),
    ({"occurred_at": "yesterday", "event_id": "lagawi-2099"}, Reason.BAD_TIMESTAMP),
    ({"event_id": "lagawi-2099", "channel": "offline"}, Reason.UNKNOWN_EVENT),
    ({"occurred_at": "2030-01-01T00:00:00Z", "channel": "offline"}, Reason.OUTSIDE_EVENT_WINDOW),
    ({"channel": "offline", "ikm_id": "littlemonq"}, Reason.BOOTH_REQUIRED),
    ({"ikm_id": "littlemonq"}, Reason.KEY_MISMATCH),
])
def test_the_first_failing_check_is_the_reason(changes: dict[str, Any], reason: Reason) -> None:
    record = {k: v for k, v in {**GOOD, **changes}.items() if v is not None}
    for raw in (json.dumps(record).encode(), json.dumps({**record, "note": [1.5]}).encode()):
        result = parse_sale(raw, REG, KEY)
        assert isinstance(result, Rejection) and result.reason is reason, result


def test_null_optional_fields_are_absent() -> None:
    result = parse_sale(json.dumps({**GOOD, "sku": None, "booth_id": None, "refund_of": None}),
                        REG, KEY)
    assert isinstance(result, Sale)
    assert (result.sku, result.booth_id, result.refund_of, result.extra) == (None, None, None, {})


def test_subclasses_of_str_and_int_still_pass_validate_sale() -> None:
    class Text(str):
        pass

    class Number(int):
        pass

    record = {**GOOD, "kind": Text("sale"), "sku": Text("s"), "booth_id": Text("kokas-03"),
              "amount_idr": Number(5), "sale_id": Text("h-1")}
    result = contract.validate_sale(record, REG)
    assert isinstance(result, Sale) and result.amount_idr == 5 and result.sku == "s"


# --- hand-written __init__ of frozen records ---------------------------------------------

SALE_VALUES = {
    "sale_id": "s", "kind": "sale", "ikm_id": "i", "event_id": "e", "channel": "website",
    "amount_idr": 1, "quantity": 2, "occurred_at": datetime(2022, 1, 1, tzinfo=UTC),
    "day": date(2022, 1, 1), "booth_id": "b", "sku": "k", "refund_of": "r", "extra": {"x": 1}}
CONSUMED_VALUES = {"topic": "t", "partition": 1, "offset": 2, "key": b"k", "value": b"{}",
                   "timestamp_ms": 3}


@pytest.mark.parametrize(("cls", "values"), [
    (Sale, SALE_VALUES), (ConsumedRecord, CONSUMED_VALUES),
    (PlannedRecord, {"record": ConsumedRecord(**CONSUMED_VALUES), "sale": None,
                     "rejection": Rejection(Reason.BAD_ID, "d")}),
])
def test_a_written_out_init_matches_the_fields(cls: type, values: dict[str, Any]) -> None:
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params] == [f.name for f in fields] == list(values)
    for p, f in zip(params, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default is None and getattr(cls(**{**values, f.name: None}), f.name) == \
                f.default_factory(), f.name
        else:
            assert p.default is inspect.Parameter.empty, f.name
    made = cls(*values.values())
    assert vars(made) == values and made == cls(**values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, None)


def test_a_sales_extra_is_its_own_and_not_compared() -> None:
    required = {k: SALE_VALUES[k] for k in list(SALE_VALUES)[:9]}
    a, b = Sale(**required), Sale(**required)
    assert a.extra == {} and a.extra is not b.extra
    assert Sale(**SALE_VALUES) == Sale(**{**SALE_VALUES, "extra": {"y": 2}})
    assert hash(Sale(**SALE_VALUES)) == hash(Sale(**{**SALE_VALUES, "extra": {}}))
