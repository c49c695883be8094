"""Tariffs in PostgreSQL: import a parsed file as a new version (atomically), load a version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ocs.model import Service
from ocs.rating.tariff import BandInterval, RateRow, Tariff
from ocs.store.alert_detect import queue_rate_change

Conn = asyncpg.Connection | PoolConnectionProxy
_LOCK = 0x0C5D_7A21

_RATE_COLS = ["tariff", "version", "line", "service", "prefix", "destination", "rate", "connect_fee",
              "first_increment", "next_increment", "band", "effective_from"]


async def import_version(conn: Conn, name: str, currency: str, timezone: str, rows: list[RateRow],
                         bands: list[BandInterval], *, source: str = "",
                         progress: Callable[[int], None] | None = None) -> int:
    """Store ``rows`` and ``bands`` as the next version of ``name``; returns the version.

    One transaction: a failure leaves the previous version current and nothing
    half-written.  Rows go in with COPY (100k rows in about a second).  The rate-change alerts of
    the tariff's accounts are queued in the same transaction (docs/alerts.md).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK, name)
        version = 1 + int(await conn.fetchval(
            "SELECT coalesce(max(version), 0) FROM tariff_versions WHERE tariff = $1", name))
        await conn.execute(
            "INSERT INTO tariffs(name, currency, timezone, current_version) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (name) DO NOTHING", name, currency, timezone, version)
        await conn.execute(
            "INSERT INTO tariff_versions(tariff, version, currency, timezone, rows, source)"
            " VALUES ($1, $2, $3, $4, $5, $6)", name, version, currency, timezone, len(rows), source)
        chunk = 20_000
        for i in range(0, len(rows), chunk):
            await conn.copy_records_to_table("rate_rows", columns=_RATE_COLS, records=[
                (name, version, r.line, r.service.value, r.prefix, r.destination, r.rate, r.connect_fee,
                 r.first_increment, r.next_increment, r.band, r.effective_from)
                for r in rows[i:i + chunk]])
            if progress:
                progress(min(len(rows), i + chunk))
        if bands:
            await conn.executemany(
                "INSERT INTO bands(tariff, version, band, days, start_minute, end_minute)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                [(name, version, b.band, sorted(b.days), b.start_minute, b.end_minute) for b in bands])
        await conn.execute(
            "UPDATE tariffs SET current_version = $2, currency = $3, timezone = $4 WHERE name = $1",
            name, version, currency, timezone)
        await queue_rate_change(conn, name, version)
    return version


async def info(conn: Conn, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM tariffs WHERE name = $1", name)


async def listing(conn: Conn, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """Every tariff's name, currency, timezone and current version, by name (the API's ``/tariffs``)."""
    rows = await conn.fetch("SELECT name, currency, timezone, current_version FROM tariffs ORDER BY name"
                            " LIMIT $1 OFFSET $2", limit, offset)
    return [{"name": r["name"], "currency": r["currency"].strip(), "timezone": r["timezone"],
             "version": r["current_version"]} for r in rows]


async def current_version(conn: Conn, name: str) -> int | None:
    v = await conn.fetchval("SELECT current_version FROM tariffs WHERE name = $1", name)
    return int(v) if v is not None else None


async def load_tariff(conn: Conn, name: str, version: int | None = None) -> Tariff | None:
    """A stored version (default: the current one) as the pure rating model."""
    if version is None:
        version = await current_version(conn, name)
        if version is None:
            return None
    head = await conn.fetchrow(
        "SELECT currency, timezone FROM tariff_versions WHERE tariff = $1 AND version = $2", name, version)
    if head is None:
        return None
    rows = await conn.fetch(
        "SELECT line, service, prefix, destination, rate, connect_fee, first_increment, next_increment,"
        " band, effective_from FROM rate_rows WHERE tariff = $1 AND version = $2", name, version)
    bands = await conn.fetch(
        "SELECT band, days, start_minute, end_minute FROM bands WHERE tariff = $1 AND version = $2",
        name, version)
    return Tariff(
        name=name, version=version, currency=head["currency"], timezone=head["timezone"],
        rows=tuple(RateRow(r["prefix"], r["destination"], r["rate"], r["connect_fee"], r["first_increment"],
                           r["next_increment"], r["band"], r["effective_from"], Service(r["service"]),
                           r["line"]) for r in rows),
        bands=tuple(BandInterval(b["band"], frozenset(b["days"]), b["start_minute"], b["end_minute"])
                    for b in bands),
    )
