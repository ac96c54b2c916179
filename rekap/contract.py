"""Sale event contract v1: parse and validate one Kafka record, with no I/O.

A record is JSON, key = ``ikm_id``. Fields (``rekap/data/sale-event.v1.schema.json``
documents them for other teams)::

    sale_id      str   idempotency key made where the sale is captured (ULID, or
                       derived from a channel's own order id); unique per IKM:
                       (ikm_id, sale_id) identifies a sale
    kind         "sale" | "refund"
    refund_of    str   the sale_id a refund takes back, a sale of the same IKM, event and
                       channel (refunds only; the channel is checked in the Redis apply)
    ikm_id       str   registered IKM taking part in event_id
    event_id     str   registered event
    channel      "offline" | "marketplace" | "virtual_expo" | "website"; one the event takes
                       (its ``channels`` in the registry, default all)
    amount_idr   int   whole rupiah, > 0, at most the event's max_sale_idr
    quantity     int   units, >= 1 (a refund may take back 0 units: a price adjustment)
    sku          str   optional
    booth_id     str   required for offline; the booth must be registered for ikm/event
    occurred_at  str   RFC 3339 with an offset; its local day must lie in the event window
    schema_version int optional, 1

Unknown fields are kept (in :attr:`Sale.extra`) and passed on, not rejected.

:func:`parse_sale` returns a :class:`Sale` or a :class:`Rejection` naming one
:class:`Reason`; it never raises, whatever the bytes. :func:`decode_object`,
its one JSON decode, also refuses what Python reads but rekap could not carry
on: values over 1 MiB, nesting over 64 levels, numbers over 4300 characters or
beyond a float, NaN/Infinity, lone UTF-16 surrogates. Details quote at most 80
characters of input. Checks that need the ledger (the refunded sale exists, a
``sale_id`` is reused with other content) happen in the Redis apply and use the
same reasons.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import re
import reprlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

import orjson

from rekap.days import local_day
from rekap.names import CHANNELS, Channel
from rekap.registry import Registry

SCHEMA_VERSION: Final = 1
MAX_QUANTITY: Final = 1_000_000
MAX_ID_LENGTH: Final = 128
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]*")
RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")

#: Largest record value the parser reads: Kafka's default largest message. A sale is ~250 bytes.
MAX_RECORD_BYTES: Final = 1_048_576
#: Deepest nesting of arrays and objects in a record (the sale itself is level 1). No
#: sale needs more, and anything accepted must re-encode even deep in a call stack.
MAX_NESTING: Final = 64
#: Longest number literal: Python's own default limit for ``int`` (4300 digits).
MAX_NUMBER_CHARS: Final = 4300
#: Longest quote of the input inside a rejection's detail.
QUOTE_CHARS: Final = 80

Kind = Literal["sale", "refund"]


class Reason(StrEnum):
    """Why a record was rejected. Closed set: metrics and the dead-letter topic use it."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_ID = "bad_id"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_CHANNEL = "unknown_channel"
    NON_POSITIVE_AMOUNT = "non_positive_amount"
    AMOUNT_TOO_LARGE = "amount_too_large"
    BAD_QUANTITY = "bad_quantity"
    BAD_TIMESTAMP = "bad_timestamp"
    UNKNOWN_EVENT = "unknown_event"
    UNKNOWN_IKM = "unknown_ikm"
    IKM_NOT_IN_EVENT = "ikm_not_in_event"
    #: the event's ``channels`` (registry) leave out the sale's channel: a booths-only exhibition
    CHANNEL_NOT_IN_EVENT = "channel_not_in_event"
    OUTSIDE_EVENT_WINDOW = "outside_event_window"
    BOOTH_REQUIRED = "booth_required"
    UNKNOWN_BOOTH = "unknown_booth"
    BOOTH_NOT_ALLOWED = "booth_not_allowed"
    REFUND_WITHOUT_TARGET = "refund_without_target"
    KEY_MISMATCH = "key_mismatch"
    # Hostile or broken bytes, found by decode_object (no input may make the parser raise):
    #: value over MAX_RECORD_BYTES, refused before decoding so its size costs nothing
    RECORD_TOO_LARGE = "record_too_large"
    #: arrays/objects nested deeper than MAX_NESTING (or than Python's recursion limit)
    NESTING_TOO_DEEP = "nesting_too_deep"
    #: a number literal over MAX_NUMBER_CHARS, or one a float cannot hold (1e999)
    NUMBER_TOO_LONG = "number_too_long"
    #: a string or key holding a lone UTF-16 surrogate ("\ud800"): not writable as UTF-8
    INVALID_TEXT = "invalid_text"
    # Set by the worker, not the parser: rekap itself failed on this record (a bug,
    # not the input), so the record is set aside and the others go on.
    INTERNAL_ERROR = "internal_error"
    # Found against the ledger, inside the Redis apply:
    UNKNOWN_REFUND_TARGET = "unknown_refund_target"
    REFUND_MISMATCH = "refund_mismatch"
    REFUND_EXCEEDS_SALE = "refund_exceeds_sale"
    SALE_ID_CONFLICT = "sale_id_conflict"


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True)
class Sale:
    """A validated sale or refund, with its local day already worked out."""

    sale_id: str
    kind: Kind
    ikm_id: str
    event_id: str
    channel: Channel
    amount_idr: int
    quantity: int
    occurred_at: datetime
    day: date
    booth_id: str | None = None
    sku: str | None = None
    refund_of: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __init__(self, sale_id: str, kind: Kind, ikm_id: str, event_id: str, channel: Channel,
                 amount_idr: int, quantity: int, occurred_at: datetime, day: date,
                 booth_id: str | None = None, sku: str | None = None, refund_of: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        # Written out (the fields above, in order) because the frozen dataclass's own
        # __init__ sets each field with object.__setattr__, ~1 µs for these 13, and the
        # worker builds one Sale per record. tests/rekap/test_contract_decode.py keeps the
        # two in step.
        self.__dict__.update(
            sale_id=sale_id, kind=kind, ikm_id=ikm_id, event_id=event_id, channel=channel,
            amount_idr=amount_idr, quantity=quantity, occurred_at=occurred_at, day=day,
            booth_id=booth_id, sku=sku, refund_of=refund_of, extra={} if extra is None else extra)

    def to_record(self) -> dict[str, Any]:
        """The JSON object of this sale on the wire (unknown fields kept)."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            schema_version=SCHEMA_VERSION, sale_id=self.sale_id, kind=self.kind,
            ikm_id=self.ikm_id, event_id=self.event_id, channel=self.channel,
            amount_idr=self.amount_idr, quantity=self.quantity,
            occurred_at=self.occurred_at.isoformat())
        for name in ("booth_id", "sku", "refund_of"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_bytes(self) -> bytes:
        return encode(self.to_record())


KNOWN_FIELDS: Final = frozenset({
    "schema_version", "sale_id", "kind", "refund_of", "ikm_id", "event_id", "channel",
    "amount_idr", "quantity", "sku", "booth_id", "occurred_at",
})


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def _clip(value: Any) -> str:
    """``repr`` of a piece of input, cut to :data:`QUOTE_CHARS`: a rejection's detail stays small.

    Never raises and never costs more than the quote: a string is cut before
    ``repr`` (which also escapes lone surrogates, so a detail is always valid
    text), a huge integer is not turned into digits (``str`` of one is slow
    and may hit ``sys.get_int_max_str_digits``), and containers go through
    :mod:`reprlib`, which stops at a few levels and items.
    """
    if isinstance(value, str):
        text = repr(value[:QUOTE_CHARS + 1])
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 256:
        text = f"<integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    else:
        try:
            text = _QUOTE.repr(value)
        except ValueError:  # an int inside, under a lowered sys.set_int_max_str_digits
            text = f"<{type(value).__name__}>"
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 1] + "…"


_QUOTE: Final = reprlib.Repr()
_QUOTE.maxlevel = 3
_QUOTE.maxstring = _QUOTE.maxlong = _QUOTE.maxother = QUOTE_CHARS


def _no_constant(name: str) -> Any:
    raise _Reject(Reason.MALFORMED_JSON, f"{name} is not JSON (JSON has no NaN or Infinity)")


def _int(text: str) -> int:
    # Checked here rather than left to int(): sys.set_int_max_str_digits(0) anywhere
    # in the process would otherwise make a 1 MB number cost seconds of CPU.
    if len(text) > MAX_NUMBER_CHARS:
        raise _Reject(Reason.NUMBER_TOO_LONG,
                      f"a number of {len(text)} characters; at most {MAX_NUMBER_CHARS}")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Reject(Reason.NUMBER_TOO_LONG,
                      f"a number of {len(text)} characters; at most {MAX_NUMBER_CHARS}")
    value = float(text)
    # 1e999 is valid JSON but becomes inf, which json.dumps writes as the non-JSON Infinity.
    if math.isinf(value):
        raise _Reject(Reason.NUMBER_TOO_LONG, f"the number {_clip(text)} is beyond a 64-bit float")
    return value


#: Decoders made once (``json.loads(raw, parse_constant=...)`` builds one per call). Only a
#: text longer than MAX_NUMBER_CHARS can hold a too-long integer, so only such a text pays
#: for a Python call per integer; floats are rare in a sale, and NaN/Infinity rarer.
_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant, parse_float=_float)
_LONG_TEXT_DECODER: Final = json.JSONDecoder(parse_constant=_no_constant, parse_float=_float,
                                             parse_int=_int)
#: A ``\uD800``-``\uDFFF`` escape: the only way JSON text decoded from bytes can carry a
#: lone surrogate (UTF-8, -16 and -32 decoders refuse encoded ones).
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def decode_object(raw: bytes | str | None) -> dict[str, Any] | Rejection:
    """Record bytes to a JSON object, or the reason why not. Never raises, whatever the bytes.

    The one JSON decode of a record. Beyond what :func:`json.loads` refuses, it
    refuses what Python's decoder accepts but the rest of rekap could not carry
    on with: NaN and Infinity, numbers past :data:`MAX_NUMBER_CHARS` or past a
    float's range, nesting deeper than :data:`MAX_NESTING` and lone UTF-16
    surrogates (they cannot be written as UTF-8, to Redis or to Kafka). So an
    accepted object re-encodes with :func:`encode` anywhere. Like
    :func:`json.loads`, bytes may be UTF-8 (with or without a BOM), UTF-16 or
    UTF-32.

    What is read is always what :func:`json.loads` reads: a sale as it comes
    (bytes of a flat object) is read by orjson, ~5x faster, but only kept when
    orjson cannot have read it differently (see :func:`_read_flat`); anything
    else, and every refusal, goes through :mod:`json`, so each rejection and
    its detail are that decoder's.
    """
    if raw is None:
        return Rejection(Reason.NOT_AN_OBJECT, "record has no value (a tombstone)")
    # Before decoding: a 10 MB value costs a len(), not a parse.
    if len(raw) > MAX_RECORD_BYTES:
        return Rejection(Reason.RECORD_TOO_LARGE,
                         f"record of {len(raw)} bytes; a sale is at most {MAX_RECORD_BYTES}")
    if not raw:
        return Rejection(Reason.MALFORMED_JSON, "record value is empty")
    if type(raw) is bytes:
        data = _read_flat(raw)
        if data is not None:
            return data
    text = _text_of(raw)
    if isinstance(text, Rejection):
        return text
    return _decode_text(text)


#: The value types of a flat object whose orjson reading is json's: orjson reads an integer
#: past 64 bits as a float where json keeps the int, and floats and nesting have more to check.
_FLAT_TYPES: Final = frozenset({str, int, bool, type(None)})


def _read_flat(raw: bytes) -> dict[str, Any] | None:
    """orjson's reading of ``raw`` if it is a flat object of strings, integers, booleans and
    nulls (the shape of a sale); None for anything else, which :func:`_decode_text` reads.

    Such an object reads the same in orjson and :mod:`json` (pinned by
    tests/rekap/test_contract_decode.py): the same strict UTF-8, whitespace and
    grammar, last of duplicate keys, exact 64-bit integers. orjson refuses what
    :func:`decode_object` must refuse (NaN, Infinity, 1e999, lone surrogates,
    escaped or encoded) and some of what it reads (a BOM, UTF-16); a refusal is
    not trusted but read again by :mod:`json`, for the answer and detail it has
    always given.
    """
    try:
        data = orjson.loads(raw)
    except ValueError:  # orjson.JSONDecodeError, for any input
        return None
    if type(data) is dict and _FLAT_TYPES.issuperset(map(type, data.values())):
        return data
    return None


def _decode_text(text: str) -> dict[str, Any] | Rejection:
    """:func:`decode_object` of a record's text, with :mod:`json`."""
    try:
        data = (_LONG_TEXT_DECODER if len(text) > MAX_NUMBER_CHARS else _DECODER).decode(text)
    except _Reject as exc:
        return exc.rejection
    except RecursionError:
        return Rejection(Reason.NESTING_TOO_DEEP,
                         f"JSON nested deeper than Python can read; a sale nests at most {MAX_NESTING}")
    except json.JSONDecodeError as exc:
        return Rejection(Reason.MALFORMED_JSON,
                         f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    except ValueError as exc:  # int() under a lower sys.set_int_max_str_digits
        return Rejection(Reason.NUMBER_TOO_LONG, f"a number Python will not read: {str(exc)[:120]}")
    if not isinstance(data, dict):
        return Rejection(Reason.NOT_AN_OBJECT, f"a sale is a JSON object, got {_json_type(data)}")
    # The common path (a flat object, no \u escape) skips the walk for ~0.2 µs of scans.
    # (One regex for brackets or escapes would be ten times slower: a character class
    # defeats re's literal-prefix search.)
    nested = text.find("[") >= 0 or text.find("{", 1) >= 0
    deep = nested and text.count("{") + text.count("[") > MAX_NESTING
    escaped = _SURROGATE_ESCAPE.search(text) is not None
    if deep or escaped:
        problem = _inspect(data, depth=deep, text=escaped)
        if problem is not None:
            return problem
    return data


def _text_of(raw: bytes | str) -> str | Rejection:
    """A record's text: decoded from bytes, or checked when handed in as str."""
    if isinstance(raw, str):
        # Text handed in as str (not decoded here) may hold surrogates outright, and
        # its size that counts is the UTF-8 one.
        if raw.isascii():
            return raw
        try:
            size = len(raw.encode("utf-8"))
        except UnicodeEncodeError as exc:
            return Rejection(Reason.INVALID_TEXT, f"lone UTF-16 surrogate at character {exc.start}, "
                                                  "which is not text")
        if size > MAX_RECORD_BYTES:
            return Rejection(Reason.RECORD_TOO_LARGE,
                             f"record of {size} bytes; a sale is at most {MAX_RECORD_BYTES}")
        return raw
    # What json.detect_encoding answers for a record starting '{' and a non-NUL byte,
    # without its ~0.3 µs: no BOM starts with '{', and UTF-16/32 JSON has a NUL there.
    plain = raw[:1] == b"{" and raw[1:2] != b"\x00"
    encoding = "utf-8" if plain else json.detect_encoding(raw)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start:exc.start + 1].hex() or "end"
        return Rejection(Reason.MALFORMED_JSON, f"not valid {encoding.upper()}: byte 0x{byte} "
                                                f"at position {exc.start} ({exc.reason})")


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), "null")


