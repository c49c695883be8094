"""Termination providers and their rate sheets (docs/wholesale.md, "Providers, routes and margin").

A provider's rate sheet is stored as the tariff ``provider:<name>`` (:func:`ocs.wholesale.cost.sheet_name`):
the same RATES.csv/BANDS.csv formats and validation as ``tariff import`` (:mod:`ocs.rating.tariff_csv`),
the same versioned storage (:mod:`ocs.store.tariffs`), so one bad line rejects the whole file with its
line number and an import is one transaction.  The provider row fixes the sheet's currency and
timezone, so every version of a provider's sheet is priced in the provider's currency.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ocs.billing.errors import Invalid, Refused
from ocs.rating import tariff_csv
from ocs.rating.fx import FxError, check_currency
from ocs.store import tariffs
from ocs.wholesale.cost import sheet_name

Conn = asyncpg.Connection | PoolConnectionProxy
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class RatesRejected(Refused):
    """The rate sheet had bad lines: every one is in ``errors`` (line numbers); nothing was imported."""

    def __init__(self, errors: list[str], read: int) -> None:
        super().__init__(f"{errors[0]} ({len(errors)} rejected of {read} rows read; nothing imported)")
        self.errors = errors
        self.read = read


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise Invalid("name", f"letters, digits, '.', '_' or '-' (at most 63), got {name!r}")
    return name


async def create(conn: Conn, name: str, currency: str, timezone: str = "UTC") -> dict[str, Any]:
    """A new provider (no rate sheet yet: it terminates nothing until ``provider rates``)."""
    check_name(name)
    try:
        check_currency(currency)
    except FxError as exc:
        raise Invalid("currency", str(exc)) from None
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid("timezone", f"unknown timezone {timezone!r}") from None
    row = await conn.fetchrow(
        "INSERT INTO providers(name, currency, timezone) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO NOTHING RETURNING name", name, currency, timezone)
    if row is None:
        raise Refused(f"provider {name!r} exists")
    return {"provider": name, "currency": currency, "timezone": timezone}


async def get(conn: Conn, name: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT name, currency, timezone, created_at FROM providers WHERE name = $1", name)
    if row is None:
        raise Refused(f"unknown provider {name!r}")
    return row


async def import_rates(conn: Conn, name: str, rates: bytes, rates_file: str,
                       bands: bytes | None = None, bands_file: str = "BANDS.csv") -> dict[str, Any]:
    """Validate the whole sheet, then store it as the next version of the provider's sheet (one transaction)."""
    prov = await get(conn, name)
    tz = prov["timezone"]
    try:
        band_rows, errors = ([], []) if bands is None else tariff_csv.parse_bands(bands, bands_file)
        parsed = tariff_csv.parse_rates(rates, tz, {b.band for b in band_rows}, rates_file)
    except tariff_csv.CsvError as exc:
        raise Refused(str(exc)) from None
    errors += parsed.errors
    if errors:
        raise RatesRejected(errors, parsed.read)
    currency = prov["currency"].strip()
    version = await tariffs.import_version(conn, sheet_name(name), currency, tz, parsed.rows, band_rows,
                                           source=rates_file)
    return {"provider": name, "tariff": sheet_name(name), "version": version, "rows_read": parsed.read,
            "rows_rejected": 0, "bands": len(band_rows), "currency": currency, "timezone": tz}


async def list_all(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT p.name, p.currency, p.timezone, t.current_version, v.rows,"
        " (SELECT count(*) FROM routes r WHERE p.name = ANY(r.providers)) AS routes"
        " FROM providers p LEFT JOIN tariffs t ON t.name = 'provider:' || p.name"
        " LEFT JOIN tariff_versions v ON v.tariff = t.name AND v.version = t.current_version"
        " ORDER BY p.name")
    return [{"provider": r["name"], "currency": r["currency"].strip(), "timezone": r["timezone"],
             "version": r["current_version"], "rates": r["rows"] or 0, "routes": r["routes"]} for r in rows]


async def show(conn: Conn, name: str) -> dict[str, Any]:
    """The provider, its current sheet (rows) and the route prefixes it serves."""
    prov = await get(conn, name)
    sheet = await tariffs.load_tariff(conn, sheet_name(name))
    routes = await conn.fetch("SELECT prefix FROM routes WHERE $1 = ANY(providers) ORDER BY prefix", name)
    rows = [] if sheet is None else [
        {"prefix": r.prefix, "destination": r.destination, "service": r.service.value, "rate": r.rate,
         "connect_fee": r.connect_fee, "first_increment": r.first_increment, "next_increment": r.next_increment,
         "band": r.band, "effective_from": r.effective_from.isoformat() if r.effective_from else None}
        for r in sorted(sheet.rows, key=lambda r: (r.service.value, r.prefix, r.band))]
    return {"provider": name, "currency": prov["currency"].strip(), "timezone": prov["timezone"],
            "tariff": sheet_name(name), "version": sheet.version if sheet else None, "rows": rows,
            "routes": [r["prefix"] for r in routes]}
