"""TariffCache: a cold cache under a burst asks the tariff source once, not once per request."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from ocs.rating.tariff import Tariff
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.tariff_cache import MemoryTariffSource, TariffCache
from tests.support.balance import demo_tariff

pytestmark = pytest.mark.integration


class CountingSource(MemoryTariffSource):
    def __init__(self) -> None:
        super().__init__()
        self.asked = 0
        self.loaded = 0

    async def current_version(self, name: str) -> int | None:
        self.asked += 1
        await asyncio.sleep(0.01)  # a PostgreSQL round trip
        return await super().current_version(name)

    async def load(self, name: str, version: int) -> Tariff | None:
        self.loaded += 1
        return await super().load(name, version)


async def test_cold_burst_asks_the_source_once(redis_client: aioredis.Redis, key_prefix: str) -> None:
    src = CountingSource()
    src.add(demo_tariff())
    rp = AutoPipeline(redis_client, raw=True)
    cache = TariffCache(src, rp, Keys(key_prefix))
    try:
        got = await asyncio.gather(*(cache.current("t") for _ in range(256)))
    finally:
        await rp.drain()
    assert len({id(t) for t in got}) == 1
    assert (src.asked, src.loaded) == (1, 1)


class FailingSource(MemoryTariffSource):
    down = False

    async def current_version(self, name: str) -> int | None:
        if self.down:
            raise OSError("connection refused")  # what asyncpg raises when PostgreSQL is away
        return await super().current_version(name)


async def test_postgres_down_keeps_rating_on_the_last_known_version(redis_client: aioredis.Redis,
                                                                     key_prefix: str) -> None:
    src = FailingSource()
    src.add(demo_tariff())
    rp = AutoPipeline(redis_client, raw=True)
    cache = TariffCache(src, rp, Keys(key_prefix))
    try:
        assert await cache.preload() == 1
        src.down = True
        await cache.reload()  # SIGHUP (or a tariffs:gen bump) forgets which version is current
        assert (await cache.current("t")).tariff.version == 1
        with pytest.raises(OSError):
            await cache.current("never-seen")  # nothing known to fall back on: the error stands
    finally:
        await rp.drain()
