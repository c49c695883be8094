"""Re-rating: 1,000,000 CDRs priced again after a rate correction (target < 60 s).

Data is made in PostgreSQL with generate_series (in start-time order, as the flush writes CDRs when
calls end): 10,000 accounts, two tariffs (``flat``: one row per
prefix, and ``peak``: a peak band on weekdays 08:00-20:00 besides the ``any`` row, so half of the
records take the engine's block walk), 100 prefixes each, odd durations (zero-second calls
included), connect fees and 30/6 increments on half the prefixes.  The charges are version 1's
prices (computed in SQL for ``flat``; ``peak`` records start at 0, so they all change); version 2
raises every rate, so every record with billed time changes.  Timed: the re-rating itself (read and
price on a second connection while the first writes the previous batch by COPY and one UPDATE, the
ledger rows; one transaction), then applying the adjustments to Redis,
then a second run (which must change nothing).  Checked: the ledger's sum is exactly minus the sum of
(new - old) over the records, and a sample of records equals the engine's price.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from bench.common import format_table, row, rss_mb
from ocs.billing import rerate
from ocs.billing.rerate_price import Repricer
from ocs.store import migrate, provision, tariffs
from ocs.store.keys import Keys

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
MAY, JUNE = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)

_FILL = """
INSERT INTO tariffs VALUES ('flat', 'EUR', 'UTC', 2), ('peak', 'EUR', 'Europe/Berlin', 2);
INSERT INTO tariff_versions (tariff, version, currency, timezone, rows)
  SELECT t, v, 'EUR', CASE t WHEN 'flat' THEN 'UTC' ELSE 'Europe/Berlin' END, 100
  FROM unnest(ARRAY['flat', 'peak']) t, generate_series(1, 2) v;
INSERT INTO rate_rows (tariff, version, line, prefix, destination, rate, connect_fee, first_increment,
                       next_increment, band)
  SELECT t, v, p, (4900 + p)::text, 'Destination ' || p, 10000 + p * 997 + (v - 1) * 1111,
         CASE WHEN p % 2 = 0 THEN 20000 ELSE 0 END, CASE WHEN p % 2 = 0 THEN 30 ELSE 60 END,
         CASE WHEN p % 2 = 0 THEN 6 ELSE 60 END, 'any'
  FROM unnest(ARRAY['flat', 'peak']) t, generate_series(1, 2) v, generate_series(0, 99) p;
INSERT INTO rate_rows (tariff, version, line, prefix, destination, rate, connect_fee, first_increment,
                       next_increment, band)
  SELECT 'peak', v, 100 + p, (4900 + p)::text, 'Destination ' || p, 20000 + p * 1009 + (v - 1) * 777, 0, 60, 60,
         'peak'
  FROM generate_series(1, 2) v, generate_series(0, 99) p;
INSERT INTO bands (tariff, version, band, days, start_minute, end_minute)
  SELECT 'peak', v, 'peak', '{{0,1,2,3,4}}', 480, 1200 FROM generate_series(1, 2) v;
INSERT INTO accounts (id, type, currency, tariff)
  SELECT 'a' || lpad(i::text, 6, '0'), 'postpaid', 'EUR', CASE WHEN i % 2 = 0 THEN 'flat' ELSE 'peak' END
  FROM generate_series(1, {accounts}) i;
INSERT INTO cdrs (record_id, session_id, rating_group, account, service, called, prefix, destination, start_time,
                  duration, billed_seconds, charge, currency, tariff, tariff_version)
  SELECT 'cdr:s' || s || ':0', 's' || s, 0, 'a' || lpad(acc::text, 6, '0'), 'voice',
         (4900 + s % 100)::text || lpad(s::text, 8, '0'), (4900 + s % 100)::text, 'Destination ' || s % 100,
         timestamptz '2026-05-01 00:00+00' + (s::bigint * 2678400 / {records}) * interval '1 s',
         d, 0, CASE WHEN acc % 2 = 1 OR d = 0 THEN 0 ELSE
           (CASE WHEN s % 2 = 0 THEN 20000 ELSE 0 END)
           + ((10000 + (s % 100) * 997)::bigint * (CASE WHEN s % 2 = 0 THEN
                 CASE WHEN d <= 30 THEN 30 ELSE 30 + ((d - 30 + 5) / 6) * 6 END
               ELSE CASE WHEN d <= 60 THEN 60 ELSE 60 + ((d - 60 + 59) / 60) * 60 END END) * 2 + 60) / 120 END,
         'EUR', CASE WHEN s % 3 = 0 THEN '' ELSE CASE WHEN acc % 2 = 0 THEN 'flat' ELSE 'peak' END END, 1
  FROM (SELECT s, 1 + s % {accounts} AS acc, CASE WHEN s % 50 = 0 THEN 0 ELSE 1 + (s * 31) % 900 END AS d
        FROM generate_series(0, {records} - 1) s) x;
