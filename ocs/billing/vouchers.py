"""Redeeming a voucher and reporting a lot (docs/billing.md, "Vouchers and calling cards").

:func:`redeem` is the one implementation behind ``ocsctl pin redeem``, the self-care portal and
the API.  It is a top-up like ``ocsctl topup``: the ledger row is written ahead in the same
PostgreSQL transaction that marks the PIN redeemed (the PIN row is locked, so of two concurrent
redeems exactly one commits and the other then finds it redeemed), then applied once to the
Redis balance keyed by its ledger id (:func:`ocs.billing.credit.apply_credit`).  A crash after
COMMIT leaves the row unapplied, and every money verb and the daemon's sweep apply it later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis

from ocs import money
from ocs.billing import credit, pins
from ocs.billing.pins import PinRefused
from ocs.control.dispatch import Dispatched
from ocs.store import accounts_db, provision
from ocs.store.keys import Keys
from ocs.store.provision import Conn


@dataclass(frozen=True)
class Redeemed:
    lot: str
    serial: int
    account: str
    amount: int  # micro-units credited
    currency: str
    reference: str  # the ledger row's
    control: Dispatched | None  # what the network was asked (re-authorization)


async def redeem(conn: Conn, redis: Redis, keys: Keys, pepper: bytes, pin: str, account_id: str) -> Redeemed:
    """Credit ``account_id`` with the voucher ``pin`` once; :class:`PinRefused` says why not."""
    pin = pin.strip()
    if not pins.is_pin(pin):
        raise PinRefused("not a valid PIN")
    row = await accounts_db.get(conn, account_id)
    if row is None:
        raise PinRefused(f"unknown account {account_id!r}")
    try:
        async with conn.transaction():
            v = _checked(await conn.fetchrow(
                "SELECT p.id, p.lot, p.serial, p.redeemed_at, l.kind, l.value, l.currency, l.expires_at,"
                " l.expires_at <= now() AS expired"
                " FROM pins p JOIN pin_lots l ON l.name = p.lot WHERE p.pin_hash = $1 FOR UPDATE OF p",
                pins.pin_hash(pepper, pin)), row)
            ref = pins.reference(v["lot"], v["serial"])
            ledger_id = await conn.fetchval(
                "INSERT INTO ledger(account_id, kind, amount, reference, reason) VALUES ($1, 'topup', $2, $3, $4)"
                " RETURNING id", account_id, v["value"], ref, f"voucher lot {v['lot']} #{v['serial']}")
            await conn.execute("UPDATE pins SET redeemed_by = $2, redeemed_at = now(), ledger_id = $3 WHERE id = $1",
                               v["id"], account_id, ledger_id)
    except asyncpg.UniqueViolationError:
        raise PinRefused("the voucher's ledger reference is already taken by another operation") from None
    # the balance script needs the account hash (written after the PIN checks: a refused guess writes nothing)
    await provision.sync_account(redis, keys, row, await accounts_db.aliases(conn, account_id))
    control = await credit.apply_credit(conn, redis, keys, account_id, v["value"])
    return Redeemed(v["lot"], v["serial"], account_id, v["value"], v["currency"].strip(), ref, control)


def _checked(v: asyncpg.Record | None, account: asyncpg.Record) -> asyncpg.Record:
    """The locked voucher row if it may be redeemed onto ``account``, else :class:`PinRefused` saying why."""
    if v is None:
        raise PinRefused("unknown PIN")
    if v["kind"] != "voucher":
        raise PinRefused("this PIN is a calling card, not a voucher")
    if v["redeemed_at"] is not None:
        raise PinRefused(f"voucher already redeemed on {pins.iso(v['redeemed_at'])}")
    if v["expired"]:
        raise PinRefused(f"voucher expired on {pins.iso(v['expires_at'])}")
    if v["currency"].strip() != account["currency"].strip():
        raise PinRefused(f"voucher is in {v['currency'].strip()}, account {account['id']} in"
                         f" {account['currency'].strip()}")
    return v


async def lot_report(conn: Conn, lot: str, pepper: bytes | None = None) -> dict[str, Any]:
    """The lot, its used/unused/expired counts and one row per PIN (never the PIN; JSON-able).

    A card counts as used once its account has a usage record (its first call, as flushed to
    PostgreSQL); ``pepper_current`` says whether ``pepper`` (when given) is the one the lot was hashed with.
    """
    head = await conn.fetchrow("SELECT *, expires_at <= now() AS expired FROM pin_lots WHERE name = $1", lot)
    if head is None:
        raise PinRefused(f"unknown lot {lot!r}")
    rows = await conn.fetch(
        "SELECT p.id, p.serial, p.account_id, p.redeemed_by, p.redeemed_at,"
        " (SELECT min(u.event_time) FROM usage u WHERE u.account_id = p.account_id) AS first_use"
        " FROM pins p WHERE p.lot = $1 ORDER BY p.serial", lot)
    out = [_pin_row(r, head) for r in rows]
    counts = {state: sum(r["state"] == state for r in out) for state in ("used", "unused", "expired")}
    return {"lot": lot, "kind": head["kind"], "value": money.format(head["value"]),
            "currency": head["currency"].strip(), "tariff": head["tariff"], "length": head["pin_length"],
            "count": head["count"], "expires": pins.iso(head["expires_at"]), "created": pins.iso(head["created_at"]),
            "pepper_current": None if pepper is None else pins.pepper_id(pepper) == head["pepper_id"],
            **counts, "pins": out}


def _pin_row(r: asyncpg.Record, head: asyncpg.Record) -> dict[str, Any]:
    if head["kind"] == "card":
        used_at, by = r["first_use"], r["account_id"]
    else:
        used_at, by = r["redeemed_at"], r["redeemed_by"]
    state = "used" if used_at is not None else "expired" if head["expired"] else "unused"
    return {"id": r["id"], "serial": r["serial"], "state": state, "redeemed_by": by if used_at else None,
            "redeemed_at": pins.iso(used_at), "expires": pins.iso(head["expires_at"]), "account": r["account_id"]}
