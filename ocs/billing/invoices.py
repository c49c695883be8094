"""The invoice run and voiding (docs/billing.md, "Invoices"): the one implementation behind
``ocsctl invoice run|void``, the API and the daemon.

A run is one transaction: it picks the accounts of the period not yet invoiced, aggregates their
usage records and ledger rows into lines (:mod:`ocs.billing.invoice_sql`), takes consecutive
numbers for the new invoices (:mod:`ocs.billing.numbering`) and writes invoices and lines.  Either
all of it commits or none of it, and a rollback gives the numbers back.  Runs are serialised by an
advisory lock, so two operators (or an operator and the daemon) invoicing at once cannot both
invoice an account; the second finds the first's invoices and creates nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from ocs.billing import amounts, invoice_docs, invoice_sql, numbering, settlement
from ocs.billing.errors import Invalid, Refused
from ocs.config import BillingConfig
from ocs.store.provision import Conn

RUN_LOCK = 0x0C5D_B005  # pg_advisory_xact_lock key of invoice runs and voids
CHUNK = 1000  # invoices written per COPY (and per progress step)
PERIOD = re.compile(r"(\d{4})-(\d{2})")

Progress = Callable[[int, int], None]


def parse_period(text: str) -> date:
    """``YYYY-MM`` -> the first day of that month."""
    m = PERIOD.fullmatch(text.strip())
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 2000:
        raise Invalid("period", f"not a month YYYY-MM: {text!r}")
    return date(int(m.group(1)), int(m.group(2)), 1)


def parse_date(text: str, field_name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise Invalid(field_name, f"not a date YYYY-MM-DD: {text!r}") from None


def today() -> date:
    """Issue dates default to today in UTC, the day the daemon's daily run counts in."""
    return datetime.now(UTC).date()


@dataclass
class RunResult:
    period: date
    created: list[str] = field(default_factory=list)  # numbers, in order
    existing: list[str] = field(default_factory=list)  # invoiced before this run
    invoices: list[dict[str, Any]] = field(default_factory=list)  # summaries of all the period's invoices
    credited_accounts: list[str] = field(default_factory=list)  # ledger rows written ahead (apply them)


def _seller(b: BillingConfig) -> str:
    return json.dumps({"company": b.company, "address": b.address, "tax_id": b.tax_id, "bank": b.bank})


def _record(r: asyncpg.Record, num: str, period: date, issue: date, seller: str, now: datetime) -> tuple[Any, ...]:
    """One invoice row (columns of ``invoice_sql.INVOICE_COLUMNS``) from its account's aggregate."""
    currency = r["currency"].strip()
    included = r["type"] == "prepaid"
    t = amounts.totals(int(r["lines_total"]), r["tax_rate"], currency, tax_included=included)
    # Prepaid charges were paid from the balance as they happened; nothing is owed on a credit.
    settled = included or t.gross <= 0
    buyer = json.dumps({"account": r["account_id"], "name": r["name"], "address": r["address"], "email": r["email"]})
    return (num, r["account_id"], period, r["p_start"], r["p_end"], r["timezone"], r["type"], currency, issue,
            issue + timedelta(days=int(r["terms"])), r["tax_rate"], included, t.lines_total, t.net, t.tax, t.gross,
            "paid" if settled else "open", buyer, seller, now if settled else None)


async def _create(conn: Conn, billing: BillingConfig, period: date, issue: date,
                  progress: Progress | None) -> list[str]:
    """Write the invoices of the accounts in ``_inv_lines``; returns their numbers (caller's transaction)."""

    rows = await conn.fetch(invoice_sql.TO_INVOICE)
    if not rows:
        return []
    first = await numbering.take(conn, numbering.INVOICE, issue.year, len(rows))
    seller, now = _seller(billing), datetime.now(UTC)
    numbers = [numbering.number(billing.invoice_prefix, issue.year, first + i) for i in range(len(rows))]
    for start in range(0, len(rows), CHUNK):
        chunk = [_record(r, numbers[start + i], period, issue, seller, now)
                 for i, r in enumerate(rows[start:start + CHUNK])]
        await conn.copy_records_to_table("invoices", records=chunk, columns=list(invoice_sql.INVOICE_COLUMNS))
        if progress is not None:
            progress(start + len(chunk), len(rows))
    await conn.execute(invoice_sql.INSERT_LINES, period)
    return numbers


