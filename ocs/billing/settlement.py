"""Payments settling invoices, and the balance they give back (docs/billing.md, "Payments").

Allocation: a payment's unallocated amount goes to the invoice the payer named, then to the
account's oldest open invoices (issue date, then number); what is left stays as the account's
credit and settles the next invoice when it is issued.  A voided invoice releases what was
allocated to it back to the payments' credit.

Why a paid postpaid invoice credits the Redis balance: a postpaid account's usage and fees were
debited from its balance down towards ``-credit_limit``; if paying never gave that back, every
paid customer would still run into the limit.  What is given back is the invoice's exact
``lines_total`` (what the period moved on the balance, tax excluded: tax was never debited), in
proportion to what is paid, ``lines_total * paid / gross``; the payment that completes the
invoice gives exactly the rest, so a fully paid invoice gives back exactly its lines.  Each step
is a ledger row of kind ``payment``, written ahead here (PostgreSQL only) and applied to Redis
once by :func:`ocs.store.provision.apply_pending` (the caller, or the daemon's ledger sweep).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from ocs import money
from ocs.store.provision import Conn


def credited_target(inv: asyncpg.Record | dict[str, Any], paid: int) -> int:
    """How much of the invoice's lines the balance should have back once ``paid`` of its gross is paid."""
    gross, lines = int(inv["gross"]), int(inv["lines_total"])
    if gross <= 0 or paid >= gross:
        return lines
    return money.div_round_half_up(lines * paid, gross)


async def _ledger(conn: Conn, account: str, kind: str, amount: int, reference: str, reason: str) -> None:
    await conn.execute("INSERT INTO ledger (account_id, kind, amount, reference, reason) VALUES ($1, $2, $3, $4, $5)",
                       account, kind, amount, reference, reason)


async def _allocate_one(conn: Conn, payment: asyncpg.Record, inv: asyncpg.Record, amount: int) -> None:
    """Allocate ``amount`` of ``payment`` to ``inv`` (both locked), settle it when complete, give back its share."""
    alloc_id = await conn.fetchval(
        "INSERT INTO payment_allocations (payment_id, invoice_id, amount) VALUES ($1, $2, $3) RETURNING id",
        payment["id"], inv["id"], amount)
    paid = int(inv["paid"]) + amount
    target = credited_target(inv, paid)
    await conn.execute(
        "UPDATE invoices SET paid = $2, credited = $3, status = CASE WHEN $2 >= gross THEN 'paid' ELSE status END,"
        " settled_at = CASE WHEN $2 >= gross THEN now() END WHERE id = $1", inv["id"], paid, target)
    await conn.execute("UPDATE payments SET unallocated = unallocated - $2 WHERE id = $1", payment["id"], amount)
    delta = target - int(inv["credited"])
    if delta:
        await _ledger(conn, inv["account_id"], "payment", delta, f"settle:{inv['number']}:{alloc_id}",
                      f"payment {payment['reference']} for invoice {inv['number']}")


async def allocate(conn: Conn, payment_id: int, named: int | None = None) -> list[tuple[str, int]]:
    """Allocate the payment's unallocated amount: ``named`` invoice first, then oldest open ones.

    Runs in the caller's transaction; returns (invoice number, amount) per allocation.
    """
    payment = await conn.fetchrow("SELECT * FROM payments WHERE id = $1 FOR UPDATE", payment_id)
    assert payment is not None
    left = int(payment["unallocated"])
    open_invoices = await conn.fetch(
        "SELECT * FROM invoices WHERE account_id = $1 AND status = 'open'"
        " ORDER BY id = $2 DESC, issue_date, id FOR UPDATE", payment["account_id"], named or 0)
    done: list[tuple[str, int]] = []
    for inv in open_invoices:
        if left <= 0:
            break
        amount = min(left, int(inv["gross"]) - int(inv["paid"]))
        if amount <= 0:
            continue
        await _allocate_one(conn, payment, inv, amount)
        payment = await conn.fetchrow("SELECT * FROM payments WHERE id = $1", payment_id)
        assert payment is not None
        left -= amount
        done.append((inv["number"], amount))
    return done


async def apply_account_credit(conn: Conn, accounts: list[str]) -> list[str]:
    """Settle open invoices of ``accounts`` from their unallocated payments, oldest payment first.

    Returns the accounts for which ledger rows were written (to be applied to Redis).
    """
    touched: list[str] = []
    for account in accounts:
        ids = await conn.fetch("SELECT id FROM payments WHERE account_id = $1 AND unallocated > 0 ORDER BY id",
                               account)
        allocated = [await allocate(conn, r["id"]) for r in ids]
        if any(allocated):
            touched.append(account)
    return touched


async def release(conn: Conn, inv: asyncpg.Record, credit_note: str) -> None:
    """A voided invoice: its allocations go back to the payments, the rest of its lines back to the balance."""
    rows = await conn.fetch(
        "UPDATE payment_allocations SET released_at = now() WHERE invoice_id = $1 AND released_at IS NULL"
        " RETURNING payment_id, amount", inv["id"])
    for r in rows:
        await conn.execute("UPDATE payments SET unallocated = unallocated + $2 WHERE id = $1",
                           r["payment_id"], r["amount"])
    await conn.execute("UPDATE invoices SET paid = 0, credited = lines_total WHERE id = $1", inv["id"])
    delta = int(inv["lines_total"]) - int(inv["credited"])
    if delta:
        await _ledger(conn, inv["account_id"], "credit_note", delta, f"void:{credit_note}",
                      f"credit note {credit_note} for invoice {inv['number']}")
