"""Which fees a subscription owes, when, and how much: pure calendar arithmetic, no I/O.

docs/billing.md, "Products and fees".  Days are calendar days in the account's tariff timezone
(the caller converts); a subscription is active on the days ``[start, end)``.

- monthly: one fee per calendar month with at least one active day, due on the month's first day,
  the first month's on the start day (in advance).  Amount = ``amount x quantity x days /
  days_in_month``, rounded half up once to a micro-unit; a full month is exactly
  ``amount x quantity``.
- once: ``amount x quantity``, due on the start day, when the subscription is active at least a day.

Money stays integer micro-units: the one division is :func:`ocs.money.div_round_half_up`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from ocs.money import div_round_half_up

MONTHLY, ONCE = "monthly", "once"
PERIODS = (MONTHLY, ONCE)


@dataclass(frozen=True)
class Terms:
    """A subscription as the fee rules see it (amount per month or once, micro-units)."""

    period: str
    amount: int
    quantity: int
    start: date
    end: date | None  # first day no longer active; None = open


@dataclass(frozen=True)
class Fee:
    period: date  # the month's first day (monthly) or the start day (once): the fee's key
    due: date
    days: int  # active days charged
    period_days: int  # days in the month (1 for once)
    amount: int  # micro-units owed


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    first = month_start(day)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)


def prorate(amount: int, quantity: int, days: int, period_days: int) -> int:
    """``amount x quantity x days / period_days``, rounded half up once (a full period is exact)."""
    return div_round_half_up(amount * quantity * days, period_days)


def fee_for(terms: Terms, period: date) -> Fee:
    """The fee of ``period`` under ``terms`` (amount 0 and days 0 when not active in it)."""
    if terms.period == ONCE:
        days = 1 if terms.end is None or terms.end > terms.start else 0
        return Fee(terms.start, terms.start, days, 1, terms.amount * terms.quantity * days)
    first_day, after = max(terms.start, period), next_month(period)
    last = after if terms.end is None else min(terms.end, after)
    days = max(0, (last - first_day).days)
    period_days = (after - period).days
    return Fee(period, first_day, days, period_days, prorate(terms.amount, terms.quantity, days, period_days))


def due_fees(terms: Terms, until: date) -> list[Fee]:
    """Every fee with at least one active day that is due on or before ``until``, oldest first."""
    if terms.period == ONCE:
        fee = fee_for(terms, terms.start)
        return [fee] if fee.days and fee.due <= until else []
    out = []
    month = month_start(terms.start)
    while month <= until and (terms.end is None or month < terms.end):
        fee = fee_for(terms, month)
        if fee.days and fee.due <= until:
            out.append(fee)
        month = next_month(month)
    return out


def settled(terms: Terms, until: date) -> bool:
    """True when nothing can fall due any more: ended, and ``until`` has reached its last active day."""
    return terms.end is not None and until >= terms.end - timedelta(days=1)
