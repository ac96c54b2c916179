"""Sale event contract v1: parse and validate one Kafka record, with no I/O.

A record is JSON, key = ``ikm_id``. Fields (``rekap/data/sale-event.v1.schema.json``
documents them for other teams)::

    sale_id      str   idempotency key made where the sale is captured (ULID, or
                       derived from a channel's own order id); unique per IKM:
                       (ikm_id, sale_id) identifies a sale
    kind         "sale" | "refund"
    refund_of    str   the sale_id a refund takes back, a sale of the same IKM (refunds only)
    ikm_id       str   registered IKM taking part in event_id
    event_id     str   registered event
    channel      "offline" | "marketplace" | "virtual_expo" | "website"
    amount_idr   int   whole rupiah, > 0, at most the event's max_sale_idr
    quantity     int   units, >= 1 (a refund may take back 0 units: a price adjustment)
    sku          str   optional
    booth_id     str   required for offline; the booth must be registered for ikm/event
    occurred_at  str   RFC 3339 with an offset; its local day must lie in the event window
    schema_version int optional, 1

Unknown fields are kept (in :attr:`Sale.extra`) and passed on, not rejected.

:func:`parse_sale` returns a :class:`Sale` or a :class:`Rejection` naming one
:class:`Reason`; it never raises on bad input. Checks that need the ledger
(the refunded sale exists, a ``sale_id`` is reused with other content) happen
in the Redis apply and use the same reasons.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Final, Literal

from rekap.days import local_day
from rekap.names import CHANNELS, Channel
from rekap.registry import Registry

SCHEMA_VERSION: Final = 1
MAX_QUANTITY: Final = 1_000_000
MAX_ID_LENGTH: Final = 128
ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
RFC3339: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")

#: Largest record value the parser reads: Kafka's default largest message. A sale is ~250 bytes.
MAX_RECORD_BYTES: Final = 1_048_576
#: Longest quote of the input inside a rejection's detail.
QUOTE_CHARS: Final = 80
#: A ``\uD800``-``\uDFFF`` escape: the only way JSON text can carry a lone surrogate.
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F]")

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
    OUTSIDE_EVENT_WINDOW = "outside_event_window"
    BOOTH_REQUIRED = "booth_required"
    UNKNOWN_BOOTH = "unknown_booth"
    BOOTH_NOT_ALLOWED = "booth_not_allowed"
    REFUND_WITHOUT_TARGET = "refund_without_target"
    KEY_MISMATCH = "key_mismatch"
    # Hostile or broken bytes (no input may make the parser raise):
    RECORD_TOO_LARGE = "record_too_large"
    NESTING_TOO_DEEP = "nesting_too_deep"
    NUMBER_TOO_LONG = "number_too_long"
    INVALID_TEXT = "invalid_text"
    # rekap itself failed on this record (a bug): the record is set aside, the others go on.
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
    """``repr`` of a piece of input, cut short: a rejection's detail stays small."""
    text = repr(value)
    return text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "…"


def _not_json_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def decode_object(raw: bytes | str | None) -> dict[str, Any] | Rejection:
    """Record bytes to a JSON object, or the reason why not. Never raises, whatever the bytes."""
    if raw is None:
        return Rejection(Reason.NOT_AN_OBJECT, "record has no value (a tombstone)")
    if len(raw) > MAX_RECORD_BYTES:
        return Rejection(Reason.RECORD_TOO_LARGE,
                         f"record of {len(raw)} bytes; a sale is at most {MAX_RECORD_BYTES}")
    try:
        data = json.loads(raw, parse_constant=_not_json_constant)
    except UnicodeDecodeError as exc:
        return Rejection(Reason.MALFORMED_JSON, f"not valid UTF-8 at byte {exc.start}")
    except RecursionError:
        return Rejection(Reason.NESTING_TOO_DEEP, "JSON nested too deep to be a sale")
    except json.JSONDecodeError as exc:
        return Rejection(Reason.MALFORMED_JSON, f"not valid JSON: {exc.msg} at {exc.pos}")
    except ValueError as exc:  # > 4300 digits, or NaN/Infinity
        reason = Reason.NUMBER_TOO_LONG if "digits" in str(exc) else Reason.MALFORMED_JSON
        return Rejection(reason, f"not valid JSON: {str(exc)[:200]}")
    if not isinstance(data, dict):
        return Rejection(Reason.NOT_AN_OBJECT, f"a sale is a JSON object, got {type(data).__name__}")
    raw_bytes = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if _SURROGATE_ESCAPE.search(raw_bytes) and _has_lone_surrogate(data):
        return Rejection(Reason.INVALID_TEXT,
                         "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), not text")
    return data


def _has_lone_surrogate(data: Any) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


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
    result = validate_sale(data, registry)
    if isinstance(result, Sale) and check_key:
        key_text = key.decode(errors="replace") if isinstance(key, bytes) else key
        if key_text != result.ikm_id:
            return Rejection(Reason.KEY_MISMATCH,
                             f"record key {_clip(key_text)} must equal ikm_id {result.ikm_id!r}")
    return result


def validate_sale(data: dict[str, Any], registry: Registry) -> Sale | Rejection:
    """Validate a decoded sale object against the contract and the registry."""
    try:
        return _validate(data, registry)
    except _Reject as rej:
        return rej.rejection


