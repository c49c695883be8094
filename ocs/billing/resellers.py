"""Resellers (docs/wholesale.md, "Resellers"): one implementation behind ``ocsctl reseller ...``.

A reseller is an account of its own: its row in ``accounts`` (currency, its wholesale tariff as
``tariff``, status, credit limit) and its Redis hash, topped up and adjusted through the ledger
like any account; the ``resellers`` table (011_resellers.sql) says which accounts are resellers.
Its subscribers name it in ``accounts.reseller`` (set once, at create) and live on its Redis
shard (:mod:`ocs.store.placement`), so each charge debits both in one script call.
"""

from __future__ import annotations

import re
from typing import Any

from redis.asyncio import Redis

from ocs import money
from ocs.billing import account_status, customers
from ocs.billing.errors import Invalid, Refused
from ocs.control.dispatch import Dispatched, Dispatcher
from ocs.store import accounts_db
from ocs.store.control_bus import ControlBus
from ocs.store.keys import Keys
from ocs.store.provision import Conn


async def check(conn: Conn, reseller_id: str) -> None:
    """A reseller a new subscriber may name: it must exist as a reseller."""
    if not await conn.fetchval("SELECT 1 FROM resellers WHERE id = $1", reseller_id):
        raise Invalid("reseller", f"unknown reseller {reseller_id!r}")


async def create_subscriber(conn: Conn, new: customers.NewAccount, reseller_id: str) -> None:
    """Create a reseller's subscriber (PostgreSQL; then :func:`customers.sync` places and writes it).

    Its reseller is set in the same transaction and never changed: the subscriber's Redis keys
    live on the reseller's shard (:mod:`ocs.store.placement`).
    """
    await check(conn, reseller_id)
    async with conn.transaction():
        await customers.create(conn, new)
        await conn.execute("UPDATE accounts SET reseller = $2 WHERE id = $1", new.id, reseller_id)


async def is_reseller(conn: Conn, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM resellers WHERE id = $1", account_id))


async def create(conn: Conn, redis: Redis, keys: Keys, reseller_id: str, currency: str, tariff: str,
                 credit_limit: int) -> None:
    """Create the reseller's account (postpaid when it has a credit limit) and mark it a reseller.

    A wholesale tariff in another currency is allowed: the reseller's leg is converted at the FX
    rate in force when each call starts, like an account's (docs/wholesale.md).
    """
    cur = currency.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", cur):
        raise Invalid("currency", f"not an ISO 4217 code: {currency!r}")
    if await accounts_db.tariff_currency(conn, tariff) is None:
        raise Invalid("tariff", f"unknown tariff {tariff!r}")
    new = customers.NewAccount(reseller_id, cur, tariff, postpaid=credit_limit > 0,
                               profile=customers.Profile(credit_limit=credit_limit or None))
    async with conn.transaction():
        await customers.create(conn, new)
        await conn.execute("INSERT INTO resellers(id) VALUES ($1)", reseller_id)
    await customers.sync(conn, redis, keys, reseller_id)


async def subscribers(conn: Conn, reseller_id: str) -> list[str]:
    return [r["id"] for r in await conn.fetch("SELECT id FROM accounts WHERE reseller = $1 ORDER BY id", reseller_id)]


async def listing(conn: Conn, redis: Redis, keys: Keys) -> list[dict[str, Any]]:
    """Every reseller with its money (Redis) and how many subscribers it has, by id."""
    rows = await conn.fetch(
        "SELECT a.*, (SELECT count(*) FROM accounts s WHERE s.reseller = a.id) AS subscribers"
        " FROM resellers r JOIN accounts a ON a.id = r.id ORDER BY a.id")
    out = []
    for r in rows:
        bal, rsv = (int(v or 0) for v in await redis.hmget(keys.account(r["id"]), "bal", "rsv"))
        cl = int(r["credit_limit"])
        out.append({"id": r["id"], "currency": r["currency"].strip(), "tariff": r["tariff"], "status": r["status"],
                    "balance": money.format(bal), "reserved": money.format(rsv), "credit_limit": money.format(cl),
                    "available": money.format(max(0, bal + cl - rsv)), "subscribers": int(r["subscribers"])})
    return out


async def document(conn: Conn, redis: Redis, keys: Keys, reseller_id: str) -> dict[str, Any]:
    """``reseller show``: the reseller's account document and its subscribers."""
    if not await is_reseller(conn, reseller_id):
        raise Refused(f"unknown reseller {reseller_id!r}")
    doc = await customers.document(conn, redis, keys, reseller_id)
    subs = await subscribers(conn, reseller_id)
    return {**doc, "subscribers": len(subs), "subscriber_ids": subs}


async def block(conn: Conn, redis: Redis, keys: Keys, reseller_id: str) -> Dispatched:
    """Block the reseller: every subscriber is refused from now on (the scripts read the reseller's
    status on every grant), and the network is asked to end the open sessions of the reseller and
    of its subscribers, as blocking an account does for its own."""
    if not await is_reseller(conn, reseller_id):
        raise Refused(f"unknown reseller {reseller_id!r}")
    done = await account_status.block(conn, redis, keys, reseller_id)
    dispatcher = Dispatcher(ControlBus(redis, keys))
    for sub in await subscribers(conn, reseller_id):
        more = await dispatcher.abort_account(sub)
        done.sent += more.sent
        done.unroutable.extend(more.unroutable)
    return done


async def unblock(conn: Conn, redis: Redis, keys: Keys, reseller_id: str) -> None:
    if not await is_reseller(conn, reseller_id):
        raise Refused(f"unknown reseller {reseller_id!r}")
    await account_status.unblock(conn, redis, keys, reseller_id)
