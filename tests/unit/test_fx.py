"""Exact FX (ocs/rating/fx.py): rates by date, inverse pairs, one rounding, folded grant plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.model import Service
from ocs.rating.engine import CompiledTariff, affordable, hold_for_blocks
from ocs.rating.fx import (
    MAX_EXACT,
    FxError,
    FxTable,
    check_currency,
    convert,
    converted_charge,
    fold_plan,
    format_rate,
    parse_rate,
)
from ocs.rating.tariff import RateRow, Tariff

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def table() -> FxTable:
    return FxTable.from_rows([("EUR", "USD", T0, "1.08"), ("EUR", "USD", T0 + timedelta(days=10), "1.1"),
                              ("GBP", "EUR", T0, "1.175")])


def test_rate_direct_by_date_inverse_and_none() -> None:
    t = table()
    assert t.rate("EUR", "EUR", T0) == 1
    assert t.rate("EUR", "USD", T0 - timedelta(seconds=1)) is None  # before the first row
    assert t.rate("EUR", "USD", T0) == Fraction(27, 25)
    assert t.rate("EUR", "USD", T0 + timedelta(days=10) - timedelta(microseconds=1)) == Fraction(27, 25)
    assert t.rate("EUR", "USD", T0 + timedelta(days=10)) == Fraction(11, 10)
    assert t.rate("USD", "EUR", T0) == Fraction(25, 27)  # the inverse of the reverse pair, exact
    assert t.rate("EUR", "GBP", T0) == Fraction(200, 235)
    assert t.rate("USD", "GBP", T0) is None  # no cross rates


def test_direct_pair_wins_over_reverse() -> None:
    t = FxTable.from_rows([("EUR", "USD", T0, "1.08"), ("USD", "EUR", T0 + timedelta(days=1), "0.5")])
    assert t.rate("EUR", "USD", T0 + timedelta(days=2)) == Fraction(27, 25)
    assert t.rate("USD", "EUR", T0 + timedelta(days=2)) == Fraction(1, 2)


@pytest.mark.parametrize("text", ["0", "0.000000000000", "-1", "1e3", "1.0000000000001", "abc", "", "1,5",
                                  "1000000000000000000000"])
def test_parse_rate_refuses(text: str) -> None:
    with pytest.raises(FxError):
        parse_rate(text)


def test_parse_and_format_are_exact() -> None:
    assert parse_rate("1.083275123456") == Fraction(1083275123456, 10**12)
    assert format_rate(parse_rate("1.083275123456")) == "1.083275123456"
    assert format_rate(parse_rate("000.500")) == "0.5"
    assert format_rate(Fraction(3)) == "3"
    assert format_rate(Fraction(10, 9)) == "10/9"
    assert Fraction(format_rate(Fraction(10, 9))) == Fraction(10, 9)
    for bad in ("eur", "EURO", "E1R", ""):
        with pytest.raises(FxError):
            check_currency(bad)


def test_one_rounding_of_the_exact_price() -> None:
    # 61 s at 0.06/min + 0.02, increments 30/6: exact 0.086 EUR; at 1.0832751: 0.0931616586 -> 0.093162
    t = CompiledTariff(Tariff("t", 1, "EUR", "UTC", (RateRow("49", "DE", 60_000, 20_000, 30, 6),)))
    sel = t.select("4930", T0)
    assert sel is not None
    r = t.rate(sel, 61)
    assert r.charge == 86_000
    assert converted_charge(r, Fraction("1.0832751")) == 93_162
    # a per-second price that is not whole in micro-units: 7 s at 0.000001/min = 7/60 micro EUR exact;
    # at rate 9: 63/60 = 1.05 -> 1 micro (converting the rounded 0 would give 0, converting 7/60 -> 1)
    t2 = CompiledTariff(Tariff("t", 1, "EUR", "UTC", (RateRow("1", "X", 1, 0, 1, 1),)))
    sel2 = t2.select("1", T0)
    assert sel2 is not None
    assert t2.rate(sel2, 7).charge == 0 and converted_charge(t2.rate(sel2, 7), Fraction(9)) == 1
    assert convert(1_000_000, Fraction(1, 3)) == 333_333 and convert(500_000, Fraction(1, 1_000_000)) == 1
    assert converted_charge(t.rate(sel, 0), Fraction(2)) == 0


rates = st.one_of(
    st.builds(Fraction, st.integers(1, 10**7), st.sampled_from([1, 10**2, 10**6])),
    st.builds(Fraction, st.integers(1, 10**13), st.just(10**12)),  # 12 decimals
    st.builds(lambda n, d: 1 / Fraction(n, d), st.integers(1, 10**13), st.sampled_from([10**6, 10**12])))


@settings(max_examples=300, deadline=None)
@given(rate=rates, price=st.integers(0, 2_000_000), fee=st.integers(0, 100_000), first=st.integers(1, 90),
       nxt=st.integers(1, 90), used=st.integers(0, 20_000), cap=st.integers(1, 7200),
       avail=st.integers(0, 10**10), service=st.sampled_from([Service.VOICE, Service.DATA]))
def test_folded_grant_holds_the_converted_price(rate: Fraction, price: int, fee: int, first: int, nxt: int,
                                                used: int, cap: int, avail: int, service: Service) -> None:
    """A folded plan's hold is exactly the converted price of the grant minus the converted charge so far,
    the grant is the largest affordable within the (possibly capped) plan, and every number is < 2^53."""
    t = CompiledTariff(Tariff("t", 1, "EUR", "UTC", (RateRow("1", "X", price, fee, first, nxt, service=service),)))
    sel = t.select("1", T0, service)
    assert sel is not None
    done = t.rate(sel, used)
    plan = t.grant_plan(sel, used, cap, done=done)
    folded = fold_plan(plan, rate)
    if folded is None:
        return
    assert 1 <= folded.max_blocks <= plan.max_blocks
    numbers = [folded.fee, folded.base_num, folded.charged_base, 2 * folded.per]
    total = folded.base_num + sum(u * r * c for u, r, c in folded.segments)
    assert max(*numbers, total + folded.per) <= MAX_EXACT  # with one per of headroom for the Lua rhu
    charged = converted_charge(done, rate)
    blocks, units, hold = affordable(folded, avail)
    if blocks:
        assert hold == converted_charge(t.rate(sel, done.billed_units + units), rate) - charged
        assert hold <= avail
        assert (hold, units) == hold_for_blocks(folded, blocks)
        assert hold_for_blocks(plan, blocks)[1] == units  # the same blocks, the same seconds
    if blocks < folded.max_blocks:
        more, _ = hold_for_blocks(folded, blocks + 1)
        assert more > avail