def _inspect(data: dict[str, Any], *, depth: bool, text: bool) -> Rejection | None:
    """Walk a decoded object level by level, without recursion: too deep, lone surrogates.

    Each level is gathered with C-level ``extend``/``join`` and one comprehension,
    not a Python step per value, so a 1 MB record of 300,000 tiny arrays costs
    milliseconds rather than a fifth of a second.
    """
    level = 1
    containers: list[Any] = [data]
    while containers:
        if depth and level > MAX_NESTING:
            return _too_deep()
        values: list[Any] = []
        keys: list[str] = []
        for container in containers:
            if type(container) is dict:
                keys.extend(container)
                values.extend(container.values())
            else:
                values.extend(container)
        if text:
            strings = keys + [v for v in values if type(v) is str]
            try:
                "".join(strings).encode("utf-8")
            except UnicodeEncodeError as exc:
                # Joining cannot pair two lone halves: the failing one is where encode stopped.
                ends = list(itertools.accumulate(map(len, strings)))
                i = bisect.bisect_right(ends, exc.start)
                return _lone_surrogate("a key" if i < len(keys) else "a string", strings[i])
        containers = [v for v in values if type(v) is list or type(v) is dict]
        level += 1
    return None


def _too_deep() -> Rejection:
    return Rejection(Reason.NESTING_TOO_DEEP,
                     f"JSON nested deeper than {MAX_NESTING} levels; a sale is a flat object")


