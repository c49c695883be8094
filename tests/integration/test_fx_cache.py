"""The daemon's FX table (ocs/store/fx.py): read from PostgreSQL once per change signal, copied to Redis for a
start during an outage, kept when a re-read fails (docs/wholesale.md, "Reloading")."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.app import build_core
from ocs.metrics import Metrics
from ocs.rating.fx import FxTable
from ocs.rating.tariff import RateRow, Tariff
from ocs.store.fx import FxCache, PgFxSource, StaticFxSource, set_rate
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.tariff_cache import MemoryTariffSource
from tests.support.balance import make_cfg

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, tzinfo=UTC)
DOWN_DSN = "postgresql://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1


async def test_pg_source_snapshot_and_outage(pg: asyncpg.Connection, pg_dsn: str, redis_client: aioredis.Redis,
                                             key_prefix: str) -> None:
    keys = Keys(key_prefix, 4)
    rp = AutoPipeline(redis_client, raw=True)
    await set_rate(pg, "EUR", "USD", Fraction("1.083275123456"), T0)
    pool = await asyncpg.create_pool(pg_dsn, min_size=0, max_size=1)
    try:
        cache = FxCache(PgFxSource(pool, rp, keys))
        assert await cache.load() == 1
        assert (await cache.table()).rate("EUR", "USD", T0) == Fraction("1.083275123456")
        # a change: read again only after the signal
        await set_rate(pg, "EUR", "USD", Fraction("1.2"), T0)
        assert (await cache.table()).rate("EUR", "USD", T0) == Fraction("1.083275123456")
        cache.stale()
        assert (await cache.table()).rate("EUR", "USD", T0) == Fraction("1.2")
    finally:
        await pool.close()
    down = await asyncpg.create_pool(DOWN_DSN, min_size=0, max_size=1, timeout=1)
    try:
        # a daemon starting while PostgreSQL is down converts with the copy in Redis
        fresh = FxCache(PgFxSource(down, rp, keys))
        assert await fresh.load() == 1
        assert (await fresh.table()).rate("USD", "EUR", T0) == 1 / Fraction("1.2")
        # without a copy it starts with no rates (calls needing one are refused) instead of not starting
        await redis_client.delete(f"{key_prefix}fx:snap")
        empty = FxCache(PgFxSource(down, rp, keys))
        assert await empty.load() == 0 and (await empty.table()).rate("EUR", "USD", T0) is None
        # a failed re-read keeps the table it has
        fresh.stale()
        assert (await fresh.table()).rate("EUR", "USD", T0) == Fraction("1.2")
    finally:
        await down.close()
        await rp.drain()


async def test_tariff_signal_reloads_rates(redis_client: aioredis.Redis, key_prefix: str) -> None:
    """``fx set`` bumps tariffs:gen: the tariff cache's check of that counter marks the rates stale too."""
    src = MemoryTariffSource()
    src.add(Tariff("t", 1, "EUR", "UTC", (RateRow("49", "DE", 60_000),)))
    first = StaticFxSource(FxTable.from_rows([("EUR", "USD", T0, "1.1")]))
    core = build_core(make_cfg(key_prefix), redis_client, Metrics(), src, fx=first)
    await core.start()
    core.fx.source = StaticFxSource(FxTable.from_rows([("EUR", "USD", T0, "1.3")]))
    assert (await core.fx.table()).rate("EUR", "USD", T0) == Fraction("1.1")  # no signal yet
    await redis_client.incr(core.keys.tariffs_gen())
    core.tariffs._checked = 0.0  # the 2 s check interval has passed
    await core.tariffs.current("t")
    assert (await core.fx.table()).rate("EUR", "USD", T0) == Fraction("1.3")
    core.fx.source = StaticFxSource(FxTable.from_rows([("EUR", "USD", T0, "1.4")]))
    await core.reload_tariffs()  # SIGHUP
    assert (await core.fx.table()).rate("EUR", "USD", T0) == Fraction("1.4")
    await core.close()
