"""Exact money: integer micro-units of the account's currency.

Why integers: every amount the system moves is a whole number of micro-units
(10^-6 of the major unit), so sums are exact and Redis/Lua, PostgreSQL
(BIGINT) and Python agree bit for bit.  Floats never touch money: parsing goes
from the decimal string straight to an integer, and the only division anywhere
(a per-second price of ``rate / 60``) is done on integers with a single
half-up rounding (:func:`div_round_half_up`).
"""

from __future__ import annotations

import re
from typing import NewType

Micros = NewType("Micros", int)
"""An amount in micro-units (1 EUR = 1_000_000)."""

SCALE = 1_000_000
PLACES = 6

_AMOUNT_RE = re.compile(r"^([+-]?)(\d+)(?:\.(\d+))?$|^([+-]?)\.(\d+)$")


class MoneyError(ValueError):
    """A string that is not an exact decimal amount with at most 6 decimals."""


def parse(text: str, *, allow_negative: bool = True) -> Micros:
    """Parse ``"12.50"`` / ``"-3"`` / ``"0.000001"`` into micro-units.

    More than 6 decimals, exponents, thousands separators, ``nan`` and other
    non-decimal input are refused rather than rounded: an operator typing a
    top-up must get exactly what they typed, or an error.
    """
    s = text.strip()
    m = _AMOUNT_RE.match(s)
    if m is None:
        raise MoneyError(f"not a decimal amount: {text!r}")
    if m.group(2) is not None:
        sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    else:
        sign, whole, frac = m.group(4), "0", m.group(5)
    if len(frac) > PLACES:
        raise MoneyError(f"more than {PLACES} decimals: {text!r}")
    value = int(whole) * SCALE + int(frac.ljust(PLACES, "0") or "0")
    if sign == "-":
        value = -value
    if value < 0 and not allow_negative:
        raise MoneyError(f"negative amount not allowed: {text!r}")
    return Micros(value)


def format(amount: int, *, places: int | None = None) -> str:
    """Format micro-units as a decimal string.

    ``places=None`` gives at least 2 decimals and as many more as needed to be
    exact (``12.50``, ``0.086``, ``9.913999``); ``places=6`` gives the fixed
    6 decimals used on usage records.
    """
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(int(amount)), SCALE)
    digits = f"{frac:06d}"
    if places is None:
        digits = digits.rstrip("0").ljust(2, "0")
    elif places != PLACES:
        raise ValueError("only 6 fixed places are exact for micro-units")
    return f"{sign}{whole}.{digits}"


def div_round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half away from zero, in integers.

    The single rounding step of docs/rating.md rule 4.
    """
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q
