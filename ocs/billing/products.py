"""Products and subscriptions (docs/billing.md, "Products and fees"): PostgreSQL only.

A subscription copies the product's amount and period when it is made, so what an account owes
never changes behind its back.  Dates are calendar days in the timezone of the account's tariff
(the same clock as rating); a subscription is active on ``[start_date, end_date)``.  One account
holds at most one subscription to a product at any day (checked under the account's row lock, so
two ``subscribe`` at once cannot both pass); ``--quantity`` says how many.  A one-time product's
subscription is active on its start day only, so it may be bought again on another day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from ocs import money
from ocs.billing.errors import Invalid, Refused
from ocs.billing.proration import MONTHLY, ONCE, PERIODS
from ocs.store.provision import Conn

PRODUCT_NAME = re.compile(r"[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,62}[^\s\x00-\x1f\x7f])?")
MAX_QUANTITY = 1_000_000


@dataclass(frozen=True)
class Product:
    name: str
    amount: int  # micro-units per month (monthly) or once
    currency: str
    period: str
    description: str = ""
    included_seconds: int = 0  # bundles: voice seconds included per month (x quantity); 0 = none
    included_prefix: str = ""  # only for numbers starting with these digits ('' = any)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "amount": money.format(self.amount), "currency": self.currency,
                               "period": self.period, "description": self.description}
        if self.included_seconds:  # bundles: only products that include seconds say so
            doc["includes"] = {"seconds": self.included_seconds, "prefix": self.included_prefix}
        return doc

    @classmethod
    def of(cls, row: asyncpg.Record) -> Product:
        return cls(row["name"], int(row["amount"]), row["currency"].strip(), row["period"], row["description"],
                   int(row["included_seconds"]), row["included_prefix"])


@dataclass(frozen=True)
class Subscription:
    id: int
    account: str
    product: str
    quantity: int
    amount: int
    period: str
    start: date
    end: date | None  # first day no longer charged

    @classmethod
    def of(cls, row: asyncpg.Record) -> Subscription:
        return cls(int(row["id"]), row["account_id"], row["product"], int(row["quantity"]), int(row["amount"]),
                   row["period"], row["start_date"], row["end_date"])

    def document(self) -> dict[str, Any]:
        return {"id": self.id, "account": self.account, "product": self.product, "quantity": self.quantity,
                "amount": money.format(self.amount), "period": self.period, "from": self.start.isoformat(),
                "until": self.end.isoformat() if self.end else None,
                "last_day": (self.end - timedelta(days=1)).isoformat() if self.end and self.end > self.start
                else None}


def parse_amount(raw: str) -> int:
    try:
        return money.parse(raw, allow_negative=False)
    except money.MoneyError as exc:
        raise Invalid("amount", str(exc)) from None


def local_day(tz: str, at: datetime | None = None) -> date:
    """The calendar day in ``tz`` at ``at`` (default now): the day fees and subscriptions count in."""
    return (at or datetime.now(UTC)).astimezone(ZoneInfo(tz)).date()


async def create(conn: Conn, product: Product) -> Product:
    if not PRODUCT_NAME.fullmatch(product.name):
        raise Invalid("name", f"{product.name!r}: 1-64 printable characters, no blank at either end")
    currency = product.currency.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise Invalid("currency", f"not an ISO 4217 code: {product.currency!r}")
    if product.period not in PERIODS:
        raise Invalid("period", f"one of {', '.join(PERIODS)}: {product.period!r}")
    if product.amount < 0:
        raise Invalid("amount", "must not be negative")
    if product.included_seconds and product.period != MONTHLY:
        raise Invalid("includes", "included seconds are per month: needs --period monthly")
    if product.included_seconds < 0 or not (product.included_prefix == "" or product.included_prefix.isdigit()):
        raise Invalid("includes", "seconds must not be negative, the prefix digits only")
    row = await conn.fetchrow(
        "INSERT INTO products(name, amount, currency, period, description, included_seconds, included_prefix)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING RETURNING name", product.name,
        product.amount, currency, product.period, product.description.strip(), product.included_seconds,
        product.included_prefix)
    if row is None:
        raise Refused(f"product {product.name!r} already exists")
    return await get(conn, product.name)


async def get(conn: Conn, name: str) -> Product:
    row = await conn.fetchrow("SELECT * FROM products WHERE name = $1", name)
    if row is None:
        raise Refused(f"unknown product {name!r}")
    return Product.of(row)


async def listing(conn: Conn) -> list[Product]:
    return [Product.of(r) for r in await conn.fetch("SELECT * FROM products ORDER BY name")]


async def _locked_account(conn: Conn, account_id: str) -> asyncpg.Record:
    """The account's id, currency and tariff timezone, its row locked until the transaction ends."""
    row = await conn.fetchrow(
        "SELECT a.id, a.currency, t.timezone FROM accounts a JOIN tariffs t ON t.name = a.tariff"
        " WHERE a.id = $1 FOR UPDATE OF a", account_id)
    if row is None:
        raise Refused(f"unknown account {account_id!r}")
    return row


