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
    return await Dispatcher(ControlBus(redis, keys)).reauth_account(account_id)
