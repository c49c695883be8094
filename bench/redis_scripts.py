"""Balance engine against the local Redis: reserve and debit-and-rereserve with 1,000 concurrent sessions.

Each call is one Lua script (plus the session read that precedes a debit);
the auto-pipeline batches the calls of one loop tick.  Target: >= 15,000
script calls/s from one process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from bench.common import cpu_seconds, format_table, row
from ocs import config
from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import ChargeRequest
from ocs.rating.tariff import RateRow, Tariff
from ocs.store.tariff_cache import MemoryTariffSource

T0 = datetime(2026, 11, 23, 10, tzinfo=UTC)


async def make_core(prefix: str, accounts: int) -> tuple[Charging, aioredis.Redis]:
    cfg = config.from_mapping({"redis": {"key_prefix": prefix}}, env={})
    r = aioredis.Redis.from_url(cfg.redis.url)
    src = MemoryTariffSource()
    src.add(Tariff("t", 1, "EUR", "UTC", (RateRow("49", "DE", 60_000, 20_000, 30, 6),)))
    core = Charging(cfg, r, None, Metrics(), tariffs=src)
    await core.start()
    for i in range(accounts):
        await r.hset(core.keys.account(f"a{i}"), mapping={"bal": 10**12, "rsv": 0, "cl": 0, "type": "prepaid",
                                                          "st": "active", "cur": "EUR", "tariff": "t"})
    return core, r


async def cleanup(r: aioredis.Redis, prefix: str) -> None:
    async for key in r.scan_iter(match=f"{prefix}*", count=5000):
        await r.delete(key)
    await r.aclose()


async def _run(sessions: int, updates: int) -> list[dict[str, Any]]:
    prefix = f"ocsbench:{uuid.uuid4().hex[:6]}:"
    core, r = await make_core(prefix, 100)
    lat_i: list[float] = []
    lat_u: list[float] = []

    def req(i: int, n: int, used: int = 0) -> ChargeRequest:
        return ChargeRequest(subscriber=f"a{i % 100}", session=f"s{i}", request_number=n, destination="4930",
                             event_time=T0, used_units=used, requested_units=60)

    async def one(i: int) -> None:
        a = time.perf_counter()
        await core.initiate(req(i, 0))
        lat_i.append(time.perf_counter() - a)
        for n in range(1, updates + 1):
            a = time.perf_counter()
            await core.update(req(i, n, 30))
            lat_u.append(time.perf_counter() - a)

    try:
        c0, t0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(sessions)))
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    finally:
        await core.close()
        await cleanup(r, prefix)
    calls = len(lat_i) + len(lat_u)
    return [row(f"redis scripts ({sessions} concurrent sessions)", calls, seconds, lat_i + lat_u, cpu_s=cpu,
                reserve_p50_ms=round(sorted(lat_i)[len(lat_i) // 2] * 1000, 3), target="15000/s")]


def run(quick: bool = False) -> list[dict[str, Any]]:
    import uvloop  # as in ocsd

    return uvloop.run(_run(1000, 3 if quick else 10))


if __name__ == "__main__":
    print(format_table(run()))
