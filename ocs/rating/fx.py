"""Exchange rates for charging across currencies (docs/wholesale.md, "Currencies and FX"): pure, no I/O.

A row ``(base, quote, valid_from, rate)`` means 1 BASE = RATE QUOTE from ``valid_from`` until the
next row of the same pair.  Rates are exact :class:`~fractions.Fraction` values, never floats: a
converted price is rounded once, to micro-units, from the exact product (the tariff's exact price
times the rate), so converting never adds a second rounding.

Which rate converts ``src`` into ``dst`` at instant ``at`` (:meth:`FxTable.rate`):

1. ``src == dst``: exactly 1;
2. the direct pair ``src -> dst``: its row with the latest ``valid_from <= at``;
3. else the reverse pair ``dst -> src`` in force at ``at``, inverted (1 / rate, still exact);
4. else None: no rate, the caller refuses (a call is not rated without a rate).

The direct pair wins whenever it has a row in force, even if the reverse pair changed later: an
operator who sets both directions states both, and we do not guess which one is meant.  No
cross rates through a third currency (EUR -> GBP via USD): a rate is only what the operator set.

The PostgreSQL loader is :func:`ocs.store.fx.load_fx_table` (``rating/`` does no I/O).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from math import gcd, lcm

from ocs.rating.engine import GrantPlan, Rating
from ocs.rating.tariff import PER_UNITS

MAX_RATE_DECIMALS = 12
"""The column is numeric(30,12): more decimals could not be stored exactly, so they are refused."""
MAX_RATE_INTEGER_DIGITS = 18
MAX_EXACT = 2**53 - 1
"""Largest integer the scripts' Lua numbers (doubles) hold exactly: every number of a folded plan stays below."""
TABLE_BLOCKS = 64
"""Blocks a :func:`fold_plan` fallback plan lists one by one (when the rate's fraction is too large to fold)."""

_CODE_RE = re.compile(r"^[A-Z]{3}$")
_RATE_RE = re.compile(r"^(\d+)(?:\.(\d+))?$")


class FxError(ValueError):
    """A currency code, rate or row that is not acceptable (the message names what)."""


def check_currency(code: str) -> str:
    """An ISO 4217-shaped code: three upper-case letters (``EUR``); anything else is refused."""
    if not _CODE_RE.match(code):
        raise FxError(f"not a currency code (three letters, e.g. EUR): {code!r}")
    return code


def parse_rate(text: str) -> Fraction:
    """``"1.0832751234"`` -> the exact Fraction; refused: <= 0, exponents, signs, > 12 decimals."""
    m = _RATE_RE.match(text.strip())
    if m is None:
        raise FxError(f"not a decimal rate: {text!r}")
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > MAX_RATE_DECIMALS:
        raise FxError(f"more than {MAX_RATE_DECIMALS} decimals: {text!r}")
    if len(whole.lstrip("0")) > MAX_RATE_INTEGER_DIGITS:
        raise FxError(f"rate too large: {text!r}")
    value = Fraction(int(whole + frac), 10 ** len(frac))
    if value <= 0:
        raise FxError(f"rate must be positive: {text!r}")
    return value


def to_fraction(rate: Fraction | Decimal | int | str) -> Fraction:
    """A stored rate (Decimal from PostgreSQL, text from Redis or CSV) as an exact Fraction."""
    if isinstance(rate, Fraction):
        return rate
    if isinstance(rate, str):
        if "/" in rate:
            return Fraction(rate)
        return Fraction(Decimal(rate))
    return Fraction(rate)


def format_rate(rate: Fraction) -> str:
    """Exact text of a rate: a plain decimal when it terminates (``1.0832``), else ``num/den``.

    A direct rate always terminates (it was typed as a decimal); the inverse of a reverse pair may
    not (1 / 0.9 = 10/9), and the record must still say exactly which rate was applied.
    """
    den = rate.denominator
    twos = fives = 0
    while den % 2 == 0:
        den //= 2
        twos += 1
    while den % 5 == 0:
        den //= 5
        fives += 1
    if den != 1:
        return f"{rate.numerator}/{rate.denominator}"
    places = max(twos, fives)
    scaled = rate.numerator * 10 ** places // rate.denominator
    if places == 0:
        return str(scaled)
    digits = str(scaled).rjust(places + 1, "0")
    return f"{digits[:-places]}.{digits[-places:]}"


