"""Every rule of docs/rating.md, plus hypothesis properties of the engine and its inverse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.model import Service
from ocs.rating.engine import CompiledTariff, affordable, billed, hold_for_blocks, normalize_number
from ocs.rating.tariff import BandInterval, RateRow, Tariff

MON_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
WEEKDAYS = frozenset(range(5))


def tariff(*rows: RateRow, bands: tuple[BandInterval, ...] = (), tz: str = "UTC") -> CompiledTariff:
    return CompiledTariff(Tariff("t", 1, "EUR", tz, rows, bands))


@pytest.mark.parametrize(("raw", "want"), [
    ("+4930123456", "4930123456"), ("004930123", "4930123"), ("tel:+49-30-123", "4930123"),
    ("sip:+4930123@example.net;user=phone", "4930123"), ("SIP:0049301@h", "49301"), ("49 30 12", "493012"),
    ("sip:alice@example.net", ""),
])
def test_normalisation(raw: str, want: str) -> None:
    assert normalize_number(raw) == want


def test_worked_example() -> None:
    t = tariff(RateRow("49", "Germany", 60_000, 20_000, 30, 6))
    sel = t.select("+4930123", MON_10)
    assert sel is not None
    r = t.rate(sel, 61)
    assert (r.billed_units, r.charge) == (66, 86_000)


def test_billed_seconds_rule() -> None:
    assert billed(0, 30, 6) == 0
    assert billed(1, 30, 6) == 30
    assert billed(30, 30, 6) == 30
    assert billed(31, 30, 6) == 36
    assert billed(61, 60, 60) == 120


def test_zero_duration_costs_nothing_even_with_connect_fee() -> None:
    t = tariff(RateRow("49", "DE", 60_000, 20_000, 30, 6))
    sel = t.select("49", MON_10)
    assert sel is not None and t.rate(sel, 0).charge == 0


def test_longest_prefix_and_not_rated() -> None:
    t = tariff(RateRow("49", "DE", 60_000), RateRow("4915", "DE mobile", 120_000))
    assert t.select("4915112", MON_10).destination == "DE mobile"  # type: ignore[union-attr]
    assert t.select("4930", MON_10).destination == "DE"  # type: ignore[union-attr]
    assert t.select("33123", MON_10) is None


def test_band_row_beats_any_and_latest_effective_from_wins() -> None:
    bands = (BandInterval("peak", WEEKDAYS, 8 * 60, 20 * 60),)
    old = MON_10 - timedelta(days=30)
    t = tariff(RateRow("49", "any", 10_000), RateRow("49", "peak", 50_000, band="peak"),
               RateRow("49", "peak new", 70_000, band="peak", effective_from=old), bands=bands)
    assert t.select("49", MON_10).destination == "peak new"  # type: ignore[union-attr]
    assert t.select("49", MON_10.replace(hour=21)).destination == "any"  # type: ignore[union-attr]


def test_future_dated_row_is_ignored_until_its_date() -> None:
    start = MON_10 + timedelta(days=1)
    t = tariff(RateRow("49", "now", 60_000), RateRow("49", "later", 90_000, effective_from=start))
    assert t.select("49", MON_10).destination == "now"  # type: ignore[union-attr]
    assert t.select("49", start).destination == "later"  # type: ignore[union-attr]
    only_future = tariff(RateRow("44", "later", 1, effective_from=start))
    assert only_future.select("44", MON_10) is None


def test_call_crossing_a_band_boundary_changes_price_at_the_first_block_in_the_new_band() -> None:
    bands = (BandInterval("peak", WEEKDAYS, 8 * 60, 20 * 60), BandInterval("off", WEEKDAYS, 20 * 60, 1440))
    t = tariff(RateRow("49", "peak", 60_000, 0, 60, 60, band="peak"),
               RateRow("49", "off", 30_000, 0, 60, 60, band="off"), bands=bands)
    start = MON_10.replace(hour=19, minute=58, second=30)
    sel = t.select("49", start)
    assert sel is not None
    r = t.rate(sel, 180)  # blocks at 19:58:30 (peak), 19:59:30 (peak), 20:00:30 (off)
    assert r.charge == 60_000 + 60_000 + 30_000
    assert [b.band for b in r.blocks] == ["peak", "peak", "off"]


def test_bands_use_the_tariff_timezone() -> None:
    bands = (BandInterval("peak", WEEKDAYS, 8 * 60, 20 * 60),)
    t = tariff(RateRow("49", "peak", 60_000, band="peak"), RateRow("49", "any", 1_000), bands=bands,
               tz="Europe/Berlin")
    assert t.select("49", MON_10.replace(hour=7, minute=30)).destination == "peak"  # 08:30 in Berlin
    assert t.select("49", MON_10.replace(hour=19, minute=30)).destination == "any"  # 20:30 in Berlin


def test_half_up_rounding_happens_once() -> None:
    # 0.07/min: 1 s blocks cost 1166.666.. micro each; rounding each block would give 1167 * 3 = 3501
    t = tariff(RateRow("49", "DE", 70_000, 0, 1, 1))
    sel = t.select("49", MON_10)
    assert sel is not None and t.rate(sel, 3).charge == 3500


def test_data_and_sms_units() -> None:
    t = tariff(RateRow("10", "data", 1_000_000, 0, 1024, 1024, service=Service.DATA),
               RateRow("49", "sms", 90_000, 0, 1, 1, service=Service.SMS))
    d = t.select("10", MON_10, Service.DATA)
    s = t.select("49", MON_10, Service.SMS)
    assert d is not None and s is not None
    assert t.rate(d, 1_048_576).charge == 1_000_000
    assert t.rate(s, 3).charge == 270_000
    assert t.select("49", MON_10) is None  # voice has no row


@st.composite
def tariffs(draw: st.DrawFn) -> tuple[CompiledTariff, datetime]:
    first = draw(st.integers(1, 90))
    nxt = draw(st.integers(1, 90))
    peak = draw(st.integers(0, 300_000))
    off = draw(st.integers(0, 300_000))
    fee = draw(st.integers(0, 50_000))
    bands = (BandInterval("peak", WEEKDAYS, 8 * 60, 20 * 60),)
    t = tariff(RateRow("49", "peak", peak, fee, first, nxt, band="peak"),
               RateRow("49", "any", off, fee, first, nxt), bands=bands)
    start = MON_10 + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60)))
    return t, start


@settings(max_examples=150, deadline=None)
@given(tariffs(), st.lists(st.integers(0, 2_000), min_size=1, max_size=6))
def test_cumulative_rating_equals_one_shot(tp: tuple[CompiledTariff, datetime], parts: list[int]) -> None:
    t, start = tp
    sel = t.select("49", start)
    assert sel is not None
    charged, used = 0, 0
    for p in parts:
        used += p
        charged += t.rate(sel, used).charge - charged
    assert charged == t.rate(sel, sum(parts)).charge


@settings(max_examples=150, deadline=None)
@given(tariffs(), st.integers(0, 3_000), st.integers(0, 3_000))
def test_price_is_monotone(tp: tuple[CompiledTariff, datetime], a: int, b: int) -> None:
    t, start = tp
    sel = t.select("49", start)
    assert sel is not None
    lo, hi = sorted((a, b))
    assert t.rate(sel, lo).charge <= t.rate(sel, hi).charge


@settings(max_examples=150, deadline=None)
@given(tariffs(), st.integers(0, 2_000), st.integers(1, 3_600), st.integers(0, 500_000))
def test_grant_inverse_never_grants_more_than_paid(tp: tuple[CompiledTariff, datetime], used: int, cap: int,
                                                   available: int) -> None:
    t, start = tp
    sel = t.select("49", start)
    assert sel is not None
    plan = t.grant_plan(sel, used, cap)
    k, units, hold = affordable(plan, available)
    assert hold <= available
    assert (hold, units) == hold_for_blocks(plan, k)
    if k:  # the hold is exactly the cumulative price of the granted blocks from the billed position
        assert hold == t.rate(sel, plan.position + units).charge - t.rate(sel, used).charge
    if k < plan.max_blocks:
        assert hold_for_blocks(plan, k + 1)[0] > available
    brute = max((j for j in range(plan.max_blocks + 1) if hold_for_blocks(plan, j)[0] <= available), default=0)
    assert k == brute


def test_no_float_near_money() -> None:
    root = Path(__file__).resolve().parents[2] / "ocs"
    paths = [root / "money.py", root / "charging.py", *(root / "rating").rglob("*.py"),
             *(root / "store").rglob("*.py")]
    for p in paths:
        assert "float(" not in p.read_text(), f"float( in {p}"
