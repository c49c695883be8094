"""The cost book (docs/wholesale.md, "Providers, routes and margin"): routes, ordered and least-cost choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from ocs.model import Service
from ocs.rating.engine import CompiledTariff
from ocs.rating.fx import FxTable
from ocs.rating.tariff import BandInterval, RateRow, Tariff
from ocs.wholesale.cost import Cost, CostBook, Route
from ocs.wholesale.enrich import add_cost, add_costs

MON_10 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # Monday, peak
MON_22 = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # Monday, off-peak
PEAK = (BandInterval("peak", frozenset(range(5)), 8 * 60, 20 * 60),)


def sheet(name: str, currency: str, *rows: RateRow, bands: tuple[BandInterval, ...] = ()) -> CompiledTariff:
    return CompiledTariff(Tariff(f"provider:{name}", 1, currency, "UTC", rows, bands))


# A: cheap to fixed lines, dear to mobiles.  B: the opposite, and cheaper than A off-peak to fixed lines.
A = sheet("A", "EUR", RateRow("49", "Germany", 10_000, 0, 60, 60), RateRow("4915", "DE mobile", 90_000, 0, 60, 60))
B = sheet("B", "EUR", RateRow("49", "Germany", 20_000, 0, 60, 60, band="peak"),
          RateRow("49", "Germany", 5_000, 0, 60, 60), RateRow("4915", "DE mobile", 40_000, 0, 1, 1), bands=PEAK)


def test_no_route_no_cost() -> None:
    book = CostBook([Route("44", ("A",))], {"A": A})
    assert book.cost_of("4930123", MON_10, 60) is None
    assert CostBook([], {"A": A}).cost_of("4930123", MON_10, 60) is None


def test_longest_prefix_wins() -> None:
    book = CostBook([Route("49", ("A",)), Route("4915", ("B",))], {"A": A, "B": B})
    assert book.cost_of("+49 151 2345", MON_10, 61) == Cost("B", 40_667, "EUR")  # 61 s at 0.04/min, 1/1
    assert book.cost_of("00493012345", MON_10, 61) == Cost("A", 20_000, "EUR")  # 120 s billed at 0.01


def test_ordered_first_provider_that_has_a_rate() -> None:
    only_uk = sheet("C", "EUR", RateRow("44", "UK", 1, 0, 1, 1))
    book = CostBook([Route("4", ("C", "missing", "B", "A"))], {"A": A, "B": B, "C": only_uk})
    assert book.cost_of("4930", MON_10, 60) == Cost("B", 20_000, "EUR")  # C has no rate, "missing" no sheet
    assert book.cost_of("4420", MON_10, 60) == Cost("C", 1, "EUR")
    assert CostBook([Route("4", ("C",))], {"C": only_uk}).cost_of("4930", MON_10, 60) is None


def test_lcr_cheapest_per_destination_and_band() -> None:
    book = CostBook([Route("49", ("A", "B"), lcr=True)], {"A": A, "B": B})
    assert book.cost_of("4930", MON_10, 60) == Cost("A", 10_000, "EUR")   # peak: A 0.01 < B 0.02
    assert book.cost_of("4930", MON_22, 60) == Cost("B", 5_000, "EUR")    # off-peak: B 0.005 < A 0.01
    assert book.cost_of("4915123", MON_10, 60) == Cost("B", 40_000, "EUR")  # mobile: B
    ordered = CostBook([Route("49", ("A", "B"))], {"A": A, "B": B})
    assert ordered.cost_of("4930", MON_22, 60) == Cost("A", 10_000, "EUR")  # no --lcr: the first


def test_lcr_tie_goes_to_the_first_listed() -> None:
    twin = sheet("T", "EUR", RateRow("49", "Germany", 10_000, 0, 60, 60))
    book = CostBook([Route("49", ("T", "A"), lcr=True)], {"A": A, "T": twin})
    assert book.cost_of("4930", MON_10, 60) == Cost("T", 10_000, "EUR")


def test_lcr_across_currencies_and_unconvertible_skipped() -> None:
    usd = sheet("U", "USD", RateRow("49", "Germany", 9_000, 0, 60, 60))  # 0.009 USD
    gbp = sheet("G", "GBP", RateRow("49", "Germany", 1_000, 0, 60, 60))  # no GBP rate: skipped
    fx = FxTable.from_rows([("USD", "EUR", MON_10 - timedelta(days=1), "1.2"),   # 0.009 USD = 0.0108 EUR
                            ("USD", "EUR", MON_10 + timedelta(hours=1), "1.0")])  # later: 0.009 EUR
    book = CostBook([Route("49", ("A", "G", "U"), lcr=True)], {"A": A, "G": gbp, "U": usd}, fx)
    assert book.cost_of("4930", MON_10, 60) == Cost("A", 10_000, "EUR")  # 0.0108 EUR > 0.01 EUR
    assert book.cost_of("4930", MON_10 + timedelta(hours=2), 60) == Cost("U", 9_000, "USD")  # stored in USD
    no_fx = CostBook([Route("49", ("U", "A"), lcr=True)], {"A": A, "U": usd})
    assert no_fx.cost_of("4930", MON_10, 60) == Cost("U", 9_000, "USD")  # A not comparable: skipped


def test_exact_fx_comparison_no_rounding() -> None:
    """0.010000 EUR vs 0.009901 USD at 1.01 = 0.01000001 EUR: EUR is cheaper by less than a micro-unit."""
    usd = sheet("U", "USD", RateRow("49", "Germany", 9_901, 0, 60, 60))
    fx = FxTable.from_rows([("USD", "EUR", MON_10 - timedelta(days=1), "1.01")])
    book = CostBook([Route("49", ("U", "A"), lcr=True)], {"A": A, "U": usd}, fx)
    assert book.cost_of("4930", MON_10, 60) == Cost("A", 10_000, "EUR")
    assert fx.rate("EUR", "USD", MON_10) == 1 / Fraction("1.01")


def test_the_retail_rules_apply_to_the_provider_sheet() -> None:
    """Increments, connect fee, band per block and one rounding: the spec's worked example, as a cost."""
    p = sheet("P", "EUR", RateRow("49", "Germany", 60_000, 20_000, 30, 6))
    book = CostBook([Route("49", ("P",))], {"P": p})
    assert book.cost_of("4930", MON_10, 61) == Cost("P", 86_000, "EUR")
    assert book.cost_of("4930", MON_10, 0) == Cost("P", 0, "EUR")  # unanswered: 0, yet routed
    crossing = sheet("X", "EUR", RateRow("49", "G", 60_000, 0, 60, 60, band="peak"),
                     RateRow("49", "G", 30_000, 0, 60, 60), bands=PEAK)
    at = datetime(2026, 11, 23, 19, 59, tzinfo=UTC)  # the second block starts off-peak
    assert CostBook([Route("49", ("X",))], {"X": crossing}).cost_of("4930", at, 120) == Cost("X", 90_000, "EUR")


