"""Generating a lot of voucher or calling-card PINs (docs/billing.md, "Vouchers and calling cards").

A lot is made in one PostgreSQL transaction: the lot row, one ``pins`` row per PIN (its HMAC,
never the PIN) and, for cards, an account per PIN (prepaid, the lot's tariff and currency, the
PIN as alias and RADIUS password) with its initial balance as a ledger top-up.  The PIN file is
written (mode 0600, never over an existing file) before COMMIT and removed if COMMIT fails, so
the file and the database agree: no PIN exists that the file does not list, and the file lists
no PIN that does not exist.  Card accounts are written to Redis before COMMIT too (descriptive
fields, balance 0), so once COMMIT returns their ledger rows can always be applied (by this
run, or by the daemon's sweep after a crash) and the cards work over RADIUS at once.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from ocs import money
from ocs.billing import pins
from ocs.billing.pins import Issued, LotSpec, PinRefused
from ocs.store import provision
from ocs.store.keys import Keys
from ocs.store.provision import Conn

Sink = Callable[[Sequence[Issued]], None]
ATTEMPTS = 3  # a concurrent lot taking one of our PINs between the check and the insert: draw again
CSV_COLUMNS = ("lot", "serial", "pin", "kind", "value", "currency", "expires", "account")


async def generate(conn: asyncpg.Connection, redis: Redis, keys: Keys, pepper: bytes, spec: LotSpec,
                   sink: Sink) -> list[Issued]:
    """Create the lot; ``sink`` receives the cleartext PINs once, inside the transaction."""
    spec.check(datetime.now(UTC))
    await _refusals(conn, spec)
    for attempt in range(ATTEMPTS):
        issued = await _draw_unique(conn, pepper, spec)
        try:
            ledger = await _commit(conn, redis, keys, pepper, spec, issued, sink)
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "pin_lots_pkey":
                raise PinRefused(f"lot {spec.name!r} already exists") from None
            if attempt == ATTEMPTS - 1:
                raise PinRefused(f"lot {spec.name!r}: PINs kept colliding with concurrent lots; retry") from None
            continue
        if ledger:  # after COMMIT: the card balances (at most once, keyed by ledger id)
            await provision.apply_entries(conn, redis, keys, ledger)
        return issued
    raise AssertionError("unreachable")  # pragma: no cover


async def _commit(conn: asyncpg.Connection, redis: Redis, keys: Keys, pepper: bytes, spec: LotSpec,
                  issued: list[Issued], sink: Sink) -> list[asyncpg.Record]:
    """One transaction: rows, (cards) Redis accounts, the PIN file, COMMIT; the Redis part undone on failure."""
    staged = False
    try:
        async with conn.transaction():
            ledger = await _insert(conn, spec, pepper, issued)
            if spec.kind == "card":
                staged = True
                await _stage_cards(conn, redis, keys, issued)
            sink(issued)
    except BaseException:
        if staged:
            await _unstage_cards(redis, keys, issued)
        raise
    return ledger


async def generate_to_file(conn: asyncpg.Connection, redis: Redis, keys: Keys, pepper: bytes, spec: LotSpec,
                           path: Path) -> list[Issued]:
    """:func:`generate` writing the PINs to a new CSV file at ``path`` (mode 0600), removed on failure."""
    _fresh_target(path)
    written: list[Path] = []

    def sink(issued: Sequence[Issued]) -> None:
        write_csv(path, spec, issued)
        written.append(path)

    try:
        return await generate(conn, redis, keys, pepper, spec, sink)
    except BaseException:
        for p in written:  # the transaction did not commit: these PINs do not exist
            _remove(p)
        raise


def _fresh_target(path: Path) -> None:
    """Refuse before drawing anything when the file could not be written (it is created exclusively)."""
    if path.exists() or path.is_symlink():
        raise PinRefused(f"{path}: exists; a PIN file is never overwritten")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise PinRefused(f"{path}: cannot create: {path.parent} is not a writable directory")


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def write_csv(path: Path, spec: LotSpec, issued: Sequence[Issued]) -> None:
    """Write the PIN file: created exclusively, 0600 from the start, flushed to disk before COMMIT."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise PinRefused(f"{path}: cannot create: {exc.strerror}") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    with os.fdopen(fd, "w", newline="", encoding="ascii") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        value = money.format(spec.value)
        expires = pins.iso(spec.expires) or ""
        for p in issued:
            w.writerow((spec.name, p.serial, p.pin, spec.kind, value, spec.currency, expires, p.account or ""))
        fh.flush()
        os.fsync(fh.fileno())


async def _refusals(conn: Conn, spec: LotSpec) -> None:
    """What the database refuses before anything is drawn (:class:`PinRefused`)."""
    if await conn.fetchval("SELECT 1 FROM pin_lots WHERE name = $1", spec.name):
        raise PinRefused(f"lot {spec.name!r} already exists")
    if spec.kind != "card":
        return
    currency = await conn.fetchval("SELECT currency FROM tariffs WHERE name = $1", spec.tariff)
    if currency is None:
        raise PinRefused(f"unknown tariff {spec.tariff!r}")
    if currency.strip() != spec.currency:
        raise PinRefused(f"--currency {spec.currency} does not match tariff {spec.tariff} ({currency.strip()})")
    ids = [pins.card_account(spec.name, n) for n in range(1, spec.count + 1)]
    taken = await conn.fetchval("SELECT min(id) FROM accounts WHERE id = ANY($1::text[])", ids)
    if taken is not None:
        raise PinRefused(f"account {taken!r} already exists; card accounts of lot {spec.name!r} need its ids")


