"""Re-rating a period's CDRs after a rate correction (docs/wholesale.md, "Re-rating").

Every CDR starting in ``[start, end)`` is priced again on the current version of the tariff that
rated it (``cdrs.tariff``, else the account's tariff) at its start time (:mod:`ocs.billing.rerate_price`).
A record whose new price differs gets ``charge`` = the new price and ``rerated_from`` = the charge
before, and each account gets ONE ledger adjustment for the sum of its differences, written ahead
like every adjustment (docs/architecture.md, "Top-ups") and applied to the Redis balance by the
caller (:func:`ocs.store.provision.apply_entries`, idempotent by ledger id).

Why it is safe to run again, or after a crash:

- the record updates, the ledger rows and the run's row are ONE transaction: a crash leaves all or
  nothing; a crash after the commit leaves ledger rows not yet applied, which the next ``ocsctl``
  run (or the daemon's sweep) applies once;
- a record priced at what it was charged is not touched, so a second run finds nothing to do;
- one re-rating at a time (an advisory lock), and the update checks each record's revision and
  charge against what was read: a CDR the flush replaced meanwhile (a late report) makes the run
  refuse, changing nothing, instead of adjusting from a stale charge;
- ``cdrs.rerate_adjusted`` (012_rerate.sql) sums what was posted per record, so a CDR a later
  revision brought back to the core's price is not adjusted twice.

Usage rows are not rewritten: they are what Redis debited, and ``reconcile`` proves the balance from
them plus the ledger.  The adjustment IS the correction, and invoices show it as an adjustment line.

Bounded memory: the records are read with a server-side cursor in chunks, the changed ones go by COPY
into a temporary table, and one ``UPDATE ... FROM`` writes them; only per-account sums stay in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from ocs.billing.errors import Invalid, Refused
from ocs.billing.rerate_price import NO_ACCOUNT, Repricer
from ocs.store import accounts_db, tariffs
from ocs.store.provision import Conn

CHUNK = 20_000  # records read and priced at a time
BATCH = 200_000  # changed records written by one UPDATE (each one also runs the statement triggers on cdrs)
_LOCK = 0x0C5D_E4A7  # pg_advisory_xact_lock key: one re-rating at a time

_TARIFF = "coalesce(nullif(c.tariff, ''), a.tariff)"
_WHERE = (" FROM cdrs c LEFT JOIN accounts a ON a.id = c.account"
          " WHERE c.start_time >= $1 AND c.start_time < $2 AND ($3::text IS NULL OR c.account = $3)"
          f" AND ($4::text IS NULL OR {_TARIFF} = $4)")
# old: what the customer paid for the record so far: its charge, plus the adjustments already posted
# when a later CDR revision brought the charge back to the core's price (rerated_from then empty).
# the units charged in money: a bundle's included seconds (010_bundles.sql) were never charged, so they
# are not re-rated either (the core rates the rest as one call: docs/wholesale.md "Bundles")
_READ = (f"SELECT c.record_id, c.account, {_TARIFF}, c.service, c.called, c.start_time,"
         " c.duration - c.included_seconds,"
         " c.charge + CASE WHEN c.rerated_from IS NULL THEN c.rerate_adjusted ELSE 0 END, c.revision, c.charge,"
         " btrim(c.currency), c.rate_currency, c.fx_rate, a.id IS NULL" + _WHERE)
_TMP_COLS = ["record_id", "account", "revision", "charge", "old", "new"]
_UPDATE = ("UPDATE cdrs c SET charge = t.new, rerated_from = t.old,"
           " rerate_adjusted = c.rerate_adjusted + (t.new - t.old)"
           " FROM _rerate t WHERE c.record_id = t.record_id AND c.revision = t.revision AND c.charge = t.charge")


@dataclass(frozen=True)
class Request:
    start: datetime
    end: datetime
    account: str | None = None
    tariff: str | None = None
    dry_run: bool = False


@dataclass
class AccountChange:
    """One account's part: its records changed and the sum of (new - old), in the account's currency."""

    account: str
    currency: str
    records: int = 0
    difference: int = 0
    ledger_id: int | None = None

    @property
    def adjustment(self) -> int:
        """The ledger amount: what the balance gets back (a price that went up takes money)."""
        return -self.difference


@dataclass
class Result:
    examined: int = 0
    changed: int = 0
    unrated: dict[str, int] = field(default_factory=dict)
    accounts: dict[str, AccountChange] = field(default_factory=dict)
    run_id: int | None = None

    @property
    def adjusted(self) -> list[AccountChange]:
        """Accounts whose differences do not cancel out: one ledger row each."""
        return [a for _, a in sorted(self.accounts.items()) if a.difference]

    def totals(self) -> dict[str, int]:
        """Total difference (new - old) per currency."""
        out: dict[str, int] = {}
        for a in self.accounts.values():
            out[a.currency] = out.get(a.currency, 0) + a.difference
        return dict(sorted(out.items()))


Progress = Callable[[int, int], None]


async def _check(conn: Conn, req: Request) -> None:
    if req.start >= req.end:
        raise Invalid("to", "must be after --from (the period is [--from, --to))")
    if req.account is not None and not await accounts_db.exists(conn, req.account):
        raise Refused(f"unknown account {req.account!r}")
    if req.tariff is not None and await tariffs.current_version(conn, req.tariff) is None:
        raise Refused(f"unknown tariff {req.tariff!r}")


async def run(conn: Conn, req: Request, progress: Progress | None = None, reader: Conn | None = None) -> Result:
    """Re-rate the period (module docstring); ``progress(done, total)`` after each chunk.

    ``reader``: a second connection to read and price on while ``conn`` writes the previous batch
    (PostgreSQL updating and Python pricing overlap).  It reads in a REPEATABLE READ snapshot; the
    writes check each record's revision and charge against what was read, as with one connection.
    """
    await _check(conn, req)
    args = (req.start, req.end, req.account, req.tariff)
    total = int(await conn.fetchval("SELECT count(*)" + _WHERE, *args)) if progress else 0
    res = Result()
    async with conn.transaction():
        if not req.dry_run:
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK):
                raise Refused("another re-rating is running; try again when it has finished")
            await conn.execute("CREATE TEMP TABLE _rerate (record_id text, account text, revision integer,"
                               " charge bigint, old bigint, new bigint) ON COMMIT DROP")
        src = reader if reader is not None and not req.dry_run else conn
        async with contextlib.AsyncExitStack() as stack:
            if src is not conn:
                await stack.enter_async_context(src.transaction(isolation="repeatable_read", readonly=True))
            writer = _Writer(conn, overlap=src is not conn)
            stack.push_async_callback(writer.drain)  # never leave a write running on conn
            await _read(src, args, res, writer if not req.dry_run else None, progress, total)
            await writer.flush()
        if not req.dry_run and res.changed:
            await _post(conn, req, res)
    return res


async def _read(src: Conn, args: tuple[object, ...], res: Result, writer: _Writer | None,
                progress: Progress | None, total: int) -> None:
    repricer = Repricer()
    cursor = await src.cursor(_READ, *args)
    while rows := await cursor.fetch(CHUNK):
        changed = await _price_chunk(src, repricer, rows, res)
        if writer is not None:
            await writer.add(changed)
        if progress:
            progress(res.examined, max(total, res.examined))


class _Writer:
    """Batches of changed records for :func:`_update`; with ``overlap`` one batch is written while reading goes on."""

    def __init__(self, conn: Conn, *, overlap: bool) -> None:
        self.conn = conn
        self.overlap = overlap
        self.batch: list[tuple[str, str, int, int, int, int]] = []
        self.task: asyncio.Task[None] | None = None

    async def add(self, changed: list[tuple[str, str, int, int, int, int]]) -> None:
        self.batch.extend(changed)
        if len(self.batch) >= BATCH:
            await self._write()

    async def _write(self) -> None:
        batch, self.batch = self.batch, []
        if self.task is not None:
            task, self.task = self.task, None
            await task  # raises what the previous batch raised
        if self.overlap:
            self.task = asyncio.create_task(_update(self.conn, batch))
        else:
            await _update(self.conn, batch)

    async def flush(self) -> None:
        if self.batch:
            await self._write()
        if self.task is not None:
            task, self.task = self.task, None
            await task

    async def drain(self) -> None:
        """After a failure elsewhere: let the write in flight end before the transaction is rolled back."""
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task


async def _update(conn: Conn, changed: list[tuple[str, str, int, int, int, int]]) -> None:
    """Write a batch of new charges: COPY into the temporary table, one ``UPDATE ... FROM``.

    A batch at a time rather than one statement for the whole period: the rows arrive in the table's
    physical order and are updated in that order (one UPDATE of a million rows joined by hash spills
    to batches and walks the heap once per batch), and the memory of the statement triggers on
    ``cdrs`` (report rollups: transition tables) stays bounded.  The checks on revision and charge make a
    record the flush replaced since it was read not match: then nothing is kept (the caller's
    transaction is rolled back).
    """
    await conn.execute("TRUNCATE _rerate")
    await conn.copy_records_to_table("_rerate", records=changed, columns=_TMP_COLS)
    # by the primary key, row after row: a hash join would scan every CDR ever kept for each batch
    await conn.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
    done = int((await conn.execute(_UPDATE)).split()[-1])
    await conn.execute("RESET enable_hashjoin; RESET enable_mergejoin")
    if done != len(changed):
        raise Refused(f"{len(changed) - done} record(s) changed while re-rating (a late usage report was"
                      " flushed); nothing was changed, run it again")


async def _price_chunk(conn: Conn, repricer: Repricer, rows: list[asyncpg.Record],
                       res: Result) -> list[tuple[str, str, int, int, int, int]]:
    """Price one chunk; returns the changed records as rows of ``_rerate``."""
    for name in repricer.missing({r[2] for r in rows if r[2] is not None}):
        repricer.add(name, await tariffs.load_tariff(conn, name))
    changed = []
    unrated, accounts, price = res.unrated, res.accounts, repricer.price
    for rid, account, tariff, service, called, start, units, old, revision, charge, currency, rcur, rate, orphan \
            in rows:
        if units <= 0 and old == 0:  # no unit charged in money costs 0 on any tariff: a refused attempt's
            continue  # record (docs/reports.md) has no account or no rated destination, it is not "unrated"
        new = NO_ACCOUNT if orphan else price(tariff, service, called, start, units, currency, rcur, rate)
        if isinstance(new, str):
            unrated[new] = unrated.get(new, 0) + 1
            continue
        if new == old:
            continue
        changed.append((rid, account, revision, charge, old, new))
        acct = accounts.get(account)
        if acct is None:
            acct = accounts[account] = AccountChange(account, currency)
        acct.records += 1
        acct.difference += new - old
    res.examined += len(rows)
    res.changed += len(changed)
    return changed


async def _post(conn: Conn, req: Request, res: Result) -> None:
    """One adjustment per account and the run's row (inside the caller's transaction, after the updates)."""
    run_id = int(await conn.fetchval("SELECT nextval(pg_get_serial_sequence('rerate_runs', 'id'))"))
    res.run_id = run_id
    reason = f"re-rating {req.start.isoformat()} .. {req.end.isoformat()}" + (
        f", tariff {req.tariff}" if req.tariff else "")
    adjusted = res.adjusted
    ids = await conn.fetch(
        "INSERT INTO ledger (account_id, kind, amount, reference, reason)"
        " SELECT a, 'adjustment', m, r, w"
        " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS x(a, m, r, w)"
        " RETURNING id, account_id",
        [a.account for a in adjusted], [a.adjustment for a in adjusted],
        [f"rerate:{run_id}:{a.account}" for a in adjusted], [f"{reason}: {a.records} record(s)" for a in adjusted])
    for r in ids:
        res.accounts[r["account_id"]].ledger_id = int(r["id"])
    await conn.execute(
        "INSERT INTO rerate_runs (id, period_from, period_to, account, tariff, examined, changed, unrated, accounts)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)", run_id, req.start, req.end, req.account or "",
        req.tariff or "", res.examined, res.changed, sum(res.unrated.values()), len(res.adjusted))


async def pending(conn: Conn) -> list[asyncpg.Record]:
    """Re-rating adjustments written but not yet applied to Redis (this run's, or a crashed run's)."""
    return await conn.fetch("SELECT id, account_id, amount FROM ledger WHERE applied_at IS NULL"
                            " AND reference LIKE 'rerate:%' ORDER BY id")
