"""Pricing a usage record again on its tariff's current version (docs/wholesale.md, "Re-rating").

The same rules as the charging core (docs/rating.md): rule 1 at the record's start time, the
record's charged units (``duration``: what the session was charged for, excess excluded) priced
cumulatively as one call, one half-up rounding.  A record the core converted from the tariff's
currency (``rate_currency``/``fx_rate`` set) is converted again at the SAME rate it carries, from
the exact tariff price (:func:`ocs.rating.fx.convert_num`): re-rating corrects a rate, never the
exchange rate of the day, and still rounds once.

Speed (a million records in well under a minute).  Rule 1 for a number at instant ``t`` depends on
the number only through the longest prefix the tariff has rows for (shorter ones are its own
prefixes), and on ``t`` only through which bands cover ``t`` (a whole minute of the week in the
tariff's timezone, as :class:`~ocs.rating.bands.Calendar` reads it) and which dated rows are in
force.  So a selection is cached per (service, that prefix, band state, dated-rows epoch), the band
state coming from a table of the 10,080 minutes of a week.  A call whose blocks all start before
the band state next changes is priced by one row: ``fee + rate * billed / per``.  One that may
cross a change (or come within an hour of one: a DST jump shifts wall-clock time by at most that)
takes the engine's block walk, exactly.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from fractions import Fraction
from typing import NamedTuple
from zoneinfo import ZoneInfo

from ocs.model import Service
from ocs.money import div_round_half_up
from ocs.rating import fx
from ocs.rating.engine import CompiledTariff, Selection, billed, normalize_number
from ocs.rating.tariff import ANY_BAND, PER_UNITS, Tariff

MAX_CACHED = 200_000  # selections kept per tariff before the cache starts over (bounded memory)
WEEK = 7 * 1440
NEVER = 1 << 62  # seconds to the next band change of a tariff without bands
DST_MARGIN = 3600  # seconds: wall-clock distance to a band change may exceed the real one by this much

UNKNOWN_TARIFF = "unknown tariff"
NOT_RATED = "destination not rated"
CURRENCY = "currency differs and no FX rate on the record"
SERVICE = "unknown service"
BAD_FX = "fx_rate on the record is not a rate"
NO_ACCOUNT = "unknown account"

_SERVICES = {s.value: s for s in Service}


class _Chosen(NamedTuple):
    sel: Selection
    rate: int  # the rate of the first block (rule 3): of every block while the band state holds
    uniform: bool  # no band row in the selection: every block has ``rate`` whatever the time


def _week_tables(compiled: CompiledTariff) -> tuple[list[int], list[int]]:
    """Per minute of the week (Monday 00:00 = 0): a band-state id, and minutes until the state changes."""
    by_band = compiled.calendar.by_band
    ids: dict[tuple[str, ...], int] = {}
    state = []
    for m in range(WEEK):
        day, minute = divmod(m, 1440)
        key = tuple(sorted(b for b, ivs in by_band.items()
                           if any(day in iv.days and iv.start_minute <= minute < iv.end_minute for iv in ivs)))
        state.append(ids.setdefault(key, len(ids)))
    until = [WEEK] * WEEK
    if len(ids) > 1:
        nxt = 0
        for m in range(2 * WEEK - 1, -1, -1):  # two laps: the change after Sunday night is on Monday
            i = m % WEEK
            if state[i] != state[(i + 1) % WEEK]:
                nxt = 1
            else:
                nxt += 1
            until[i] = nxt
    return state, until


class Priced:
    """A compiled tariff with its selection cache."""

    __slots__ = ("banded", "cache", "compiled", "currency", "dates", "state", "tz", "until")

    def __init__(self, tariff: Tariff) -> None:
        self.compiled = CompiledTariff(tariff)
        self.currency = tariff.currency.strip()
        self.tz = ZoneInfo(tariff.timezone)
        self.dates = sorted({r.effective_from for r in tariff.rows if r.effective_from is not None})
        self.banded = bool(tariff.bands)
        self.state, self.until = _week_tables(self.compiled) if tariff.bands else ([0], [WEEK])
        self.cache: dict[tuple[Service, str, int, int], _Chosen | None] = {}

    def exact(self, service: Service, number: str, start: datetime, units: int) -> tuple[int, int] | None:
        """The unrounded price as ``(numerator, denominator)``; None: the destination is not rated (rule 1)."""
        if self.banded:
            local = start.astimezone(self.tz)
            minute = local.weekday() * 1440 + local.hour * 60 + local.minute
            state, wall = self.state[minute], self.until[minute] * 60 - local.second - 1
        else:
            state, wall = 0, NEVER
        prefix = self._longest(service, number)
        if prefix is None:
            return None
        key = (service, prefix, state, bisect_right(self.dates, start) if self.dates else 0)
        try:
            chosen = self.cache[key]
        except KeyError:
            if len(self.cache) >= MAX_CACHED:
                self.cache.clear()
            chosen = self.cache[key] = self._choose(service, number, start)
        if chosen is None:
            return None
        row, per = chosen.sel.row, PER_UNITS[service]
        b = billed(units, row.first_increment, row.next_increment)
        if b == 0:
            return 0, per
        if chosen.uniform or b + DST_MARGIN <= wall:
            return row.connect_fee * per + chosen.rate * b, per
        sel = self.compiled.select(number, start, service)  # crosses a band change: the engine, exactly
        assert sel is not None  # same band state and epoch as the cached selection
        return row.connect_fee * per + sum(x.price_num for x in self.compiled.rate(sel, units).blocks), per

    def _longest(self, service: Service, number: str) -> str | None:
        """The longest prefix of ``number`` the tariff has rows for: with the band state and the epoch it
        decides rule 1 (a shorter one is only tried when that prefix's rows are not in force then)."""
        digits = normalize_number(number)
        lookup = self.compiled.lookup[service]
        for length in range(min(len(digits), self.compiled.max_len), 0, -1):
            if digits[:length] in lookup:
                return digits[:length]
        return None

    def _choose(self, service: Service, number: str, start: datetime) -> _Chosen | None:
        sel = self.compiled.select(number, start, service)
        if sel is None:
            return None
        first = next(self.compiled.runs(sel, 0, 1))  # the engine's own choice of the row at offset 0
        uniform = service is not Service.VOICE or set(sel.band_rows) <= {ANY_BAND}
        return _Chosen(sel, first.rate, uniform)


class Repricer:
    """Prices records; ``price`` answers the new charge in micro-units, or why the record cannot be priced."""

    def __init__(self) -> None:
        self.tariffs: dict[str, Priced | None] = {}
        self._rates: dict[str, Fraction] = {}

    def missing(self, names: set[str]) -> set[str]:
        """Tariff names not loaded yet (the caller loads them: this module does no I/O)."""
        return names - self.tariffs.keys()

    def add(self, name: str, tariff: Tariff | None) -> None:
        self.tariffs[name] = Priced(tariff) if tariff is not None else None

    def _fx(self, text: str) -> Fraction:
        rate = self._rates.get(text)
        if rate is None:
            rate = self._rates[text] = fx.to_fraction(text)
        return rate

    def price(self, tariff: str, service: str, number: str, start: datetime, units: int, currency: str,
              rate_currency: str, fx_rate: str) -> int | str:
        """The new charge of one record (an int), or the reason it is left as it is (a str)."""
        priced = self.tariffs.get(tariff)
        if priced is None:
            return UNKNOWN_TARIFF
        svc = _SERVICES.get(service)
        if svc is None:
            return SERVICE
        if fx_rate:
            if rate_currency and rate_currency != priced.currency:
                return CURRENCY
        elif priced.currency != currency:
            return CURRENCY
        exact = priced.exact(svc, number, start, units)
        if exact is None:
            return NOT_RATED
        if not fx_rate:
            return div_round_half_up(*exact)
        try:
            rate = self._fx(fx_rate)
        except (ArithmeticError, ValueError):
            return BAD_FX
        return fx.convert_num(*exact, rate) if rate > 0 else BAD_FX
