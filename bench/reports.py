"""Usage reports on a month of 10,000,000 CDRs (target: every report < 5 s).

CDRs are made in PostgreSQL with generate_series, in statements of 250,000 rows, through the
rollup triggers (so the fill also measures what the triggers cost per CDR): 10,000 accounts, 200
destinations, 5 providers, 2 currencies, a reseller for a tenth of the accounts, 20 % refused
attempts (duration 0).  Then each ``--by`` of ``ocsctl report usage`` is timed over the month, plus
one account's report (read from the CDRs, not the rollups), and every report's totals are checked
against an independent sum over the CDRs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.common import format_table, row
from ocs.reports.usage_report import BY, TOTAL, Query, usage
from ocs.store import migrate

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
CHUNK = 250_000

_FILL = """
INSERT INTO cdrs (record_id, session_id, account, protocol, service, calling, called, prefix, destination,
                  start_time, duration, billed_seconds, charge, currency, termination_cause, provider, cost,
                  cost_currency, reseller, reseller_charge)
SELECT 'cdr:s' || g || ':0', 's' || g, 'a' || (g % 10000), 'diameter', 'voice', '4930' || g, '49' || (g % 200),
       '49' || (g % 200), 'Destination ' || (g % 200),
       timestamptz '2026-11-01 00:00+00' + ((g * 7919) % 2592000) * interval '1 second',
       CASE WHEN g % 5 = 0 THEN 0 ELSE 20 + g % 400 END, CASE WHEN g % 5 = 0 THEN 0 ELSE 60 + (g % 400) / 60 * 60 END,
       CASE WHEN g % 5 = 0 THEN 0 ELSE 10000 + (g * 31) % 90000 END, CASE WHEN g % 10 < 7 THEN 'EUR' ELSE 'USD' END,
       CASE WHEN g % 5 = 0 THEN 'out_of_credit' ELSE 'DIAMETER_LOGOUT' END, 'provider' || (g % 5),
       CASE WHEN g % 5 = 0 THEN NULL ELSE 5000 + (g * 17) % 40000 END, CASE WHEN g % 10 < 7 THEN 'EUR' ELSE 'USD' END,
       CASE WHEN g % 10000 < 1000 THEN 'reseller' || (g % 7) ELSE '' END,
       CASE WHEN g % 10000 < 1000 THEN 8000 ELSE NULL END
FROM generate_series($1::bigint, $2::bigint) g
"""
_TRUTH = ("SELECT rtrim(currency) AS cur, count(*) AS attempts, count(*) FILTER (WHERE duration > 0) AS answered,"
          " sum(duration) AS seconds, sum(charge) AS revenue, coalesce(sum(cost), 0) AS cost FROM cdrs"
          " WHERE start_time >= $1 AND start_time < $2 {extra} GROUP BY 1")


async def _check(conn: asyncpg.Connection, q: Query, lines: list[Any]) -> None:
    extra = "" if q.by != "reseller" else "AND reseller <> ''"
    if q.account:
        extra += f" AND account = '{q.account}'"
    truth = {r["cur"]: r for r in await conn.fetch(_TRUTH.format(extra=extra), q.start, q.end)}
    totals = {ln.currency: ln for ln in lines if ln.group == TOTAL}
    assert set(truth) == set(totals), (q.by, set(truth), set(totals))
    for cur, t in truth.items():
        got = totals[cur]
        assert (got.attempts, got.answered, got.seconds, got.revenue, got.cost) == \
            (t["attempts"], t["answered"], t["seconds"], t["revenue"], t["cost"]), (q.by, cur)


async def _run(records: int) -> list[dict[str, Any]]:
    db = f"ocs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    out: list[dict[str, Any]] = []
    try:
        conn = await asyncpg.connect(ADMIN.rsplit("/", 1)[0] + "/" + db)
        await migrate.migrate(conn)
        t0 = time.perf_counter()
        for lo in range(0, records, CHUNK):
            await conn.execute(_FILL, lo, min(records, lo + CHUNK) - 1)
        fill = time.perf_counter() - t0
        await conn.execute("ANALYZE")
        out.append(row(f"fill {records:,} CDRs through the rollup triggers", records, fill))
        for by in BY:
            q = Query(START, END, by)
            t0 = time.perf_counter()
            lines = await usage(conn, q)
            out.append(row(f"report usage --by {by} (month)", 1, time.perf_counter() - t0, target="< 5 s",
                           groups=len(lines)))
            await _check(conn, q, lines)
        q = Query(START, END, "destination", account="a42")
        t0 = time.perf_counter()
        lines = await usage(conn, q)
        out.append(row("report usage --by destination --account (from CDRs)", 1, time.perf_counter() - t0,
                       target="< 5 s", groups=len(lines)))
        await _check(conn, q, lines)
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    return asyncio.run(_run(200_000 if quick else 10_000_000))


if __name__ == "__main__":
    print(format_table(run()))
