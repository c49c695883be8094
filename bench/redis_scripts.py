"""Balance engine against the local Redis: reserve and debit-and-rereserve with 1,000 concurrent sessions.

Each call is one Lua script (plus the session read that precedes a debit);
the auto-pipeline batches the calls of one loop tick.  Target: >= 15,000
script calls/s from one process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
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
    """reserve.lua and debit.lua through the typed wrapper (EVALSHA on the auto-pipeline) alone.

    The arguments are prepared before the clock starts, as the verbs would build them (plan,
    context, CAS value), so the rows show what the script calls themselves sustain from one
    process; the verb rows above add rating, subscriber lookup and bookkeeping.
    """
    from ocs.store.sessions import member, pack_context, plan_arg

    tariff = await core.tariffs.current("t")
    sel = tariff.select("4930", T0)
    assert sel is not None
    keys, ss = core.keys, core.sessions
    now = int(time.time() * 1000)
    out = []
    accounts = [f"a{i % 100}" for i in range(sessions)]
    sids = [f"raw-{i}" for i in range(sessions)]
    plan0 = plan_arg(tariff.grant_plan(sel, 0, 60))
    reserve_rounds = []
    for k in range(rounds):  # round 0 opens the sessions the debit rounds then charge
        calls = []
        for acct, base in zip(accounts, sids, strict=True):
            sid = base if k == 0 else f"{base}-{k}"  # one session per call
            sh = ss._shard(acct)
            ctx = pack_context({"acct": acct, "sid": sid, "rg": "0", "proto": "bench", "svc": "voice", "cur": "EUR",
                                "node": "bench", "origin": "", "calling": "", "dest": sel.number,
                                "prefix": sel.prefix, "dname": sel.destination, "t0": T0.isoformat(),
                                "tariff": "t", "tver": "1"})
            calls.append(([keys.account(acct), keys.session(acct, sid, 0), keys.expiry(sh), keys.totals(sh)],
                          [now, 0, now + 3_600_000, 1800, member(acct, sid, 0), ctx, plan0]))
        reserve_rounds.append(calls)
    debit_rounds = []
    for k in range(rounds):
        used0, used1 = 30 * k, 30 * (k + 1)
        rating = tariff.rate(sel, used1)
        plan = plan_arg(tariff.grant_plan(sel, used1, 60, done=rating))
        calls = []
        for acct, sid in zip(accounts, sids, strict=True):
            sh = ss._shard(acct)
            calls.append(([keys.account(acct), keys.session(acct, sid, 0), keys.expiry(sh), keys.usage(sh),
                           keys.seq(sh), keys.totals(sh)],
                          [now, 1 + k, now + 3_600_000, 1800, member(acct, sid, 0), f"s{sh:02d}", str(used0), used1,
                           rating.charge, rating.billed_units, "update", "", T0.isoformat(), 30, 3600, plan]))
        debit_rounds.append(calls)
    for name, script, phases in (("reserve.lua", ss.reserve_s, reserve_rounds),
                                 ("debit.lua (debit + re-reserve)", ss.debit_s, debit_rounds)):
        lat: list[float] = []
        c0, t0 = cpu_seconds(), time.perf_counter()
        for calls in phases:
            replies = await asyncio.gather(*(_timed_script(core, script, k, a, lat) for k, a in calls))
            assert all(bytes(rep[0]) == b"OK" for rep in replies), replies[0]
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        out.append(row(f"script calls: {name} ({sessions} concurrent sessions)", len(lat), seconds, lat, cpu_s=cpu,
                       target="15000/s"))
    return out


async def _timed_script(core: Charging, script: Any, keys: list[str], args: list[Any], into: list[float]) -> Any:
    a = time.perf_counter()
    reply = await core.rp.script(script, keys, args)
    into.append(time.perf_counter() - a)
    return reply


def run(quick: bool = False) -> list[dict[str, Any]]:
    import uvloop  # as in ocsd

    return uvloop.run(_run(1000, 3 if quick else 10))


if __name__ == "__main__":
    print(format_table(run()))
