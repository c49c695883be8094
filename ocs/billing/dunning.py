"""Dunning (docs/billing.md, "Dunning"): block postpaid accounts whose invoices are unpaid too long.

``billing.block_overdue_days`` = N (0 = off): a postpaid account with an open invoice whose due
date is N or more days before today is blocked by the daily run, and its sessions are cut
(:func:`ocs.billing.account_status.block`).  The block is recorded in ``dunning_blocks``: a
payment that leaves the account with no such invoice unblocks it, and only then - an account an
operator blocked for another reason stays blocked whatever is paid.  An operator who unblocks a
dunning-blocked account by hand is overruled by the next daily run while the invoice is still
overdue (docs/billing.md says so).
"""

from __future__ import annotations

from datetime import date, timedelta

from redis.asyncio import Redis

from ocs.billing import account_status
from ocs.store.keys import Keys
from ocs.store.provision import Conn

# Active postpaid accounts with an open invoice due on or before $1 (= today - N days), oldest first.
_OVERDUE = """
SELECT DISTINCT ON (a.id) a.id, i.id AS invoice_id
FROM accounts a JOIN invoices i ON i.account_id = a.id
WHERE a.type = 'postpaid' AND a.status = 'active' AND i.status = 'open' AND i.due_date <= $1
ORDER BY a.id, i.due_date, i.id
"""


async def block_overdue(conn: Conn, redis: Redis, keys: Keys, today: date, *, days: int) -> list[str]:
    """Block the postpaid accounts with an invoice unpaid ``days`` past its due date; returns their ids.

    ``days`` is ``billing.block_overdue_days``; 0 blocks nobody.  Idempotent: a blocked account is
    not looked at again.
    """
    if days <= 0:
        return []
    blocked = []
    for r in await conn.fetch(_OVERDUE, today - timedelta(days=days)):
        await conn.execute(
            "INSERT INTO dunning_blocks (account_id, invoice_id, blocked_on) VALUES ($1, $2, $3)"
            " ON CONFLICT (account_id) DO UPDATE SET invoice_id = EXCLUDED.invoice_id,"
            " blocked_on = EXCLUDED.blocked_on",
            r["id"], r["invoice_id"], today)
        await account_status.block(conn, redis, keys, r["id"])
        blocked.append(r["id"])
    return blocked


async def unblock_paid(conn: Conn, redis: Redis, keys: Keys, accounts: list[str], today: date, *,
                       days: int) -> list[str]:
    """Unblock the dunning-blocked ``accounts`` that no longer have an invoice ``days`` overdue; returns them."""
    limit = today - timedelta(days=max(days, 0))
    rows = await conn.fetch(
        "SELECT d.account_id FROM dunning_blocks d JOIN accounts a ON a.id = d.account_id"
        " WHERE d.account_id = ANY($1::text[]) AND a.status = 'blocked' AND NOT EXISTS"
        " (SELECT 1 FROM invoices i WHERE i.account_id = d.account_id AND i.status = 'open' AND i.due_date <= $2)"
        " ORDER BY 1", accounts, limit)
    done = []
    for r in rows:
        await account_status.unblock(conn, redis, keys, r["account_id"])
        await conn.execute("DELETE FROM dunning_blocks WHERE account_id = $1", r["account_id"])
        done.append(r["account_id"])
    return done
