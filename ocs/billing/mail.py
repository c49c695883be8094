"""Sending an invoice (docs/billing.md, "Sending"): the PDF into the PostgreSQL outbox, delivered by ocsd.

Why the alerts' outbox (``alert_outbox``, docs/alerts.md) and not a second one: it already leases
rows across nodes, retries with back-off while the SMTP server is away, and marks a row delivered
only once the server accepted it.  An invoice is one more kind of row there (event ``invoice``,
subject = the invoice number, channel ``email``), and its UNIQUE key is what makes
``ocsctl invoice send`` deliver an invoice once however often it is run.  The row carries the
whole mail (subject, text, the PDF as base64): what is delivered is what was queued, even if
the customer data changes before the server comes back.  The delivery worker builds the message
with :func:`render`: ocsd hands :data:`MAIL_RENDERERS` to ``AlertDelivery(..., mail_renderers=...)``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from ocs.billing import amounts, invoice_docs, pdf
from ocs.billing.errors import Refused
from ocs.control.alert_channels import MailRenderer
from ocs.control.alert_messages import Alert
from ocs.store.provision import Conn

EVENT = "invoice"


def _text(doc: dict[str, Any]) -> tuple[str, str]:
    seller = doc["seller"]["company"] or "Your provider"
    cur = doc["currency"]
    subject = f"Invoice {doc['number']} from {seller} ({doc['period']})"
    lines = [f"Dear {doc['buyer']['name'] or 'customer'},", "",
             f"please find attached invoice {doc['number']} for account {doc['account']}, period {doc['period']}.", "",
             f"  Total:       {doc['gross']} {cur}", f"  Amount due:  {doc['due']} {cur}",
             f"  Due date:    {doc['due_date']}", ""]
    if doc["due"] != amounts.fmt_total(0, cur) and doc["seller"]["bank"]:
        lines += ["Payment details:", f"  {doc['seller']['bank']}", f"  Reference: {doc['number']}", ""]
    lines += [seller]
    return subject, "\n".join(lines) + "\n"


async def _state(conn: Conn, account: str, number: str) -> Any:
    return await conn.fetchrow(
        "SELECT id, target, delivered_at, failed_at FROM alert_outbox"
        " WHERE event = $1 AND account_id = $2 AND subject = $3 AND channel = 'email'", EVENT, account, number)


def _state_word(row: Any) -> str:
    return "delivered" if row["delivered_at"] else "failed" if row["failed_at"] else "pending"


async def queue_invoice(conn: Conn, number: str, *, with_calls: bool = False) -> dict[str, Any]:
    """Queue the invoice's mail once; returns ``queued`` (False: it was queued before), ``outbox_id``, ``to``."""
    inv = await invoice_docs.get(conn, number)
    if inv["status"] == "void":
        raise Refused(f"invoice {number} is void; it is not sent")
    prior = await _state(conn, inv["account_id"], number)
    if prior is not None:
        return {"queued": False, "outbox_id": prior["id"], "to": prior["target"], "state": _state_word(prior)}
    to = await conn.fetchval("SELECT email FROM accounts WHERE id = $1", inv["account_id"])
    if not to:
        raise Refused(f"account {inv['account_id']} has no e-mail address (ocsctl account set ID --email ADDR)")
    doc = await invoice_docs.show(conn, number)
    subject, body = _text(doc)
    data = await pdf.invoice_pdf(conn, number, with_calls=with_calls)
    payload = {"number": number, "subject": subject, "body": body, "filename": f"{number}.pdf",
               "content_type": "application/pdf", "data": base64.b64encode(data).decode("ascii")}
    outbox_id = await conn.fetchval(
        "INSERT INTO alert_outbox (event, account_id, subject, channel, target, payload)"
        " VALUES ($1, $2, $3, 'email', $4, $5::jsonb) ON CONFLICT DO NOTHING RETURNING id",
        EVENT, inv["account_id"], number, to, json.dumps(payload))
    if outbox_id is None:  # queued by someone else meanwhile
        prior = await _state(conn, inv["account_id"], number)
        return {"queued": False, "outbox_id": prior["id"], "to": prior["target"], "state": _state_word(prior)}
    return {"queued": True, "outbox_id": outbox_id, "to": to, "state": "pending"}


def render(a: Alert, sender: str, domain: str) -> EmailMessage:
    """The mail of an ``invoice`` outbox row: its text, the PDF attached; the Message-ID names the row."""
    p = a.payload
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = a.target
    msg["Subject"] = p["subject"]
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<ocs-invoice-{a.id}@{domain}>"
    msg["X-OCS-Event"] = EVENT
    msg.set_content(p["body"])
    maintype, _, subtype = p["content_type"].partition("/")
    msg.add_attachment(base64.b64decode(p["data"]), maintype=maintype, subtype=subtype, filename=p["filename"])
    return msg


MAIL_RENDERERS: Mapping[str, MailRenderer] = {EVENT: render}
