"""The invoice's calls appendix lists calls, not the records of refused attempts (duration 0, charge 0,
record id ``ref:...``: docs/reports.md "Refused attempts"), which exist for the ASR of reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ocs.billing import invoices, pdf
from ocs.config import BillingConfig
from tests.integration.test_invoice_pdf import _text
from tests.support.billing import account, billing_db, cdr, tariff, usage

pytestmark = pytest.mark.integration
__all__ = ["billing_db"]


async def test_appendix_leaves_refused_attempts_out(billing_db: asyncpg.Connection, tmp_path: Path) -> None:
    pg = billing_db
    await tariff(pg)
    await account(pg, "a1")
    t0 = datetime(2026, 5, 4, 9, tzinfo=UTC)
    await usage(pg, "a1", "c1", 1_000_000, t0, units=65)
    await cdr(pg, "a1", "c1", "Germany", t0, called="+4930111111", duration=65, charge=1_000_000)
    await pg.execute(
        "INSERT INTO cdrs (record_id, session_id, rating_group, account, called, start_time, duration,"
        " billed_seconds, charge, currency, termination_cause)"
        " VALUES ('ref:r1:0:0', 'r1', 0, 'a1', '+4930999999', $1, 0, 0, 0, 'EUR', 'out_of_credit')",
        t0 + timedelta(hours=1))
    res = await invoices.run(pg, BillingConfig(), date(2026, 5, 1), issue_date=date(2026, 6, 2))
    data = await pdf.invoice_pdf(pg, res.created[0], with_calls=True)
    text = _text(data, tmp_path)
    assert "+4930111111" in text and "1 calls started" in text, text
    assert "+4930999999" not in text
