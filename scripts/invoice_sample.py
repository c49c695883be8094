"""Render the sample invoice of docs/billing.md: ``.venv/bin/python scripts/invoice_sample.py [OUT.pdf]``.

Creates a scratch database on the local PostgreSQL (dropped afterwards), a postpaid customer with
230 destinations of usage (long names, odd micro-unit amounts), a monthly fee and an adjustment,
invoices May 2026 and writes the PDF with the calls appendix.  ``pdftoppm -png -r 80 -f 1 -l 1``
turns its first page into docs/invoice-sample.png.
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from ocs.billing import invoices, pdf
from ocs.config import BillingConfig
from ocs.store.migrate import migrate

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SELLER = BillingConfig(company="Example Telecom GmbH", address="Hauptstraße 1\n10115 Berlin\nGermany",
                       tax_id="DE123456789",
                       bank="Commerzbank Berlin · IBAN DE02 1203 0000 0000 2020 51 · BIC BYLADEM1001")
PLACES = ["Germany fixed", "Germany mobile", "Česko mobile", "United Kingdom", "Ελλάδα (Greece) mobile",
          "United States of America and Canada, premium rate numbers including satellite services", "Zürich"]


async def _fill(conn: asyncpg.Connection) -> None:
    rnd = random.Random(7)
    await conn.execute("INSERT INTO tariffs VALUES ('retail', 'EUR', 'Europe/Berlin', 1)")
    await conn.execute(
        "INSERT INTO accounts (id, type, currency, tariff, name, email, address, tax_rate, payment_terms_days)"
        " VALUES ('4930123456', 'postpaid', 'EUR', 'retail', 'Muster & Söhne Handelsgesellschaft mbH',"
        " 'billing@muster.example', 'Frau Erika Mustermann\nBuchhaltung\nMusterweg 12\n80331 München', $1, 14)",
        Decimal("19"))
    start = datetime(2026, 5, 1, 6, tzinfo=UTC)
    usage, cdrs = [], []
    for i in range(600):
        dest = f"{PLACES[i % len(PLACES)]}" if i < 400 else f"Destination zone {i % 230:03d}"
        sid, t = f"call-{i}", start + timedelta(minutes=71 * i)
        secs, charge = rnd.randint(5, 1800), rnd.randint(1, 2_000_000)
        usage.append((f"u{i}", "4930123456", sid, 0, 1, "terminate", "voice", secs, charge, "EUR", t))
        cdrs.append((f"cdr:{sid}:0", sid, 0, "4930123456", f"+49{rnd.randint(10**8, 10**9)}", dest, t, secs, charge))
    await conn.copy_records_to_table("usage", records=usage, columns=[
        "record_id", "account_id", "session_id", "rating_group", "request_number", "kind", "service", "units",
        "amount", "currency", "event_time"])
    await conn.copy_records_to_table("cdrs", records=cdrs, columns=[
        "record_id", "session_id", "rating_group", "account", "called", "destination", "start_time", "duration",
        "charge"])
    for kind, amount, reason in (("fee", -19_990_000, "Business Flat 500 (monthly)"),
                                 ("adjustment", 5_000_000, "Goodwill credit for the outage on 12 May")):
        await conn.execute("INSERT INTO ledger (account_id, kind, amount, reference, reason, created_at)"
                           " VALUES ('4930123456', $1, $2, $3, $4, '2026-05-01 08:00+00')", kind, amount,
                           f"sample-{kind}", reason)


async def render() -> bytes:
    data = b""
    db = f"ocs_sample_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    try:
        conn = await asyncpg.connect(ADMIN.rsplit("/", 1)[0] + "/" + db)
        await migrate(conn)
        await _fill(conn)
        res = await invoices.run(conn, SELLER, date(2026, 5, 1), issue_date=date(2026, 6, 2))
        data = await pdf.invoice_pdf(conn, res.created[0], with_calls=True)
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return data


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "invoice-sample.pdf")
    out.write_bytes(asyncio.run(render()))
    print(f"wrote {out}")
