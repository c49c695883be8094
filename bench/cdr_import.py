"""Mediation: ``ocsctl cdr import`` of a 1,000,000-record switch file (target < 60 s), then the flush.

Measured separately, so each figure says what it is:

1. the import itself: ``ocsctl cdr import`` as an operator runs it (a subprocess): parse, the
   durable duplicate check, account resolution, rating, the charging scripts (every debit with its
   usage record and CDR in Redis), the import keys committed in PostgreSQL;
2. the flush of what it wrote (2 stream entries per record: usage record + CDR) to PostgreSQL by the
   flusher ocsd runs (``Flusher.flush_all``, the default batch);
3. the same file imported again: every record a duplicate, nothing charged.

1,000 prepaid accounts found by their calling-number alias, 50 destinations (connect fee,
30/6 increments), durations 0-600 s, record ids; balances and the records are checked afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bench.common import cpu_seconds, format_table, row
from ocs import config
from ocs.metrics import Metrics
from ocs.rating.engine import CompiledTariff
from ocs.rating.tariff import RateRow, Tariff
from ocs.store import migrate, tariffs
from ocs.store.flush import Flusher
from ocs.store.keys import Keys

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
OCSCTL = Path(sys.executable).parent / "ocsctl"
ACCOUNTS = 1000
T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROWS = [RateRow(str(4900 + i), f"Destination {i}", 60_000 + 1_000 * i, 20_000, 30, 6, line=i + 2) for i in range(50)]


def _write_file(path: Path, n: int) -> int:
    """The switch file; returns the exact total charge (pure engine, as a check)."""
    tariff = CompiledTariff(Tariff("bench", 1, "EUR", "UTC", tuple(ROWS)))
    rnd = random.Random(13)
    total = 0
    with path.open("w", encoding="utf-8") as fh:
        fh.write("start_time,calling,called,duration,record_id\n")
        for i in range(n):
            start = T0 + timedelta(seconds=rnd.randrange(25 * 86_400))
            called = f"{4900 + rnd.randrange(50)}{rnd.randrange(10**7):07d}"
            duration = rnd.randrange(601)
            sel = tariff.select(called, start)
            assert sel is not None
            total += tariff.rate(sel, duration).charge
            fh.write(f"{start.strftime('%Y-%m-%dT%H:%M:%SZ')},49170{i % ACCOUNTS:07d},{called},{duration},sw1-{i}\n")
    return total


async def _setup(dsn: str, r: aioredis.Redis, keys: Keys) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate.migrate(conn)
        await tariffs.import_version(conn, "bench", "EUR", "UTC", ROWS, [])
    finally:
        await conn.close()
    pipe = r.pipeline(transaction=False)
    for i in range(ACCOUNTS):
        acct = f"acct{i}"
        pipe.hset(keys.account(acct), mapping={"type": "prepaid", "st": "active", "cl": 0, "cur": "EUR",
                                               "tariff": "bench", "bal": 100_000_000, "rsv": 0})
        pipe.set(keys.alias(f"49170{i:07d}"), acct)
    await pipe.execute()


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def _redis_cpu(r: aioredis.Redis) -> float:
    """Redis server CPU seconds so far (all its clients: on a shared host, an upper bound for ours)."""
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def _ctl(r: aioredis.Redis, cfg: Path, *args: str) -> tuple[dict[str, Any], dict[str, float]]:
    """Run ocsctl; its answer and (wall seconds, its CPU seconds, Redis CPU seconds meanwhile)."""
    c0, r0, t0 = _children_cpu(), await _redis_cpu(r), time.perf_counter()
    res = await asyncio.to_thread(subprocess.run, [str(OCSCTL), "--config", str(cfg), *args, "--json"],
                                  capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    cost = {"seconds": seconds, "cpu_s": _children_cpu() - c0, "redis_cpu_s": await _redis_cpu(r) - r0}
    return json.loads(res.stdout), cost


def _import_row(name: str, n: int, cost: dict[str, float], **extra: Any) -> dict[str, Any]:
    return row(name, n, cost["seconds"], cpu_s=cost["cpu_s"],
               redis_cpu_us_per_op=round(cost["redis_cpu_s"] / n * 1e6, 2), **extra)


async def _run(n: int, flush: bool = True) -> list[dict[str, Any]]:
    db, prefix = f"ocs_bench_{uuid.uuid4().hex[:8]}", f"ocsbench:{uuid.uuid4().hex[:6]}:"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    dsn = ADMIN.rsplit("/", 1)[0] + "/" + db
    r = aioredis.Redis.from_url("redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="ocs-bench-cdr-"))
    try:
        cfg = config.from_mapping({"redis": {"key_prefix": prefix}, "postgres": {"dsn": dsn}}, env={})
        keys = Keys(prefix, cfg.charging.shards)
        await _setup(dsn, r, keys)
        (tmp / "ocs.toml").write_text(f'[redis]\nkey_prefix = "{prefix}"\n[postgres]\ndsn = "{dsn}"\n')
        expected = _write_file(tmp / "cdrs.csv", n)
        mem0 = int((await r.info("memory"))["used_memory"])
        first, cost = await _ctl(r, tmp / "ocs.toml", "cdr", "import", str(tmp / "cdrs.csv"), "--source", "sw1")
        assert first["imported"] == n, first
        backlog_mb = round((int((await r.info("memory"))["used_memory"]) - mem0) / 2**20)
        pipe = r.pipeline(transaction=False)
        for i in range(ACCOUNTS):
            pipe.hget(keys.account(f"acct{i}"), "bal")
        bals = await pipe.execute()
        assert ACCOUNTS * 100_000_000 - sum(int(b) for b in bals) == expected
        rows = [_import_row("cdr import (ocsctl: parse, check, rate, charge, record)", n, cost,
                            target="< 60 s for 1,000,000", redis_backlog_mb=backlog_mb)]
        if flush:
            rows.append(await _flush(cfg, r, dsn, n, expected))
        again, cost = await _ctl(r, tmp / "ocs.toml", "cdr", "import", str(tmp / "cdrs.csv"), "--source", "sw1")
        assert again["duplicate"] == n and again["imported"] == 0, again
        rows.append(_import_row("cdr import of the same file again (all duplicates)", n, cost))
    finally:
        async for key in r.scan_iter(match=f"{prefix}*", count=5000):
            await r.delete(key)
        await r.aclose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


async def _flush(cfg: config.Config, r: aioredis.Redis, dsn: str, n: int, expected: int) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        f = Flusher(cfg, r, pool, Metrics())
        c0, t0 = cpu_seconds(), time.perf_counter()
        done = await f.flush_all(max_rounds=10**6)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        assert done == 2 * n, done
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT sum(charge) FROM cdrs WHERE protocol = 'import'") == expected
    finally:
        await pool.close()
    return row("flush of the import's records (usage + CDR each)", 2 * n, seconds, cpu_s=cpu)


def run(quick: bool = False) -> list[dict[str, Any]]:
    return asyncio.run(_run(100_000 if quick else 1_000_000))


if __name__ == "__main__":  # python -m bench.cdr_import [--quick] [--no-flush]
    n = 100_000 if "--quick" in sys.argv else 1_000_000
    print(format_table(asyncio.run(_run(n, flush="--no-flush" not in sys.argv))))