ANALYZE;
"""


async def _check(conn: asyncpg.Connection, res: rerate.Result) -> None:
    """Money: the ledger is minus the records' differences; a sample is the engine's price, exactly."""
    diff = await conn.fetchval("SELECT sum(charge - rerated_from) FROM cdrs WHERE rerated_from IS NOT NULL")
    ledger = await conn.fetchval("SELECT sum(amount) FROM ledger WHERE reference LIKE 'rerate:%'")
    assert diff == -ledger == sum(res.totals().values()), (diff, ledger, res.totals())
    pricer = Repricer()
    for name in ("flat", "peak"):
        pricer.add(name, await tariffs.load_tariff(conn, name))
    for r in await conn.fetch("SELECT c.*, a.tariff AS acct_tariff FROM cdrs c JOIN accounts a ON a.id = c.account"
                              " ORDER BY random() LIMIT 2000"):
        price = pricer.price(r["tariff"] or r["acct_tariff"], r["service"], r["called"], r["start_time"],
                             r["duration"], "EUR", "", "")
        assert price == r["charge"], (dict(r), price)


async def _apply(conn: asyncpg.Connection, accounts: int) -> tuple[float, int]:
    """Apply the adjustments to Redis balances under a private key prefix (deleted afterwards)."""
    redis = aioredis.Redis.from_url(REDIS)
    keys = Keys(f"ocsbench:{uuid.uuid4().hex[:8]}:", 16)
    try:
        pipe = redis.pipeline(transaction=False)
        for i in range(1, accounts + 1):
            pipe.hset(keys.account(f"a{i:06d}"), mapping={"bal": 0, "rsv": 0, "type": "postpaid"})
        await pipe.execute()
        rows = await rerate.pending(conn)
        t0 = time.perf_counter()
        await provision.apply_entries(conn, redis, keys, rows)
        seconds = time.perf_counter() - t0
        assert await rerate.pending(conn) == []
    finally:
        async for key in redis.scan_iter(match=f"{keys.prefix}*", count=10_000):
            await redis.delete(key)
        await redis.aclose()
    return seconds, len(rows)


async def _run(accounts: int, records: int) -> list[dict[str, Any]]:
    db = f"ocs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    try:
        conn = await asyncpg.connect(ADMIN.rsplit("/", 1)[0] + "/" + db)
        await migrate.migrate(conn)
        t0 = time.perf_counter()
        await conn.execute(_FILL.format(accounts=accounts, records=records))
        fill = time.perf_counter() - t0
        reader = await asyncpg.connect(ADMIN.rsplit("/", 1)[0] + "/" + db)  # as ocsctl: price while writing
        t0 = time.perf_counter()
        res = await rerate.run(conn, rerate.Request(MAY, JUNE), reader=reader)
        seconds = time.perf_counter() - t0
        await reader.close()
        rss = rss_mb()
        assert res.examined == records and res.changed > 0.9 * records, (res.examined, res.changed)
        await _check(conn, res)
        apply_s, applied = await _apply(conn, accounts)
        t0 = time.perf_counter()
        again = await rerate.run(conn, rerate.Request(MAY, JUNE))
        rerun = time.perf_counter() - t0
        assert again.changed == 0 and not again.adjusted
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return [row(f"re-rating: {records:,} CDRs, {accounts:,} accounts", records, seconds, target="< 60 s",
                changed=res.changed, adjusted=len(res.adjusted), rerun_s=round(rerun, 2), fill_s=round(fill, 1),
                rss_mb=rss, ledger_equals_differences=True),
            row(f"re-rating: {applied:,} adjustments applied to Redis", applied, apply_s)]


def run(quick: bool = False) -> list[dict[str, Any]]:
    return asyncio.run(_run(1_000, 100_000) if quick else _run(10_000, 1_000_000))


if __name__ == "__main__":
    print(format_table(run()))
