"""Exchange rates in PostgreSQL (``fx_rates``) and in the daemon's memory (docs/wholesale.md).

``ocsctl fx set`` writes a row and bumps ``P tariffs:gen``, the counter every daemon already
watches for tariff imports (:mod:`ocs.store.tariff_cache`): one change signal, not two.  The
daemon keeps the whole table in memory (:class:`FxCache`): loaded at start, marked stale when the
counter moves (or on SIGHUP) and re-read once, on the next call that needs a rate.  No call reads
PostgreSQL for a rate; an account in its tariff's currency never asks for one.

Like tariffs, the table is copied to Redis (``P fx:snap``, JSON) each time it is read from
PostgreSQL, so a daemon started during a PostgreSQL outage converts with the last rates known, and
a reload that fails keeps the table it has.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from ocs.rating.fx import FxRow, FxTable, format_rate, to_fraction
from ocs.store import POSTGRES_DOWN
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline

Conn = asyncpg.Connection | PoolConnectionProxy
log = structlog.get_logger("ocs.fx")
RETRY_SECONDS = 5.0


def snapshot_key(keys: Keys) -> str:
    """``P fx:snap``: the table as last read from PostgreSQL (JSON rows), for a start during an outage."""
    return f"{keys.prefix}fx:snap"


async def load_fx_table(conn: Conn) -> FxTable:
    """Every row of ``fx_rates`` as an :class:`~ocs.rating.fx.FxTable` (exact: numeric -> Fraction)."""
    rows = await conn.fetch("SELECT base, quote, valid_from, rate FROM fx_rates ORDER BY base, quote, valid_from")
    return FxTable(FxRow(r["base"], r["quote"], r["valid_from"], Fraction(r["rate"])) for r in rows)


async def set_rate(conn: Conn, base: str, quote: str, rate: Fraction, valid_from: datetime) -> bool:
    """Store 1 ``base`` = ``rate`` ``quote`` from ``valid_from``; True when it replaced a row of that instant."""
    text = format_rate(rate)  # a parsed rate terminates: a plain decimal, exact in numeric(30,12)
    old = await conn.fetchval(
        "SELECT rate FROM fx_rates WHERE base = $1 AND quote = $2 AND valid_from = $3", base, quote, valid_from)
    await conn.execute(
        "INSERT INTO fx_rates(base, quote, valid_from, rate) VALUES ($1, $2, $3, $4::numeric)"
        " ON CONFLICT (base, quote, valid_from) DO UPDATE SET rate = excluded.rate, created_at = now()",
        base, quote, valid_from, Decimal(text))
    return old is not None


def encode(table: FxTable) -> str:
    return json.dumps([[r.base, r.quote, r.valid_from.isoformat(), format_rate(r.rate)] for r in table.rows()])


def decode(blob: str | bytes) -> FxTable:
    return FxTable(FxRow(b, q, datetime.fromisoformat(v), to_fraction(r)) for b, q, v, r in json.loads(blob))


class FxSource(Protocol):
    """Where the daemon's table comes from (PostgreSQL, or a fixed table in tests and benchmarks)."""

    async def load(self) -> FxTable: ...


class StaticFxSource:
    def __init__(self, table: FxTable | None = None) -> None:
        self.table = table or FxTable()

    async def load(self) -> FxTable:
        return self.table


class PgFxSource:
    """``fx_rates`` through the daemon's pool, copied to Redis; read back from Redis when PostgreSQL is down."""

    def __init__(self, pool: asyncpg.Pool, rp: AutoPipeline, keys: Keys) -> None:
        self.pool = pool
        self.rp = rp
        self.key = snapshot_key(keys)

    async def load(self) -> FxTable:
        try:
            async with self.pool.acquire() as conn:
                table = await load_fx_table(conn)
        except POSTGRES_DOWN as exc:
            blob = await self.rp.call("GET", self.key)
            if not blob:
                raise
            log.warning("fx_from_redis_snapshot", reason=repr(exc))
            return decode(blob)
        await self.rp.call("SET", self.key, encode(table))
        return table


class FxCache:
    """The table in memory; :meth:`table` re-reads it once after :meth:`stale` (a change was signalled).

    A read that fails (PostgreSQL down, no snapshot) is never fatal: the table read last (empty
    before the first) keeps converting and the read is tried again after :data:`RETRY_SECONDS`;
    a call needing a rate the table does not have is refused as not rated meanwhile.
    """

    def __init__(self, source: FxSource) -> None:
        self.source = source
        self._table = FxTable()
        self._stale = True
        self._retry_at = 0.0
        self._lock = asyncio.Lock()

    def stale(self) -> None:
        """A change was signalled (``tariffs:gen`` moved, SIGHUP): read again before the next rate."""
        self._stale = True
        self._retry_at = 0.0

    async def load(self) -> int:
        """Read the table now (start-up, or the first need after a signal); returns how many rows."""
        try:
            self._table = await self.source.load()
        except POSTGRES_DOWN as exc:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            log.warning("fx_load_failed", rows=len(self._table), error=repr(exc))
        else:
            self._stale = False
        return len(self._table)

    async def table(self) -> FxTable:
        if self._stale and time.monotonic() >= self._retry_at:
            async with self._lock:
                if self._stale and time.monotonic() >= self._retry_at:
                    await self.load()
        return self._table
