"""Rating engine API (spec section 3).  STUB: implemented by the rating work package.

Pure and I/O-free.  A :class:`CompiledTariff` is built once per tariff version
(prefix index, band calendar) and answers: which row rates this number at this
instant (rule 1), what a call of ``d`` units costs (rules 2-4, with an
explanation), and the inverse the balance engine needs (how many whole blocks
an amount buys from a cumulative position, as a :class:`GrantPlan` the Redis
script can evaluate atomically).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ocs.model import Service
from ocs.rating.tariff import RateRow, Tariff


def normalize_number(raw: str) -> str:
    """Spec section 3: drop a tel:/sip: scheme and anything from "@" or ";", drop "+" and a leading "00"."""
    raise NotImplementedError


@dataclass(frozen=True)
class Selection:
    """The outcome of rule 1 for one call: the prefix and row chosen at ``start``.

    ``band_rows`` maps band name -> the row of the chosen prefix (in force at
    ``start``) used to price a block that starts in that band (rule 3); the
    ``any`` row (if present) is under ``"any"``.
    """

    tariff: str
    version: int
    currency: str
    number: str  # normalised
    prefix: str
    destination: str
    row: RateRow  # increments and connect fee come from here
    start: datetime  # aware
    service: Service
    band_rows: dict[str, RateRow]


@dataclass(frozen=True)
class Block:
    """One priced block of the explanation."""

    offset: int  # units from call start at which the block starts
    units: int
    band: str
    rate: int  # micro-units per PER_UNITS units of the row used
    line: int  # CSV line of the row used
    price_num: int  # exact price * PER_UNITS (rate * units), not yet divided


@dataclass(frozen=True)
class Rating:
    """A rated usage of ``units`` with its explanation (records, ``ocsctl tariff rate``)."""

    selection: Selection
    units: int
    billed_units: int
    charge: int  # micro-units, rounded half-up once (rule 4)
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class GrantPlan:
    """What the reserve script needs to find the largest affordable grant atomically.

    With ``B`` the billed position of the session so far, ``hold(k)`` for the
    first ``k`` blocks from ``B`` is::

        hold(k) = fee + round_half_up((base_num + sum of the first k block price_nums) / per) - charged_base

    ``segments`` are runs of equal blocks ``(units_per_block, rate, count)`` in
    order (a run ends where the band changes); ``max_blocks`` is the cap from
    the request and ``max_grant``.  ``hold`` is non-decreasing in ``k``.
    """

    position: int  # B: billed units so far
    base_num: int  # sum of price_num of the blocks up to B
    charged_base: int  # charge(B), micro-units (already debited)
    fee: int  # connect fee (counted in charge(B) when B > 0, so hold subtracts it back)
    per: int  # PER_UNITS of the service
    segments: tuple[tuple[int, int, int], ...]
    max_blocks: int


class CompiledTariff:
    """A tariff version ready for rating."""

    def __init__(self, tariff: Tariff) -> None:
        self.tariff = tariff
        raise NotImplementedError

    def select(self, number: str, at: datetime, service: Service = Service.VOICE) -> Selection | None:
        """Rule 1; ``number`` is normalised here. None: not rated."""
        raise NotImplementedError

    def rate(self, sel: Selection, units: int) -> Rating:
        """Rules 2-4 for a usage of ``units`` from the call start (rule 5: cumulative)."""
        raise NotImplementedError

    def grant_plan(self, sel: Selection, used_units: int, cap_units: int) -> GrantPlan:
        """The plan for a grant of at most ``cap_units`` (at least one block) after ``used_units``."""
        raise NotImplementedError


def hold_for_blocks(plan: GrantPlan, blocks: int) -> tuple[int, int]:
    """(hold amount, granted units) for the first ``blocks`` blocks of ``plan``."""
    raise NotImplementedError


def affordable(plan: GrantPlan, available: int) -> tuple[int, int, int]:
    """Pure twin of the Lua search: (blocks, granted units, hold) for the largest affordable grant."""
    raise NotImplementedError
