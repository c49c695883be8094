"""Invoice arithmetic: the single rounding of totals, tax, and how amounts are written (pure, no I/O).

Why here and not in SQL: the rule "exact micro-units, rounded once, on totals, half-up to the
currency's minor unit" (docs/billing.md) is easiest to prove on integers in one small place that
the invoice run, the credit note and the tests all use.  Lines stay exact; each total is rounded
once from its exact value, never from another rounded figure:

- tax added on top (postpaid): ``net = round(lines)``, ``tax = round(lines * rate)``,
  ``gross = net + tax``;
- tax included (prepaid, whose prices were paid from the balance as charged):
  ``gross = round(lines)``, ``tax = round(lines * rate / (1 + rate))``, ``net = gross - tax``.

Tax is computed on the invoice's sum (one rate per account), never per line, so many small lines
cannot each round their tax away (the per-line rounding that broke Lago's credit notes).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ocs import money

# ISO 4217 currencies without a minor unit; everything else has two decimals on invoices.
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                          "VND", "VUV", "XAF", "XOF", "XPF"})
RATE_SCALE = 10_000  # tax rates are numeric(7,4) percent: 19.0000 % -> 190_000


def decimals(currency: str) -> int:
    return 0 if currency.strip().upper() in ZERO_DECIMAL else 2


def quantum(currency: str) -> int:
    """Micro-units in one minor unit (10,000 for cents, 1,000,000 for whole yen)."""
    return int(10 ** (money.PLACES - decimals(currency)))


def rate_units(rate: Decimal) -> int:
    """A percentage as an exact integer of 1/10,000 % (never a float)."""
    scaled = rate * RATE_SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"tax rate {rate} has more than 4 decimals")
    return int(scaled)


def round_minor(amount: int, currency: str) -> int:
    """``amount`` micro-units rounded half-up (away from zero) to the currency's minor unit."""
    q = quantum(currency)
    return money.div_round_half_up(amount, q) * q


@dataclass(frozen=True)
class Totals:
    lines_total: int  # exact
    net: int
    tax: int
    gross: int


def totals(lines_total: int, rate: Decimal, currency: str, *, tax_included: bool) -> Totals:
    """The invoice totals of an exact sum of lines at ``rate`` percent (see the module doc)."""
    q = quantum(currency)
    r = rate_units(rate)
    hundred = 100 * RATE_SCALE
    if tax_included:
        gross = round_minor(lines_total, currency)
        tax = money.div_round_half_up(lines_total * r, (hundred + r) * q) * q
        return Totals(lines_total, gross - tax, tax, gross)
    net = round_minor(lines_total, currency)
    tax = money.div_round_half_up(lines_total * r, hundred * q) * q
    return Totals(lines_total, net, tax, net + tax)


def fmt_total(amount: int, currency: str) -> str:
    """A rounded total as the customer reads it: ``1234.50`` (EUR), ``1235`` (JPY)."""
    places = decimals(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), money.SCALE)
    if places == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac // quantum(currency):0{places}d}"


def fmt_line(amount: int, places: int) -> str:
    """An exact line amount with ``places`` decimals (2-6; enough for every line of the document)."""
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), money.SCALE)
    digits = f"{frac:06d}"
    if places < money.PLACES and digits[places:].strip("0"):
        raise ValueError(f"{amount} micro-units need more than {places} decimals")
    return f"{sign}{whole}." + digits[:places] if places else f"{sign}{whole}"


def line_places(amounts: list[int], currency: str) -> int:
    """The fewest decimals (at least the currency's) that write every amount exactly: one column, aligned."""
    need = decimals(currency)
    for a in amounts:
        frac = f"{abs(a) % money.SCALE:06d}".rstrip("0")
        need = max(need, len(frac))
    return need


def fmt_units(service: str, units: int) -> str:
    """What a usage line's quantity means to a customer: minutes, megabytes, messages."""
    if service == "data":
        return f"{_hundredths(units, 1_000_000)} MB"
    if service == "sms":
        return f"{units} SMS"
    return f"{units // 60}:{units % 60:02d} min"


def minutes(units: int) -> str:
    """Seconds as decimal minutes, 2 places, rounded half-up (the JSON ``minutes`` of a voice line)."""
    return _hundredths(units, 60)


def _hundredths(units: int, per: int) -> str:
    h = money.div_round_half_up(units * 100, per)
    return f"{'-' if h < 0 else ''}{abs(h) // 100}.{abs(h) % 100:02d}"
