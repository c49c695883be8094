"""Accounts, aliases and ledger rows in PostgreSQL (the source of truth ``ocsctl`` provisions).

The queries the provisioning verbs need, in one place; the Redis side of an
account is :mod:`ocs.store.provision`.  Money is integer micro-units.
"""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn = asyncpg.Connection | PoolConnectionProxy


async def get(conn: Conn, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM accounts WHERE id = $1", account_id)


async def exists(conn: Conn, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id))


async def aliases(conn: Conn, account_id: str) -> list[str]:
    rows = await conn.fetch("SELECT value FROM aliases WHERE account_id = $1 ORDER BY value", account_id)
    return [r["value"] for r in rows]


async def alias_owner(conn: Conn, value: str) -> str | None:
    owner = await conn.fetchval("SELECT account_id FROM aliases WHERE value = $1", value)
    return str(owner) if owner is not None else None


async def add_alias(conn: Conn, account_id: str, value: str, kind: str) -> None:
    await conn.execute("INSERT INTO aliases(value, account_id, kind) VALUES ($1, $2, $3)", value, account_id, kind)


async def tariff_currency(conn: Conn, tariff: str) -> str | None:
    cur = await conn.fetchval("SELECT currency FROM tariffs WHERE name = $1", tariff)
    return str(cur).strip() if cur is not None else None


async def insert(conn: Conn, account_id: str, kind: str, currency: str, tariff: str, credit_limit: int,
                 password: str | None) -> None:
    await conn.execute(
        "INSERT INTO accounts(id, type, currency, tariff, credit_limit, password) VALUES ($1, $2, $3, $4, $5, $6)",
        account_id, kind, currency, tariff, credit_limit, password)


async def set_status(conn: Conn, account_id: str, status: str) -> None:
    await conn.execute("UPDATE accounts SET status = $2, updated_at = now() WHERE id = $1", account_id, status)


async def ledger_by_reference(conn: Conn, reference: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT account_id, amount FROM ledger WHERE reference = $1", reference)


async def insert_ledger(conn: Conn, account_id: str, kind: str, amount: int, reference: str, reason: str) -> None:
    """Raises :class:`asyncpg.UniqueViolationError` when the reference is taken meanwhile."""
    await conn.execute("INSERT INTO ledger(account_id, kind, amount, reference, reason) VALUES ($1, $2, $3, $4, $5)",
                       account_id, kind, amount, reference, reason)


async def ledger_ids(conn: Conn, account_id: str) -> list[int]:
    return [int(r["id"]) for r in await conn.fetch("SELECT id FROM ledger WHERE account_id = $1", account_id)]


async def mark_ledger_applied(conn: Conn, account_id: str) -> None:
    await conn.execute("UPDATE ledger SET applied_at = now() WHERE account_id = $1 AND applied_at IS NULL",
                       account_id)
