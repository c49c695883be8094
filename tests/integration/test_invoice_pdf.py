"""Invoice PDFs read back as a customer's tools read them (pdftotext from poppler-utils): the number,
the totals, the due date, every page numbered "Page X of N", 200+ lines over pages, the calls appendix."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ocs.billing import invoices, pdf
from ocs.config import BillingConfig
from tests.support.billing import account, billing_db, cdr, ledger, tariff, usage

pytestmark = pytest.mark.integration
__all__ = ["billing_db"]
SELLER = BillingConfig(company="Example Telecom GmbH", address="Hauptstraße 1\n10115 Berlin", tax_id="DE123456789",
                       bank="IBAN DE02 1203 0000 0000 2020 51")
LONG = "United States of America and Canada, premium rate numbers including satellite services"


def _text(data: bytes, tmp: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.fail("pdftotext (poppler-utils) is missing: scripts/bootstrap.sh installs it")
    (tmp / "i.pdf").write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(tmp / "i.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout


async def test_pdf_has_number_totals_pages_and_calls(billing_db: asyncpg.Connection, tmp_path: Path) -> None:
    pg = billing_db
    await tariff(pg, "berlin", timezone="Europe/Berlin")
    await account(pg, "4930123456", tariff_name="berlin", tax_rate="19", name="Muster & Söhne GmbH",
                  address="Musterweg 12\n80331 München")
    t0 = datetime(2026, 5, 1, 6, tzinfo=UTC)
    for i in range(230):
        dest = LONG if i == 0 else f"Zone {i:03d} Česko"
        await usage(pg, "4930123456", f"c{i}", 1_000_000 + i, t0 + timedelta(hours=i), units=65)
        await cdr(pg, "4930123456", f"c{i}", dest, t0 + timedelta(hours=i), called=f"+4930{i:06d}", duration=65,
                  charge=1_000_000 + i)
    await ledger(pg, "4930123456", "fee", -19_990_000, t0, reason="Business Flat")
    res = await invoices.run(pg, SELLER, date(2026, 5, 1), issue_date=date(2026, 6, 2))
    data = await pdf.invoice_pdf(pg, res.created[0], with_calls=True)
    assert data.startswith(b"%PDF-")
    text = _text(data, tmp_path)
    # 230 lines: 230 + 26,335 micro-units + 19.99 fee = 250.016335 -> net 250.02, tax 47.50, total 297.52
    for needle in ("INV-2026-000001", "Example Telecom GmbH", "DE123456789", "Muster & Söhne GmbH", "München",
                   "2026-06-16", "250.016335", "250.02", "47.50", "297.52 EUR", "Business Flat", "19.99",
                   "Zone 229 Česko", "IBAN DE02", "Appendix: calls in the period", "+4930000229"):
        assert needle in text, needle
    assert "premium rate numbers" in text and "satellite services" in text  # wrapped, not cut
    numbered = [(int(page), int(of)) for page, of in re.findall(r"Page (\d+) of (\d+)", text)]
    total = numbered[0][1]
    assert numbered == [(n, total) for n in range(1, total + 1)] and total >= 6
    assert "Page 1 of" in text.split("\f")[0]
