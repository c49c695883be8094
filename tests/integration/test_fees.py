"""Fees against the real stores and the real charging core (docs/billing.md, "Products and fees", "Daily run").

The account's timezone decides the month, each fee is posted once also under concurrent runs and
on several nodes, a prepaid fee lowers the balance without touching holds, the money proof holds
afterwards, and a changed credit limit or tariff is what the next grant uses.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.app import build_core
from ocs.billing import customers, daily, fees, products
from ocs.billing.products import Product
from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import Status
from ocs.rating.tariff import RateRow, Tariff
from ocs.store import accounts_db, provision
from ocs.store.keys import Keys
from ocs.store.tariff_cache import MemoryTariffSource
from tests.support.balance import demo_tariff, make_cfg, voice

pytestmark = pytest.mark.integration
EUR_10 = 10_000_000


@pytest.fixture
async def db(pg: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """``pg`` with tariffs t (UTC), nz (Pacific/Auckland), t2 (UTC, dearer); products etc. emptied after."""
    await pg.executemany("INSERT INTO tariffs(name, currency, timezone, current_version) VALUES ($1, 'EUR', $2, 1)",
                         [("t", "UTC"), ("nz", "Pacific/Auckland"), ("t2", "UTC")])
    yield pg
    await pg.execute("TRUNCATE products, subscriptions, fees, billing_daily_runs CASCADE")


async def _account(pg: asyncpg.Connection, redis: aioredis.Redis, keys: Keys, account_id: str, *, tariff: str = "t",
                   postpaid: bool = False, topup: int = 0) -> None:
    await customers.create(pg, customers.NewAccount(account_id, "EUR", tariff, postpaid, (f"49151{account_id}",)))
    await customers.sync(pg, redis, keys, account_id)
    if topup:
        await accounts_db.insert_ledger(pg, account_id, "topup", topup, f"topup-{account_id}", "")
        await provision.apply_pending(pg, redis, keys, account_id)


async def _balance(redis: aioredis.Redis, keys: Keys, account_id: str) -> tuple[int, int]:
    bal, rsv = await redis.hmget(keys.account(account_id), "bal", "rsv")
    return int(bal), int(rsv)


def _reconcile(tmp_path: Path, key_prefix: str, pg_dsn: str) -> dict:  # type: ignore[type-arg]
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')
    res = subprocess.run([str(Path(sys.executable).parent / "ocsctl"), "--config", str(cfg), "reconcile", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def keys(key_prefix: str) -> Keys:
    return Keys(key_prefix, make_cfg(key_prefix).charging.shards)


async def test_the_month_is_the_accounts_timezone(db: asyncpg.Connection, redis_client: aioredis.Redis,
                                                 keys: Keys) -> None:
    await _account(db, redis_client, keys, "kiwi", tariff="nz")
    await _account(db, redis_client, keys, "brit", tariff="t")
    await products.create(db, Product("line", EUR_10, "EUR", "monthly"))
    for acct in ("kiwi", "brit"):
        await products.subscribe(db, acct, "line", date(2026, 3, 1))
    # 2026-02-28 12:00 UTC is already 1 March 01:00 in Auckland (NZDT, +13)
    done = await fees.run(db, redis_client, keys, datetime(2026, 2, 28, 12, tzinfo=UTC))
    assert [(p.account, p.period) for p in done.posted] == [("kiwi", date(2026, 3, 1))]
    done = await fees.run(db, redis_client, keys, datetime(2026, 3, 31, 11, 59, tzinfo=UTC))  # Auckland: 1 Apr 00:59
    assert sorted((p.account, p.period) for p in done.posted) == [("brit", date(2026, 3, 1)),
                                                                  ("kiwi", date(2026, 4, 1))]
    assert await _balance(redis_client, keys, "kiwi") == (-2 * EUR_10, 0)


async def test_concurrent_runs_post_every_fee_once(db: asyncpg.Connection, pg_dsn: str,
                                                   redis_client: aioredis.Redis, keys: Keys) -> None:
    await products.create(db, Product("line", 1_000_001, "EUR", "monthly"))
    await products.create(db, Product("setup", 5_000_000, "EUR", "once"))
    for i in range(12):
        await _account(db, redis_client, keys, f"c{i}", postpaid=True)
        await products.subscribe(db, f"c{i}", "line", date(2025, 11, 17), quantity=1 + i % 3)
        await products.subscribe(db, f"c{i}", "setup", date(2026, 1, 2))
    conns = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        runs = await asyncio.gather(*(fees.run(c, redis_client, keys, date(2026, 2, 1)) for c in conns))
    finally:
        for c in conns:
            await c.close()
    posted = [(p.subscription, p.period, p.kind) for r in runs for p in r.posted]
    assert len(posted) == len(set(posted)) == 12 * 5  # Nov (partial), Dec, Jan, Feb + setup, each once
    for i in range(12):
        q = 1 + i % 3
        nov = (1_000_001 * q * 14 * 2 + 30) // (30 * 2)  # 17..30 Nov: 14 of 30 days, half up
        assert await _balance(redis_client, keys, f"c{i}") == (-(nov + 3 * 1_000_001 * q + 5_000_000), 0)
    assert await db.fetchval("SELECT count(*) FROM ledger WHERE kind = 'fee' AND applied_at IS NULL") == 0


async def test_prepaid_fee_leaves_holds_alone_and_the_proof_holds(
        db: asyncpg.Connection, core: Charging, redis_client: aioredis.Redis, tmp_path: Path, key_prefix: str,
        pg_dsn: str) -> None:
    keys = core.keys
    await _account(db, redis_client, keys, "alice", topup=12 * 1_000_000)
    held = await core.initiate(voice("s1", 0, sub="49151alice"))
    assert held.status is Status.GRANTED and held.reserved == 320_000
    await products.create(db, Product("line", EUR_10, "EUR", "monthly"))
    await products.subscribe(db, "alice", "line", date(2026, 3, 1))
    await fees.run(db, redis_client, keys, date(2026, 3, 1))
    assert await _balance(redis_client, keys, "alice") == (2_000_000, 320_000)  # the hold is untouched
    out = await core.terminate(voice("s1", 1, sub="49151alice", used=60))
    assert out.charged == 80_000
    assert await _balance(redis_client, keys, "alice") == (1_920_000, 0)
    await products.create(db, Product("router", 5_000_000, "EUR", "once"))
    await products.subscribe(db, "alice", "router", date(2026, 3, 2))
    await fees.run(db, redis_client, keys, date(2026, 3, 2))  # more than the balance: it goes negative
    assert await _balance(redis_client, keys, "alice") == (-3_080_000, 0)
    assert (await core.initiate(voice("s2", 0, sub="49151alice"))).status is Status.OUT_OF_CREDIT
    doc = _reconcile(tmp_path, key_prefix, pg_dsn)
    assert doc["differences"] == 0
    assert {r["account"]: r["balance"] for r in doc["report"]}["alice"] == "-3.08"


async def test_a_fee_written_but_not_applied_is_applied_once_later(db: asyncpg.Connection,
                                                                   redis_client: aioredis.Redis, keys: Keys) -> None:
    await _account(db, redis_client, keys, "bob", topup=EUR_10)
    await products.create(db, Product("line", 3_000_000, "EUR", "monthly"))
    sub = await products.subscribe(db, "bob", "line", date(2026, 5, 1))
    posted = await fees.post_subscription(db, sub.id, "EUR", date(2026, 5, 1))  # crash before the Redis step
    assert [p.amount for p in posted] == [3_000_000]
    assert await _balance(redis_client, keys, "bob") == (EUR_10, 0)
    assert (await fees.run(db, redis_client, keys, date(2026, 5, 1))).posted == []  # nothing new, but applied
    assert await _balance(redis_client, keys, "bob") == (7_000_000, 0)
    await db.execute("UPDATE ledger SET applied_at = NULL WHERE kind = 'fee'")  # crash after Redis, before the mark
    assert await provision.apply_pending(db, redis_client, keys, "bob") == 1
    assert await _balance(redis_client, keys, "bob") == (7_000_000, 0)  # topup.lua: once per ledger id


async def test_new_credit_limit_and_tariff_count_for_the_next_grant(db: asyncpg.Connection,
                                                                    redis_client: aioredis.Redis,
                                                                    key_prefix: str) -> None:
    src = MemoryTariffSource()
    src.add(demo_tariff())
    src.add(Tariff(name="t2", version=1, currency="EUR", timezone="UTC",
                   rows=(RateRow("49", "Germany dear", 120_000, 20_000, 30, 6, line=2),)))
    core = build_core(make_cfg(key_prefix), redis_client, Metrics(), src)
    await core.start()
    try:
        keys = core.keys
        await _account(db, redis_client, keys, "pp", postpaid=True)
        assert (await core.initiate(voice("a", 0, sub="49151pp"))).status is Status.OUT_OF_CREDIT
        await customers.update(db, "pp", customers.parse_profile({"credit-limit": "10"}))
        await customers.sync(db, redis_client, keys, "pp")
        out = await core.initiate(voice("b", 0, sub="49151pp"))  # at once: the script reads cl in Redis
        assert out.status is Status.GRANTED and out.reserved == 20_000 + 300 * 1_000
        await customers.update(db, "pp", customers.parse_profile({"tariff": "t2"}))
        await customers.sync(db, redis_client, keys, "pp")
        await asyncio.sleep(1.1)  # the account view keeps the tariff name at most a second
        out = await core.initiate(voice("c", 0, sub="49151pp"))
        assert out.status is Status.GRANTED and out.reserved == 20_000 + 300 * 2_000
    finally:
        await core.close()


@pytest.fixture
async def pools(pg_dsn: str) -> AsyncIterator[list[asyncpg.Pool]]:
    made = [await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2) for _ in range(2)]
    yield made
    for p in made:
        await p.close()


async def test_daily_steps_run_once_a_day_across_nodes(db: asyncpg.Connection, pools: list[asyncpg.Pool],
                                                       redis_client: aioredis.Redis, key_prefix: str,
                                                       keys: Keys) -> None:
    calls: list[date] = []

    async def count(day: daily.Day) -> str:
        calls.append(day.day)
        await asyncio.sleep(0.2)  # long enough for the other node to find the lock taken
        return "counted"

    today = [datetime(2026, 7, 1, 0, 3, tzinfo=UTC)]
    nodes = [daily.DailyRun(make_cfg(key_prefix), p, redis_client, keys, steps=[("count", count)],
                            clock=lambda: today[0]) for p in pools]
    ran = await asyncio.gather(*(n.once() for n in nodes))
    assert sorted(ran) == [[], ["count"]]
    assert await nodes[0].once() == [] and await nodes[1].once() == []
    today[0] += timedelta(days=1)
    assert await nodes[1].once() == ["count"]
    assert calls == [date(2026, 7, 1), date(2026, 7, 2)]
    rows = await db.fetch("SELECT day, result FROM billing_daily_runs WHERE finished_at IS NOT NULL ORDER BY day")
    assert [(r["day"], r["result"]) for r in rows] == [(date(2026, 7, 1), "counted"), (date(2026, 7, 2), "counted")]


async def test_a_failed_step_is_retried_and_does_not_stop_the_others(db: asyncpg.Connection,
                                                                     pools: list[asyncpg.Pool],
                                                                     redis_client: aioredis.Redis,
                                                                     key_prefix: str, keys: Keys) -> None:
    attempts: list[str] = []

    async def flaky(day: daily.Day) -> str:
        attempts.append("flaky")
        if len(attempts) == 1:
            raise RuntimeError("smtp down")
        return "ok now"

    async def fine(day: daily.Day) -> str:
        attempts.append("fine")
        return "ok"

    node = daily.DailyRun(make_cfg(key_prefix), pools[0], redis_client, keys, steps=[("flaky", flaky), ("fine", fine)],
                          clock=lambda: datetime(2026, 7, 1, 0, 3, tzinfo=UTC))
    assert await node.once() == ["flaky", "fine"]
    row = await db.fetchrow("SELECT finished_at, result FROM billing_daily_runs WHERE step = 'flaky'")
    assert row["finished_at"] is None and "smtp down" in row["result"]
    assert await node.once() == ["flaky"]
    assert await node.once() == []
    assert attempts == ["flaky", "fine", "flaky"]


async def test_the_daily_run_posts_the_fees(db: asyncpg.Connection, pools: list[asyncpg.Pool],
                                            redis_client: aioredis.Redis, key_prefix: str, keys: Keys) -> None:
    await _account(db, redis_client, keys, "d1", tariff="nz", postpaid=True)
    await products.create(db, Product("line", EUR_10, "EUR", "monthly"))
    await products.subscribe(db, "d1", "line", date(2026, 8, 1))
    node = daily.DailyRun(make_cfg(key_prefix), pools[0], redis_client, keys,
                          clock=lambda: datetime(2026, 7, 31, 12, 30, tzinfo=UTC))  # 1 Aug 00:30 in Auckland
    assert await node.once() == ["fees", "dunning"]  # dunning: off by default
    assert await _balance(redis_client, keys, "d1") == (-EUR_10, 0)
    assert await db.fetchval("SELECT result FROM billing_daily_runs WHERE step = 'fees'") == "1 fees posted"
