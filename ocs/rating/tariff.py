"""The tariff model: rate rows and time bands as loaded from PostgreSQL or CSV.

Pure data, no I/O.  Amounts are integer micro-units (:mod:`ocs.money`).
Units are generic: seconds for voice, octets for data, messages for SMS; a
row's ``rate`` is the price of ``PER_UNITS[service]`` units (60 s for voice,
docs/rating.md; 1 MiB for data; one message for SMS - see docs/tariffs.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ocs.model import Service

ANY_BAND = "any"

PER_UNITS: dict[Service, int] = {Service.VOICE: 60, Service.DATA: 1_048_576, Service.SMS: 1}
"""How many units ``rate`` prices: docs/rating.md says "price per 60 s" for voice."""

DEFAULT_INCREMENTS: dict[Service, tuple[int, int]] = {
    Service.VOICE: (60, 60),
    Service.DATA: (1024, 1024),
    Service.SMS: (1, 1),
}
"""(first_increment, next_increment) when the CSV leaves them out."""


@dataclass(frozen=True)
class RateRow:
    """One row of RATES.csv (docs/tariffs.md), validated and converted."""

    prefix: str
    destination: str
    rate: int  # micro-units per PER_UNITS[service] units
    connect_fee: int = 0
    first_increment: int = 60
    next_increment: int = 60
    band: str = ANY_BAND
    effective_from: datetime | None = None  # timezone-aware; None = always
    service: Service = Service.VOICE
    line: int = 0  # CSV line number, for explanations


@dataclass(frozen=True)
class BandInterval:
    """One row of BANDS.csv: ``band`` covers ``days`` from ``start_minute`` to ``end_minute`` (excl.)."""

    band: str
    days: frozenset[int]  # 0 = Monday ... 6 = Sunday
    start_minute: int  # 0..1439
    end_minute: int  # 1..1440


@dataclass(frozen=True)
class Tariff:
    """One version of a named tariff."""

    name: str
    version: int
    currency: str
    timezone: str  # IANA name, e.g. "Europe/Berlin"
    rows: tuple[RateRow, ...]
    bands: tuple[BandInterval, ...] = ()
