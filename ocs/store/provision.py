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
from redis.asyncio.client import Pipeline

from ocs.store import placement
from ocs.store.keys import Keys
from ocs.store.scripts import Script

Conn = asyncpg.Connection | PoolConnectionProxy
TOPUP = Script("topup")


async def sync_account(redis: Redis, keys: Keys, row: asyncpg.Record, aliases: list[str]) -> None:
    if row.get("reseller") and row["id"] not in keys.placement:  # placed since this process loaded?
        await placement.refresh(redis.execute_command, keys, row["id"])
    pipe = redis.pipeline(transaction=False)
    stage_account(pipe, keys, row, aliases)
    await pipe.execute()


def stage_account(pipe: Pipeline, keys: Keys, row: asyncpg.Record, aliases: list[str]) -> None:
    """Queue :func:`sync_account`'s writes on ``pipe``, so a batch (a lot of calling cards) is one round trip."""
    key = keys.account(row["id"])
    mapping = {"type": row["type"], "st": row["status"], "cl": str(row["credit_limit"]),
               "cur": row["currency"].strip(), "tariff": row["tariff"]}
    pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]  # redis-py Mapping key invariance
    pipe.hsetnx(key, "bal", 0)
    pipe.hsetnx(key, "rsv", 0)
    if row.get("reseller") and row["id"] in keys.placement:  # a reseller's subscriber (ocs.store.placement)
        pipe.hset(key, "rs", row["reseller"])
    if row["password"]:
        pipe.hset(key, "pw", row["password"])
    else:
        pipe.hdel(key, "pw")
    for alias in aliases:
        pipe.set(keys.alias(alias), row["id"])


async def apply_entry(redis: Redis, keys: Keys, account_id: str, ledger_id: int, amount: int) -> bool:
    """Apply one ledger row; False when it had been applied already."""
    code, _bal = await TOPUP(redis, [keys.account(account_id), keys.applied(account_id)], [ledger_id, amount])
    if int(code) < 0 and await placement.refresh(redis.execute_command, keys, account_id):
        return await apply_entry(redis, keys, account_id, ledger_id, amount)  # a reseller's subscriber placed since
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


async def apply_entries(conn: Conn, redis: Redis, keys: Keys, rows: list[asyncpg.Record]) -> None:
    """Apply many ledger rows (id, account_id, amount) in pipelined batches, then mark them applied.

    The same at-most-once step as :func:`apply_entry`, for thousands of rows written at once
    (a lot of calling cards): one round trip per 1,000 rows instead of one per row.
    """
    await redis.script_load(TOPUP.source)  # EVALSHA in a pipeline has no NOSCRIPT fallback
    for start in range(0, len(rows), 1000):
        chunk = rows[start:start + 1000]
        pipe = redis.pipeline(transaction=False)
        for r in chunk:
            acct = r["account_id"]
            pipe.evalsha(TOPUP.sha, 2, keys.account(acct), keys.applied(acct), r["id"], r["amount"])
        replies = await pipe.execute()
        missing = [r["account_id"] for r, (code, _bal) in zip(chunk, replies, strict=True) if int(code) < 0]
        if missing:
            raise LookupError(f"account {missing[0]} missing in Redis")
        await conn.execute("UPDATE ledger SET applied_at = now() WHERE id = ANY($1::bigint[]) AND applied_at IS NULL",
                           [r["id"] for r in chunk])
