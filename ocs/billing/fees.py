"""The fee run: post every fee due, exactly once, as a ledger entry (docs/billing.md, "Products and fees").

How a fee is posted once whatever the number of runs and nodes:

1. The subscription's row is locked (``FOR UPDATE``) for the transaction that posts its fees, so
   two runs (two ``ocsctl fees run``, two daemons) and ``unsubscribe`` take turns on it: the
   second run reads what the first posted and has nothing left to do.
2. Each fee is a row of ``fees`` under the key (subscription, period, kind) inserted ``ON CONFLICT
   DO NOTHING``, and its ledger entry (kind ``fee``, negative amount, reference
   ``fee:<subscription>:<period>[:correction]``) is inserted in the same transaction: no fee
   without its ledger entry, none twice even without step 1.
3. After COMMIT the ledger entries are applied to the Redis balance the way top-ups are
   (:func:`ocs.store.provision.apply_pending`: ``topup.lua``, keyed by ledger id, at most once).
   A crash or a Redis outage between 2 and 3 leaves them unapplied; the next money verb on the
   account, the next fee run and ocsd's ledger sweep apply them.

Why a fee on a prepaid account cannot conflict with a hold: ``topup.lua`` runs atomically on the
account's Redis slot, like every charging script, and only lowers ``bal``; it never touches
``rsv`` or a session.  A hold stays what it was; the next reservation sees the lower balance
(``available = balance - reserved``, never below 0), and the sessions' debits settle what they
use, past the balance if need be (the shortfall is visible, as for usage past a hold).  A fee
larger than a prepaid balance makes the balance negative: the account gets no new grant until
it is topped up.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from ocs import money
from ocs.billing import proration
from ocs.billing.products import local_day
from ocs.billing.proration import Fee, Terms
from ocs.store import provision
from ocs.store.keys import Keys
from ocs.store.provision import Conn

CHARGE, CORRECTION = "charge", "correction"


@dataclass(frozen=True)
class Posted:
    """One fee posted by this run (``amount``: what the customer owes; the ledger entry is its negative)."""

    account: str
    product: str
    subscription: int
    period: date
    kind: str
    due: date
    days: int
    period_days: int
    quantity: int
    amount: int
    currency: str
    ledger_id: int

    def document(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc.update(period=self.period.isoformat(), due=self.due.isoformat(), amount=money.format(self.amount))
        return doc


def _until(at: date | datetime | None, tz: str) -> date:
    """The last due day to post for an account in ``tz``: a date as given, else the local day of the instant."""
    if isinstance(at, datetime):
        return local_day(tz, at)
    return at if at is not None else local_day(tz)


def _reason(sub: asyncpg.Record, fee: Fee, kind: str) -> str:
    what = (f"{fee.period:%Y-%m} {fee.days}/{fee.period_days} days" if sub["period"] == proration.MONTHLY
            else f"{fee.period.isoformat()} once")
    return f"{sub['product']} {what} x{sub['quantity']}" + (" (correction)" * (kind == CORRECTION))


async def _post(conn: Conn, sub: asyncpg.Record, currency: str, fee: Fee, kind: str) -> Posted | None:
    """Write one fee and its ledger entry (inside the caller's transaction); None if it was posted already."""
    ledger_id = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('ledger', 'id'))")
    inserted = await conn.fetchval(
        "INSERT INTO fees(subscription_id, period, kind, account_id, product, quantity, days, period_days, amount,"
        " currency, due_date, ledger_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        sub["id"], fee.period, kind, sub["account_id"], sub["product"], sub["quantity"], fee.days, fee.period_days,
        fee.amount, currency, fee.due, ledger_id)
    if not inserted:
        return None
    reference = f"fee:{sub['id']}:{fee.period.isoformat()}" + (f":{kind}" * (kind == CORRECTION))
    await conn.execute("INSERT INTO ledger(id, account_id, kind, amount, reference, reason)"
                       " VALUES ($1, $2, 'fee', $3, $4, $5)",
                       ledger_id, sub["account_id"], -fee.amount, reference, _reason(sub, fee, kind))
    return Posted(sub["account_id"], sub["product"], int(sub["id"]), fee.period, kind, fee.due, fee.days,
                  fee.period_days, int(sub["quantity"]), fee.amount, currency, int(ledger_id))


