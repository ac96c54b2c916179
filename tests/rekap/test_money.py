from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rekap.money import format_idr, format_idr_short


@pytest.mark.parametrize(("amount", "text"), [
    (5_230_000_000, "Rp5,23 miliar"),
    (210_900_000, "Rp210,9 juta"),
    (125_000, "Rp125.000"),
    (999_999, "Rp999.999"),
    (1_000_000, "Rp1 juta"),
    (1_500_000, "Rp1,5 juta"),
    (45_670_000, "Rp45,7 juta"),
    (999_960_000, "Rp1 miliar"),
    (5_000_000_000, "Rp5 miliar"),
    (2_400_000_000_000, "Rp2,4 triliun"),
    (0, "Rp0"),
])
def test_indonesian_formats(amount: int, text: str) -> None:
    assert format_idr_short(amount) == text


def test_exact_form_groups_thousands_with_dots() -> None:
    assert format_idr(5_230_000_000) == "Rp5.230.000.000"
    assert format_idr(-125_000) == "-Rp125.000"


@pytest.mark.parametrize("bad", [1.5, "100", True, None])
def test_money_must_be_integer(bad: object) -> None:
    with pytest.raises(TypeError):
        format_idr(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**15))
def test_exact_form_round_trips(amount: int) -> None:
    assert int(format_idr(amount)[2:].replace(".", "")) == amount
