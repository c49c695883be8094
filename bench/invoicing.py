"""The monthly invoice run: 10,000 accounts with 1,000,000 usage records in the month (target < 60 s).

Data is made in PostgreSQL with generate_series (seconds, not minutes): accounts in two tariff
timezones, five debits per session (odd micro-unit amounts), one CDR per session across 50
destinations, a monthly fee per account, and records just outside the month that must not count.
Then one ``invoices.run`` is timed, the sum of all lines is checked against the records, and a
re-run (which must create nothing) is timed too.  Also: one 200-destination invoice as PDF.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date
from typing import Any

import asyncpg

from bench.common import format_table, row
from ocs.billing import invoices, pdf
from ocs.config import BillingConfig
from ocs.store import migrate

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
MAY = date(2026, 5, 1)
SELLER = BillingConfig(company="Bench Telecom", address="1 Bench Street", tax_id="XX1", bank="IBAN XX00 0000")

_FILL = """
INSERT INTO tariffs VALUES ('utc', 'EUR', 'UTC', 1), ('berlin', 'EUR', 'Europe/Berlin', 1);
INSERT INTO accounts (id, type, currency, tariff, name, address, tax_rate, payment_terms_days)
  SELECT 'a' || lpad(i::text, 6, '0'), CASE WHEN i % 10 = 0 THEN 'prepaid' ELSE 'postpaid' END, 'EUR',
         CASE WHEN i % 2 = 0 THEN 'utc' ELSE 'berlin' END, 'Customer ' || i, 'Street ' || i, 19, 14
  FROM generate_series(1, {accounts}) i;
INSERT INTO usage (record_id, account_id, session_id, rating_group, request_number, kind, service, units, amount,
                   currency, event_time)
  SELECT 'r' || n, 'a' || lpad((1 + (n / 5) % {accounts})::text, 6, '0'), 's' || (n / 5), 0, n % 5, 'update',
         'voice', 30 + n % 90, 1000 + (n::bigint * 7919) % 997003, 'EUR',
         timestamptz '2026-05-01 02:00+00' + (n % 2592000) * interval '1 second'
  FROM generate_series(0, {records} - 1) n;
INSERT INTO cdrs (record_id, session_id, rating_group, account, called, destination, prefix, start_time, duration,
                  billed_seconds, charge, currency)
  SELECT 'cdr:s' || s || ':0', 's' || s, 0, 'a' || lpad((1 + s % {accounts})::text, 6, '0'), '49' || s,
         'Destination ' || ((s / {accounts}) % 50), '49', timestamptz '2026-05-01 02:00+00' + ((s * 5) % 2592000) * interval '1 s',
         300, 300, 0, 'EUR'
  FROM generate_series(0, {records} / 5 - 1) s;
INSERT INTO usage (record_id, account_id, session_id, kind, amount, currency, event_time)
  SELECT 'out' || i, 'a' || lpad(i::text, 6, '0'), 'x' || i, 'update', 999, 'EUR', timestamptz '2026-04-30 21:00+00'
  FROM generate_series(1, {accounts}) i;
INSERT INTO ledger (account_id, kind, amount, reference, reason, created_at, applied_at)
  SELECT 'a' || lpad(i::text, 6, '0'), 'fee', -9990000, 'fee-' || i, 'Monthly plan', '2026-05-01 06:00+00', now()
  FROM generate_series(1, {accounts}) i;
ANALYZE;
"""


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
        t0 = time.perf_counter()
        res = await invoices.run(conn, SELLER, MAY, issue_date=date(2026, 6, 1))
        seconds = time.perf_counter() - t0
        lines, usage_total = await conn.fetchrow(
            "SELECT (SELECT sum(amount) FROM invoice_lines WHERE kind = 'usage'),"
            " (SELECT sum(u.amount) FROM usage u JOIN accounts a ON a.id = u.account_id JOIN tariffs t"
            "  ON t.name = a.tariff WHERE u.event_time >= '2026-05-01'::timestamp AT TIME ZONE t.timezone"
            "  AND u.event_time < '2026-06-01'::timestamp AT TIME ZONE t.timezone)")
        assert len(res.created) == accounts and lines == usage_total, (len(res.created), lines, usage_total)
        t1 = time.perf_counter()
        again = await invoices.run(conn, SELLER, MAY)
        rerun = time.perf_counter() - t1
        assert again.created == []
        t2 = time.perf_counter()
        data = await pdf.invoice_pdf(conn, res.created[0])
        pdf_s = time.perf_counter() - t2
        n_lines = await conn.fetchval("SELECT count(*) FROM invoice_lines")
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return [row(f"invoice run: {accounts:,} accounts, {records:,} usage records", accounts, seconds,
                target="< 60 s", records=records, lines=n_lines, rerun_s=round(rerun, 2), fill_s=round(fill, 1),
                sum_of_lines_equals_records=True),
            row("invoice PDF, 50 destinations", 1, pdf_s, bytes=len(data))]


def run(quick: bool = False) -> list[dict[str, Any]]:
    return asyncio.run(_run(1_000, 100_000) if quick else _run(10_000, 1_000_000))


if __name__ == "__main__":
    print(format_table(run()))
