"""No bytes make the sale parser raise; every rejection names a reason and says why, briefly.

The property tests throw three kinds of input at :func:`parse_sale`: random
bytes, JSON-ish text from a small grammar (nesting, huge and non-finite
numbers, escapes including lone surrogates, odd timestamps, a little
corruption), and valid sales with one field swapped for such a value. Whatever
comes back must be a :class:`Sale` that survives its own wire form, or a
:class:`Rejection` with a :class:`Reason` and a short detail that is itself
valid text (details go to Redis and the dead-letter topic).

The example tests pin each hostile kind of the issue to its own reason.
"""

from __future__ import annotations

import json
import time
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from rekap.contract import (
    MAX_NESTING,
    MAX_NUMBER_CHARS,
    MAX_RECORD_BYTES,
    QUOTE_CHARS,
    Reason,
    Rejection,
    Sale,
    decode_object,
    parse_sale,
)
from rekap.days import local_day
from rekap.registry import load_registry
from rekap.settings import DEFAULT_REGISTRY

REG = load_registry(DEFAULT_REGISTRY)
MAX_DETAIL = 300
KEY = b"seruit-kita"
GOOD: dict[str, Any] = {
    "sale_id": "h-1", "kind": "sale", "ikm_id": "seruit-kita", "event_id": "lagawi-2022",
    "channel": "website", "amount_idr": 20_000, "quantity": 1,
    "occurred_at": "2022-04-10T10:00:00+07:00"}
VALID: list[dict[str, Any]] = [
    GOOD,
    {"sale_id": "01HZZSALE0000000000000001", "kind": "sale", "ikm_id": "littlemonq",
     "event_id": "lagawi-2022-kokas", "channel": "offline", "booth_id": "kokas-03",
     "amount_idr": 125_000, "quantity": 2, "occurred_at": "2022-06-01T10:15:00+07:00",
     "sku": "kopi-250g", "schema_version": 1, "promo": {"code": "LAGAWI10", "pct": 10.5}},
    {"sale_id": "r-1", "kind": "refund", "refund_of": "h-1", "ikm_id": "seruit-kita",
     "event_id": "lagawi-2022", "channel": "marketplace", "amount_idr": 5_000, "quantity": 0,
     "occurred_at": "2022-04-11T03:00:00.123456Z"},
]

WEIRD_TIMES = [
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59", "2022-06-01T10:00:00+99:99",
    "2022-06-01T10:00:00.1234567+07:00", "2022-06-01T10:00:00.123456789Z", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z", "0001-01-02T00:00:00Z", "9999-12-30T00:00:00+00:00",
    "2022-02-30T10:00:00Z", "2022-06-01T24:00:00Z", "2022-06-01T23:59:60Z", "2022-06-01t10:00:00z",
    "2022-06-01 10:00:00+07:00", "2022-06-01T10:00:00+07:00\n", "٢٠٢٢-06-01T10:00:00+07:00",
    "2022-06-01T10:00:00-00:00", "0000-01-01T00:00:00Z",
]


def check(result: Sale | Rejection) -> None:
    """What every result must satisfy, whatever the input."""
    if isinstance(result, Sale):
        wire = result.to_bytes()
        # Strict JSON, read without rekap: UTF-8, no NaN/Infinity, nesting within the limit.
        record = json.loads(wire.decode("utf-8"), parse_constant=_not_json)
        assert _depth(record) <= MAX_NESTING
        again = parse_sale(wire, REG, result.ikm_id.encode())
        assert again == result
        assert isinstance(again, Sale) and again.extra == result.extra
        result.occurred_at.timestamp()  # the worker's as_of / ticker use it
        for zone in ("Asia/Jakarta", "Pacific/Kiritimati", "Etc/GMT+12"):
            local_day(result.occurred_at, zone)
    else:
        assert isinstance(result, Rejection), result
        assert isinstance(result.reason, Reason)
        assert isinstance(result.detail, str) and result.detail
        assert len(result.detail) <= MAX_DETAIL, result.detail[:500]
        result.detail.encode("utf-8")  # strict: a detail is stored in Redis and Kafka


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} in a sale's wire form")


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


