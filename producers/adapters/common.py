"""What every channel adapter shares: results, ids, amounts, times and the event of a sale.

An adapter is a pure function: the channel's payload (and the registry) in, a
list of :class:`Item` out, one per order line of the payload, each holding a
contract v1 sale dict or a :class:`~rekap.contract.Rejection`. Some inputs map
to nothing (an order cancelled before it was paid): :data:`IGNORED`.

``sale_id`` is derived from the channel and its own order id, so delivering
the same webhook twice or importing the same CSV again yields the same ids and
the worker counts each sale once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rekap.contract import MAX_ID_LENGTH, Reason, Rejection
from rekap.days import local_day, zone
from rekap.registry import Registry

_ID_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# ASCII digits only: str.isdigit() also takes "²", which int() refuses.
_DIGITS = re.compile(r"^[0-9]{1,18}$")
_GROUPED_IDR = re.compile(r"^[0-9]{1,3}(\.[0-9]{3}){1,5}$")
#: Timestamps whose UTC instant is this close to datetime's ends cannot be placed in every
#: time zone (year 1 with +23:59, year 9999 with -23:59 overflow).
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=2)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)


@dataclass(frozen=True)
class Item:
    """One mapped input: ``ref`` names it in the channel's terms (order id, CSV line)."""

    ref: str
    result: dict[str, Any] | Rejection | None  # None: nothing to count (ignored)

    @property
    def ignored(self) -> bool:
        return self.result is None


class Reject(Exception):
    """Raised inside an adapter, caught per item and turned into a Rejection."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.rejection = Rejection(reason, detail)


def id_part(value: Any, what: str) -> str:
    """A channel's own id, checked so the derived sale_id is valid and stable."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise Reject(Reason.MISSING_FIELD if value in (None, "") else Reason.WRONG_TYPE,
                     f"{what} is required and must be a string")
    if not _ID_PART.match(value) or len(value) > 80:
        raise Reject(Reason.BAD_ID, f"{what} {value!r} must be 1-80 characters of letters, digits "
                                    "and . _ / -")
    return value


def make_id(*parts: str) -> str:
    sale_id = ":".join(parts)
    if len(sale_id) > MAX_ID_LENGTH:
        raise Reject(Reason.BAD_ID, f"derived sale_id {sale_id[:40]}... is longer than {MAX_ID_LENGTH}")
    return sale_id


def amount_idr(value: Any, what: str) -> int:
    """Whole rupiah from JSON int, or text like ``125000`` / ``125.000`` / ``Rp125.000``."""
    if isinstance(value, bool) or value is None:
        raise Reject(Reason.MISSING_FIELD if value is None else Reason.WRONG_TYPE,
                     f"{what} must be whole rupiah")
    if isinstance(value, int):
        amount = value
    elif isinstance(value, str):
        text = value.strip().removeprefix("Rp").removeprefix("IDR").strip()
        if _DIGITS.match(text):
            amount = int(text)
        elif _GROUPED_IDR.match(text):
            amount = int(text.replace(".", ""))
        else:
            raise Reject(Reason.WRONG_TYPE, f"{what} {value[:40]!r} is not whole rupiah "
                                            "(up to 18 digits, optionally grouped with dots)")
    else:
        raise Reject(Reason.WRONG_TYPE, f"{what} must be whole rupiah, got {type(value).__name__}")
    if amount <= 0:
        raise Reject(Reason.NON_POSITIVE_AMOUNT, f"{what} must be > 0, got {amount}")
    return amount


def count(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, str) and _DIGITS.match(value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Reject(Reason.WRONG_TYPE, f"{what} must be an integer")
    if value < minimum:
        raise Reject(Reason.BAD_QUANTITY, f"{what} must be >= {minimum}, got {value}")
    return value


def order_lines(lines: list[Any], name: str, price_key: str) -> tuple[int, int, str | None]:
    """Units, rupiah total and (for a one-line order) SKU of an order's lines.

    Each line is an object with ``qty`` and a unit price under ``price_key``; errors
    name the line as ``<name>[n].<field>``.
    """
    quantity = total = 0
    for n, line in enumerate(lines):
        if not isinstance(line, dict):
            raise Reject(Reason.WRONG_TYPE, f"{name}[{n}] must be an object")
        qty = count(line.get("qty"), f"{name}[{n}].qty")
        quantity += qty
        total += qty * amount_idr(line.get(price_key), f"{name}[{n}].{price_key}")
    sku = lines[0].get("sku") if len(lines) == 1 else None
    return quantity, total, sku if isinstance(sku, str) else None


def timestamp(value: Any, what: str, tz: str = "Asia/Jakarta") -> str:
    """RFC 3339 with offset; a naive ``YYYY-MM-DD HH:MM[:SS]`` is read in ``tz`` (WIB)."""
    if not isinstance(value, str) or not value:
        raise Reject(Reason.MISSING_FIELD if not value else Reason.WRONG_TYPE, f"{what} is required")
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise Reject(Reason.BAD_TIMESTAMP, f"{what} {value!r} is not a date-time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(tz))
    try:
        placeable = _EARLIEST <= moment <= _LATEST
    except OverflowError:  # its UTC instant is outside what datetime holds
        placeable = False
    if not placeable:
        raise Reject(Reason.BAD_TIMESTAMP, f"{what} {value[:40]!r} is too close to year 1 or 9999")
    return moment.isoformat(timespec="seconds")


def event_for(registry: Registry, ikm_id: str, occurred_at: str, wanted: str | None = None) -> str:
    """The event an online sale belongs to: ``wanted`` if given, else the top-level event
    (no parent) whose window holds the sale's local day and which the IKM takes part in.

    Online channels never post into a child event (the exhibition is booths only).
    """
    if wanted is not None:
        if not isinstance(wanted, str):
            raise Reject(Reason.WRONG_TYPE, "event_id must be a string")
        return wanted
    moment = datetime.fromisoformat(occurred_at)
    candidates: list[tuple[date, str]] = []
    for ev in registry.events.values():
        if ev.parent is not None or ikm_id not in ev.ikm:
            continue
        if ev.starts_on <= local_day(moment, ev.timezone) <= ev.ends_on:
            candidates.append((ev.starts_on, ev.id))
    if not candidates:
        if ikm_id not in registry.ikm:
            raise Reject(Reason.UNKNOWN_IKM, f"IKM {ikm_id!r} is not in the registry")
        raise Reject(Reason.OUTSIDE_EVENT_WINDOW,
                     f"no event of IKM {ikm_id!r} is running on {occurred_at}")
    return sorted(candidates)[-1][1]


def sale(*, sale_id: str, ikm_id: str, event_id: str, channel: str, amount: int, quantity: int,
         occurred_at: str, sku: str | None = None, refund_of: str | None = None,
         source: dict[str, Any] | None = None) -> dict[str, Any]:
    """A contract v1 sale (or refund, when ``refund_of`` is given) as a dict."""
    record: dict[str, Any] = {
        "schema_version": 1, "sale_id": sale_id, "kind": "refund" if refund_of else "sale",
        "ikm_id": ikm_id, "event_id": event_id, "channel": channel, "amount_idr": amount,
        "quantity": quantity, "occurred_at": occurred_at,
    }
    if refund_of:
        record["refund_of"] = refund_of
    if sku:
        record["sku"] = sku
    if source:
        record["source"] = source  # unknown fields are kept by the contract: provenance
    return record
