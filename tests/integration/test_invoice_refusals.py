"""An invoice's usage lines are the usage records, once each, whatever else the CDR table holds for
the session: a refused attempt's record (``ref:...``, docs/reports.md "Refused attempts") of the
same session and rating group (refused, then charged after a top-up) must not double a line."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from ocs.billing import invoices
from ocs.config import BillingConfig
from tests.support.billing import account, billing_db, cdr, tariff, usage

pytestmark = pytest.mark.integration
__all__ = ["billing_db"]


async def test_a_refused_attempt_of_a_charged_session_does_not_double_its_line(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    await tariff(pg)
    await account(pg, "a1")
    t0 = datetime(2026, 5, 4, 9, tzinfo=UTC)
    await pg.execute(
        "INSERT INTO cdrs (record_id, session_id, rating_group, account, called, start_time, duration,"
        " billed_seconds, charge, currency, termination_cause)"
        " VALUES ('ref:s1:0:0', 's1', 0, 'a1', '4930123456', $1, 0, 0, 0, 'EUR', 'out_of_credit')", t0)
    await usage(pg, "a1", "s1", 1_000_000, t0 + timedelta(minutes=5), units=60)
    await cdr(pg, "a1", "s1", "Germany", t0 + timedelta(minutes=5), duration=60, charge=1_000_000)
    res = await invoices.run(pg, BillingConfig(), date(2026, 5, 1), issue_date=date(2026, 6, 2))
    inv = await pg.fetchrow("SELECT * FROM invoices WHERE number = $1", res.created[0])
    lines = await pg.fetch("SELECT * FROM invoice_lines WHERE invoice_id = $1 AND kind = 'usage'", inv["id"])
    assert [(r["description"], r["calls"], r["amount"]) for r in lines] == [("Germany", 1, 1_000_000)]
    assert inv["lines_total"] == 1_000_000