def _lone_surrogate(where: str, value: str) -> Rejection:
    return Rejection(Reason.INVALID_TEXT, f"{where} holds a lone UTF-16 surrogate, which is not text "
                                          f"(from a \\ud800-\\udfff escape): {_clip(value)}")


def parse_sale(raw: bytes | str | None, registry: Registry, key: bytes | str | None = None,
               *, check_key: bool = True) -> Sale | Rejection:
    """Decode and validate one record. ``key`` is the Kafka key, which must equal ``ikm_id``.

    Never raises: every way the bytes can be wrong is a :class:`Rejection`.
    """
    data = decode_object(raw)
    if isinstance(data, Rejection):
        return data
    return sale_from_object(data, registry, key, check_key=check_key)


def sale_from_object(data: dict[str, Any], registry: Registry, key: bytes | str | None = None,
                     *, check_key: bool = True) -> Sale | Rejection:
    """Validate a decoded record (:func:`decode_object`), its Kafka key included."""
    try:
        sale = _validate(data, registry)
    except _Reject as rej:
        return rej.rejection
    if check_key:
        key_text = key.decode(errors="replace") if isinstance(key, bytes) else key
        if key_text != sale.ikm_id:
            return Rejection(Reason.KEY_MISMATCH,
                             f"record key {_clip(key_text)} must equal ikm_id {sale.ikm_id!r}")
    return sale


