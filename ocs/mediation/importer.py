"""Import a switch CDR file: each record rated and charged like a finished session, exactly once, durably.

Per chunk of :data:`CHUNK` lines, in this order:

1. parse (bad lines rejected with their line number); a key seen earlier in the chunk is a duplicate;
2. **known keys**: one query on ``cdr_import_keys`` (source, key): keys any earlier run recorded are
   duplicates, however long ago (the durable check);
3. resolve each record's account (``account`` column as an account id, else the calling number as
   the charging core resolves subscribers: :class:`~ocs.store.accounts_view.AccountView`), rate it
   with the account's tariff (pure engine, current version; rows in force at the call's start);
4. **charge**: ``import.lua`` per batch of one shard: per record, debit + usage record + CDR in one
   atomic step, and the key added to the run's marker set of that shard;
5. **record**: the charged keys committed to ``cdr_import_keys`` (one transaction, with the run's
   counts); 6. the marker sets dropped.

Why no crash charges twice or loses a record (one import per source runs at a time: an advisory lock;
every run has a row in ``cdr_imports`` written before it touches Redis, finished at the end):

- crash before 4: nothing moved; a re-run imports the records;
- crash inside 4 (some batches done): a script is atomic, so each record is either charged with its
  records and its marker, or not at all;
- crash between 4 and 6: the marker sets hold exactly the keys charged and not yet recorded.  The next
  import of the source finds the dead run (unfinished row) and, before importing anything, commits
  those keys (``ON CONFLICT DO NOTHING``: also right if 5 had committed) and drops the sets; its
  known-keys check then sees them as duplicates.  The marker sets never expire, so this holds
  weeks later too; they are the only Redis state an import keeps, and only until step 6;
- a script call whose reply was lost and is sent again finds its keys in the marker set: ``D``.

The charged money reaches PostgreSQL as usage records and CDRs through the shard's usage stream,
copied by the flusher exactly once (record ids derived from the key), like every other charge.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable

from ocs.mediation.cdr_csv import CdrReader, CdrRecord, Rejected
from ocs.mediation.summary import Summary
from ocs.rating.engine import CompiledTariff, Selection
from ocs.rating.tariff import ANY_BAND
from ocs.store import tariffs
from ocs.store.accounts_view import Account, AccountView
from ocs.store.cdr_imports import PROTOCOL, Charge, Conn, ImportCharges, ImportRuns
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.usage import MAX_EXACT

CHUNK = 20_000  # lines per chunk: one known-keys query and one commit each; bounds memory
BATCH = 250  # records per script call: Redis runs one call ~4 ms, live charging never waits longer
CACHE = 100_000  # subscribers and memoised prices kept per run
_SCRIPT_REFUSALS = {"N": ("unknown account", "unknown account"), "B": ("blocked", "account blocked"),
                    "U": ("bundles", "account has bundles (included seconds): not imported"),
                    "R": ("reseller", "account belongs to a reseller: not imported")}


class Busy(Exception):
    """Another import of the same source is running."""


class Importer:
    def __init__(self, conn: Conn, rp: AutoPipeline, keys: Keys, *, node: str, source: str,
                 on_reject: Callable[[Rejected], None] | None = None, chunk: int = CHUNK, batch: int = BATCH) -> None:
        self.runs = ImportRuns(conn, source)
        self.charges = ImportCharges(rp, keys, node)
        self.accounts = AccountView(rp, keys)
        self.conn = conn
        self.node = node
        self.source = source
        self.on_reject = on_reject
        self.chunk, self.batch = chunk, batch
        self.run_id = 0
        self.summary = Summary(source, "")
        self._subs: dict[tuple[bool, str], Account | None] = {}
        self._tariffs: dict[str, CompiledTariff | None] = {}
        self._memo: dict[tuple[int, int], tuple[int, int]] = {}
        self._rejects: list[Rejected] = []
        self.after_charge: Callable[[], None] | None = None  # test hook: a crash between steps 4 and 5

    async def run(self, reader: CdrReader, file: str) -> Summary:
        t0 = time.perf_counter()
        self.summary.file = file
        if not await self.runs.lock():
            raise Busy(f"another import of source {self.source!r} is running")
        try:
            self.run_id = self.summary.import_id = await self.runs.open_run(file, self.node)
            await self._repair()
            for items in reader.chunks(self.chunk):
                await self._chunk(items)
            await self._progress(finished=True)
        finally:
            with contextlib.suppress(Exception):  # a lost connection released the lock already
                await self.runs.unlock()
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    async def _repair(self) -> None:
        """Record the keys dead runs of this source charged but did not commit (module docstring)."""
        for dead in await self.runs.dead_runs(self.run_id):
            keys = await self.charges.marked(dead)
            async with self.conn.transaction():
                recorded = await self.runs.record(keys, dead)
                await self.runs.close_dead(dead, self.run_id, recorded)
            await self.charges.clear(dead)
            self.summary.repaired += recorded

    async def _progress(self, *, finished: bool) -> None:
        s = self.summary
        await self.runs.progress(self.run_id, s.imported.count, s.duplicate.count, s.rejected.count, s.repaired,
                                 finished=finished)

    def _reject(self, rej: Rejected) -> None:
        self._rejects.append(rej)

    def _flush_rejects(self) -> None:
        """A chunk's rejections, in line order, to the summary and the rejects file."""
        self._rejects.sort(key=lambda r: r.line)
        for rej in self._rejects:
            self.summary.reject(rej)
            if self.on_reject is not None:
                self.on_reject(rej)
        self._rejects.clear()

    async def _chunk(self, items: list[CdrRecord | Rejected]) -> None:
        fresh = self._fresh(items)
        known = await self.runs.known([r.key for r in fresh])
        todo = []
        for rec in fresh:
            if rec.key in known:
                self.summary.duplicate.add(rec.line)
            else:
                todo.append(rec)
        await self._resolve(todo)
        rated = [(rec, self._rate(rec)) for rec in todo]
        charges = [(rec, c) for rec, c in rated if c is not None]
        codes = await self._charge(charges)
        if self.after_charge is not None:
            self.after_charge()
        done = self._outcomes(charges, codes)
        self._flush_rejects()
        async with self.conn.transaction():
            await self.runs.record(done, self.run_id)
            await self._progress(finished=False)
        await self.charges.clear(self.run_id, {self.charges.tag(c.account) for _r, c in charges})

    def _fresh(self, items: list[CdrRecord | Rejected]) -> list[CdrRecord]:
        """Parsed records whose key is new in this chunk; the rest rejected or duplicates, in line order."""
        seen: set[str] = set()
        out = []
        for it in items:
            if isinstance(it, Rejected):
                self._reject(it)
            elif it.key in seen:
                self.summary.duplicate.add(it.line)
            else:
                seen.add(it.key)
                out.append(it)
        return out

    async def _resolve(self, recs: list[CdrRecord]) -> None:
        """Fill the subscriber cache for these records (one pipelined round per step for all of them)."""
        wanted = {(bool(r.account), r.account or r.calling) for r in recs} - self._subs.keys()
        if len(self._subs) + len(wanted) > CACHE:
            self._subs.clear()
        found = await asyncio.gather(*(self.accounts.get(v) if by_id else self.accounts.resolve(v, fresh=True)
                                       for by_id, v in wanted))
        self._subs.update(zip(wanted, found, strict=True))
        for acct in found:
            if acct is not None and acct.tariff not in self._tariffs:
                loaded = await tariffs.load_tariff(self.conn, acct.tariff)
                self._tariffs[acct.tariff] = CompiledTariff(loaded) if loaded is not None else None

    def _rate(self, rec: CdrRecord) -> Charge | None:
        """The record rated for its account (None: rejected, with the reason)."""
        acct = self._subs.get((bool(rec.account), rec.account or rec.calling))
        if acct is None:
            return self._refuse(rec, "unknown account", f"unknown account {rec.account!r}" if rec.account
                                else f"no account for calling number {rec.calling!r}")
        if acct.blocked:
            return self._refuse(rec, "blocked", f"account {acct.id} blocked")
        tariff = self._tariffs.get(acct.tariff)
        if tariff is None:
            return self._refuse(rec, "unknown tariff", f"tariff {acct.tariff!r} of account {acct.id} not found")
        if tariff.tariff.currency.strip() != acct.currency:
            return self._refuse(rec, "fx", f"account {acct.id} pays in {acct.currency}, tariff {acct.tariff} is in"
                                           f" {tariff.tariff.currency.strip()}: not imported (see docs)")
        sel = tariff.select(rec.called, rec.start)
        if sel is None:
            return self._refuse(rec, "not rated", f"destination not rated: {rec.called!r}")
        billed, charge = self._price(tariff, sel, rec.duration)
        if charge > MAX_EXACT:
            return self._refuse(rec, "bad field", "charge beyond any plausible amount")
        sid = f"{PROTOCOL}:{self.source}:{rec.key}"
        return Charge(acct.id, rec.key, sid, rec.calling, sel.number, sel.prefix, sel.destination, rec.start_iso(),
                      rec.end_iso(), rec.duration, billed, charge, acct.currency, sel.tariff, sel.version)

    def _price(self, tariff: CompiledTariff, sel: Selection, duration: int) -> tuple[int, int]:
        """(billed seconds, charge); memoised where the price depends on the row and duration alone."""
        if len(sel.band_rows) != 1 or ANY_BAND not in sel.band_rows:
            r = tariff.rate(sel, duration)
            return r.billed_units, r.charge
        memo = (id(sel.row), duration)  # rows live as long as the run's compiled tariffs
        hit = self._memo.get(memo)
        if hit is None:
            if len(self._memo) >= CACHE:
                self._memo.clear()
            r = tariff.rate(sel, duration)
            hit = self._memo[memo] = (r.billed_units, r.charge)
        return hit

    def _refuse(self, rec: CdrRecord, category: str, reason: str) -> Charge | None:
        """Reject ``rec``; None, so a rating step can ``return self._refuse(...)``."""
        self._reject(Rejected(rec.line, category, reason, rec.raw))
        return None

    async def _charge(self, charges: list[tuple[CdrRecord, Charge]]) -> list[str]:
        """Script calls per shard batch, all pipelined; the code of each record, in ``charges`` order."""
        by_tag: dict[str, list[int]] = defaultdict(list)
        for i, (_rec, c) in enumerate(charges):
            by_tag[self.charges.tag(c.account)].append(i)
        calls, slots = [], []
        for tag, idx in by_tag.items():
            for start in range(0, len(idx), self.batch):
                part = idx[start:start + self.batch]
                calls.append(self.charges.charge(tag, self.run_id, [charges[i][1] for i in part]))
                slots.append(part)
        codes = [""] * len(charges)
        for part, reply in zip(slots, await asyncio.gather(*calls), strict=True):
            for i, code in zip(part, reply, strict=True):
                codes[i] = code
        return codes

    def _outcomes(self, charges: list[tuple[CdrRecord, Charge]], codes: list[str]) -> list[str]:
        """Count each record's outcome; returns the keys charged by this run (to record)."""
        done = []
        for (rec, c), code in zip(charges, codes, strict=True):
            if code == "O":
                self.summary.imported.add(rec.line)
                self.summary.charged[c.currency] += c.charge
                done.append(c.key)
            elif code == "D":  # charged by this run already (a batch sent twice)
                self.summary.duplicate.add(rec.line)
                done.append(c.key)
            else:
                category, reason = _SCRIPT_REFUSALS.get(code, ("error", f"script answered {code!r}"))
                self._refuse(rec, category, reason)
        return done
