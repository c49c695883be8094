"""Blocking and unblocking an account: one implementation for ``ocsctl account block|unblock``,
dunning (:mod:`ocs.billing.dunning`) and the API.

PostgreSQL first (the source of truth), then the account's Redis hash, which the charging scripts
read on every grant; a block then asks the network to end the account's open sessions (Diameter
ASR / RADIUS Disconnect-Request through the node that can reach them, docs/control.md), because a
block that left calls running until their next report would not be one.
"""

from __future__ import annotations

from redis.asyncio import Redis

from ocs.billing.errors import Refused
from ocs.control.dispatch import Dispatched, Dispatcher
from ocs.store import accounts_db, provision
from ocs.store.control_bus import ControlBus
from ocs.store.keys import Keys
from ocs.store.provision import Conn


async def set_status(conn: Conn, redis: Redis, keys: Keys, account_id: str, status: str) -> None:
    """Write the status in PostgreSQL, copy the account to Redis, apply its pending ledger rows."""
    if not await accounts_db.exists(conn, account_id):
        raise Refused(f"unknown account {account_id!r}")
    await accounts_db.set_status(conn, account_id, status)
    row = await accounts_db.get(conn, account_id)
    assert row is not None
    await provision.sync_account(redis, keys, row, await accounts_db.aliases(conn, account_id))
    await provision.apply_pending(conn, redis, keys, account_id)


async def block(conn: Conn, redis: Redis, keys: Keys, account_id: str) -> Dispatched:
    """Block, then end the account's open sessions in the network; returns what was asked."""
    await set_status(conn, redis, keys, account_id, "blocked")
    return await Dispatcher(ControlBus(redis, keys)).abort_account(account_id)


async def unblock(conn: Conn, redis: Redis, keys: Keys, account_id: str) -> None:
    await set_status(conn, redis, keys, account_id, "active")
