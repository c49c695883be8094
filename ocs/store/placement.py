"""Where an account's keys live when that is not its crc32 shard (resellers, docs/wholesale.md).

One script must move a reseller's subscriber's money and the reseller's in one step; on Redis
Cluster that needs every key of the call in one hash slot.  So a reseller's subscriber is
*placed* on its reseller's shard: ``P placement`` (hash: account id -> shard) says so, and
:meth:`ocs.store.keys.Keys.shard_for` reads the process's copy (``Keys.placement``).

Rules that keep every process right without a read on the charging path:

- an entry is written (:func:`place`) before the account's hash exists, and never changed: a
  subscriber's reseller is fixed at ``account create``; so a process that knows nothing of an
  account either has it right (crc32) or finds nothing where it looks;
- ocsd and ocsctl load the whole hash when they connect (:func:`load`);
- a process that finds nothing where it looks (an account, a session, an expired member of
  another shard's index) asks again for that one id (:func:`refresh`): only the not-found path pays.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from redis.asyncio import Redis

from ocs.store.keys import Keys, shard_of
from ocs.store.replies import text

Call = Callable[..., Awaitable[Any]]  # one Redis command: AutoPipeline.call or Redis.execute_command
Conn = asyncpg.Connection | PoolConnectionProxy


class PlacementConflict(Exception):
    """The account is placed on another shard already (placements never change)."""


async def load(call: Call, keys: Keys) -> int:
    """Copy ``P placement`` into ``keys.placement``; returns how many accounts are placed."""
    raw = await call("HGETALL", keys.placement_key())
    pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    for k, v in pairs:
        keys.placement[text(k)] = int(text(v))
    return len(keys.placement)


async def refresh(call: Call, keys: Keys, account_id: str) -> bool:
    """Read one account's placement; True when it was unknown here and is known now (look again)."""
    if account_id in keys.placement:
        return False
    raw = text(await call("HGET", keys.placement_key(), account_id))
    if not raw:
        return False
    keys.placement[account_id] = int(raw)
    return True


async def ensure(call: Call, keys: Keys, account_id: str) -> None:
    """Know an existing account's shard for good (control, off the charging path).

    Only for an account whose hash exists (it has open sessions): placements are written before
    the hash, so no entry now means none ever, and its crc32 shard is remembered too.
    """
    if account_id not in keys.placement and not await refresh(call, keys, account_id):
        keys.placement[account_id] = shard_of(account_id, keys.shards)


async def place(call: Call, keys: Keys, account_id: str, shard: int) -> None:
    """Place ``account_id`` on ``shard`` (before its hash is written); the same placement again is a no-op."""
    await call("HSETNX", keys.placement_key(), account_id, shard)
    found = int(text(await call("HGET", keys.placement_key(), account_id)))
    if found != shard:
        raise PlacementConflict(f"account {account_id!r} is placed on shard {found} already")
    keys.placement[account_id] = shard


async def place_subscriber(conn: Conn, redis: Redis, keys: Keys, row: asyncpg.Record) -> None:
    """Place a new reseller's subscriber on its reseller's shard, before its hash is first written.

    Called by :func:`ocs.billing.customers.sync` for every account row naming a reseller, so each
    way of creating one (``account create --reseller``, ``account import``, the API) places it.
    Only a row whose ``reseller`` is a reseller (``resellers`` table) and whose hash does not exist
    yet is placed: an account already written on its crc32 shard keeps it (a placement never moves
    keys), and its charges then carry no reseller leg.
    """
    account_id, reseller = row["id"], row.get("reseller")
    if not reseller or account_id in keys.placement:
        return
    if await refresh(redis.execute_command, keys, account_id):
        return
    if not await conn.fetchval("SELECT 1 FROM resellers WHERE id = $1", reseller):
        return
    if await redis.exists(keys.account(account_id)):
        return
    await place(redis.execute_command, keys, account_id, keys.shard_for(reseller))


async def restore(conn: Conn, redis: Redis, keys: Keys) -> int:
    """Write every reseller's subscriber's placement again from PostgreSQL (``rebuild-balances``)."""
    rows = await conn.fetch("SELECT a.id, a.reseller FROM accounts a JOIN resellers r ON r.id = a.reseller")
    for r in rows:
        await place(redis.execute_command, keys, r["id"], keys.shard_for(r["reseller"]))
    return len(rows)
