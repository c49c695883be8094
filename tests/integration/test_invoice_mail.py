"""``ocsctl invoice send``'s service on a real SMTP server (aiosmtpd): one mail with the PDF attached,
also when the server was down when it was queued (the alerts' outbox retries it), never two."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import asyncpg
import pytest

from ocs import config
from ocs.billing import invoices, mail
from ocs.billing.errors import Refused
from ocs.control.alerts_delivery import AlertDelivery
from ocs.metrics import Metrics
from tests.support.alert_sinks import SmtpSink
from tests.support.billing import account, billing_db, tariff, usage
from tests.support.daemon import free_port

pytestmark = pytest.mark.integration
__all__ = ["billing_db"]


def _cfg(pg_dsn: str, port: int) -> config.Config:
    return config.from_mapping({
        "postgres": {"dsn": pg_dsn}, "node": {"name": "t1"},
        "billing": {"company": "Example Telecom GmbH", "bank": "IBAN DE02 1203 0000 0000 2020 51"},
        "smtp": {"host": "127.0.0.1", "port": port, "from": "billing@example.net", "timeout_seconds": 5},
        "alerts": {"retry_base_seconds": 1, "retry_max_seconds": 2}}, env={})


@pytest.fixture
async def pool(pg_dsn: str, billing_db: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=3)
    yield p
    await p.close()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink(free_port())  # down until the test starts it
    yield sink
    await sink.stop()


async def _invoice(pg: asyncpg.Connection, cfg: config.Config) -> str:
    await tariff(pg)
    await account(pg, "c1", email="ap@customer.example", name="Customer Ltd", tax_rate="19")
    await account(pg, "nomail")
    for a in ("c1", "nomail"):
        await usage(pg, a, f"s-{a}", 12_345_678, datetime(2026, 5, 3, tzinfo=UTC))
    res = await invoices.run(pg, cfg.billing, date(2026, 5, 1), issue_date=date(2026, 6, 1))
    return res.created[0]


async def test_invoice_is_mailed_once_with_its_pdf_also_after_an_outage(
        billing_db: asyncpg.Connection, pool: asyncpg.Pool, pg_dsn: str, smtp: SmtpSink) -> None:
    pg = billing_db
    cfg = _cfg(pg_dsn, smtp.port)
    number = await _invoice(pg, cfg)
    first = await mail.queue_invoice(pg, number)
    assert first["queued"] and first["to"] == "ap@customer.example"
    again = await mail.queue_invoice(pg, number)
    assert not again["queued"] and again["outbox_id"] == first["outbox_id"] and again["state"] == "pending"
    with pytest.raises(Refused, match="no e-mail address"):
        await mail.queue_invoice(pg, "INV-2026-000002")

    worker = AlertDelivery(cfg, pool, Metrics(), mail_renderers=mail.MAIL_RENDERERS)
    assert await worker.deliver_once() == 1  # the server is down: retried later
    row = await pg.fetchrow("SELECT attempts, delivered_at, last_error FROM alert_outbox WHERE id = $1",
                            first["outbox_id"])
    assert row["attempts"] == 1 and row["delivered_at"] is None and "smtp" in row["last_error"]
    await smtp.start()
    await asyncio.sleep(1.2)
    assert await worker.deliver_once() == 1
    await asyncio.sleep(2.2)
    assert await worker.deliver_once() == 0
    assert (await mail.queue_invoice(pg, number))["state"] == "delivered"
    await worker.close()

    assert len(smtp.messages) == 1 and smtp.recipients == [["ap@customer.example"]]
    msg = smtp.messages[0]
    assert msg["Subject"] == f"Invoice {number} from Example Telecom GmbH (2026-05)"
    assert msg["Message-ID"] == f"<ocs-invoice-{first['outbox_id']}@example.net>"
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "Amount due:  14.70 EUR" in body.get_content().replace("\r\n", "\n")
    (pdf,) = list(msg.iter_attachments())
    assert pdf.get_content_type() == "application/pdf" and pdf.get_filename() == f"{number}.pdf"
    assert pdf.get_content().startswith(b"%PDF-")


async def test_void_invoice_is_not_sent(billing_db: asyncpg.Connection, pg_dsn: str) -> None:
    pg = billing_db
    number = await _invoice(pg, _cfg(pg_dsn, 25))
    await invoices.void(pg, number, "sent in error")
    with pytest.raises(Refused, match="void"):
        await mail.queue_invoice(pg, number)
    with pytest.raises(Refused, match="unknown invoice"):
        await mail.queue_invoice(pg, "INV-1999-000001")
