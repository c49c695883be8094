"""Usage reports on a month of 10,000,000 CDRs (target: every report < 5 s), and CDR exports.

First what the rollup triggers cost the flusher (batches of 500 CDRs with and without them).  Then
CDRs are bulk-loaded with generate_series (triggers off, then one ``report_rollup_rebuild()``):
10,000 accounts, 200 destinations, 5 providers, 2 currencies, a reseller for a tenth of the
accounts, 20 % refused attempts (duration 0).  Then each ``--by`` of ``ocsctl report usage`` is timed over the month, plus
one account's report (read from the CDRs, not the rollups), and every report's totals are checked
against an independent sum over the CDRs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench.common import format_table, row
from ocs.reports.usage_report import BY, TOTAL, Query, usage
from ocs.store import migrate
from ocs.store.usage_rows import write_batch

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
        out.append(await _trigger_cost(conn))
        await conn.execute("ALTER TABLE cdrs DISABLE TRIGGER cdrs_rollup_insert")  # a bulk load, then one rebuild
        t0 = time.perf_counter()
        for lo in range(0, records, CHUNK):
            await conn.execute(_FILL, lo, min(records, lo + CHUNK) - 1)
        out.append(row(f"bulk load {records:,} CDRs (triggers off)", records, time.perf_counter() - t0))
        t0 = time.perf_counter()
        await conn.execute("SELECT report_rollup_rebuild()")
        out.append(row("report_rollup_rebuild() over them", records, time.perf_counter() - t0))
        await conn.execute("ALTER TABLE cdrs ENABLE TRIGGER cdrs_rollup_insert")
        await conn.execute("ANALYZE")
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
        out.extend(_exports(ADMIN.rsplit("/", 1)[0] + "/" + db, records))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return out


async def _trigger_cost(conn: asyncpg.Connection) -> dict[str, Any]:
    """What the rollup triggers cost the flusher: batches of 500 CDRs of one hour (distinct accounts, as
    the flush writes them), through usage_rows.write_batch, with and without the triggers."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)

    def batch(b: int) -> list[tuple[str, str, dict[str, str]]]:
        return [("s", f"{b}-{i}", {"t": "c", "record_id": f"cdr:t{b}x{i}:0", "session_id": f"t{b}x{i}",
                                   "rating_group": "0", "account": f"a{(b * 500 + i) % 10000}", "service": "voice",
                                   "called": "4930", "destination": f"Destination {i % 200}", "provider": "p1",
                                   "start_time": now.isoformat(), "duration": "60", "billed_seconds": "60",
                                   "charge": "1000", "cost": "500", "cost_currency": "EUR", "currency": "EUR",
                                   "revision": "1"}) for i in range(500)]

    timings = {}
    for label, on in (("off", False), ("on", True)):
        await conn.execute(f"ALTER TABLE cdrs {'ENABLE' if on else 'DISABLE'} TRIGGER cdrs_rollup_insert")
        t0 = time.perf_counter()
        for b in range(40):
            await write_batch(conn, batch(b + (100 if on else 0)))
        timings[label] = time.perf_counter() - t0
    await conn.execute("TRUNCATE cdrs; TRUNCATE report_rollup")
    n = 40 * 500
    return row("flush CDR batches with rollup triggers (500/batch)", n, timings["on"],
               without_triggers_per_s=round(n / timings["off"]), with_triggers_per_s=round(n / timings["on"]))


def _exports(dsn: str, records: int) -> list[dict[str, Any]]:
    """``ocsctl cdr export`` of a tenth of the month (a million CDRs at full size) per format: time, peak RSS."""
    days = 3  # of 30: a tenth of the records
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "ocs.toml"
        cfg.write_text(f'[postgres]\ndsn = "{dsn}"\n')
        ocsctl = str(Path(sys.executable).parent / "ocsctl")
        for fmt in ("csv", "xml", "xlsx"):
            target = Path(tmp) / f"cdrs.{fmt}"
            t0 = time.perf_counter()
            proc = subprocess.Popen([ocsctl, "--config", str(cfg), "cdr", "export", "--format", fmt, "--from",
                                     "2026-11-01", "--to", f"2026-11-{1 + days:02d}", "-o", str(target)])
            _pid, status, usage_ = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - t0
            assert status == 0, f"cdr export --format {fmt} failed"
            n = records * days // 30
            out.append(row(f"cdr export --format {fmt}, ~{n:,} CDRs", n, seconds, peak_rss_mb=round(
                usage_.ru_maxrss / 1024, 1), file_mb=round(target.stat().st_size / 2**20, 1)))
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    return asyncio.run(_run(200_000 if quick else 10_000_000))


if __name__ == "__main__":
    print(format_table(run()))
