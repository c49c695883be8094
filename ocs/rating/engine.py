"""Rating engine (docs/rating.md): pure and I/O-free.

A :class:`CompiledTariff` is built once per tariff version (prefix index, band
calendar) and answers: which row rates this number at this instant (rule 1),
what a usage of ``d`` units costs (rules 2-4, with an explanation), and the
inverse the balance engine needs: a :class:`GrantPlan` from which the Redis
script finds, atomically, the largest whole number of blocks the available
money buys (docs/rating.md).

Prices are exact: a block of ``u`` units on a row of rate ``r`` (micro-units
per ``PER_UNITS`` units) contributes the numerator ``r * u``; the charge is
``connect_fee + round_half_up(sum of numerators / PER_UNITS)``, rounded once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from ocs.model import Service
from ocs.money import div_round_half_up
from ocs.rating.bands import Calendar, seconds_between
from ocs.rating.tariff import ANY_BAND, PER_UNITS, RateRow, Tariff

_SCHEMES = ("tel:", "sip:", "sips:")


def normalize_number(raw: str) -> str:
    """Spec section 3: drop a tel:/sip: scheme and anything from "@" or ";", drop "+" and a leading "00"."""
    if raw.isdigit() and raw.isascii():  # the common case, fast
        return raw[2:] if raw.startswith("00") else raw
    s = raw.strip()
    low = s[:5].lower()
    for scheme in _SCHEMES:
        if low.startswith(scheme):
            s = s[len(scheme):]
            break
    for stop in ("@", ";"):
        cut = s.find(stop)
        if cut >= 0:
            s = s[:cut]
    digits = "".join(ch for ch in s if ch.isdigit())
    return digits[2:] if digits.startswith("00") else digits


class Selection(NamedTuple):
    """Rule 1 for one call: the prefix and row chosen at ``start``.

    A NamedTuple rather than a frozen dataclass: it is built on every lookup and
    construction cost is most of a lookup (200,000 lookups/s target).

    ``band_rows`` maps band name -> the chosen prefix's row in force at ``start``
    for that band (``any`` included) used to price blocks (rule 3).
    """

    tariff: str
    version: int
    currency: str
    number: str
    prefix: str
    destination: str
    row: RateRow
    start: datetime
    service: Service
    band_rows: dict[str, RateRow]


@dataclass(frozen=True)
class Block:
    """A run of ``count`` equal blocks of the explanation, starting ``offset`` units into the call."""

    offset: int
    units: int  # units of each block
    band: str
    rate: int
    line: int
    price_num: int  # rate * units * count (exact price * PER_UNITS)
    count: int = 1

    def __init__(self, offset: int, units: int, band: str, rate: int, line: int, price_num: int,
                 count: int = 1) -> None:
        """Written out, not generated: mypyc compiles it (frozen: object.__setattr__, as the generated one)."""
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "band", band)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "price_num", price_num)
        object.__setattr__(self, "count", count)


@dataclass(frozen=True)
class Rating:
    selection: Selection
    units: int
    billed_units: int
    charge: int
    blocks: tuple[Block, ...]

    def __init__(self, selection: Selection, units: int, billed_units: int, charge: int,
                 blocks: tuple[Block, ...]) -> None:
        """Written out, not generated: mypyc compiles it (frozen: object.__setattr__, as the generated one)."""
        object.__setattr__(self, "selection", selection)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "billed_units", billed_units)
        object.__setattr__(self, "charge", charge)
        object.__setattr__(self, "blocks", blocks)


@dataclass(frozen=True)
class GrantPlan:
    """What the reserve script needs to find the largest affordable grant atomically.

    With ``B`` (``position``) the billed position of the session so far::

        hold(k) = fee + round_half_up((base_num + sum of the first k block numerators) / per) - charged_base

    ``segments`` are runs of equal blocks ``(units_per_block, rate, count)`` in
    order; ``max_blocks`` is the cap from the request and ``max_grant``.  ``hold``
    is non-decreasing in ``k``.
    """

    position: int
    base_num: int
    charged_base: int
    fee: int
    per: int
    segments: tuple[tuple[int, int, int], ...]
    max_blocks: int

    def __init__(self, position: int, base_num: int, charged_base: int, fee: int, per: int,
                 segments: tuple[tuple[int, int, int], ...], max_blocks: int) -> None:
        """Written out, not generated: mypyc compiles it (frozen: object.__setattr__, as the generated one)."""
        object.__setattr__(self, "position", position)
        object.__setattr__(self, "base_num", base_num)
        object.__setattr__(self, "charged_base", charged_base)
        object.__setattr__(self, "fee", fee)
        object.__setattr__(self, "per", per)
        object.__setattr__(self, "segments", segments)
        object.__setattr__(self, "max_blocks", max_blocks)


def billed(units: int, first: int, nxt: int) -> int:
    """Rule 2: ``f`` if ``d <= f`` else ``f + ceil((d - f) / n) * n``; 0 for 0."""
    if units <= 0:
        return 0
    if units <= first:
        return first
    return first + -(-(units - first) // nxt) * nxt


class CompiledTariff:
    """A tariff version ready for rating."""

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        self.calendar = Calendar(tariff.timezone, tariff.bands)
        index: dict[Service, dict[str, list[RateRow]]] = {s: {} for s in Service}
        for row in tariff.rows:
            index[row.service].setdefault(row.prefix, []).append(row)
        self.simple: dict[Service, dict[str, tuple[RateRow, dict[str, RateRow]]]] = {s: {} for s in Service}
        for service, by_prefix in index.items():
            for prefix, rows in by_prefix.items():  # latest effective_from first; None (always) last
                rows.sort(key=lambda r: (r.effective_from is not None, r.effective_from or 0), reverse=True)
                if len(rows) == 1 and rows[0].effective_from is None and rows[0].band == ANY_BAND:
                    self.simple[service][prefix] = (rows[0], {ANY_BAND: rows[0]})  # the common case: O(1)
        self.index = index
        self.lookup: dict[Service, dict[str, list[RateRow] | tuple[RateRow, dict[str, RateRow]]]] = {
            s: {**index[s], **self.simple[s]} for s in Service}
        self.max_len = max((len(r.prefix) for r in tariff.rows), default=0)

    # -- rule 1 ------------------------------------------------------------------------------

    def _in_force(self, rows: list[RateRow], at: datetime) -> list[RateRow]:
        return [r for r in rows if r.effective_from is None or r.effective_from <= at]

    def _choose(self, rows: list[RateRow], at: datetime) -> RateRow | None:
        """A band row covering ``at`` beats ``any``; the latest effective_from wins."""
        fallback = None
        for r in rows:  # sorted latest first
            if r.band == ANY_BAND:
                if fallback is None:
                    fallback = r
            elif self.calendar.covers(r.band, at):
                return r
        return fallback

    def longest_prefix(self, number: str, service: Service = Service.VOICE) -> str | None:
        """The index alone: the longest tariff prefix of ``number`` (ignoring dates and bands)."""
        digits = normalize_number(number)
        lookup = self.lookup[service]
        for length in range(min(len(digits), self.max_len), 0, -1):
            key = digits[:length]
            if key in lookup:
                return key
        return None

    def select(self, number: str, at: datetime, service: Service = Service.VOICE) -> Selection | None:
        """Rule 1; ``number`` is normalised here.  None: not rated."""
        digits = normalize_number(number)
        lookup = self.lookup[service].get
        t = self.tariff
        for length in range(min(len(digits), self.max_len), 0, -1):
            rows = lookup(digits[:length])
            if rows is None:
                continue
            if type(rows) is tuple:  # one row, always in force, any band: O(1)
                only = rows[0]
                return Selection(t.name, t.version, t.currency, digits, only.prefix, only.destination, only, at,
                                 service, rows[1])
            assert isinstance(rows, list)
            live = self._in_force(rows, at)
            row = self._choose(live, at)
            if row is None:
                continue
            band_rows: dict[str, RateRow] = {}
            for r in live:
                band_rows.setdefault(r.band, r)
            return Selection(t.name, t.version, t.currency, digits, row.prefix, row.destination, row, at,
                             service, band_rows)
        return None

    # -- rules 2-4 ---------------------------------------------------------------------------

    def _row_at(self, sel: Selection, offset: int) -> tuple[RateRow, str]:
        if sel.service is Service.VOICE and len(sel.band_rows) > (ANY_BAND in sel.band_rows):
            instant = sel.start + timedelta(seconds=offset)
            for band, row in sel.band_rows.items():
                if band != ANY_BAND and self.calendar.covers(band, instant):
                    return row, band
        any_row = sel.band_rows.get(ANY_BAND)
        return (any_row, ANY_BAND) if any_row is not None else (sel.row, sel.row.band)

    def _next_change(self, sel: Selection, offset: int) -> int | None:
        """Offset at which the pricing row may change next; None when it never does."""
        if sel.service is not Service.VOICE or len(sel.band_rows) <= (ANY_BAND in sel.band_rows):
            return None
        instant = sel.start + timedelta(seconds=offset)
        return offset + seconds_between(instant, self.calendar.next_change(instant))

    def runs(self, sel: Selection, position: int, count: int) -> Iterator[Block]:
        """Runs of equal blocks starting at billed ``position`` (0: the first block first)."""
        first, nxt = sel.row.first_increment, sel.row.next_increment
        offset = position
        if count > 0 and position == 0:
            row, band = self._row_at(sel, 0)
            yield Block(0, first, band, row.rate, row.line, row.rate * first, 1)
            offset, count = first, count - 1
        while count > 0:
            row, band = self._row_at(sel, offset)
            change = self._next_change(sel, offset)
            k = count if change is None else min(count, max(1, -(-(change - offset) // nxt)))
            yield Block(offset, nxt, band, row.rate, row.line, row.rate * nxt * k, k)
            offset += k * nxt
            count -= k

    def _blocks_for(self, sel: Selection, billed_units: int) -> int:
        first, nxt = sel.row.first_increment, sel.row.next_increment
        return 0 if billed_units == 0 else 1 + (billed_units - first) // nxt

    def rate(self, sel: Selection, units: int) -> Rating:
        """Rules 2-4 for a usage of ``units`` from the call start (rule 5: cumulative)."""
        b = billed(units, sel.row.first_increment, sel.row.next_increment)
        blocks = tuple(self.runs(sel, 0, self._blocks_for(sel, b)))
        charge = 0
        if b:
            charge = sel.row.connect_fee + div_round_half_up(sum(x.price_num for x in blocks),
                                                             PER_UNITS[sel.service])
        return Rating(sel, units, b, charge, blocks)

    def grant_plan(self, sel: Selection, used_units: int, cap_units: int, done: Rating | None = None) -> GrantPlan:
        """The plan for a grant of at most ``cap_units`` (at least one block) after ``used_units``.

        ``done``: the caller's ``rate(sel, used_units)``, when it has it already (a debit does).
        """
        first, nxt = sel.row.first_increment, sel.row.next_increment
        if done is None or done.units != used_units or done.selection is not sel:
            done = self.rate(sel, used_units)
        pos = done.billed_units
        if pos == 0:
            max_blocks = 1 if cap_units < first else 1 + (cap_units - first) // nxt
        else:
            max_blocks = max(1, cap_units // nxt)
        segs = tuple((x.units, x.rate, x.count) for x in self.runs(sel, pos, max_blocks))
        return GrantPlan(pos, sum(x.price_num for x in done.blocks), done.charge, sel.row.connect_fee,
                         PER_UNITS[sel.service], segs, max_blocks)

    def units_for_amount(self, sel: Selection, used_units: int, amount: int, cap_units: int) -> int:
        """How many units ``amount`` buys after ``used_units``, in whole blocks, up to ``cap_units``."""
        return affordable(self.grant_plan(sel, used_units, cap_units), amount)[1]


def _hold(plan: GrantPlan, s: int) -> int:
    return plan.fee + div_round_half_up(plan.base_num + s, plan.per) - plan.charged_base


def hold_for_blocks(plan: GrantPlan, blocks: int) -> tuple[int, int]:
    """(hold amount, granted units) for the first ``blocks`` blocks of ``plan``."""
    s = units = 0
    left = blocks
    for u, rate, count in plan.segments:
        take = min(left, count)
        s += take * u * rate
        units += take * u
        left -= take
        if left == 0:
            break
    return (_hold(plan, s) if blocks else 0), units


def affordable(plan: GrantPlan, available: int) -> tuple[int, int, int]:
    """Pure twin of the Lua search: (blocks, granted units, hold) for the largest affordable grant."""
    k = units = s = best = 0
    for u, rate, seg_count in plan.segments:
        count = min(seg_count, plan.max_blocks - k)
        if count <= 0:
            break
        step = u * rate
        end = _hold(plan, s + count * step)
        if end <= available:
            k, units, s, best = k + count, units + count * u, s + count * step, end
            continue
        lo, hi = 0, count - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _hold(plan, s + mid * step) <= available:
                lo = mid
            else:
                hi = mid - 1
        if lo:
            best = _hold(plan, s + lo * step)
        return k + lo, units + lo * u, best if k + lo else 0
    return k, units, best
