"""Top-ups and adjustments by reference: the one implementation behind ``ocsctl topup|adjust`` and the API.

Write-ahead in PostgreSQL, apply once in Redis, mark applied (docs/architecture.md, "Top-ups").  A
reference is the idempotency key: the same reference with the same account and amount a second
time changes nothing and says so (``applied`` False); with a different account or amount it is
refused, because the caller has mixed up two operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from ocs import money
from ocs.billing import credit, customers
from ocs.billing.errors import Invalid, Refused
from ocs.control.dispatch import Dispatched
from ocs.store import accounts_db
from ocs.store.keys import Keys
from ocs.store.provision import Conn

KINDS = ("topup", "adjustment")


@dataclass(frozen=True)
class Posted:
    """What :func:`post` did: ``applied`` False for a reference seen before; ``control``: re-authorizations asked."""

    reference: str
    applied: bool
    control: Dispatched | None = None


def parse_amount(raw: str, kind: str) -> int:
    """A top-up is positive; an adjustment may be negative (a debit)."""
    try:
        amount = money.parse(raw, allow_negative=kind == "adjustment")
    except money.MoneyError as exc:
        raise Invalid("amount", str(exc)) from None
    if kind == "topup" and amount <= 0:
        raise Invalid("amount", "a top-up must be positive")
    return amount


async def post(conn: Conn, redis: Redis, keys: Keys, account_id: str, kind: str, amount: int, reference: str,
               reason: str = "") -> Posted:
    """Credit (or debit) ``account_id`` once per ``reference``; raises :class:`Refused` for a reused reference."""
    if kind == "adjustment" and not reason.strip():
        raise Invalid("reason", "must not be empty")
    if not reference.strip():
        raise Invalid("reference", "must not be empty")
    await customers.sync(conn, redis, keys, account_id)  # also re-applies rows an earlier crash left pending
    prior = await accounts_db.ledger_by_reference(conn, reference)
    if prior is not None:
        if prior["account_id"] != account_id or prior["amount"] != amount:
            raise Refused(f"reference {reference!r} was already used for a different operation")
        return Posted(reference, applied=False)
    try:
        await accounts_db.insert_ledger(conn, account_id, kind, amount, reference, reason)
    except asyncpg.UniqueViolationError:
        raise Refused(f"reference {reference!r} is being applied concurrently; retry") from None
    done = await credit.apply_credit(conn, redis, keys, account_id, amount)
    return Posted(reference, applied=True, control=done)