def validate_sale(data: dict[str, Any], registry: Registry) -> Sale | Rejection:
    """Validate a decoded sale object against the contract and the registry."""
    try:
        return _validate(data, registry)
    except _Reject as rej:
        return rej.rejection


class _Reject(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.rejection = Rejection(reason, detail)


def _field(value: Any, name: str, kind: type) -> Any:
    """``value`` of the field ``name`` (None when absent or null) if it is a ``kind``; else why not."""
    if type(value) is kind:  # nearly always: skips the checks below (and bool is no int here)
        return value
    if value is None:
        raise _Reject(Reason.MISSING_FIELD, f"field {name!r} is required")
    # bool is an int in Python; JSON true is never a valid amount or quantity.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Reject(Reason.WRONG_TYPE,
                      f"field {name!r} must be {_type_name(kind)}, got {type(value).__name__}")
    return value


def _type_name(kind: type) -> str:
    return {int: "an integer", str: "a string"}.get(kind, kind.__name__)


def _ident(value: Any, name: str) -> str:
    if type(value) is not str:
        value = _field(value, name, str)
    if len(value) > MAX_ID_LENGTH or not ID_PATTERN.fullmatch(value):
        raise _Reject(Reason.BAD_ID, f"field {name!r} must be 1-{MAX_ID_LENGTH} characters "
                                     "of letters, digits and . _ : / -")
    return value


