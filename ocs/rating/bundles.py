"""Bundles of included voice seconds (docs/wholesale.md, "Bundles"): pure, I/O-free.

The provisioning sync writes an account's bundles into one field of its Redis hash (``bun``,
:func:`encode`); the charging core reads it with the account (no extra round trip) and, only
when it is there, picks at a call's start the bundle that applies (:func:`choose`).

Rules (written down once, here and in the docs):

- A bundle is a subscription to a product with included seconds: ``seconds x quantity`` per
  calendar month in the tariff's timezone (the clock of rating and of monthly fees), prorated
  by active days for a partial month like the fee (half up, once).
- The call's start decides: the bundle active on that local day whose prefix is the longest one
  the called number starts with, else one without a prefix; ties go to the product name first in
  order.  The whole call draws on that bundle's period, even if it runs past the month's end.
- Each period has its own counters (Redis, :func:`period_key`), created full on first use, so
  unused seconds lapse when the month ends: a new month's key starts at the new quota.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from ocs.money import div_round_half_up

REC, FLD = "\x1e", "\x1f"  # product names hold no control characters (products.PRODUCT_NAME)


@dataclass(frozen=True)
class Bundle:
    """One subscription's included seconds as the account hash carries them."""

    product: str
    prefix: str  # '' = every destination
    seconds: int  # per full month: product seconds x quantity
    start: date
    end: date | None  # first day no longer active

    def active(self, day: date) -> bool:
        return self.start <= day and (self.end is None or day < self.end)


@dataclass(frozen=True)
class Pick:
    """The bundle a call draws on: its period's counters and that period's quota."""

    key: str  # period key: ``YYYY-MM:product`` (the fields q:/u:/h: of the account's bundle hash)
    quota: int
    bundle: Bundle


def encode(bundles: list[Bundle]) -> str:
    return REC.join(FLD.join((b.product, b.prefix, str(b.seconds), b.start.isoformat(),
                              b.end.isoformat() if b.end else "")) for b in bundles)


def decode(raw: str) -> list[Bundle]:
    out = []
    for rec in raw.split(REC) if raw else ():
        product, prefix, seconds, start, end = rec.split(FLD)
        out.append(Bundle(product, prefix, int(seconds), date.fromisoformat(start),
                          date.fromisoformat(end) if end else None))
    return out


def month_bounds(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    return first, first + timedelta(days=calendar.monthrange(day.year, day.month)[1])


def quota(b: Bundle, day: date) -> int:
    """Included seconds of the month of ``day``: prorated by the days the bundle is active in it."""
    first, after = month_bounds(day)
    last = after if b.end is None else min(b.end, after)
    days = max(0, (last - max(b.start, first)).days)
    return div_round_half_up(b.seconds * days, (after - first).days)


def period_key(b: Bundle, day: date) -> str:
    return f"{day:%Y-%m}:{b.product}"


def local_day(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()


def choose(raw: str, number: str, at: datetime, tz: str) -> Pick | None:
    """The bundle a call to ``number`` (normalised digits) starting at ``at`` draws on, if any."""
    day = local_day(at, tz)
    best: Bundle | None = None
    for b in decode(raw):
        if not b.active(day) or not number.startswith(b.prefix):
            continue
        if best is None or len(b.prefix) > len(best.prefix) or \
                (len(b.prefix) == len(best.prefix) and b.product < best.product):
            best = b
    if best is None:
        return None
    q = quota(best, day)
    return Pick(period_key(best, day), q, best) if q > 0 else None


def included_total(included: int, held: int, used_before: int, used_now: int) -> int:
    """The seconds of a session covered by included seconds once usage reaches ``used_now``.

    The usage since the last report is covered by the session's included hold first (the grant held
    included seconds before money): ``included + min(used_now - used_before, held)``.  The money
    part is rated as one call of ``used_now - included_total`` seconds (cumulative, so the amount
    debited so far always equals the charge of that call: nothing is charged twice).
    """
    return included + max(0, min(used_now - used_before, held))
