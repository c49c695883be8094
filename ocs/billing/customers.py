"""Customer data and account management (docs/billing.md, "Customer data").

The one implementation behind ``ocsctl account create|set|show|list|import`` and the API: values
are validated here (an :class:`~ocs.billing.errors.Invalid` names the field), PostgreSQL is
written first, and :func:`sync` then copies what the charging scripts read (type, status,
credit limit, currency, tariff, password, aliases) to the account's Redis hash.  Why that is
enough for a new credit limit or tariff to count on every node: the scripts read ``cl`` inside
Redis on every grant, and the daemons' account view caches the tariff name for at most one
second (ocs/store/accounts_view.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any

import asyncpg
from redis.asyncio import Redis

from ocs import money
from ocs.billing import bundles
from ocs.billing.errors import Invalid, Refused
from ocs.store import accounts_db, placement, provision
from ocs.store.keys import Keys
from ocs.store.provision import Conn

ACCOUNT_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")  # printable, no blanks: it is part of Redis keys and CSV
EMAIL = re.compile(r"[^@\s,;<>]+@[^@\s,;<>.]+(?:\.[^@\s,;<>.]+)+")  # the shape of an address; delivery proves it
TAX_RATE = re.compile(r"(\d{1,3})(?:\.(\d{1,4}))?")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
STATUSES = ("active", "blocked")
DEFAULT_PAYMENT_TERMS = 14
MAX_PAYMENT_TERMS = 365
LIMITS = {"name": 200, "email": 254, "address": 1000}


@dataclass(frozen=True)
class Profile:
    """What ``account set`` may change; None = leave as it is.  Money in micro-units."""

    name: str | None = None
    email: str | None = None
    address: str | None = None
    tax_rate: Decimal | None = None  # percent
    payment_terms: int | None = None  # days
    credit_limit: int | None = None
    tariff: str | None = None
    password: str | None = None  # '' removes it

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


# Profile field -> accounts column.  The SQL below is built only from these fixed names.
COLUMNS = {"name": "name", "email": "email", "address": "address", "tax_rate": "tax_rate",
           "payment_terms": "payment_terms_days", "credit_limit": "credit_limit", "tariff": "tariff",
           "password": "password"}


def option(name: str) -> str:
    """The option / CSV column name of a profile field (``tax_rate`` -> ``tax-rate``)."""
    return name.replace("_", "-")


def _text(name: str, raw: str) -> str:
    value = raw.replace("\r\n", "\n").strip()
    if CONTROL.search(value.replace("\n", "") if name == "address" else value):
        raise Invalid(name, "control characters are not allowed" + " (new lines only in address)" * (name != "address"))
    if len(value) > LIMITS[name]:
        raise Invalid(name, f"longer than {LIMITS[name]} characters")
    if name == "email" and value and not EMAIL.fullmatch(value):
        raise Invalid("email", f"not an e-mail address: {raw!r}")
    return value


def parse_tax_rate(raw: str) -> Decimal:
    """A percentage with at most 4 decimals, 0-100 (``19``, ``7.5``); exact, never a float."""
    value = raw.strip()
    if value.startswith("-"):
        raise Invalid("tax-rate", f"must not be negative: {raw!r}")
    m = TAX_RATE.fullmatch(value)
    if m is None:
        raise Invalid("tax-rate", f"not a percentage with at most 4 decimals: {raw!r}")
    rate = Decimal(value)
    if rate > 100:
        raise Invalid("tax-rate", f"more than 100 %: {raw!r}")
    return rate.quantize(Decimal("0.0001"))


def parse_payment_terms(raw: str) -> int:
    value = raw.strip()
    if not value.isdigit() or int(value) > MAX_PAYMENT_TERMS:
        raise Invalid("payment-terms", f"not a number of days 0-{MAX_PAYMENT_TERMS}: {raw!r}")
    return int(value)


def parse_credit_limit(raw: str) -> int:
    try:
        return money.parse(raw, allow_negative=False)
    except money.MoneyError as exc:
        raise Invalid("credit-limit", str(exc)) from None


def parse_profile(values: Mapping[str, str | None]) -> Profile:
    """From option / column names (``tax-rate``: ``"19"``) to a :class:`Profile`; None or absent = unchanged."""
    out: dict[str, Any] = {}
    for name in ("name", "email", "address"):
        if values.get(name) is not None:
            out[name] = _text(name, values[name] or "")
    parsers = {"tax-rate": parse_tax_rate, "payment-terms": parse_payment_terms, "credit-limit": parse_credit_limit}
    for key, parse in parsers.items():
        raw = values.get(key)
        if raw is not None:
            out[key.replace("-", "_")] = parse(raw)
    if values.get("tariff") is not None:
        out["tariff"] = (values["tariff"] or "").strip()
        if not out["tariff"]:
            raise Invalid("tariff", "must not be empty")
    if values.get("password") is not None:
        out["password"] = values["password"]
    return Profile(**out)


@dataclass(frozen=True)
class NewAccount:
    """What ``account create`` (or an import line for a new id) asks for."""

    id: str
    currency: str
    tariff: str
    postpaid: bool = False
    aliases: tuple[str, ...] = ()
    profile: Profile = field(default_factory=Profile)


def alias_kind(value: str) -> str:
    low = value.lower()
    if low.startswith(("sip:", "sips:", "tel:")):
        return "sip"
    if "@" in value:
        return "nai"
    if value.lstrip("+").isdigit():
        return "msisdn"
    return "other"


async def add_alias(conn: Conn, account_id: str, value: str, kind: str | None = None) -> None:
    owner = await accounts_db.alias_owner(conn, value)
    if owner is not None:
        raise Refused(f"alias {value!r} already belongs to account {owner!r}")
    try:
        await accounts_db.add_alias(conn, account_id, value, kind or alias_kind(value))
    except asyncpg.UniqueViolationError:
        raise Refused(f"alias {value!r} was just given to another account") from None


async def _check_tariff(conn: Conn, tariff: str, currency: str) -> None:
    """The tariff must exist.  Its currency may differ from the account's: the account is then charged
    the tariff's price converted at the FX rate in force when each call starts (docs/wholesale.md),
    and a call is refused as not rated while no rate for the pair is set (``ocsctl fx set``)."""
    found = await accounts_db.tariff_currency(conn, tariff)
    if found is None:
        raise Invalid("tariff", f"unknown tariff {tariff!r}")


async def _write(conn: Conn, row: asyncpg.Record, p: Profile) -> None:
    """Check the profile against the account's row and write the given fields in one UPDATE."""
    given = p.given()
    if not given:
        return
    if p.credit_limit and row["type"] != "postpaid":
        raise Invalid("credit-limit", "needs a postpaid account")
    if p.tariff is not None and p.tariff != row["tariff"]:
        await _check_tariff(conn, p.tariff, row["currency"].strip())
    if p.password == "":
        given["password"] = None
    sets = ", ".join(f"{COLUMNS[k]} = ${i}" for i, k in enumerate(given, start=2))
    await conn.execute(f"UPDATE accounts SET {sets}, updated_at = now() WHERE id = $1",  # names from COLUMNS
                       row["id"], *given.values())


