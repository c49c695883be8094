"""Invoice arithmetic (ocs/billing/amounts.py): one half-up rounding per total, tax on the sum, exact lines."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocs.billing import amounts


@pytest.mark.parametrize(("lines", "rate", "net", "tax", "gross"), [
    (10_000_000, "19", 10_000_000, 1_900_000, 11_900_000),
    (4_999, "0", 0, 0, 0),  # 0.004999 -> 0.00
    (5_000, "0", 10_000, 0, 10_000),  # 0.005 -> 0.01: half up
    (-5_000, "0", -10_000, 0, -10_000),  # a credit rounds away from zero, symmetrically
    (39_999, "19", 40_000, 10_000, 50_000),  # tax of the sum 0.0076, not 3 x round(0.0025) = 0
    (26_315, "19", 30_000, 0, 30_000),  # tax of the exact 0.026315 is 0.00499985 -> 0.00 (not of the net 0.03)
])
def test_totals_added_tax(lines: int, rate: str, net: int, tax: int, gross: int) -> None:
    t = amounts.totals(lines, Decimal(rate), "EUR", tax_included=False)
    assert (t.net, t.tax, t.gross) == (net, tax, gross)


def test_totals_tax_included_and_zero_decimal_currency() -> None:
    t = amounts.totals(11_900_000, Decimal("19"), "EUR", tax_included=True)
    assert (t.gross, t.tax, t.net) == (11_900_000, 1_900_000, 10_000_000)
    y = amounts.totals(1_499_999, Decimal("10"), "JPY", tax_included=False)
    assert (y.net, y.tax, y.gross) == (1_000_000, 0, 1_000_000)  # 1.499999 yen -> 1; tax 0.15 -> 0
    assert amounts.fmt_total(y.gross, "JPY") == "1" and amounts.fmt_total(-12_340_000, "EUR") == "-12.34"


def test_line_formatting_is_exact_and_aligned() -> None:
    values = [1_000_000, 61_667, -2_500_000]
    places = amounts.line_places(values, "EUR")
    assert places == 6 and [amounts.fmt_line(v, places) for v in values] == ["1.000000", "0.061667", "-2.500000"]
    assert amounts.line_places([19_990_000, -5_000_000], "EUR") == 2
    with pytest.raises(ValueError, match="more than 2 decimals"):
        amounts.fmt_line(61_667, 2)
    assert amounts.minutes(90) == "1.50" and amounts.minutes(61) == "1.02"
    assert amounts.fmt_units("voice", 3725) == "62:05 min" and amounts.fmt_units("data", 1_234_567) == "1.23 MB"
    with pytest.raises(ValueError, match="more than 4 decimals"):
        amounts.rate_units(Decimal("19.00001"))


@given(st.lists(st.integers(-10**9, 10**9), min_size=1, max_size=50),
       st.decimals(min_value=0, max_value=100, places=4))
def test_tax_is_one_rounding_of_the_exact_sum(lines: list[int], rate: Decimal) -> None:
    total = sum(lines)
    t = amounts.totals(total, rate, "EUR", tax_included=False)
    exact = Decimal(total) * rate / 100  # micro-units
    assert abs(Decimal(t.tax) - exact) <= 5_000 and t.tax % 10_000 == 0  # within half a cent
    assert abs(t.net - total) <= 5_000 and t.gross == t.net + t.tax
