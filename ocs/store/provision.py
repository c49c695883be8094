"""The Redis side of accounts, kept in step with PostgreSQL (the source of truth).

- :func:`sync_account` writes the account hash's descriptive fields and its
  alias keys from the PostgreSQL row; it never touches ``bal``/``rsv`` (money
  moves only through scripts).
- Money: a ledger row is committed in PostgreSQL first, then ``topup.lua``
  applies it to ``bal`` at most once (keyed by ledger id), then ``applied_at``
  is set.  :func:`apply_pending` re-applies rows a crash left unapplied; it is
  run by every ``ocsctl`` money verb and periodically by ``ocsd``.
"""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from redis.asyncio import Redis

from ocs.store.keys import Keys
from ocs.store.scripts import Script

Conn = asyncpg.Connection | PoolConnectionProxy
TOPUP = Script("topup")


async def sync_account(redis: Redis, keys: Keys, row: asyncpg.Record, aliases: list[str]) -> None:
    key = keys.account(row["id"])
    mapping = {"type": row["type"], "st": row["status"], "cl": str(row["credit_limit"]),
               "cur": row["currency"].strip(), "tariff": row["tariff"]}
    pipe = redis.pipeline(transaction=False)
    pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]  # redis-py Mapping key invariance
    pipe.hsetnx(key, "bal", 0)
    pipe.hsetnx(key, "rsv", 0)
    if row["password"]:
        pipe.hset(key, "pw", row["password"])
    else:
        pipe.hdel(key, "pw")
    for alias in aliases:
        pipe.set(keys.alias(alias), row["id"])
    await pipe.execute()


async def apply_entry(redis: Redis, keys: Keys, account_id: str, ledger_id: int, amount: int) -> bool:
    """Apply one ledger row; False when it had been applied already."""
    code, _bal = await TOPUP(redis, [keys.account(account_id), keys.applied(account_id)], [ledger_id, amount])
    if int(code) < 0:
        raise LookupError(f"account {account_id} missing in Redis")
    return int(code) == 1


async def apply_pending(conn: Conn, redis: Redis, keys: Keys, account_id: str | None = None) -> int:
    """Apply every ledger row not yet marked applied (optionally of one account); returns the count."""
    return len(await apply_pending_rows(conn, redis, keys, account_id))


async def apply_pending_rows(conn: Conn, redis: Redis, keys: Keys,
                             account_id: str | None = None) -> list[asyncpg.Record]:
    """:func:`apply_pending`, returning the rows applied (id, account_id, amount)."""
    rows = await conn.fetch(
        "SELECT id, account_id, amount FROM ledger WHERE applied_at IS NULL"
        " AND ($1::text IS NULL OR account_id = $1) ORDER BY id", account_id)
    for r in rows:
        await apply_entry(redis, keys, r["account_id"], r["id"], r["amount"])
        await conn.execute("UPDATE ledger SET applied_at = now() WHERE id = $1", r["id"])
    return rows