def _validate(data: dict[str, Any], registry: Registry) -> Sale:
    """The contract's checks, in order: the first that fails is the record's reason.

    Each field on its own first (:func:`_required`, then the optional ones, checked only
    when present), then the fields together and against the registry. Runs once per
    record in the worker, so it is written for that: positional calls, no exception
    unless the record is rejected.
    """
    sale_id, kind, ikm_id, event_id, channel, amount, quantity, occurred_text = _required(data)
    get = data.get
    booth_id = get("booth_id")
    if booth_id is not None:
        booth_id = _ident(booth_id, "booth_id")
    sku = get("sku")
    if sku is not None and type(sku) is not str:
        sku = _field(sku, "sku", str)
    refund_of = get("refund_of")
    if refund_of is not None:
        refund_of = _ident(refund_of, "refund_of")
    _check_numbers(kind, amount, quantity, sale_id, refund_of)
    occurred_at = _timestamp(occurred_text)
    day = _place(registry, event_id, ikm_id, channel, amount, occurred_at)
    if channel == "offline":
        _check_booth(registry, booth_id, event_id, ikm_id)
    # A sale rarely carries unknown fields: one C-level subset test instead of the comprehension.
    extra = {} if data.keys() <= KNOWN_FIELDS else {
        k: v for k, v in data.items() if k not in KNOWN_FIELDS}
    # Positional, in Sale's field order (keywords cost ~0.3 µs more).
    return Sale(sale_id, kind, ikm_id, event_id, channel, amount, quantity, occurred_at, day,
                booth_id, sku, refund_of, extra)


