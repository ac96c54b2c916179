"""Money is integer rupiah; this module only formats it for people.

Indonesian style: ``.`` groups thousands, ``,`` is the decimal comma, and large
amounts use juta (10^6), miliar (10^9) and triliun (10^12):
``Rp125.000``, ``Rp210,9 juta``, ``Rp5,23 miliar``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_UNITS = ((10**12, "triliun"), (10**9, "miliar"), (10**6, "juta"))


def format_idr(amount: int) -> str:
    """Exact amount with thousands dots: ``Rp5.230.000.000``."""
    _check(amount)
    sign = "-" if amount < 0 else ""
    return f"{sign}Rp{abs(amount):,}".replace(",", ".")


def format_idr_short(amount: int) -> str:
    """Compact amount for leaderboards: ``Rp5,23 miliar``, ``Rp210,9 juta``.

    Below one juta the exact form is used. Values under 10 of their unit keep
    two decimals, larger ones one, so a leaderboard reads at three or four
    significant digits; trailing zeros are dropped (``Rp5 miliar``).
    """
    _check(amount)
    sign = "-" if amount < 0 else ""
    value = abs(amount)
    for i, (unit, name) in enumerate(_UNITS):
        if value < unit:
            continue
        scaled = Decimal(value) / unit
        places = Decimal("0.01") if scaled < 10 else Decimal("0.1")
        rounded = scaled.quantize(places, rounding=ROUND_HALF_UP)
        if rounded >= 1000 and i > 0:  # Rp999,96 juta rounds up into the next unit
            bigger, bigger_name = _UNITS[i - 1]
            rounded = (Decimal(value) / bigger).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            name = bigger_name
        text = f"{rounded:f}".rstrip("0").rstrip(".").replace(".", ",")
        return f"{sign}Rp{text} {name}"
    return format_idr(amount)


def _check(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"money is integer rupiah, got {type(amount).__name__}")