async def create(conn: Conn, new: NewAccount) -> None:
    """Insert the account, its customer data and aliases in one transaction (PostgreSQL only; then :func:`sync`)."""
    if not ACCOUNT_ID.fullmatch(new.id):
        raise Invalid("id", f"{new.id!r}: 1-128 printable characters without blanks")
    currency = new.currency.strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise Invalid("currency", f"not an ISO 4217 code: {new.currency!r}")
    await _check_tariff(conn, new.tariff, currency)
    if new.profile.credit_limit and not new.postpaid:
        raise Invalid("credit-limit", "needs --postpaid")
    if await accounts_db.exists(conn, new.id):
        raise Refused(f"account {new.id!r} already exists")
    async with conn.transaction():
        try:
            await accounts_db.insert(conn, new.id, "postpaid" if new.postpaid else "prepaid", currency, new.tariff,
                                     new.profile.credit_limit or 0, new.profile.password or None)
        except asyncpg.UniqueViolationError:
            raise Refused(f"account {new.id!r} already exists") from None
        row = await accounts_db.get(conn, new.id)
        assert row is not None
        await _write(conn, row, Profile(**{**new.profile.given(), "tariff": None, "password": None}))
        for value in new.aliases:
            await add_alias(conn, new.id, value)


async def get(conn: Conn, account_id: str) -> asyncpg.Record:
    row = await accounts_db.get(conn, account_id)
    if row is None:
        raise Refused(f"unknown account {account_id!r}")
    return row


