"""Crediting an account after its ledger row is written ahead (docs/architecture.md, "Top-ups").

Shared by every way money comes in (``ocsctl topup``/``adjust``, a redeemed voucher, later the
API): once the ledger row is committed in PostgreSQL, it is applied once to the Redis balance,
and sessions whose last grant the balance had cut short are asked to re-authorize
(RAR / CoA-Request, docs/control.md) so they get the larger grant now, not at their next report.
"""

from __future__ import annotations

from redis.asyncio import Redis

from ocs.control.dispatch import Dispatched, Dispatcher
from ocs.store import provision
from ocs.store.control_bus import ControlBus
from ocs.store.keys import Keys
from ocs.store.provision import Conn


async def apply_credit(conn: Conn, redis: Redis, keys: Keys, account_id: str, amount: int) -> Dispatched | None:
    """Apply the account's written-ahead ledger rows; re-authorize its cut-short sessions if ``amount`` > 0.

    Returns what the network was asked (None when nothing was: a debit or zero changes no grant
    for the better).  The account hash must exist in Redis (``provision.sync_account``).
    """
    await provision.apply_pending(conn, redis, keys, account_id)
    if amount <= 0:
        return None
    dispatcher = Dispatcher(ControlBus(redis, keys))
    done = await dispatcher.reauth_account(account_id)
    # a reseller's money also bounds its subscribers' grants (docs/wholesale.md "Resellers")
    for sub in await conn.fetch("SELECT a.id FROM accounts a JOIN resellers r ON r.id = a.reseller"
                                " WHERE a.reseller = $1 ORDER BY a.id", account_id):
        more = await dispatcher.reauth_account(sub["id"])
        done.sent += more.sent
        done.unroutable.extend(more.unroutable)
    return done