def _terms(sub: asyncpg.Record) -> Terms:
    return Terms(sub["period"], int(sub["amount"]), int(sub["quantity"]), sub["start_date"], sub["end_date"])


async def _corrections(conn: Conn, sub: asyncpg.Record, currency: str) -> list[Posted]:
    """Give back what charges posted before the subscription ended took for days it was no longer active."""
    rows = await conn.fetch("SELECT period, kind, amount FROM fees WHERE subscription_id = $1", sub["id"])
    corrected = {r["period"] for r in rows if r["kind"] == CORRECTION}
    out = []
    for r in rows:
        if r["kind"] != CHARGE or r["period"] in corrected:
            continue
        expected = proration.fee_for(_terms(sub), r["period"])
        if expected.amount != r["amount"]:
            fee = dataclasses.replace(expected, amount=expected.amount - int(r["amount"]))
            posted = await _post(conn, sub, currency, fee, CORRECTION)
            out += [posted] if posted else []
    return out


async def post_subscription(conn: Conn, sub_id: int, currency: str, until: date) -> list[Posted]:
    """Post what one subscription owes up to ``until``, in one transaction under its row lock."""
    async with conn.transaction():
        sub = await conn.fetchrow("SELECT * FROM subscriptions WHERE id = $1 AND NOT final FOR UPDATE", sub_id)
        if sub is None:
            return []
        terms = _terms(sub)
        posted = [p for fee in proration.due_fees(terms, until)
                  if (p := await _post(conn, sub, currency, fee, CHARGE)) is not None]
        if terms.end is not None:
            posted += await _corrections(conn, sub, currency)
        if proration.settled(terms, until):
            await conn.execute("UPDATE subscriptions SET final = true WHERE id = $1", sub_id)
    return posted


@dataclass(frozen=True)
class FeeRun:
    posted: list[Posted]
    unapplied: list[str]  # accounts whose Redis hash is missing: their fees wait in the ledger (reconcile shows them)


async def _apply(conn: Conn, redis: Redis, keys: Keys, account: str) -> bool:
    try:
        await provision.apply_pending(conn, redis, keys, account)
    except LookupError:  # not in Redis (never synced, or Redis lost it: rebuild-balances)
        return False
    return True


async def run(conn: Conn, redis: Redis, keys: Keys, at: date | datetime | None = None,
              account: str | None = None) -> FeeRun:
    """Post every fee due up to ``at`` (a date, or an instant: the local day of each account), apply them.

    Without ``at``: now.  Safe to run any number of times, also concurrently (module docstring).
    """
    subs = await conn.fetch(
        "SELECT s.id, s.account_id, a.currency, t.timezone FROM subscriptions s"
        " JOIN accounts a ON a.id = s.account_id JOIN tariffs t ON t.name = a.tariff"
        " WHERE NOT s.final AND ($1::text IS NULL OR s.account_id = $1) ORDER BY s.account_id, s.id", account)
    posted: list[Posted] = []
    unapplied: list[str] = []
    for i, s in enumerate(subs):
        posted += await post_subscription(conn, s["id"], s["currency"].strip(), _until(at, s["timezone"]))
        last = i + 1 == len(subs) or subs[i + 1]["account_id"] != s["account_id"]  # the account's last one
        if last and not await _apply(conn, redis, keys, s["account_id"]):
            unapplied.append(s["account_id"])
    return FeeRun(posted, unapplied)


async def listing(conn: Conn, account: str | None = None) -> list[asyncpg.Record]:
    """Fees posted, oldest first (optionally of one account): what invoices show as fee lines."""
    return await conn.fetch("SELECT * FROM fees WHERE ($1::text IS NULL OR account_id = $1)"
                            " ORDER BY account_id, period, product, kind", account)