def convert(micros: int, rate: Fraction) -> int:
    """``micros * rate`` rounded half away from zero, once (for amounts already exact in micro-units)."""
    return convert_num(micros, 1, rate)


def convert_num(numerator: int, denominator: int, rate: Fraction) -> int:
    """``numerator / denominator * rate`` rounded half away from zero once: the exact price converted."""
    num = numerator * rate.numerator
    den = denominator * rate.denominator
    q, r = divmod(abs(num), den)
    if 2 * r >= den:
        q += 1
    return q if num >= 0 else -q


@dataclass(frozen=True)
class FxRow:
    """One stored rate: 1 ``base`` = ``rate`` ``quote`` from ``valid_from`` (timezone-aware)."""

    base: str
    quote: str
    valid_from: datetime
    rate: Fraction


class FxTable:
    """Every pair's rates by ``valid_from``, ready for :meth:`rate` lookups (a bisect per call)."""

    def __init__(self, rows: Iterable[FxRow] = ()) -> None:
        by_pair: dict[tuple[str, str], list[FxRow]] = {}
        for row in rows:
            if row.valid_from.tzinfo is None:
                raise FxError(f"valid_from without a timezone: {row}")
            if row.rate <= 0:
                raise FxError(f"rate must be positive: {row}")
            by_pair.setdefault((row.base, row.quote), []).append(row)
        self._rows: dict[tuple[str, str], list[FxRow]] = {}
        self._starts: dict[tuple[str, str], list[datetime]] = {}
        for pair, pair_rows in by_pair.items():
            pair_rows.sort(key=lambda r: r.valid_from)
            self._rows[pair] = pair_rows
            self._starts[pair] = [r.valid_from for r in pair_rows]

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str, datetime, Fraction | Decimal | int | str]]) -> FxTable:
        """From plain tuples ``(base, quote, valid_from, rate)`` as PostgreSQL returns them."""
        return cls(FxRow(b, q, v, to_fraction(r)) for b, q, v, r in rows)

    def rows(self) -> list[FxRow]:
        """Every row, by pair then ``valid_from``."""
        return [row for pair in sorted(self._rows) for row in self._rows[pair]]

    def __len__(self) -> int:
        return sum(len(r) for r in self._rows.values())

    def _in_force(self, base: str, quote: str, at: datetime) -> Fraction | None:
        starts = self._starts.get((base, quote))
        if starts is None:
            return None
        i = bisect_right(starts, at)
        return self._rows[(base, quote)][i - 1].rate if i else None

    def rate(self, src: str, dst: str, at: datetime) -> Fraction | None:
        """How many ``dst`` one ``src`` is worth at ``at`` (module docstring for the rules); None: no rate."""
        if src == dst:
            return Fraction(1)
        direct = self._in_force(src, dst, at)
        if direct is not None:
            return direct
        reverse = self._in_force(dst, src, at)
        return None if reverse is None else 1 / reverse


# -- charging in another currency ---------------------------------------------------------------
#
# A tariff prices a call exactly as ``fee + S / per`` (``S`` the sum of the block numerators,
# docs/rating.md rule 4) in the tariff's currency; the account pays ``(fee * per + S) * n / (per * d)``
# with ``n / d`` the rate tariff -> account currency, rounded half-up ONCE to micro-units.  The price
# is converted exact, never the rounded price.


def converted_charge(rating: Rating, rate: Fraction) -> int:
    """The charge of ``rating`` in the account's currency: its exact price times ``rate``, rounded once."""
    if not rating.billed_units:
        return 0
    per = PER_UNITS[rating.selection.service]
    exact = rating.selection.row.connect_fee * per + sum(b.price_num for b in rating.blocks)
    return convert_num(exact, per, rate)