class _Reject(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        self.rejection = Rejection(reason, detail)


def _field(data: dict[str, Any], name: str, kind: type, *, required: bool = True) -> Any:
    if name not in data or data[name] is None:
        if required:
            raise _Reject(Reason.MISSING_FIELD, f"field {name!r} is required")
        return None
    value = data[name]
    # bool is an int in Python; JSON true is never a valid amount or quantity.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Reject(Reason.WRONG_TYPE,
                      f"field {name!r} must be {_type_name(kind)}, got {type(value).__name__}")
    return value


def _type_name(kind: type) -> str:
    return {int: "an integer", str: "a string"}.get(kind, kind.__name__)


def _ident(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = _field(data, name, str, required=required)
    if value is None:
        return None
    if len(value) > MAX_ID_LENGTH or not ID_PATTERN.match(value):
        raise _Reject(Reason.BAD_ID, f"field {name!r} must be 1-{MAX_ID_LENGTH} characters "
                                     "of letters, digits and . _ : / -")
    return value


def _validate(data: dict[str, Any], registry: Registry) -> Sale:
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise _Reject(Reason.UNSUPPORTED_VERSION,
                      f"schema_version {_clip(version)} is not supported (this worker reads 1)")
    sale_id = _ident(data, "sale_id")
    kind = _field(data, "kind", str)
    if kind not in ("sale", "refund"):
        raise _Reject(Reason.UNKNOWN_KIND, f"kind must be 'sale' or 'refund', got {_clip(kind)}")
    ikm_id = _ident(data, "ikm_id")
    event_id = _ident(data, "event_id")
    channel = _field(data, "channel", str)
    if channel not in CHANNELS:
        raise _Reject(Reason.UNKNOWN_CHANNEL,
                      f"channel must be one of {', '.join(CHANNELS)}, got {_clip(channel)}")
    amount = _field(data, "amount_idr", int)
    quantity = _field(data, "quantity", int)
    occurred_text = _field(data, "occurred_at", str)
    booth_id = _ident(data, "booth_id", required=False)
    sku = _field(data, "sku", str, required=False)
    refund_of = _ident(data, "refund_of", required=False)

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
    occurred_at = _timestamp(occurred_text)

    event = registry.events.get(event_id)  # type: ignore[arg-type]
    if event is None:
        raise _Reject(Reason.UNKNOWN_EVENT, f"event {_clip(event_id)} is not in the registry")
    if ikm_id not in registry.ikm:
        raise _Reject(Reason.UNKNOWN_IKM, f"IKM {ikm_id!r} is not in the registry")
    if ikm_id not in event.ikm:
        raise _Reject(Reason.IKM_NOT_IN_EVENT, f"IKM {ikm_id!r} does not take part in {event_id!r}")
    if amount > event.max_sale_idr:
        raise _Reject(Reason.AMOUNT_TOO_LARGE,
                      f"amount_idr {_clip(amount)} is above the cap {event.max_sale_idr} of {event_id!r}")
    try:
        day = local_day(occurred_at, event.timezone)
    except (OverflowError, ValueError) as exc:
        raise _Reject(Reason.BAD_TIMESTAMP, f"occurred_at has no local day in {event.timezone}: "
                                            f"{exc}") from exc
    if not event.starts_on <= day <= event.ends_on:
        raise _Reject(Reason.OUTSIDE_EVENT_WINDOW,
                      f"local day {day} ({event.timezone}) is outside {event_id!r} "
                      f"{event.starts_on}..{event.ends_on}")
    if channel == "offline":
        if booth_id is None:
            raise _Reject(Reason.BOOTH_REQUIRED, "an offline sale must name booth_id")
        booth = registry.booths.get(booth_id)
        if booth is None:
            raise _Reject(Reason.UNKNOWN_BOOTH, f"booth {booth_id!r} is not in the registry")
        if booth.event != event_id or ikm_id not in booth.ikm:
            raise _Reject(Reason.BOOTH_NOT_ALLOWED,
                          f"booth {booth_id!r} may not post for {ikm_id!r} in {event_id!r}")

    extra = {k: v for k, v in data.items() if k not in KNOWN_FIELDS}
    return Sale(sale_id=sale_id, kind=kind, ikm_id=ikm_id, event_id=event_id,  # type: ignore[arg-type]
                channel=channel, amount_idr=amount, quantity=quantity, occurred_at=occurred_at,
                day=day, booth_id=booth_id, sku=sku, refund_of=refund_of, extra=extra)


def _timestamp(text: str) -> datetime:
    if not RFC3339.match(text):
        raise _Reject(Reason.BAD_TIMESTAMP,
                      f"occurred_at must be RFC 3339 with an offset, e.g. "
                      f"2022-06-01T10:15:00+07:00; got {_clip(text)}")
    try:
        at = datetime.fromisoformat(text.replace("z", "Z"))
        at.astimezone(UTC).timestamp()  # the worker converts it; a year-0/9999 edge overflows
    except (ValueError, OverflowError) as exc:
        raise _Reject(Reason.BAD_TIMESTAMP,
                      f"occurred_at {_clip(text)} is not a real time: {exc}") from exc
    return at
