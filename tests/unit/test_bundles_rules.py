"""The pure bundle rules (ocs.rating.bundles): which bundle a call draws on, its month, its quota."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocs.rating import bundles as rb

NOV = date(2026, 11, 1)


def _raw(*b: rb.Bundle) -> str:
    return rb.encode(list(b))


def test_encode_decode_round_trip() -> None:
    found = [rb.Bundle("Flat 100", "", 6000, NOV, None), rb.Bundle("UK:x", "44", 60, NOV, date(2026, 12, 5))]
    assert rb.decode(rb.encode(found)) == found
    assert rb.decode("") == []


def test_longest_prefix_else_general_else_none() -> None:
    raw = _raw(rb.Bundle("All", "", 100, NOV, None), rb.Bundle("DE", "49", 100, NOV, None),
               rb.Bundle("DEmob", "4915", 100, NOV, None))
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    assert rb.choose(raw, "4915112345", at, "UTC").bundle.product == "DEmob"  # type: ignore[union-attr]
    assert rb.choose(raw, "4930", at, "UTC").bundle.product == "DE"  # type: ignore[union-attr]
    assert rb.choose(raw, "441234", at, "UTC").bundle.product == "All"  # type: ignore[union-attr]
    assert rb.choose(_raw(rb.Bundle("DE", "49", 100, NOV, None)), "441234", at, "UTC") is None


def test_tie_goes_to_the_first_product_name() -> None:
    raw = _raw(rb.Bundle("b", "", 100, NOV, None), rb.Bundle("a", "", 100, NOV, None))
    pick = rb.choose(raw, "49", datetime(2026, 11, 20, tzinfo=UTC), "UTC")
    assert pick is not None and pick.key == "2026-11:a"


def test_the_month_is_the_tariff_timezones() -> None:
    raw = _raw(rb.Bundle("B", "", 3000, NOV, None))
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already 1 December in Berlin
    assert rb.choose(raw, "49", late, "UTC").key == "2026-11:B"  # type: ignore[union-attr]
    assert rb.choose(raw, "49", late, "Europe/Berlin").key == "2026-12:B"  # type: ignore[union-attr]


@pytest.mark.parametrize(("start", "end", "day", "quota"), [
    (NOV, None, date(2026, 11, 20), 3000),  # a full month
    (date(2026, 11, 16), None, date(2026, 11, 20), 1500),  # 15 of 30 days
    (date(2026, 10, 1), date(2026, 11, 11), date(2026, 11, 5), 1000),  # ends on the 11th: 10 days
    (date(2026, 2, 1), None, date(2026, 2, 14), 3000),  # February is a whole month too
])
def test_quota_is_prorated_by_active_days(start: date, end: date | None, day: date, quota: int) -> None:
    assert rb.quota(rb.Bundle("B", "", 3000, start, end), day) == quota


def test_not_active_outside_its_days() -> None:
    raw = _raw(rb.Bundle("B", "", 3000, date(2026, 11, 16), date(2026, 11, 20)))
    assert rb.choose(raw, "49", datetime(2026, 11, 15, tzinfo=UTC), "UTC") is None
    assert rb.choose(raw, "49", datetime(2026, 11, 20, tzinfo=UTC), "UTC") is None  # end day: no longer
    assert rb.choose(raw, "49", datetime(2026, 11, 19, tzinfo=UTC), "UTC") is not None


@given(included=st.integers(0, 10_000), held=st.integers(0, 10_000), before=st.integers(0, 10_000),
       delta=st.integers(0, 10_000))
def test_included_total_covers_new_usage_up_to_the_hold(included: int, held: int, before: int, delta: int) -> None:
    total = rb.included_total(included, held, before, before + delta)
    assert total - included == min(delta, held)
    assert rb.included_total(included, held, before, before) == included  # no new usage: nothing more covered
