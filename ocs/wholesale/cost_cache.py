"""The cost book loaded from PostgreSQL, and kept in memory by the flusher (docs/wholesale.md).

Costs are computed off the charging path, where the flusher turns stream entries into rows
(:func:`ocs.store.usage_rows.to_rows`).  The flusher holds one :class:`CostCache`: the routes,
each provider's compiled current sheet and the FX table, reloaded when ``P providers:gen`` (the
provider and route verbs) or ``P tariffs:gen`` (a sheet imported with ``tariff import``, an
``fx set``) changes, checked at most every :data:`CHECK_SECONDS`.

A broken configuration never stops the flush: a load that fails for any reason but a lost
PostgreSQL connection is logged at error level and the last good book (or none: CDRs without
cost) is used until the next change or :data:`RETRY_SECONDS`.  A lost connection is raised, so
the flusher backs off as it does for its own writes: CDRs are then written after the book is
loaded, never without a cost because PostgreSQL blinked.
"""

from __future__ import annotations

import time

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ocs.model import StoreUnavailable
from ocs.rating.engine import CompiledTariff
from ocs.store import tariffs
from ocs.store.fx import load_fx_table
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.replies import text
from ocs.wholesale import routes as route_store
from ocs.wholesale.cost import PROVIDER_TARIFF_PREFIX, CostBook, sheet_name

Conn = asyncpg.Connection | PoolConnectionProxy
CHECK_SECONDS = 2.0
RETRY_SECONDS = 30.0
CONNECTION_LOST = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                   asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError)
log = structlog.get_logger("ocs.wholesale")


async def load_book(conn: Conn, previous: CostBook | None = None) -> CostBook:
    """Routes, every provider's current sheet (compiled) and the FX table, as one immutable book.

    For ``ocsctl``, CDR file import and re-rating as for the flusher: one function, one answer.
    A sheet whose current version ``previous`` already holds is reused, not read and compiled again
    (every retail ``tariff import`` and ``fx set`` also signals a reload).
    """
    routes = await route_store.load(conn)
    sheets: dict[str, CompiledTariff] = {}
    rows = await conn.fetch("SELECT p.name, t.current_version FROM providers p"
                            " LEFT JOIN tariffs t ON t.name = $1 || p.name ORDER BY p.name", PROVIDER_TARIFF_PREFIX)
    for row in rows:
        name, version = row["name"], row["current_version"]
        if version is None:
            continue  # no rate sheet yet
        known = previous.sheets.get(name) if previous is not None else None
        if known is not None and known.tariff.version == version:
            sheets[name] = known
            continue
        sheet = await tariffs.load_tariff(conn, sheet_name(name), version)
        if sheet is not None:
            sheets[name] = CompiledTariff(sheet)
    return CostBook(routes, sheets, await load_fx_table(conn))


async def load_book_or_none(conn: Conn) -> CostBook | None:
    """:func:`load_book`, or None (logged) when the configuration cannot be loaded: records go without cost."""
    try:
        return await load_book(conn)
    except CONNECTION_LOST:
        raise
    except Exception as exc:  # a broken route/provider config must not block a write
        log.error("cost_book_unloadable", error=repr(exc))
        return None


async def signal_change(redis: Redis, keys: Keys) -> None:
    """Tell every flusher to reload its book (after a provider or route change is committed)."""
    await redis.incr(keys.providers_gen())


def gen_keys(keys: Keys) -> list[str]:
    return [keys.providers_gen(), keys.tariffs_gen()]  # ``fx set`` bumps tariffs:gen too


class CostCache:
    """The flusher's book: reloaded on a generation change, the last good one kept on failure."""

    def __init__(self, pool: asyncpg.Pool, rp: AutoPipeline, keys: Keys) -> None:
        self.pool = pool
        self.rp = rp
        self.keys = keys
        self.current: CostBook | None = None
        self._gen: str | None = None
        self._checked = -1e9
        self._failed_at: float | None = None

    async def book(self) -> CostBook | None:
        """The book to enrich this batch with (None: no cost can be computed; CDRs stay without).

        Raises what a lost PostgreSQL connection raises while a reload is due (the flusher backs off).
        """
        now = time.monotonic()
        if now - self._checked < CHECK_SECONDS:
            return self.current
        try:
            gen = "|".join(text(v) for v in await self.rp.call("MGET", *gen_keys(self.keys)))
        except (StoreUnavailable, RedisError) as exc:
            log.warning("cost_generation_unreadable", error=repr(exc))
            return self.current
        retry = self._failed_at is not None and now - self._failed_at >= RETRY_SECONDS
        if gen != self._gen or retry:
            await self._reload(gen, now)
        self._checked = now
        return self.current

    def invalidate(self) -> None:
        """Check the generation at the next batch (SIGHUP, tests)."""
        self._checked = -1e9

    async def _reload(self, gen: str, now: float) -> None:
        try:
            async with self.pool.acquire() as conn:
                book = await load_book(conn, self.current)
        except CONNECTION_LOST:
            raise  # the flusher backs off; nothing is written without its cost
        except Exception as exc:  # any broken configuration: flush on without it
            self._gen, self._failed_at = gen, now
            log.error("cost_book_unloadable", error=repr(exc), keeping="last good book" if self.current else "none",
                      hint="CDRs are written without provider and cost until providers/routes are fixed")
            return
        self.current, self._gen, self._failed_at = book, gen, None
        log.info("cost_book_loaded", routes=len(book), providers=len(book.sheets))
