"""What an import would change (ocs/rating/diff.py): rows keyed by service, prefix, band, effective_from."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ocs.model import Service
from ocs.rating import diff
from ocs.rating.tariff import BandInterval, RateRow

JAN = datetime(2026, 1, 1, tzinfo=UTC)


def test_added_removed_changed_unchanged() -> None:
    old = [RateRow("49", "Germany", 60_000, 20_000, 30, 6), RateRow("33", "France", 100_000),
           RateRow("44", "UK", 50_000), RateRow("10", "Data", 1_000, service=Service.DATA)]
    new = [RateRow("49", "Germany", 70_000, 20_000, 60, 6), RateRow("44", "UK", 50_000),
           RateRow("4930", "Berlin", 50_000), RateRow("49", "Germany", 80_000, effective_from=JAN),
           RateRow("10", "Data", 2_000, service=Service.DATA)]
    d = diff.diff(old, new)
    assert [(r.prefix, r.effective_from) for r in d.added] == [("49", JAN), ("4930", None)]
    assert [r.prefix for r in d.removed] == ["33"]
    assert [(c.new.prefix, c.new.service, c.fields) for c in d.changed] == [
        ("10", Service.DATA, ("rate",)), ("49", Service.VOICE, ("rate", "first_increment"))]
    assert d.unchanged == 1 and not d.empty


def test_same_instant_in_another_zone_is_the_same_row() -> None:
    berlin = datetime(2026, 1, 1, 1, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    d = diff.diff([RateRow("49", "DE", 1, effective_from=JAN)], [RateRow("49", "DE", 1, effective_from=berlin)])
    assert d.empty and d.unchanged == 1


def test_destination_and_band_rows() -> None:
    old = [RateRow("49", "Germany", 1), RateRow("49", "Germany", 2, band="peak")]
    new = [RateRow("49", "Deutschland", 1), RateRow("49", "Germany", 2, band="offpeak")]
    d = diff.diff(old, new)
    assert [c.fields for c in d.changed] == [("destination",)]
    assert [r.band for r in d.added] == ["offpeak"] and [r.band for r in d.removed] == ["peak"]


def test_bands_compared_as_a_set() -> None:
    peak = BandInterval("peak", frozenset(range(5)), 480, 1200)
    later = BandInterval("peak", frozenset(range(5)), 540, 1200)
    d = diff.diff([], [], [peak], [peak])
    assert d.empty
    d = diff.diff([], [], [peak], [later])
    assert d.bands_added == [later] and d.bands_removed == [peak] and not d.empty


def test_against_nothing_everything_is_added() -> None:
    d = diff.diff([], [RateRow("49", "DE", 1), RateRow("33", "FR", 1)])
    assert [r.prefix for r in d.added] == ["33", "49"] and not d.removed and not d.changed
