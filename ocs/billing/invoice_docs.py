"""Invoices as documents: ``invoice show`` / ``list``, the PDF and the API read them from here.

Amounts are decimal strings in major units, as everywhere in ``ocsctl``: totals with the
currency's decimals (``119.00``), lines exact with as many decimals as the invoice's lines need
(``0.061667``), all lines with the same number so a column of them lines up.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg

from ocs.billing import amounts
from ocs.billing.errors import Invalid, Refused
from ocs.store.provision import Conn

STATUSES = ("open", "paid", "void")
_TOTALS = ("net", "tax", "gross", "paid")


def summary(r: asyncpg.Record) -> dict[str, Any]:
    cur = r["currency"].strip()
    doc = {"number": r["number"], "account": r["account_id"], "period": r["period"].strftime("%Y-%m"),
           "issue_date": r["issue_date"].isoformat(), "due_date": r["due_date"].isoformat(), "status": r["status"],
           "currency": cur, **{k: amounts.fmt_total(int(r[k]), cur) for k in _TOTALS},
           "due": amounts.fmt_total(int(r["gross"]) - int(r["paid"]) if r["status"] == "open" else 0, cur)}
    return doc


def _line(r: asyncpg.Record, places: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"line": r["line"], "kind": r["kind"], "description": r["description"],
                           "amount": amounts.fmt_line(int(r["amount"]), places)}
    if r["kind"] == "usage":
        doc |= {"service": r["service"], "calls": int(r["calls"]), "units": int(r["units"])}
        if r["service"] == "voice":
            doc["minutes"] = amounts.minutes(int(r["units"]))
    return doc


async def get(conn: Conn, number: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM invoices WHERE number = $1", number)
    if row is None:
        raise Refused(f"unknown invoice {number!r}")
    return row


async def show(conn: Conn, number: str) -> dict[str, Any]:
    """The whole invoice: header, buyer and seller as issued, lines, totals, payments, credit note."""
    inv = await get(conn, number)
    lines = await conn.fetch("SELECT * FROM invoice_lines WHERE invoice_id = $1 ORDER BY line", inv["id"])
    places = amounts.line_places([int(r["amount"]) for r in lines] + [int(inv["lines_total"])], inv["currency"])
    cn = await conn.fetchrow("SELECT number, issue_date, reason FROM credit_notes WHERE invoice_id = $1", inv["id"])
    pays = await conn.fetch(
        "SELECT p.reference, p.paid_on, a.amount, a.released_at FROM payment_allocations a"
        " JOIN payments p ON p.id = a.payment_id WHERE a.invoice_id = $1 ORDER BY a.id", inv["id"])
    cur = inv["currency"].strip()
    return {**summary(inv), "period_start": inv["period_start"].isoformat(),
            "period_end": inv["period_end"].isoformat(), "timezone": inv["timezone"],
            "account_type": inv["account_type"], "tax_rate": str(inv["tax_rate"]), "tax_included": inv["tax_included"],
            "lines_total": amounts.fmt_line(int(inv["lines_total"]), places),
            "buyer": json.loads(inv["buyer"]), "seller": json.loads(inv["seller"]),
            "lines": [_line(r, places) for r in lines],
            "payments": [{"reference": p["reference"], "date": p["paid_on"].isoformat(),
                          "amount": amounts.fmt_total(int(p["amount"]), cur),
                          "released": p["released_at"] is not None} for p in pays],
            "credit_note": None if cn is None else {"number": cn["number"], "issue_date": cn["issue_date"].isoformat(),
                                                    "reason": cn["reason"]}}


async def listing(conn: Conn, *, account: str | None = None, period: date | None = None,
                  status: str | None = None) -> list[dict[str, Any]]:
    """Summaries, by number, optionally of one account, period (first day) and status."""
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"one of {', '.join(STATUSES)}: {status!r}")
    rows = await conn.fetch(
        "SELECT * FROM invoices WHERE ($1::text IS NULL OR account_id = $1) AND ($2::date IS NULL OR period = $2)"
        " AND ($3::text IS NULL OR status = $3) ORDER BY number", account, period, status)
    return [summary(r) for r in rows]


def text(doc: dict[str, Any]) -> str:
    """``invoice show`` for a terminal."""
    cur = doc["currency"]
    head = [f"invoice {doc['number']}  account {doc['account']}  period {doc['period']}  status {doc['status']}",
            f"issued {doc['issue_date']}  due {doc['due_date']}  ({doc['timezone']})"]
    width = max([len(ln["description"]) for ln in doc["lines"]] + [20])
    body = []
    for ln in doc["lines"]:
        qty = f"{ln['calls']:>6} x {amounts.fmt_units(ln['service'], ln['units']):>14}" if ln["kind"] == "usage" else ""
        body.append(f"  {ln['description']:<{width}}  {qty:>25}  {ln['amount']:>14}")
    tax_word = "incl. tax" if doc["tax_included"] else "tax"
    foot = [f"  {'net':<{width}}  {'':>25}  {doc['net']:>14} {cur}",
            f"  {tax_word + ' ' + doc['tax_rate'] + ' %':<{width}}  {'':>25}  {doc['tax']:>14} {cur}",
            f"  {'gross':<{width}}  {'':>25}  {doc['gross']:>14} {cur}",
            f"  {'paid':<{width}}  {'':>25}  {doc['paid']:>14} {cur}"]
    if doc["credit_note"]:
        foot.append(f"  void: credit note {doc['credit_note']['number']} ({doc['credit_note']['reason']})")
    return "\n".join(head + body + foot)