def fold_plan(plan: GrantPlan, rate: Fraction) -> GrantPlan | None:
    """``plan`` (tariff currency) as a plan whose holds are the converted prices (account currency).

    The scripts' ``grant`` computes ``hold(k) = fee + rhu(base + S_k, per) - charged``.  The
    converted hold is ``rhu((F + S_k) * n, per * d) - charged'`` with ``F = fee * per + base`` and
    ``charged'`` the converted charge so far; writing ``F * n = q * per * d + r`` it is exactly
    ``q + rhu(r + S_k * n, per * d) - charged'``: fee ``q``, base ``r``, per ``per * d``, every
    block's rate times ``n`` (all divided by their common factor).  So the Lua needs no change, and
    ``base`` stays below ``per * d`` however long the session already is.

    Lua numbers are exact below 2^53 only: the grant is capped at the blocks whose numbers stay
    below (a shorter grant, the next one continues).  When fewer than :data:`TABLE_BLOCKS` blocks
    fit that way (a rate with many decimals), the first :data:`TABLE_BLOCKS` blocks' holds are
    computed here, exactly, and sent as a table (:func:`_table_plan`).  None: not one block can be
    held exactly (the caller refuses, like a charge beyond 2^53).
    """
    n, d = rate.numerator, rate.denominator
    exact = plan.fee * plan.per + plan.base_num
    charged = convert_num(exact, plan.per, rate) if plan.position else 0
    # a factor common to every numerator and the denominator changes no rounding: divided out, the
    # numbers stay smaller and more blocks fold (per 60 and rates in whole micro-units share 60 often)
    g = gcd(exact * n, plan.per * d, *(r * n for _u, r, _c in plan.segments))
    per = plan.per * d // g
    fee, base = divmod(exact * n // g, per)
    segments: list[tuple[int, int, int]] = []
    s, blocks = base, 0
    limit = MAX_EXACT - per  # headroom: the Lua rhu's q * per may pass the numerator by up to one per
    for units, r, seg_count in plan.segments:
        count = min(seg_count, plan.max_blocks - blocks)
        if count <= 0:
            break
        step = units * (r * n // g)
        fit = count if step == 0 else max(0, min(count, (limit - s) // step))
        if fit > 0:
            segments.append((units, r * n // g, fit))
            s, blocks = s + fit * step, blocks + fit
        if fit < count:
            break
    fits = blocks > 0 and base <= limit and 2 * per <= MAX_EXACT and fee <= MAX_EXACT
    if fits and blocks >= min(TABLE_BLOCKS, plan.max_blocks):
        return GrantPlan(plan.position, base, charged, fee, per, tuple(segments), blocks)
    table = _table_plan(plan, rate, exact, charged)  # capped below the table's reach: the table grants more
    if table is None and fits:
        return GrantPlan(plan.position, base, charged, fee, per, tuple(segments), blocks)
    return table


def _table_plan(plan: GrantPlan, rate: Fraction, exact: int, charged: int) -> GrantPlan | None:
    """The first blocks' converted holds, listed: per ``L`` (the blocks' common multiple of units),
    block ``j``'s rate ``delta_j * L / u_j``, so ``rhu(S_k, L)`` is exactly the sum of the deltas."""
    limit = min(TABLE_BLOCKS, plan.max_blocks)
    each = [(u, r) for u, r, count in plan.segments for _ in range(min(count, limit))][:limit]
    big_l = lcm(*(u for u, _r in each)) if each else 1
    segments: list[tuple[int, int, int]] = []
    prev = s = blocks = 0
    for u, r in each:
        exact += u * r
        hold = convert_num(exact, plan.per, rate) - charged
        step = (hold - prev) * big_l
        if s + step + big_l > MAX_EXACT or 2 * big_l > MAX_EXACT:
            break
        if segments and segments[-1][:2] == (u, step // u):
            segments[-1] = (u, step // u, segments[-1][2] + 1)
        else:
            segments.append((u, step // u, 1))
        s, prev, blocks = s + step, hold, blocks + 1
    if not blocks:
        return None
    return GrantPlan(plan.position, 0, 0, 0, big_l, tuple(segments), blocks)