async def subscribe(conn: Conn, account_id: str, product_name: str, start: date | None = None,
                    quantity: int = 1) -> Subscription:
    """Subscribe from ``start`` (default: today in the account's timezone); fees follow from the fee run."""
    if not 1 <= quantity <= MAX_QUANTITY:
        raise Invalid("quantity", f"a whole number 1-{MAX_QUANTITY}: {quantity}")
    async with conn.transaction():
        acct = await _locked_account(conn, account_id)
        product = await get(conn, product_name)
        if product.currency != acct["currency"].strip():
            raise Refused(f"product {product.name} is in {product.currency}, account {account_id} in"
                          f" {acct['currency'].strip()} (one currency per account)")
        start = start or local_day(acct["timezone"])
        end = start + timedelta(days=1) if product.period == ONCE else None
        clash = await conn.fetchval(  # [start_date, end_date) overlaps [start, end)
            "SELECT start_date FROM subscriptions WHERE account_id = $1 AND product = $2"
            " AND (end_date IS NULL OR end_date > $3) AND ($4::date IS NULL OR start_date < $4)"
            " ORDER BY start_date LIMIT 1", account_id, product.name, start, end)
        if clash is not None:
            raise Refused(f"account {account_id} already subscribes to {product.name} (from {clash.isoformat()})")
        row = await conn.fetchrow(
            "INSERT INTO subscriptions(account_id, product, quantity, amount, period, start_date, end_date)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *", account_id, product.name, quantity, product.amount,
            product.period, start, end)
    assert row is not None  # RETURNING of an INSERT
    return Subscription.of(row)


async def unsubscribe(conn: Conn, account_id: str, product_name: str, at: date | None = None) -> Subscription:
    """End the subscription at the start of ``at`` (default: tomorrow, so today is still charged).

    A fee already posted for days from ``at`` on is given back by the next fee run (a correction).
    A one-time product can only be cancelled up to its start day.
    """
    async with conn.transaction():
        acct = await _locked_account(conn, account_id)
        at = at or local_day(acct["timezone"]) + timedelta(days=1)
        row = await conn.fetchrow(
            "SELECT * FROM subscriptions WHERE account_id = $1 AND product = $2 AND (end_date IS NULL OR end_date > $3)"
            " ORDER BY start_date DESC LIMIT 1 FOR UPDATE", account_id, product_name, at)
        if row is None:
            raise Refused(f"account {account_id} has no subscription to {product_name!r} active on {at.isoformat()}")
        if row["period"] != ONCE and row["end_date"] is not None:
            raise Refused(f"the subscription of {account_id} to {product_name} already ends on"
                          f" {row['end_date'].isoformat()}")
        end = max(at, row["start_date"])
        row = await conn.fetchrow("UPDATE subscriptions SET end_date = $2, final = false, ended_at = now()"
                                  " WHERE id = $1 RETURNING *", row["id"], end)
    assert row is not None  # the row is locked: it is there
    return Subscription.of(row)


async def subscriptions(conn: Conn, account_id: str | None = None) -> list[Subscription]:
    rows = await conn.fetch("SELECT * FROM subscriptions WHERE ($1::text IS NULL OR account_id = $1)"
                            " ORDER BY account_id, start_date, id", account_id)
    return [Subscription.of(r) for r in rows]