def _required(data: dict[str, Any]) -> tuple[Any, ...]:
    """Each required field on its own, in order: present (absent and null alike), of its
    type, well formed. Gives sale_id, kind, ikm_id, event_id, channel, amount_idr,
    quantity and the occurred_at text.

    ``if type(x) is not ...`` before a :func:`_field` call skips the call for a field that
    already has its exact type, as nearly every field of nearly every record does (~0.4 µs).
    """
    get = data.get
    version = get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _Reject(Reason.UNSUPPORTED_VERSION,
                      f"schema_version {_clip(version)} is not supported (this worker reads 1)")
    sale_id = _ident(get("sale_id"), "sale_id")
    kind = get("kind")
    if type(kind) is not str:
        kind = _field(kind, "kind", str)
    if kind not in ("sale", "refund"):
        raise _Reject(Reason.UNKNOWN_KIND, f"kind must be 'sale' or 'refund', got {_clip(kind)}")
    ikm_id = _ident(get("ikm_id"), "ikm_id")
    event_id = _ident(get("event_id"), "event_id")
    channel = get("channel")
    if type(channel) is not str:
        channel = _field(channel, "channel", str)
    if channel not in CHANNELS:
        raise _Reject(Reason.UNKNOWN_CHANNEL,
                      f"channel must be one of {', '.join(CHANNELS)}, got {_clip(channel)}")
    amount = get("amount_idr")
    if type(amount) is not int:
        amount = _field(amount, "amount_idr", int)
    quantity = get("quantity")
    if type(quantity) is not int:
        quantity = _field(quantity, "quantity", int)
    occurred_text = get("occurred_at")
    if type(occurred_text) is not str:
        occurred_text = _field(occurred_text, "occurred_at", str)
    return sale_id, kind, ikm_id, event_id, channel, amount, quantity, occurred_text


def _check_numbers(kind: str, amount: int, quantity: int, sale_id: str,
                   refund_of: str | None) -> None:
    """What a record must hold on its own: a positive amount, a quantity in range, and a
    ``refund_of`` exactly when it is a refund (and not itself)."""
    if amount <= 0:
        raise _Reject(Reason.NON_POSITIVE_AMOUNT, f"amount_idr must be > 0, got {_clip(amount)}")
    min_quantity = 0 if kind == "refund" else 1
    if not min_quantity <= quantity <= MAX_QUANTITY:
        raise _Reject(Reason.BAD_QUANTITY,
                      f"quantity must be {min_quantity}..{MAX_QUANTITY}, got {_clip(quantity)}")
    if kind == "refund" and refund_of is None:
        raise _Reject(Reason.REFUND_WITHOUT_TARGET, "a refund must name refund_of")
    if kind == "sale" and refund_of is not None:
        raise _Reject(Reason.REFUND_WITHOUT_TARGET, "refund_of is only valid on a refund")
    if kind == "refund" and refund_of == sale_id:
        raise _Reject(Reason.REFUND_WITHOUT_TARGET, "a refund cannot refund itself")


