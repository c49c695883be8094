"""Balance engine against the local Redis: reserve and debit-and-rereserve with 1,000 concurrent sessions.

Each call is one Lua script (plus the session read that precedes a debit);
the auto-pipeline batches the calls of one loop tick.  Target: >= 15,000
script calls/s from one process.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis

from bench.common import cpu_seconds, format_table, row
from ocs import config
from ocs.app import build_core
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
    core = build_core(cfg, r, Metrics(), src)
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
    """The mixed run (each session: initiate, then its updates), then each script alone.

    Alone: ``sessions`` initiates at once (reserve.lua), then rounds of one update per session
    (debit.lua with re-reserve), so every call of a phase is the same script.
    """
    prefix = f"ocsbench:{uuid.uuid4().hex[:6]}:"
    core, r = await make_core(prefix, 100)
    lat_i: list[float] = []
    lat_u: list[float] = []

    def req(i: int, n: int, used: int = 0) -> ChargeRequest:
        return ChargeRequest(subscriber=f"a{i % 100}", session=f"s{i}", request_number=n, destination="4930",
                             event_time=T0, used_units=used, requested_units=60)

    async def timed(call: Awaitable[Any], into: list[float]) -> None:
        a = time.perf_counter()
        await call
        into.append(time.perf_counter() - a)

    async def one(i: int) -> None:
        await timed(core.initiate(req(i, 0)), lat_i)
        for n in range(1, updates + 1):
            await timed(core.update(req(i, n, 30)), lat_u)

    rows = []
    try:
        c0, t0 = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(sessions)))
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        rows.append(row(f"redis scripts ({sessions} concurrent sessions)", len(lat_i) + len(lat_u), seconds,
                        lat_i + lat_u, cpu_s=cpu, reserve_p50_ms=round(sorted(lat_i)[len(lat_i) // 2] * 1000, 3),
                        target="15000/s"))
        rounds = max(1, updates // 2)
        for name in ("reserve", "debit-rereserve"):
            lat: list[float] = []
            c0, t0 = cpu_seconds(), time.perf_counter()
            for k in range(rounds):  # each round: one call of the script for each of `sessions` sessions
                calls = ([core.initiate(req(sessions * (1 + k) + i, 0)) for i in range(sessions)] if name == "reserve"
                         else [core.update(req(sessions + i, 1 + k, 30)) for i in range(sessions)])
                await asyncio.gather(*(timed(c, lat) for c in calls))
            seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            rows.append(row(f"redis scripts: {name} alone ({sessions} concurrent)", len(lat), seconds, lat,
                            cpu_s=cpu, target="15000/s"))
        rows += await _raw_scripts(core, sessions, rounds)
    finally:
        await core.close()
        await cleanup(r, prefix)
    return rows


async def _raw_scripts(core: Charging, sessions: int, rounds: int) -> list[dict[str, Any]]:
    """reserve.lua and debit.lua through their typed wrappers (EVALSHA on the auto-pipeline) alone.

    The arguments are prepared before the clock starts, as the verbs would build them (plan,
    context, CAS value), so the rows show what the script calls themselves sustain from one
    process; the verb rows above add rating, subscriber lookup and bookkeeping.
    """
    from ocs.store.charging_scripts import Debit, Target, pack_context

    tariff = await core.tariffs.current("t")
    sel = tariff.select("4930", T0)
    assert sel is not None
    now = int(time.time() * 1000)
    out = []
    accounts = [f"a{i % 100}" for i in range(sessions)]
    sids = [f"raw-{i}" for i in range(sessions)]
    plan0 = tariff.grant_plan(sel, 0, 60)
    reserve_rounds = []
    for k in range(rounds):  # round 0 opens the sessions the debit rounds then charge
        calls = []
        for acct, base in zip(accounts, sids, strict=True):
            sid = base if k == 0 else f"{base}-{k}"  # one session per call
            ctx = pack_context({"acct": acct, "sid": sid, "rg": "0", "proto": "bench", "svc": "voice", "cur": "EUR",
                                "node": "bench", "origin": "", "calling": "", "dest": sel.number,
                                "prefix": sel.prefix, "dname": sel.destination, "t0": T0.isoformat(),
                                "tariff": "t", "tver": "1"})
            calls.append(functools.partial(core.scripts.reserve, Target(acct, sid, 0, "EUR"), 0, now,
                                           now + 3_600_000, ctx, plan0, ""))
        reserve_rounds.append(calls)
    debit_rounds = []
    for k in range(rounds):
        used0, used1 = 30 * k, 30 * (k + 1)
        rating = tariff.rate(sel, used1)
        d = Debit(1 + k, str(used0), used1, rating.charge, rating.billed_units, 30, T0.isoformat(), 0, 0, "",
                  tariff.grant_plan(sel, used1, 60, done=rating))
        debit_rounds.append([functools.partial(core.scripts.debit, Target(acct, sid, 0, "EUR"), d, now,
                                               now + 3_600_000, "") for acct, sid in zip(accounts, sids, strict=True)])
    for name, phases in (("reserve.lua", reserve_rounds), ("debit.lua (debit + re-reserve)", debit_rounds)):
        lat: list[float] = []
        c0, t0 = cpu_seconds(), time.perf_counter()
        for calls in phases:
            codes = await asyncio.gather(*(_timed(call, lat) for call in calls))
            assert all(code == "OK" for code in codes), codes[0]
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        out.append(row(f"script calls: {name} ({sessions} concurrent sessions)", len(lat), seconds, lat, cpu_s=cpu,
                       target="15000/s"))
    return out


async def _timed(call: Callable[[], Awaitable[tuple[str, Any]]], into: list[float]) -> str:
    a = time.perf_counter()
    code, _out = await call()
    into.append(time.perf_counter() - a)
    return code


def run(quick: bool = False) -> list[dict[str, Any]]:
    import uvloop  # as in ocsd

    return uvloop.run(_run(1000, 3 if quick else 10))


if __name__ == "__main__":
    print(format_table(run()))