async def _draw_unique(conn: Conn, pepper: bytes, spec: LotSpec) -> list[Issued]:
    """Draw ``count`` PINs unique among themselves, among all PINs and (cards) among aliases and account ids."""
    chosen: dict[str, bytes] = {}
    for _ in range(20):
        while len(chosen) < spec.count:
            pin = pins.draw(spec.length)
            chosen.setdefault(pin, pins.pin_hash(pepper, pin))
        clash = await _clashes(conn, spec.kind, chosen)
        if not clash:
            break
        for pin in clash:
            del chosen[pin]
    else:
        raise PinRefused(f"cannot draw {spec.count} unused PINs of {spec.length} digits; use more digits")
    card = spec.kind == "card"
    return [Issued(n, pin, digest, pins.card_account(spec.name, n) if card else None)
            for n, (pin, digest) in enumerate(chosen.items(), start=1)]


async def _clashes(conn: Conn, kind: str, chosen: dict[str, bytes]) -> set[str]:
    by_hash = {d: p for p, d in chosen.items()}
    rows = await conn.fetch("SELECT pin_hash FROM pins WHERE pin_hash = ANY($1::bytea[])", list(by_hash))
    out = {by_hash[bytes(r["pin_hash"])] for r in rows}
    if kind == "card":  # a card PIN becomes an alias: it must name nothing yet
        rows = await conn.fetch("SELECT value FROM aliases WHERE value = ANY($1::text[])"
                                " UNION SELECT id FROM accounts WHERE id = ANY($1::text[])", list(chosen))
        out |= {r[0] for r in rows}
    return out


async def _insert(conn: Conn, spec: LotSpec, pepper: bytes, issued: list[Issued]) -> list[asyncpg.Record]:
    """The lot, its pins and (cards) accounts, aliases and ledger rows, batched; returns the ledger rows."""
    await conn.execute(
        "INSERT INTO pin_lots(name, kind, value, currency, tariff, pin_length, count, expires_at, pepper_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", spec.name, spec.kind, spec.value, spec.currency,
        spec.tariff, spec.length, spec.count, spec.expires, pins.pepper_id(pepper))
    ledger = await _insert_cards(conn, spec, issued) if spec.kind == "card" else []
    ledger_of = {r["account_id"]: r["id"] for r in ledger}
    await conn.execute(
        "INSERT INTO pins(lot, serial, pin_hash, account_id, ledger_id)"
        " SELECT $1, s, h, a, l FROM unnest($2::int[], $3::bytea[], $4::text[], $5::bigint[]) AS t(s, h, a, l)",
        spec.name, [p.serial for p in issued], [p.digest for p in issued], [p.account for p in issued],
        [ledger_of.get(p.account) for p in issued])
    return ledger


async def _insert_cards(conn: Conn, spec: LotSpec, issued: list[Issued]) -> list[asyncpg.Record]:
    ids, secrets_ = [p.account for p in issued], [p.pin for p in issued]
    await conn.execute(
        "INSERT INTO accounts(id, type, currency, tariff, password)"
        " SELECT a, 'prepaid', $2, $3, pw FROM unnest($1::text[], $4::text[]) AS t(a, pw)",
        ids, spec.currency, spec.tariff, secrets_)
    await conn.execute("INSERT INTO aliases(value, account_id, kind)"
                       " SELECT v, a, 'pin' FROM unnest($1::text[], $2::text[]) AS t(v, a)", secrets_, ids)
    return await conn.fetch(
        "INSERT INTO ledger(account_id, kind, amount, reference, reason)"
        " SELECT a, 'topup', $2, r, $3 FROM unnest($1::text[], $4::text[]) AS t(a, r)"
        " RETURNING id, account_id, amount",
        ids, spec.value, f"card lot {spec.name}", [pins.reference(spec.name, p.serial) for p in issued])


async def _stage_cards(conn: Conn, redis: Redis, keys: Keys, issued: list[Issued]) -> None:
    """Card accounts (and their PIN aliases) into Redis, pipelined, before COMMIT (module docstring)."""
    by_id = {p.account: p for p in issued}
    rows = await conn.fetch("SELECT * FROM accounts WHERE id = ANY($1::text[])", list(by_id))
    for start in range(0, len(rows), 1000):
        pipe = redis.pipeline(transaction=False)
        for row in rows[start:start + 1000]:
            provision.stage_account(pipe, keys, row, [by_id[row["id"]].pin])
        await pipe.execute()


async def _unstage_cards(redis: Redis, keys: Keys, issued: Sequence[Issued]) -> None:
    """Best effort: take back what :func:`_stage_cards` wrote when the transaction will not commit."""
    cards = [p for p in issued if p.account]
    with contextlib.suppress(Exception):
        for start in range(0, len(cards), 1000):
            chunk = cards[start:start + 1000]
            await redis.delete(*[k for p in chunk for k in (keys.account(p.account or ""), keys.alias(p.pin))])