def _place(registry: Registry, event_id: str, ikm_id: str, channel: str, amount: int,
           occurred_at: datetime) -> date:
    """The record's local day, once its event, IKM, channel, amount cap and date window agree."""
    event = registry.events.get(event_id)
    if event is None:
        raise _Reject(Reason.UNKNOWN_EVENT, f"event {_clip(event_id)} is not in the registry")
    if ikm_id not in registry.ikm:
        raise _Reject(Reason.UNKNOWN_IKM, f"IKM {ikm_id!r} is not in the registry")
    if ikm_id not in event.ikm:
        raise _Reject(Reason.IKM_NOT_IN_EVENT, f"IKM {ikm_id!r} does not take part in {event_id!r}")
    if channel not in event.channels:
        raise _Reject(Reason.CHANNEL_NOT_IN_EVENT,
                      f"event {event_id!r} takes only channel(s) {', '.join(sorted(event.channels))}, "
                      f"not {channel!r}")
    if amount > event.max_sale_idr:
        raise _Reject(Reason.AMOUNT_TOO_LARGE,
                      f"amount_idr {_clip(amount)} is above the cap {event.max_sale_idr} of {event_id!r}")
    try:
        day = local_day(occurred_at, event.timezone)
    except (OverflowError, ValueError) as exc:
        raise _Reject(Reason.BAD_TIMESTAMP, f"occurred_at has no local day in {event.timezone}: "
                                            f"{str(exc)[:100]}") from exc
    if not event.starts_on <= day <= event.ends_on:
        raise _Reject(Reason.OUTSIDE_EVENT_WINDOW,
                      f"local day {day} ({event.timezone}) is outside {event_id!r} "
                      f"{event.starts_on}..{event.ends_on}")
    return day


def _check_booth(registry: Registry, booth_id: str | None, event_id: str, ikm_id: str) -> None:
    """An offline sale names a registered booth that may post for its IKM in its event."""
    if booth_id is None:
        raise _Reject(Reason.BOOTH_REQUIRED, "an offline sale must name booth_id")
    booth = registry.booths.get(booth_id)
    if booth is None:
        raise _Reject(Reason.UNKNOWN_BOOTH, f"booth {booth_id!r} is not in the registry")
    if booth.event != event_id or ikm_id not in booth.ikm:
        raise _Reject(Reason.BOOTH_NOT_ALLOWED,
                      f"booth {booth_id!r} may not post for {ikm_id!r} in {event_id!r}")


def _timestamp(text: str) -> datetime:
    if not RFC3339.match(text):
        raise _Reject(Reason.BAD_TIMESTAMP,
                      f"occurred_at must be RFC 3339 with an offset, e.g. "
                      f"2022-06-01T10:15:00+07:00; got {_clip(text)}")
    try:
        at = datetime.fromisoformat(text.replace("z", "Z"))
        # The regex admits year 0001 with +14:00 and 9999 with -23:59: real datetimes
        # whose UTC instant, and so .timestamp(), overflows. An offset is under a day,
        # so only years 1 and 9999 need the full check.
        if 1 < at.year < 9999:
            return at
        utc = at.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _Reject(Reason.BAD_TIMESTAMP,
                      f"occurred_at {_clip(text)} is not a real time: {str(exc)[:100]}") from exc
    # A day's margin: the local day in the event's zone (or any zone a reader
    # converts to) then always exists too.
    if not _EARLIEST_UTC <= utc <= _LATEST_UTC:
        raise _Reject(Reason.BAD_TIMESTAMP,
                      f"occurred_at {_clip(text)} is too close to year 1 or 9999 to place in a time zone")
    return at


_EARLIEST_UTC: Final = (datetime.min + timedelta(days=1)).replace(tzinfo=UTC)
_LATEST_UTC: Final = (datetime.max - timedelta(days=1)).replace(tzinfo=UTC)