# --- a grammar of hostile JSON-ish text -------------------------------------------------

ESCAPES = st.sampled_from([
    r"\ud800", r"\udfff", r"\udbff", r"\udc00x", r"\ud83d\ude00", r"\ud83d", r"\\ud800", r"\u0000",
    r"\n", r"\"", r"\u00e9", "\\", r"\uZZZZ", r"\uD800\uD800"])
PLAIN = st.text(max_size=6).map(lambda t: json.dumps(t, ensure_ascii=False)[1:-1])
STRINGS = st.lists(st.one_of(PLAIN, ESCAPES), max_size=4).map(lambda parts: '"' + "".join(parts) + '"')
NUMBERS = st.one_of(
    st.integers().map(str),
    st.integers(MAX_NUMBER_CHARS - 5, MAX_NUMBER_CHARS + 5).map(lambda n: "9" * n),
    st.integers(MAX_NUMBER_CHARS - 5, MAX_NUMBER_CHARS + 5).map(lambda n: "0." + "1" * n),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "-0", "1E400",
                     "-", "01", "1.", ".5", "0x10", "20000", "1"]))
SCALARS = st.one_of(NUMBERS, STRINGS, st.sampled_from(["true", "false", "null"]),
                    st.sampled_from(WEIRD_TIMES).map(json.dumps))
KEYS = st.one_of(STRINGS, st.sampled_from([*sorted(GOOD), "sku", "booth_id", "refund_of",
                                           "schema_version"]).map(json.dumps))
