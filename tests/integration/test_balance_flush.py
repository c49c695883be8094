"""Usage records reach PostgreSQL exactly once; money is conserved under concurrency (docs/rating.md, docs/provisioning.md)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import Status
from ocs.store.flush import Flusher
from ocs.store.reaper import Reaper
from tests.support.balance import account_state, provision, voice
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration

INITIAL = 5_000_000


async def _settled(pg: asyncpg.Connection, account: str) -> int:
    return int(await pg.fetchval("SELECT coalesce(sum(amount), 0) FROM usage WHERE account_id = $1", account))


async def _random_sessions(core: Charging, accounts: list[str], n: int, seed: int) -> None:
    rnd = random.Random(seed)

    async def one(i: int) -> None:
        acct = accounts[i % len(accounts)]
        sid = f"c{i}"
        out = await core.initiate(voice(sid, 0, sub=acct, dest=rnd.choice(["4930", "4915", "44"])))
        if out.status is not Status.GRANTED:
            return
        for n_ in range(1, rnd.randint(1, 4)):
            await asyncio.sleep(rnd.random() / 100)
            await core.update(voice(sid, n_, sub=acct, used=rnd.randint(0, 200)))
        if rnd.random() < 0.9:
            await core.terminate(voice(sid, 99, sub=acct, used=rnd.randint(0, 400)))

    await asyncio.gather(*(one(i) for i in range(n)))


async def test_money_is_conserved_under_concurrency(core: Charging, redis_client: aioredis.Redis,
                                                    flusher: Flusher, pg: asyncpg.Connection) -> None:
    accounts = [f"acc{i}" for i in range(5)]
    for a in accounts:
        await provision(redis_client, core.keys, a, INITIAL)
    await _random_sessions(core, accounts, 200, seed=7)
    await flusher.flush_all()
    reserved = 0
    for a in accounts:
        bal, rsv = await account_state(redis_client, core.keys, a)
        assert bal == INITIAL - await _settled(pg, a), a  # balance = top-ups - settled charges
        assert rsv >= 0
        reserved += rsv
    # every usage record is in PostgreSQL once, and nothing is left in the streams
    assert sum([await redis_client.xlen(s) for s in core.keys.all_usage_streams()]) == 0
    dupes = await pg.fetchval("SELECT count(*) - count(DISTINCT (session_id, request_number, rating_group))"
                              " FROM usage")
    assert dupes == 0
    # the shard totals behind ocs_reserved_micros equal the accounts' holds (10 % of calls never end)
    reaper = Reaper(core.cfg, redis_client, core.metrics)
    await reaper.refresh_gauges()
    assert reserved > 0 and core.metrics.reserved._value.get() == reserved
    await reaper.reap_once(datetime.now(UTC) + timedelta(hours=2))
    await reaper.refresh_gauges()
    assert core.metrics.reserved._value.get() == 0
    assert [(await account_state(redis_client, core.keys, a))[1] for a in accounts] == [0] * 5


async def test_cdr_per_session_with_spec_columns(core: Charging, redis_client: aioredis.Redis,
                                                 flusher: Flusher, pg: asyncpg.Connection) -> None:
    await provision(redis_client, core.keys, "alice", INITIAL)
    await core.initiate(voice("s1", 0))
    await core.update(voice("s1", 1, used=30))
    await core.terminate(voice("s1", 2, used=31))
    await core.terminate(voice("s1", 2, used=31))  # duplicate stop
    await flusher.flush_all()
    rows = await pg.fetch("SELECT * FROM cdrs")
    assert len(rows) == 1
    cdr = rows[0]
    assert (cdr["session_id"], cdr["account"], cdr["prefix"], cdr["destination"]) == (
        "s1", "alice", "49", "Germany fixed")
    assert (cdr["duration"], cdr["billed_seconds"], cdr["charge"]) == (61, 66, 86_000)
    assert await _settled(pg, "alice") == 86_000


async def test_flusher_killed_between_commit_and_ack(core: Charging, redis_client: aioredis.Redis,
                                                     flusher: Flusher, pg: asyncpg.Connection) -> None:
    await provision(redis_client, core.keys, "alice", INITIAL)
    for i in range(20):
        await core.initiate(voice(f"k{i}", 0))
        await core.terminate(voice(f"k{i}", 1, used=61))

    def crash(_entries: object) -> None:
        raise KeyboardInterrupt("killed after COMMIT, before XACK")

    flusher.after_commit = crash
    with pytest.raises(KeyboardInterrupt):
        await flusher.flush_once()
    assert await pg.fetchval("SELECT count(*) FROM usage") > 0
    # a new flusher process (same node name) starts: replays its pending entries
    restarted = Flusher(core.cfg, redis_client, flusher.pool, Metrics())
    await restarted.flush_all()
    assert await pg.fetchval("SELECT count(*) FROM usage") == 20  # one debit per session (the stop)
    assert await pg.fetchval("SELECT count(*) FROM cdrs") == 20
    assert await _settled(pg, "alice") == 20 * 86_000


async def test_postgres_outage_loses_nothing(core: Charging, redis_client: aioredis.Redis,
                                             pg_dsn: str, pg: asyncpg.Connection) -> None:
    await provision(redis_client, core.keys, "alice", INITIAL)
    proxy = TcpProxy("127.0.0.1", 5432)
    dsn = pg_dsn.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}") + "?sslmode=disable"
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=1, timeout=2)
    f = Flusher(core.cfg, redis_client, pool, core.metrics)
    runner = asyncio.ensure_future(f.run())
    try:
        for i in range(30):
            await core.initiate(voice(f"o{i}", 0))
            await core.terminate(voice(f"o{i}", 1, used=61))
            if i == 10:
                proxy.cut()  # PostgreSQL unreachable: charging goes on, the stream keeps records
        await asyncio.sleep(1.0)
        assert sum([await redis_client.xlen(s) for s in core.keys.all_usage_streams()]) > 0
        proxy.restore()
        for _ in range(100):
            if await pg.fetchval("SELECT count(*) FROM cdrs") == 30:
                break
            await asyncio.sleep(0.1)
        assert await pg.fetchval("SELECT count(*) FROM usage") == 30
        assert await pg.fetchval("SELECT count(*) FROM cdrs") == 30
        assert core.metrics.flush_errors._value.get() > 0
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await pool.close()
        proxy.close()


async def test_reaper_releases_silent_holds_once(core: Charging, redis_client: aioredis.Redis,
                                                 reaper: Reaper, flusher: Flusher,
                                                 pg: asyncpg.Connection) -> None:
    from datetime import UTC, datetime, timedelta

    await provision(redis_client, core.keys, "alice", INITIAL)
    await core.initiate(voice("quiet", 0))
    await core.update(voice("quiet", 1, used=61))
    later = datetime.now(UTC) + timedelta(seconds=core.cfg.charging.validity_seconds
                                          + core.cfg.charging.grace_seconds + 1)
    other = Reaper(core.cfg, redis_client, Metrics())
    counts = await asyncio.gather(reaper.reap_once(later), other.reap_once(later))
    assert sum(counts) == 1  # two daemons reaping at once release it once
    assert await account_state(redis_client, core.keys, "alice") == (INITIAL - 86_000, 0)
    late = await core.terminate(voice("quiet", 2, used=60))  # a late stop: charged as orphan, once
    assert late.status is Status.UNKNOWN_SESSION and late.charged == 60_000
    await flusher.flush_all()
    assert await pg.fetchval("SELECT termination_cause FROM cdrs WHERE session_id = 'quiet'") == "expired"
    assert await _settled(pg, "alice") == 146_000
