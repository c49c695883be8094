"""Re-rating prices a record exactly as the engine does (docs/wholesale.md, "Re-rating"): its caches and
its one-row shortcut never change a price, whatever bands, dated rows, DST or FX."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.billing.rerate_price import BAD_FX, CURRENCY, NOT_RATED, SERVICE, UNKNOWN_TARIFF, Repricer
from ocs.model import Service
from ocs.money import div_round_half_up
from ocs.rating.engine import CompiledTariff
from ocs.rating.tariff import PER_UNITS, BandInterval, RateRow, Tariff

BERLIN_DST = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 01:30 Berlin, half an hour before the clocks jump
JULY = datetime(2026, 7, 1, tzinfo=UTC)


def banded() -> Tariff:
    """Peak weekdays 08-20 and a night band across midnight; a dated correction; a band-only prefix."""
    return Tariff(
        name="b", version=2, currency="EUR", timezone="Europe/Berlin",
        rows=(
            RateRow("49", "Germany", 60_000, 20_000, 30, 6, line=2),
            RateRow("49", "Germany peak", 90_001, 20_000, 30, 6, band="peak", line=3),
            RateRow("49", "Germany", 55_555, 10_000, 60, 1, effective_from=JULY, line=4),
            RateRow("4930", "Berlin night", 10_003, 0, 1, 1, band="night", line=5),
            RateRow("44", "UK", 30_000, 0, 1, 1, line=6),
            RateRow("49", "SMS", 90_000, 0, 1, 1, service=Service.SMS, line=7),
        ),
        bands=(BandInterval("peak", frozenset(range(5)), 8 * 60, 20 * 60),
               BandInterval("night", frozenset(range(7)), 22 * 60, 1440),
               BandInterval("night", frozenset(range(7)), 0, 6 * 60)),
    )


_COMPILED: dict[int, CompiledTariff] = {}


def engine_price(tariff: Tariff, number: str, start: datetime, units: int,
                 service: Service = Service.VOICE) -> int | None:
    ct = _COMPILED.setdefault(id(tariff), CompiledTariff(tariff))
    sel = ct.select(number, start, service)
    return None if sel is None else ct.rate(sel, units).charge


BANDED = banded()


def repricer(*tariffs: Tariff) -> Repricer:
    r = Repricer()
    for t in tariffs:
        r.add(t.name, t)
    return r


SHARED = repricer(BANDED)  # one cache across the examples: hits must price like misses


@settings(max_examples=400, deadline=None)
@given(number=st.sampled_from(["4930123", "4989123", "44207", "4930", "33123", "tel:+4930999", "004930777"]),
       offset=st.integers(0, 400 * 86400), units=st.integers(0, 20_000))
def test_same_price_as_the_engine(number: str, offset: int, units: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=offset)
    want = engine_price(BANDED, number, start, units)
    got = SHARED.price("b", "voice", number, start, units, "EUR", "", "")
    assert got == (NOT_RATED if want is None else want)


def test_same_price_across_band_changes_and_dst() -> None:
    tariff, pricer = banded(), repricer(banded())
    for start in (BERLIN_DST + timedelta(minutes=m) for m in range(-90, 90, 7)):
        for units in (0, 1, 59, 600, 3599, 3600, 7300):
            assert pricer.price("b", "voice", "4930123", start, units, "EUR", "", "") == \
                engine_price(tariff, "4930123", start, units)
    friday_evening = datetime(2026, 11, 27, 18, 59, 30, tzinfo=UTC)  # 19:59:30 Berlin: peak ends at 20:00
    assert pricer.price("b", "voice", "4989", friday_evening, 95, "EUR", "", "") == \
        engine_price(tariff, "4989", friday_evening, 95)


def test_the_cache_is_per_band_state_not_per_number() -> None:
    """Two numbers of one prefix at peak and off-peak: four prices, each the engine's."""
    tariff, pricer = banded(), repricer(banded())
    monday_peak, monday_night = datetime(2026, 11, 23, 10, tzinfo=UTC), datetime(2026, 11, 23, 23, tzinfo=UTC)
    for number in ("4989111", "4989222"):
        for start in (monday_peak, monday_night, monday_peak):
            assert pricer.price("b", "voice", number, start, 61, "EUR", "", "") == \
                engine_price(tariff, number, start, 61)
    assert len(pricer.tariffs["b"].cache) == 2  # type: ignore[union-attr]


def test_other_services_ignore_bands() -> None:
    tariff, pricer = banded(), repricer(banded())
    at = datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert pricer.price("b", "sms", "4930", at, 3, "EUR", "", "") == engine_price(tariff, "4930", at, 3, Service.SMS)


def test_fx_conversion_at_the_records_own_rate_rounds_once() -> None:
    """USD tariff, EUR account: the exact USD price times the record's rate, rounded once."""
    usd = Tariff("u", 1, "USD", "UTC", (RateRow("49", "Germany", 60_001, 20_000, 30, 6, line=2),))
    pricer, at = repricer(usd), datetime(2026, 11, 23, 10, tzinfo=UTC)
    units = 61  # billed 66 s
    exact_usd = Fraction(20_000 * 60 + 60_001 * 66, PER_UNITS[Service.VOICE])
    rate = Fraction("0.923459119")
    want = div_round_half_up((exact_usd * rate).numerator, (exact_usd * rate).denominator)
    assert pricer.price("u", "voice", "4930", at, units, "EUR", "USD", "0.923459119") == want
    twice = div_round_half_up(div_round_half_up(exact_usd.numerator, exact_usd.denominator) * 923459119,
                              10**9)
    assert want != twice  # this case shows the second rounding would be wrong
    assert pricer.price("u", "voice", "4930", at, units, "EUR", "USD", "10/9") == \
        div_round_half_up((exact_usd * Fraction(10, 9)).numerator, (exact_usd * Fraction(10, 9)).denominator)


def test_reasons_a_record_is_left_alone() -> None:
    usd = Tariff("u", 1, "USD", "UTC", (RateRow("49", "Germany", 60_000, line=2),))
    pricer, at = repricer(usd, banded()), datetime(2026, 11, 23, 10, tzinfo=UTC)
    pricer.add("gone", None)
    assert pricer.price("gone", "voice", "49", at, 60, "EUR", "", "") == UNKNOWN_TARIFF
    assert pricer.price("nope", "voice", "49", at, 60, "EUR", "", "") == UNKNOWN_TARIFF
    assert pricer.price("b", "fax", "49", at, 60, "EUR", "", "") == SERVICE
    assert pricer.price("b", "voice", "33", at, 60, "EUR", "", "") == NOT_RATED
    assert pricer.price("u", "voice", "49", at, 60, "EUR", "", "") == CURRENCY  # no rate on the record
    assert pricer.price("u", "voice", "49", at, 60, "EUR", "GBP", "1.1") == CURRENCY  # the tariff changed currency
    assert pricer.price("u", "voice", "49", at, 60, "EUR", "USD", "abc") == BAD_FX
    assert pricer.price("u", "voice", "49", at, 60, "EUR", "USD", "0") == BAD_FX