async def run(conn: Conn, billing: BillingConfig, period: date, *, account: str | None = None,
              issue_date: date | None = None, progress: Progress | None = None) -> RunResult:
    """Invoice ``period`` (first day of a month) for every account with charges in it, or for ``account``.

    Idempotent: accounts invoiced for the period before are left as they are and listed in
    ``existing``.  Credit an account has (overpayments) settles its new invoice at once.
    """

    issue = issue_date or today()
    if account is not None and not await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account):
        raise Refused(f"unknown account {account!r}")
    out = RunResult(period)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", RUN_LOCK)
        await conn.execute(invoice_sql.CANDIDATES, period, account)
        await conn.execute("ANALYZE _inv_acct")
        await conn.execute(invoice_sql.LINES)
        out.created = await _create(conn, billing, period, issue, progress)
        if out.created:
            out.credited_accounts = await settlement.apply_account_credit(conn, await _with_credit(conn, out.created))
    out.invoices = await invoice_docs.listing(conn, account=account, period=period)
    made = set(out.created)
    out.existing = [d["number"] for d in out.invoices if d["number"] not in made]
    return out


async def _with_credit(conn: Conn, numbers: list[str]) -> list[str]:
    """The accounts of these invoices that have unallocated payments (few: overpayments)."""
    rows = await conn.fetch(
        "SELECT DISTINCT i.account_id FROM invoices i JOIN payments p ON p.account_id = i.account_id"
        " WHERE i.number = ANY($1::text[]) AND i.status = 'open' AND p.unallocated > 0 ORDER BY 1", numbers)
    return [r["account_id"] for r in rows]


async def void(conn: Conn, number: str, reason: str, *, issue_date: date | None = None) -> dict[str, Any]:
    """Void an invoice with a credit note (its own gapless numbers, prefix ``CN-``); the invoice stays.

    Payments allocated to it go back to the payer's credit (and settle other open invoices), and
    the part of its charges not yet given back to the balance is written ahead as a ledger row
    (kind ``credit_note``).  Returns the credit note; the caller applies the ledger rows.
    """
    if not reason.strip():
        raise Invalid("reason", "must not be empty")
    issue = issue_date or today()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", RUN_LOCK)
        inv = await conn.fetchrow("SELECT * FROM invoices WHERE number = $1 FOR UPDATE", number)
        if inv is None:
            raise Refused(f"unknown invoice {number!r}")
        if inv["status"] == "void":
            raise Refused(f"invoice {number} is already void")
        seq = await numbering.take(conn, numbering.CREDIT_NOTE, issue.year, 1)
        cn = numbering.number(numbering.CREDIT_NOTE_PREFIX, issue.year, seq)
        await conn.execute(
            "INSERT INTO credit_notes (number, invoice_id, account_id, issue_date, reason, net, tax, gross)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", cn, inv["id"], inv["account_id"], issue, reason.strip(),
            -inv["net"], -inv["tax"], -inv["gross"])
        await conn.execute("UPDATE invoices SET status = 'void', voided_at = now(), void_reason = $2 WHERE id = $1",
                           inv["id"], reason.strip())
        await settlement.release(conn, inv, cn)
        await settlement.apply_account_credit(conn, [inv["account_id"]])
    return {"credit_note": cn, "invoice": number, "account": inv["account_id"], "issue_date": issue.isoformat(),
            "reason": reason.strip(), "currency": inv["currency"].strip(),
            **{k: amounts.fmt_total(-inv[k], inv["currency"]) for k in ("net", "tax", "gross")}}