def test_service_rows_are_separate() -> None:
    p = sheet("P", "EUR", RateRow("49", "SMS", 5_000, 0, 1, 1, service=Service.SMS))
    book = CostBook([Route("49", ("P",))], {"P": p})
    assert book.cost_of("4930", MON_10, 60) is None
    assert book.cost_of("4930", MON_10, 1, Service.SMS) == Cost("P", 5_000, "EUR")


def _fields(**kw: str) -> dict[str, str]:
    f = {"t": "c", "record_id": "cdr:s:0", "called": "+4930123", "start_time": "2026-11-23T22:00:00+00:00",
         "duration": "61", "service": "voice"}
    f.update(kw)
    return f


def test_enrich_fills_the_stream_fields_in_place() -> None:
    book = CostBook([Route("49", ("A",))], {"A": A})
    f = _fields()
    assert add_cost(f, book) and (f["provider"], f["cost"], f["cost_currency"]) == ("A", "20000", "EUR")
    kept = _fields(provider="X", cost="7", cost_currency="USD")  # priced upstream: left alone
    assert not add_cost(kept, book) and kept["cost"] == "7"
    usage = {"t": "u", "record_id": "u1", "called": "4930"}
    assert not add_cost(usage, book) and "provider" not in usage
    for bad in (_fields(start_time="yesterday"), _fields(duration="x"), _fields(service="fax"), _fields(called="")):
        add_cost(bad, book)  # logged, never raised
        assert "provider" not in bad


async def test_add_costs_prices_a_batch() -> None:
    book = CostBook([Route("49", ("A",))], {"A": A})
    batch = [_fields(record_id=f"cdr:{i}:0") for i in range(300)]
    await add_costs(batch, book)
    assert {f["cost"] for f in batch} == {"20000"}
    empty = [_fields()]
    await add_costs(empty, CostBook([], {"A": A}))
    assert "provider" not in empty[0]
