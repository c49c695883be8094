"""Usage records and CDRs in PostgreSQL as operations read them: export and the money proof.

``reconcile`` proves ``balance = top-ups + adjustments - settled charges`` per
account; :func:`ledger_totals` gives the PostgreSQL side of that equation.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn = asyncpg.Connection | PoolConnectionProxy


async def cdrs(conn: Conn, start: datetime | None, end: datetime | None, account: str | None) -> list[asyncpg.Record]:
    """CDRs starting in [start, end) (either open), optionally of one account, in export order."""
    return await conn.fetch(
        "SELECT * FROM cdrs WHERE ($1::timestamptz IS NULL OR start_time >= $1)"
        " AND ($2::timestamptz IS NULL OR start_time < $2) AND ($3::text IS NULL OR account = $3)"
        " ORDER BY start_time, session_id, rating_group", start, end, account)


async def ledger_totals(conn: Conn) -> list[asyncpg.Record]:
    """Per account: ``credited`` (applied ledger), ``unapplied`` (ledger not yet in Redis), ``settled`` (usage),
    ``resold`` (a reseller: the wholesale debits of its subscribers' usage)."""
    return await conn.fetch(
        "SELECT a.id,"
        " (SELECT coalesce(sum(amount), 0) FROM ledger l WHERE l.account_id = a.id AND applied_at IS NOT NULL)"
        "   AS credited,"
        " (SELECT coalesce(sum(amount), 0) FROM ledger l WHERE l.account_id = a.id AND applied_at IS NULL)"
        "   AS unapplied,"
        " (SELECT coalesce(sum(amount), 0) FROM usage u WHERE u.account_id = a.id) AS settled,"
        # a reseller: what its subscribers' charges debited it (docs/wholesale.md "Resellers")
        " (SELECT coalesce(sum(reseller_amount), 0) FROM usage u WHERE u.reseller = a.id) AS resold"
        " FROM accounts a ORDER BY a.id")


async def flushed(conn: Conn, record_ids: list[str]) -> set[str]:
    """Which of these usage record ids are already in PostgreSQL."""
    if not record_ids:
        return set()
    rows = await conn.fetch("SELECT record_id FROM usage WHERE record_id = ANY($1::text[])", record_ids)
    return {r["record_id"] for r in rows}