#: The values most likely to get through a lax parser, drawn often on their own.
SPECIAL = st.sampled_from([
    "NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * (MAX_NUMBER_CHARS + 1), r'"\ud800"',
    r'["ok", {"k": "\udfff"}]', r'{"\udbff": 1}', "[" * MAX_NESTING + "]" * MAX_NESTING,
    "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1), '{"a":' * 200 + "1" + "}" * 200])
DEEP = st.tuples(st.integers(MAX_NESTING - 2, MAX_NESTING + 2) | st.integers(0, 3000),
                 st.booleans()).map(
    lambda t: "[" * t[0] + "]" * t[0] if t[1] else '{"a":' * t[0] + "1" + "}" * t[0])


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"


VALUES = st.recursive(
    st.one_of(SCALARS, DEEP),
    lambda children: st.one_of(st.lists(children, max_size=4).map(_array),
                               st.lists(st.tuples(KEYS, children), max_size=5).map(_object)),
    max_leaves=16)


@st.composite
def corrupted(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> str:
    """Some texts unchanged, some cut short or with a character dropped in."""
    text = draw(texts)
    how = draw(st.integers(0, 5))
    at = draw(st.integers(0, len(text)))
    if how == 1:
        return text[:at]
    if how == 2:
        return text[:at] + draw(st.sampled_from(['"', "\\", "{", "]", ",", ":", "\x00"])) + text[at:]
    return text


DOCUMENTS = corrupted(st.one_of(
    VALUES,
    st.lists(st.tuples(KEYS, VALUES), max_size=12).map(_object),
))


@st.composite
def mutated_sales(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid sale with one field (known or new) holding a hostile value: raw JSON text, key."""
    sale = draw(st.sampled_from(VALID))
    # Half the time a new field: the sale stays valid, so only the parser's own checks
    # stand between a hostile value and an accepted Sale.
    if draw(st.booleans()):
        name = draw(st.sampled_from(["note", "tags", "promo", "\\ud800"]))
    else:
        name = draw(st.sampled_from([*sorted(sale), "sku", "booth_id", "refund_of", "schema_version"]))
    how = draw(st.integers(0, 2))
    if name == "occurred_at" and how == 0:
        value = json.dumps(draw(st.sampled_from(WEIRD_TIMES)))
    else:
        value = draw((SPECIAL, SCALARS, VALUES)[how])
    rest = {k: v for k, v in sale.items() if k != name}
    head = json.dumps(rest)[:-1]
    return f'{head}{", " if rest else ""}"{name}": {value}}}', sale["ikm_id"].encode()


# --- properties --------------------------------------------------------------------------

def fuzz(examples: int) -> hypothesis_settings:
    return hypothesis_settings(max_examples=examples, deadline=None, derandomize=True, database=None)


@fuzz(400)
@given(raw=st.binary(max_size=2000), key=st.none() | st.binary(max_size=40))
def test_random_bytes_never_raise(raw: bytes, key: bytes | None) -> None:
    check(parse_sale(raw, REG, key))


@fuzz(400)
@given(text=DOCUMENTS)
def test_hostile_json_never_raises(text: str) -> None:
    check(parse_sale(text.encode("utf-8"), REG, KEY))
    check(parse_sale(text, REG, KEY))


@fuzz(500)
@given(record=mutated_sales())
def test_a_valid_sale_with_one_hostile_field_never_raises(record: tuple[str, bytes]) -> None:
    text, key = record
    check(parse_sale(text.encode("utf-8"), REG, key))


@fuzz(200)
@given(text=st.text(st.characters(blacklist_categories=()), max_size=60), field=st.sampled_from(
    ["sku", "promo", "sale_id"]))
def test_text_handed_in_as_str_may_hold_raw_surrogates(text: str, field: str) -> None:
    raw = json.dumps({**GOOD, field: text}, ensure_ascii=False)
    result = parse_sale(raw, REG, KEY)
    check(result)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert isinstance(result, Rejection) and result.reason is Reason.INVALID_TEXT


def test_the_valid_examples_are_valid() -> None:
    for sale in VALID:
        result = parse_sale(json.dumps(sale).encode(), REG, sale["ikm_id"].encode())
        assert isinstance(result, Sale), result
        check(result)


# --- each hostile kind, its own reason ---------------------------------------------------

def _with(raw_field: str, raw_value: str, base: dict[str, Any] = GOOD) -> bytes:
    """GOOD with ``raw_field`` set to the raw JSON text ``raw_value`` (which json.dumps cannot write)."""
    rest = {k: v for k, v in base.items() if k != raw_field}
    return (json.dumps(rest)[:-1] + f', "{raw_field}": {raw_value}}}').encode()


def rejected(raw: bytes | str | None, reason: Reason, key: bytes | None = KEY) -> Rejection:
    result = parse_sale(raw, REG, key)
    assert isinstance(result, Rejection), result
    assert result.reason is reason, result
    check(result)
    return result


@pytest.mark.parametrize("raw", [
    b"[" * 100_000, b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    _with("promo", "[" * 100_000 + "]" * 100_000),
    _with("promo", "[" * MAX_NESTING + "]" * MAX_NESTING),  # level 65: the sale is level 1
    _with("promo", '{"a":' * 900 + "1" + "}" * 900),  # under Python's limit, over ours
])
def test_nesting_too_deep(raw: bytes) -> None:
    result = rejected(raw, Reason.NESTING_TOO_DEEP)
    assert "nested" in result.detail


def test_nesting_up_to_the_limit_is_kept() -> None:
    nested = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    result = parse_sale(_with("promo", nested), REG, KEY)
    assert isinstance(result, Sale)
    check(result)


@pytest.mark.parametrize("raw", [
    _with("amount_idr", "1" * 5000), _with("note", "9" * 5000), _with("note", "-" + "9" * 5000),
    _with("note", "0." + "1" * 5000), _with("note", "1e999"), _with("amount_idr", "-1e999"),
    _with("note", "[1, 2, 1E400]"),
])
def test_number_too_long(raw: bytes) -> None:
    rejected(raw, Reason.NUMBER_TOO_LONG)


def test_a_long_amount_under_the_digit_limit_is_quoted_briefly() -> None:
    result = rejected(_with("amount_idr", "1" * 4000), Reason.AMOUNT_TOO_LARGE)
    assert "4000 digits" in result.detail


@pytest.mark.parametrize(("raw", "position"), [
    (b'{"sale_id": "\xff\xfe"}', 13), (b"\x80{}", 0),
    ('{"sku": "é"}'.encode()[:-3], 9),  # cut through the two bytes of é
    (json.dumps(GOOD).encode() + b"\xc0\x80", len(json.dumps(GOOD))),  # overlong NUL
    (b'{"sku": "\xed\xa0\x80"}', 9),  # a surrogate encoded as UTF-8 (CESU), not UTF-8
])
def test_invalid_utf8_names_the_byte(raw: bytes, position: int) -> None:
    result = rejected(raw, Reason.MALFORMED_JSON)
    assert f"position {position}" in result.detail and "UTF-8" in result.detail


@pytest.mark.parametrize("raw", [
    _with("sku", r'"\ud800"'),
    _with("sale_id", r'"h\udfff"'),
    _with("note", r'"x\udbffy"'),
    _with("note", r'{"deep": [[["\udc00"]]]}'),
    _with(r"\udfff", "1"),
    _with("note", r'{"\ud83d": 1}'),
    _with("note", r'"\ud83d\ud83d"'),  # two highs are not a pair
])
def test_lone_surrogates_anywhere(raw: bytes) -> None:
    result = rejected(raw, Reason.INVALID_TEXT)
    assert "surrogate" in result.detail


def test_a_lone_surrogate_in_text_handed_in_as_str() -> None:
    rejected(json.dumps({**GOOD, "sku": "\ud800"}, ensure_ascii=False), Reason.INVALID_TEXT)


@pytest.mark.parametrize("raw", [
    _with("note", r'"\ud83d\ude00"'),  # a real pair: 😀
    _with("note", r'"\\ud800"'),  # an escaped backslash, then the letters ud800
    json.dumps({**GOOD, "note": "😀 é ü"}, ensure_ascii=False).encode(),
])
def test_real_text_that_looks_like_surrogates_is_kept(raw: bytes) -> None:
    result = parse_sale(raw, REG, KEY)
    assert isinstance(result, Sale), result
    check(result)


@pytest.mark.parametrize(("field", "constant"), [
    (f, c) for f in ("amount_idr", "quantity", "note") for c in ("NaN", "Infinity", "-Infinity")])
def test_nan_and_infinity_are_not_json(field: str, constant: str) -> None:
    result = rejected(_with(field, constant), Reason.MALFORMED_JSON)
    assert "NaN or Infinity" in result.detail


@pytest.mark.parametrize("occurred_at", [
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59", "2022-06-01T10:00:00+99:99",
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2022-06-01T23:59:60+07:00",
    "2022-06-01T10:00:00.1234567891+07:00", "2022-06-01T10:00:00+07:00\n", "x" * 900_000,
])
def test_extreme_timestamps(occurred_at: str) -> None:
    rejected(json.dumps({**GOOD, "occurred_at": occurred_at}).encode(), Reason.BAD_TIMESTAMP)


@pytest.mark.parametrize("occurred_at", [
    "0001-01-02T00:00:00Z", "9999-12-30T00:00:00+00:00", "0002-01-01T00:00:00+14:00",
    "9998-12-31T23:59:59-23:59"])
def test_timestamps_near_the_ends_of_the_calendar_have_a_local_day(occurred_at: str) -> None:
    rejected(json.dumps({**GOOD, "occurred_at": occurred_at}).encode(), Reason.OUTSIDE_EVENT_WINDOW)


def test_more_than_six_fractional_digits_is_cut_to_microseconds() -> None:
    result = parse_sale(json.dumps({**GOOD, "occurred_at": "2022-04-10T10:00:00.123456789+07:00"}),
                        REG, KEY)
    assert isinstance(result, Sale) and result.occurred_at.microsecond == 123456
    assert result.day == date(2022, 4, 10)
    check(result)


def test_a_10_mb_value_is_refused_before_it_is_read() -> None:
    raw = json.dumps({**GOOD, "sku": "x" * 10_000_000}).encode()
    started = time.perf_counter()
    result = rejected(raw, Reason.RECORD_TOO_LARGE)
    assert time.perf_counter() - started < 0.05  # a len(), not a 10 MB parse
    assert str(len(raw)) in result.detail
    rejected(b" " * (MAX_RECORD_BYTES + 1), Reason.RECORD_TOO_LARGE)
    rejected("é" * (MAX_RECORD_BYTES // 2 + 1), Reason.RECORD_TOO_LARGE)  # counted in UTF-8 bytes


def test_a_value_at_the_cap_is_read() -> None:
    raw = json.dumps({**GOOD, "sku": ""}).encode()
    raw = raw.replace(b'"sku": ""', b'"sku": "' + b"x" * (MAX_RECORD_BYTES - len(raw)) + b'"')
    assert len(raw) == MAX_RECORD_BYTES
    assert isinstance(parse_sale(raw, REG, KEY), Sale)


@pytest.mark.parametrize(("raw", "reason"), [
    (None, Reason.NOT_AN_OBJECT), (b"", Reason.MALFORMED_JSON), ("", Reason.MALFORMED_JSON),
    (b"[1, 2]", Reason.NOT_AN_OBJECT), (b'"a sale"', Reason.NOT_AN_OBJECT), (b"null", Reason.NOT_AN_OBJECT),
    (b"\xef\xbb\xbf", Reason.MALFORMED_JSON), (b"{", Reason.MALFORMED_JSON),
])
def test_empty_and_non_objects(raw: bytes | None, reason: Reason) -> None:
    rejected(raw, reason)


def test_utf16_and_bom_records_are_read_as_before() -> None:
    # json.loads detects UTF-16/32 and a UTF-8 BOM; the contract did not forbid them.
    for raw in (json.dumps(GOOD).encode("utf-16"), b"\xef\xbb\xbf" + json.dumps(GOOD).encode()):
        assert isinstance(parse_sale(raw, REG, KEY), Sale)


@pytest.mark.parametrize(("raw", "key", "reason"), [
    (json.dumps({**GOOD, "kind": "v" * 900_000}).encode(), KEY, Reason.UNKNOWN_KIND),
    (json.dumps({**GOOD, "channel": "\x00" * 100_000}).encode(), KEY, Reason.UNKNOWN_CHANNEL),
    (json.dumps({**GOOD, "event_id": "e" * 100}).encode(), KEY, Reason.UNKNOWN_EVENT),
    (json.dumps({**GOOD, "schema_version": ["v" * 10_000] * 100}).encode(), KEY,
     Reason.UNSUPPORTED_VERSION),
    (json.dumps({**GOOD, "quantity": -10 ** 4000}).encode(), KEY, Reason.BAD_QUANTITY),
    (json.dumps(GOOD).encode(), b"k" * 500_000, Reason.KEY_MISMATCH),
    (json.dumps(GOOD).encode(), "\ud800".encode("utf-8", "surrogatepass"), Reason.KEY_MISMATCH),
])
def test_details_quote_input_briefly(raw: bytes, key: bytes, reason: Reason) -> None:
    result = rejected(raw, reason, key)
    assert len(result.detail) <= QUOTE_CHARS + 150, result.detail


def test_decode_object_is_the_json_object() -> None:
    assert decode_object(json.dumps(GOOD).encode()) == GOOD
    assert decode_object(json.dumps(GOOD)) == GOOD
