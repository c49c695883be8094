"""Which fees a subscription owes and how much: the proration rules of docs/billing.md, pure."""

from __future__ import annotations

from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from ocs.billing.proration import Fee, Terms, due_fees, fee_for, next_month, prorate, settled

EUR_10 = 10_000_000


def monthly(start: date, end: date | None = None, amount: int = EUR_10, quantity: int = 1) -> Terms:
    return Terms("monthly", amount, quantity, start, end)


def test_full_month_is_exact() -> None:
    assert due_fees(monthly(date(2026, 3, 1)), date(2026, 3, 1)) == [
        Fee(date(2026, 3, 1), date(2026, 3, 1), 31, 31, EUR_10)]


def test_mid_month_start_is_prorated_and_due_on_the_start_day() -> None:
    fees = due_fees(monthly(date(2026, 3, 15)), date(2026, 4, 30))
    # 15..31 March = 17 of 31 days: 10 x 17 / 31 = 5.483870967... -> 5.483871 (half up at the micro-unit)
    assert fees == [Fee(date(2026, 3, 1), date(2026, 3, 15), 17, 31, 5_483_871),
                    Fee(date(2026, 4, 1), date(2026, 4, 1), 30, 30, EUR_10)]


def test_not_due_before_its_day() -> None:
    assert due_fees(monthly(date(2026, 3, 15)), date(2026, 3, 14)) == []
    assert [f.period for f in due_fees(monthly(date(2026, 3, 15)), date(2026, 3, 31))] == [date(2026, 3, 1)]


def test_mid_month_end_is_prorated() -> None:
    # active 1..9 June (ends at the start of the 10th): 9 of 30 days = 3.00
    assert due_fees(monthly(date(2026, 5, 1), date(2026, 6, 10)), date(2026, 12, 31))[-1] == Fee(
        date(2026, 6, 1), date(2026, 6, 1), 9, 30, 3_000_000)


def test_start_and_end_in_one_month() -> None:
    assert due_fees(monthly(date(2026, 3, 10), date(2026, 3, 20)), date(2026, 3, 31)) == [
        Fee(date(2026, 3, 1), date(2026, 3, 10), 10, 31, 3_225_806)]  # 10 x 10 / 31 = 3.2258064...


def test_february_and_leap_year() -> None:
    assert fee_for(monthly(date(2026, 2, 15)), date(2026, 2, 1)) == Fee(
        date(2026, 2, 1), date(2026, 2, 15), 14, 28, 5_000_000)
    assert fee_for(monthly(date(2028, 2, 15)), date(2028, 2, 1)) == Fee(
        date(2028, 2, 1), date(2028, 2, 15), 15, 29, 5_172_414)  # 10 x 15 / 29 = 5.1724137...


def test_rounding_half_up_once_per_fee() -> None:
    # 0.000001 x 1 day / 2 days = 0.5 micro-units -> 1; quantity multiplies before the one rounding
    assert prorate(1, 1, 1, 2) == 1
    assert prorate(1, 3, 1, 2) == 2  # 1.5 -> 2, not 3 x round(0.5)
    assert prorate(EUR_10, 1, 1, 3) == 3_333_333


def test_quantity_multiplies() -> None:
    assert due_fees(monthly(date(2026, 1, 1), quantity=3), date(2026, 1, 1))[0].amount == 3 * EUR_10


def test_unsubscribed_before_start_owes_nothing() -> None:
    terms = monthly(date(2026, 3, 15), date(2026, 3, 15))
    assert due_fees(terms, date(2027, 1, 1)) == []
    assert settled(terms, date(2026, 3, 14))


def test_once_due_on_start_day() -> None:
    terms = Terms("once", EUR_10, 2, date(2026, 3, 15), date(2026, 3, 16))
    assert due_fees(terms, date(2026, 3, 14)) == []
    assert due_fees(terms, date(2026, 3, 15)) == [Fee(date(2026, 3, 15), date(2026, 3, 15), 1, 1, 2 * EUR_10)]
    assert fee_for(Terms("once", EUR_10, 2, date(2026, 3, 15), date(2026, 3, 15)), date(2026, 3, 15)).amount == 0


def test_settled_once_the_last_active_day_is_reached() -> None:
    assert not settled(monthly(date(2026, 1, 1)), date(2099, 1, 1))
    assert not settled(monthly(date(2026, 1, 1), date(2026, 6, 10)), date(2026, 6, 8))
    assert settled(monthly(date(2026, 1, 1), date(2026, 6, 10)), date(2026, 6, 9))


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 1)), st.integers(1, 800),
       st.integers(0, 10**9), st.integers(1, 5))
def test_months_add_up_to_the_days_active(start: date, length: int, amount: int, quantity: int) -> None:
    """Whole months cost exactly amount x quantity; each fee is within a micro-unit of the exact share."""
    end = date.fromordinal(start.toordinal() + length)
    fees = due_fees(monthly(start, end, amount, quantity), end)
    assert sum(f.days for f in fees) == length
    for f in fees:
        assert f.period_days == (next_month(f.period) - f.period).days
        exact_num = amount * quantity * f.days
        assert abs(f.amount * f.period_days - exact_num) * 2 <= f.period_days
        if f.days == f.period_days:
            assert f.amount == amount * quantity
