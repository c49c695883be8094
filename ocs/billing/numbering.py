"""Gapless document numbers: ``{prefix}{YYYY}-{seq:06d}``, consecutive per kind and year.

Why a counter row and not a PostgreSQL sequence: a sequence hands out numbers outside the
transaction, so a rolled-back invoice run would leave a hole, and invoice numbers must not have
holes (auditors ask for every missing number).  The counter row of (kind, year) is incremented by
``UPDATE ... RETURNING`` inside the transaction that writes the documents: its row lock makes a
concurrent writer wait until this one commits or rolls back, and a rollback undoes the increment
with everything else.  As Lago does, a number is given when the document is final, never before.
"""

from __future__ import annotations

from ocs.store.provision import Conn

INVOICE = "invoice"
CREDIT_NOTE = "credit_note"
CREDIT_NOTE_PREFIX = "CN-"


def number(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}{year:04d}-{seq:06d}"


async def take(conn: Conn, kind: str, year: int, count: int) -> int:
    """Reserve ``count`` consecutive numbers of ``year``; returns the first sequence number.

    Must run inside the transaction that writes the documents (the caller's); the counter row
    stays locked until it ends.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("numbers are taken inside the transaction that writes the documents")
    await conn.execute("INSERT INTO billing_sequences (kind, year) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       kind, year)
    last = await conn.fetchval("UPDATE billing_sequences SET last = last + $3 WHERE kind = $1 AND year = $2"
                               " RETURNING last", kind, year, count)
    return int(last) - count + 1
