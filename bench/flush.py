"""Usage-stream flush into PostgreSQL: records/s through COPY + INSERT ... ON CONFLICT (target >= 20,000/s)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bench.common import cpu_seconds, format_table, row
from ocs import config
from ocs.metrics import Metrics
from ocs.store import migrate
from ocs.store.flush import Flusher
from ocs.store.keys import Keys

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _run(n: int) -> dict[str, Any]:
    db = f"ocs_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"ocsbench:{uuid.uuid4().hex[:6]}:"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + db
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        conn = await asyncpg.connect(dsn)
        await migrate.migrate(conn)
        await conn.close()
        cfg = config.from_mapping({"redis": {"key_prefix": prefix}, "postgres": {"dsn": dsn}}, env={})
        keys = Keys(prefix, cfg.charging.shards)
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            shard = i % keys.shards
            pipe.xadd(keys.usage(shard), {
                "t": "u", "record_id": f"s{shard:02d}:{i}", "account_id": f"a{i % 1000}", "session_id": f"s{i}",
                "rating_group": 0, "request_number": 1, "kind": "update", "protocol": "diameter", "service": "voice",
                "units": 60, "used_total": 60, "amount": 60000, "charged_total": 60000, "balance_after": 1,
                "currency": "EUR", "event_time": "2026-11-23T10:00:00+00:00", "node": "bench"})
            if i % 5000 == 4999:
                await pipe.execute()
        await pipe.execute()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        f = Flusher(cfg, r, pool, Metrics())
        c0, t0 = cpu_seconds(), time.perf_counter()
        done = await f.flush_all()
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        assert done == n, done
        await pool.close()
    finally:
        async for key in r.scan_iter(match=f"{prefix}*", count=5000):
            await r.delete(key)
        await r.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return row("usage flush to PostgreSQL", n, seconds, cpu_s=cpu, target="20000/s")


async def _lag(rate: int, seconds: float) -> dict[str, Any]:
    """Flush lag while the charging core debits at ``rate``/s: the age of the oldest unflushed record.

    One process, as in ocsd: charging verbs (one usage record each) paced at ``rate``, the flusher
    task beside them, the lag sampled every 100 ms the way ``ocs_usage_stream_lag_seconds`` is.
    """
    from bench.redis_scripts import T0, make_core
    from ocs.model import ChargeRequest

    db = f"ocs_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"ocsbench:{uuid.uuid4().hex[:6]}:"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + db
    core, r = await make_core(prefix, 100)
    lags: list[float] = []
    try:
        conn = await asyncpg.connect(dsn)
        await migrate.migrate(conn)
        await conn.close()
        cfg = config.from_mapping({"redis": {"key_prefix": prefix}, "postgres": {"dsn": dsn}}, env={})
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        f = Flusher(cfg, r, pool, Metrics())
        flusher = asyncio.ensure_future(f.run())
        sessions = 1000
        await asyncio.gather(*(core.initiate(ChargeRequest(subscriber=f"a{i % 100}", session=f"s{i}", request_number=0,
                                                           destination="4930", event_time=T0, requested_units=60))
                               for i in range(sessions)))
        done = 0
        t0 = time.perf_counter()
        step = 0.01  # every 10 ms, the debits due by then
        next_sample = t0
        while time.perf_counter() - t0 < seconds:
            due = int((time.perf_counter() - t0) * rate) - done
            batch = [core.update(ChargeRequest(subscriber=f"a{i % 100}", session=f"s{i % sessions}",
                                               request_number=1 + i // sessions, destination="4930", event_time=T0,
                                               used_units=6, requested_units=60))
                     for i in range(done, done + due)]
            await asyncio.gather(*batch)
            done += due
            if time.perf_counter() >= next_sample:
                next_sample += 0.1
                await f.update_lag()
                lags.append(f.metrics.stream_lag_seconds._value.get())
            await asyncio.sleep(step)
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)
        elapsed = time.perf_counter() - t0
        await pool.close()
    finally:
        await core.close()
        async for key in r.scan_iter(match=f"{prefix}*", count=5000):
            await r.delete(key)
        await r.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    ordered = sorted(lags)
    return row(f"flush lag at {rate} debits/s", done, elapsed, target="lag < 2 s",
               achieved_rate=round(done / elapsed), lag_p50_s=round(ordered[len(ordered) // 2], 3),
               lag_max_s=round(ordered[-1], 3))


def _sheet(rate_micros: int, prefixes: int) -> bytes:
    """A provider sheet of ``prefixes`` prefixes (490000, 490001, ...): an ``any`` row and a ``peak`` row each."""
    lines = ["prefix,destination,rate,connect_fee,first_increment,next_increment,band"]
    for i in range(prefixes):
        p = f"49{i:04d}"
        lines.append(f"{p},DE {i},{rate_micros / 1e6:.6f},0.01,30,6,any")
        lines.append(f"{p},DE {i},{(rate_micros + i % 7) / 1e6:.6f},0,60,60,peak")
    return ("\n".join(lines) + "\n").encode()


async def _provision_routes(conn: asyncpg.Connection, prefixes: int) -> None:
    from ocs.wholesale import providers, routes

    bands = b"band,days,start,end\npeak,mon-fri,08:00,20:00\n"
    for name, rate in (("A", 10_000), ("B", 10_003)):
        await providers.create(conn, name, "EUR")
        await providers.import_rates(conn, name, _sheet(rate, prefixes), "rates.csv", bands)
    await routes.set_route(conn, "49", ["A", "B"], lcr=True)
    for i in range(0, prefixes, 10):
        await routes.set_route(conn, f"49{i:04d}", ["B", "A"])


async def _cdrs(n: int, priced: bool) -> dict[str, Any]:
    """CDR flush with cost enrichment (docs/wholesale.md): LCR over two 2,000-row sheets, vs no routes."""
    db = f"ocs_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"ocsbench:{uuid.uuid4().hex[:6]}:"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + db
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        conn = await asyncpg.connect(dsn)
        await migrate.migrate(conn)
        if priced:
            await _provision_routes(conn, 1000)
        cfg = config.from_mapping({"redis": {"key_prefix": prefix}, "postgres": {"dsn": dsn}}, env={})
        keys = Keys(prefix, cfg.charging.shards)
        pipe = r.pipeline(transaction=False)
        for i in range(n):
            shard = i % keys.shards
            pipe.xadd(keys.usage(shard), {
                "t": "c", "record_id": f"cdr:s{i}:0", "session_id": f"s{i}", "rating_group": 0, "account": "a1",
                "protocol": "diameter", "service": "voice", "calling": "4915110000001",
                "called": f"+49{i % 1000:04d}{i:06d}", "prefix": "49", "destination": "DE",
                "start_time": f"2026-11-23T{8 + i % 16:02d}:00:00+00:00", "duration": 30 + i % 600,
                "billed_seconds": 60, "charge": 60000, "currency": "EUR", "termination_cause": "NORMAL",
                "end_time": "2026-11-23T23:59:00+00:00", "node": "bench", "revision": 1})
            if i % 5000 == 4999:
                await pipe.execute()
        await pipe.execute()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        f = Flusher(cfg, r, pool, Metrics())
        c0, t0 = cpu_seconds(), time.perf_counter()
        done = await f.flush_all()
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        assert done == n, done
        costed = await conn.fetchval("SELECT count(*) FROM cdrs WHERE cost IS NOT NULL")
        assert costed == (n if priced else 0), costed
        await conn.close()
        await pool.close()
    finally:
        async for key in r.scan_iter(match=f"{prefix}*", count=5000):
            await r.delete(key)
        await r.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    name = "CDR flush, priced (LCR, 2 x 2,000 rows)" if priced else "CDR flush, no routes"
    return row(name, n, seconds, cpu_s=cpu, target="20000/s")


def run(quick: bool = False) -> list[dict[str, Any]]:
    import uvloop  # as in ocsd

    return [asyncio.run(_run(20_000 if quick else 100_000)),
            asyncio.run(_cdrs(20_000 if quick else 100_000, priced=False)),
            asyncio.run(_cdrs(20_000 if quick else 100_000, priced=True)),
            uvloop.run(_lag(3000, 4 if quick else 15))]


if __name__ == "__main__":
    print(format_table(run()))
