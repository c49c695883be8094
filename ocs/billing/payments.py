"""Payment import (docs/billing.md, "Payments"): a bank's CSV, whole file or nothing.

``date,amount,currency,reference,account[,invoice]``: every line is checked before anything is
written (a bad line refuses the file and names its line number); then one transaction records
the payments and settles invoices (:mod:`ocs.billing.settlement`).  A reference counts once: a
line whose reference was imported before with the same account and amount is skipped (a bank
file imported twice changes nothing); with other values it is a bad line.  Prepaid accounts have
no open invoices (their invoices are settled from the balance): their payment is credited to the
balance by a ledger row of kind ``payment`` written ahead here, applied to Redis by the caller
through :func:`ocs.store.provision.apply_pending` (as ``ocsctl topup`` does).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg

from ocs import money
from ocs.billing import settlement
from ocs.billing.errors import Refused
from ocs.store.provision import Conn

HEADER = ("date", "amount", "currency", "reference", "account")
OPTIONAL = ("invoice",)


@dataclass(frozen=True)
class Line:
    line: int
    paid_on: date
    amount: int
    currency: str
    reference: str
    account: str
    invoice: str


@dataclass
class Imported:
    read: int = 0
    applied: list[str] = field(default_factory=list)  # references
    skipped: list[str] = field(default_factory=list)  # imported before
    allocations: list[dict[str, Any]] = field(default_factory=list)
    ledger_accounts: list[str] = field(default_factory=list)  # ledger rows written ahead: apply them


def _bad(line: int, message: str) -> Refused:
    return Refused(f"line {line}: {message}; nothing imported")


def _field(row: dict[str, str], name: str, line: int) -> str:
    value = (row.get(name) or "").strip()
    if not value and name != "invoice":
        raise _bad(line, f"{name} is empty")
    return value


def _parse_line(row: dict[str, str], line: int) -> Line:
    try:
        paid_on = date.fromisoformat(_field(row, "date", line))
    except ValueError:
        raise _bad(line, f"date {row['date']!r} is not YYYY-MM-DD") from None
    try:
        amount = money.parse(_field(row, "amount", line), allow_negative=False)
    except money.MoneyError as exc:
        raise _bad(line, f"amount: {exc}") from None
    if amount == 0:
        raise _bad(line, "amount must be positive")
    return Line(line, paid_on, amount, _field(row, "currency", line).upper(), _field(row, "reference", line),
                _field(row, "account", line), _field(row, "invoice", line))


def parse(text: str) -> list[Line]:
    """Every line of the file, or :class:`Refused` naming the first bad one (line 1 is the header)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    names = [n.strip() for n in reader.fieldnames or []]
    missing = [h for h in HEADER if h not in names]
    unknown = [n for n in names if n not in HEADER + OPTIONAL]
    if missing or unknown:
        raise Refused(f"line 1: header must be {','.join(HEADER)}[,invoice]"
                      f" ({'missing ' + ', '.join(missing) if missing else 'unknown ' + ', '.join(unknown)});"
                      " nothing imported")
    reader.fieldnames = names
    out, seen = [], set()
    for row in reader:
        if None in row or any(v is None for v in row.values()):
            raise _bad(reader.line_num, f"expected {len(names)} fields")
        item = _parse_line(row, reader.line_num)
        if item.reference in seen:
            raise _bad(item.line, f"reference {item.reference!r} appears twice in the file")
        seen.add(item.reference)
        out.append(item)
    return out


async def _check(conn: Conn, item: Line) -> asyncpg.Record | None:
    """Refuse a line that cannot be applied; returns the earlier payment of the same reference (skip) or None."""
    acct = await conn.fetchrow("SELECT type, currency FROM accounts WHERE id = $1", item.account)
    if acct is None:
        raise _bad(item.line, f"unknown account {item.account!r}")
    if acct["currency"].strip() != item.currency:
        raise _bad(item.line, f"currency {item.currency} is not the account's ({acct['currency'].strip()})")
    if item.invoice:
        owner = await conn.fetchval("SELECT account_id FROM invoices WHERE number = $1", item.invoice)
        if owner != item.account:
            raise _bad(item.line, f"invoice {item.invoice!r} is not an invoice of account {item.account}")
    prior = await conn.fetchrow("SELECT account_id, amount FROM payments WHERE reference = $1", item.reference)
    if prior is not None and (prior["account_id"], prior["amount"]) != (item.account, item.amount):
        raise _bad(item.line, f"reference {item.reference!r} was imported before for another payment")
    return prior


async def _apply(conn: Conn, item: Line, source: str, out: Imported) -> None:
    pid = await conn.fetchval(
        "INSERT INTO payments (reference, account_id, paid_on, amount, currency, invoice, unallocated, source)"
        " VALUES ($1, $2, $3, $4, $5, $6, $4, $7) RETURNING id", item.reference, item.account, item.paid_on,
        item.amount, item.currency, item.invoice, f"{source}:{item.line}")
    if await conn.fetchval("SELECT type FROM accounts WHERE id = $1", item.account) == "prepaid":
        await conn.execute("UPDATE payments SET unallocated = 0 WHERE id = $1", pid)
        await conn.execute("INSERT INTO ledger (account_id, kind, amount, reference, reason)"
                           " VALUES ($1, 'payment', $2, $3, $4)", item.account, item.amount,
                           f"payment:{item.reference}", f"payment {item.reference} ({source}:{item.line})")
        out.ledger_accounts.append(item.account)
        return
    named = await conn.fetchval("SELECT id FROM invoices WHERE number = $1", item.invoice) if item.invoice else None
    for number, amount in await settlement.allocate(conn, pid, named):
        out.allocations.append({"reference": item.reference, "invoice": number, "amount": money.format(amount)})
        out.ledger_accounts.append(item.account)


async def import_payments(conn: Conn, text: str, source: str = "") -> Imported:
    """Check every line, then record them all in one transaction (or none); see the module doc."""
    lines = parse(text)
    out = Imported(read=len(lines))
    async with conn.transaction():
        await conn.execute("LOCK TABLE payments IN SHARE ROW EXCLUSIVE MODE")  # one import at a time
        todo = []
        for item in lines:
            if await _check(conn, item) is None:
                todo.append(item)
            else:
                out.skipped.append(item.reference)
        for item in todo:
            await _apply(conn, item, source, out)
            out.applied.append(item.reference)
    out.ledger_accounts = sorted(set(out.ledger_accounts))
    return out