async def update(conn: Conn, account_id: str, profile: Profile) -> asyncpg.Record:
    """Change customer data, credit limit, tariff or password (PostgreSQL only; then :func:`sync`)."""
    async with conn.transaction():
        row = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1 FOR UPDATE", account_id)
        if row is None:
            raise Refused(f"unknown account {account_id!r}")
        await _write(conn, row, profile)
    return await get(conn, account_id)


async def sync(conn: Conn, redis: Redis, keys: Keys, account_id: str) -> asyncpg.Record:
    """Copy the account's row to its Redis hash and apply its pending ledger rows.

    The row is read under a row lock that is held while Redis is written, so two changes made at
    once reach Redis in the order PostgreSQL committed them (the later one cannot be overwritten
    by a stale copy of the earlier).
    """
    async with conn.transaction():
        row = await conn.fetchrow("SELECT * FROM accounts WHERE id = $1 FOR SHARE", account_id)
        if row is None:
            raise Refused(f"unknown account {account_id!r}")
        if row["reseller"]:  # a new reseller's subscriber lives on its reseller's shard (docs/wholesale.md)
            await placement.place_subscriber(conn, redis, keys, row)
        await provision.sync_account(redis, keys, row, await accounts_db.aliases(conn, account_id))
        await bundles.sync(conn, redis, keys, account_id)  # the account's bundles (field bun)
    await provision.apply_pending(conn, redis, keys, account_id)
    return row


def profile_fields(row: asyncpg.Record) -> dict[str, Any]:
    """The customer data of ``account show`` / ``list``, after the keys the provisioning CLI always had."""
    return {"name": row["name"], "email": row["email"], "address": row["address"],
            "tax_rate": str(row["tax_rate"]), "payment_terms": int(row["payment_terms_days"]),
            "reseller": row["reseller"]}


async def document(conn: Conn, redis: Redis, keys: Keys, account_id: str) -> dict[str, Any]:
    """``account show``: the account, its money in Redis (balance, reserved, available) and customer data."""
    row = await get(conn, account_id)
    raw = await redis.hmget(keys.account(account_id), "bal", "rsv")
    bal, rsv = (int(v or 0) for v in raw)
    cl = int(row["credit_limit"])
    avail = max(0, bal + (cl if row["type"] == "postpaid" else 0) - rsv)
    return {"id": row["id"], "type": row["type"], "currency": row["currency"].strip(), "tariff": row["tariff"],
            "status": row["status"], "balance": money.format(bal), "reserved": money.format(rsv),
            "available": money.format(avail), "credit_limit": money.format(cl),
            "aliases": await accounts_db.aliases(conn, account_id), **profile_fields(row),
            "bundles": await bundles.remaining(conn, redis, keys, account_id, await _timezone(conn, row["tariff"]))}


async def _timezone(conn: Conn, tariff: str) -> str:
    return str(await conn.fetchval("SELECT timezone FROM tariffs WHERE name = $1", tariff) or "UTC")


async def listing(conn: Conn, status: str | None = None, reseller: str | None = None, *, kind: str | None = None,
                  tariff: str | None = None, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """``account list`` and the API's page of accounts (PostgreSQL only, no balances), filtered, by id."""
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"one of {', '.join(STATUSES)}: {status!r}")
    rows = await conn.fetch(
        "SELECT * FROM accounts WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR reseller = $2)"
        " AND ($3::text IS NULL OR type = $3) AND ($4::text IS NULL OR tariff = $4)"
        " ORDER BY id LIMIT $5 OFFSET $6", status, reseller, kind, tariff, limit, offset)
    return [{"id": r["id"], "type": r["type"], "currency": r["currency"].strip(), "tariff": r["tariff"],
             "status": r["status"], "credit_limit": money.format(int(r["credit_limit"])), **profile_fields(r)}
            for r in rows]
