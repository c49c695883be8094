"""Import a switch CDR file: each record rated and charged like a finished session, exactly once, durably.

Per chunk of :data:`CHUNK` lines, in this order:

1. parse (bad lines rejected with their line number); a key seen earlier in the chunk is a duplicate;
2. **known keys**: one query on ``cdr_import_keys`` (source, key): keys any earlier run recorded are
   duplicates, however long ago (the durable check);
3. resolve and rate (:mod:`ocs.mediation.rating`);
4. **charge**: ``import.lua`` per batch of one shard: per record, debit + usage record + CDR in one
   atomic step, and the key added to the run's marker set of that shard (a key already there: ``D``,
   nothing charged);
5. **record**: the charged keys committed to ``cdr_import_keys`` (one transaction, with the run's
   counts);
6. the chunk's keys removed from the marker sets, once the *next* chunk's step 4 has run.

Steps 1-3 of chunk N+1 run while Redis does step 4 of chunk N (Python and Redis use both cores).
So chunk N+1's known-keys query may not yet see chunk N's keys: that is why they stay in the marker
sets until chunk N+1 has been charged, where the script finds them.  A chunk is charged only after
the previous one is recorded, so every older chunk is visible to step 2.

Why no crash charges twice or loses a record (one import per source runs at a time: an advisory lock;
every run has a row in ``cdr_imports`` written before it touches Redis, finished at the end):

- crash before 4: nothing moved; a re-run imports the records;
- crash inside 4 (some batches done): a script is atomic, so each record is either charged with its
  records and its marker, or not at all;
- crash between 4 and 6: the marker sets hold every key charged and not yet recorded (and maybe some
  recorded ones).  The next import of the source finds the dead run (unfinished row) and, before
  importing anything, commits those keys (``ON CONFLICT DO NOTHING``) and drops the sets; its
  known-keys check then sees them as duplicates.  The marker sets never expire, so this holds weeks
  later too; they are the only Redis state an import keeps, and only for two chunks at a time;
- a script call whose reply was lost and is sent again finds its keys in the marker set: ``D``.

The charged money reaches PostgreSQL as usage records and CDRs through the shard's usage stream,
copied by the flusher exactly once (record ids derived from the key), like every other charge.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ocs.mediation.cdr_csv import CdrReader, CdrRecord, Rejected
from ocs.mediation.rating import RecordRater
from ocs.mediation.summary import Summary
from ocs.rating.fx import FxTable
from ocs.rating.tariff import Tariff
from ocs.store import tariffs
from ocs.store.accounts_view import AccountView
from ocs.store.cdr_imports import Charge, Conn, ImportCharges, ImportRuns
from ocs.store.fx import load_fx_table
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline

CHUNK = 20_000  # lines per chunk: one known-keys query and one commit each; bounds memory
BATCH = 250  # records per script call: Redis runs one call a few ms, live charging never waits longer
_SCRIPT_REFUSALS = {"N": ("unknown account", "unknown account"), "B": ("blocked", "account blocked"),
                    "U": ("bundles", "account has bundles (included seconds): not imported"),
                    "R": ("reseller", "account's reseller changed during the import"),
                    "S": ("reseller blocked", "the account's reseller is blocked")}


class Busy(Exception):
    """Another import of the same source is running."""


@dataclass
class _Chunk:
    charges: list[tuple[CdrRecord, Charge]] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    """Fewer cyclic-GC passes while importing: a chunk's ~100,000 live objects were re-scanned by every
    collection (a quarter of the CPU measured); the records make no reference cycles to collect."""
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(200_000, 50, 50)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


class Importer:
    def __init__(self, conn: Conn, rp: AutoPipeline, keys: Keys, *, node: str, source: str,
                 on_reject: Callable[[Rejected], None] | None = None, chunk: int = CHUNK, batch: int = BATCH) -> None:
        self.runs = ImportRuns(conn, source)
        self.charges = ImportCharges(rp, keys, node)
        self.rater = RecordRater(AccountView(rp, keys), self._load_tariff, self._load_fx, source)
        self.conn = conn
        self.node = node
        self.source = source
        self.on_reject = on_reject
        self.chunk, self.batch = chunk, batch
        self.run_id = 0
        self.summary = Summary(source, "")
        self._pg = asyncio.Lock()  # one connection: a chunk's queries and the previous chunk's commit take turns
        self._marked: dict[str, list[str]] = {}  # tag -> keys the previous chunk charged (step 6 pending)
        self._tags: dict[str, str] = {}
        self._locked = False
        self.after_charge: Callable[[], None] | None = None  # test hook: a crash between steps 4 and 5

    async def acquire(self) -> None:
        """Take the source's lock (:meth:`run` does, if the caller has not: it may want to know first)."""
        if not self._locked:
            if not await self.runs.lock():
                raise Busy(f"another import of source {self.source!r} is running")
            self._locked = True

    async def release(self) -> None:
        if self._locked:
            self._locked = False
            with contextlib.suppress(Exception):  # a lost connection released the lock already
                await self.runs.unlock()

    async def run(self, reader: CdrReader, file: str) -> Summary:
        t0 = time.perf_counter()
        self.summary.file = file
        await self.acquire()
        try:
            self.run_id = self.summary.import_id = await self.runs.open_run(file, self.node)
            await self._repair()
            with _fewer_collections():
                await self._chunks(reader)
            await self._progress(finished=True)
        finally:
            await self.release()
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    async def _chunks(self, reader: CdrReader) -> None:
        """Prepare chunk N+1 while chunk N is charged and recorded (module docstring)."""
        writing: asyncio.Future[None] | None = None
        try:
            for items in reader.chunks(self.chunk):
                prepared = await self._prepare(items)
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(self._write(prepared))
            if writing is not None:
                await writing
                writing = None
            await self._unmark()
        finally:
            if writing is not None:  # failed while preparing: let the write in flight end first
                await asyncio.gather(writing, return_exceptions=True)

    async def _repair(self) -> None:
        """Record the keys dead runs of this source charged but did not commit (module docstring)."""
        for dead in await self.runs.dead_runs(self.run_id):
            keys = await self.charges.marked(dead)
            async with self.conn.transaction():
                recorded = await self.runs.record(keys, dead)
                await self.runs.close_dead(dead, self.run_id, recorded)
            await self.charges.clear(dead)
            self.summary.repaired += recorded

    async def _load_tariff(self, name: str) -> Tariff | None:
        async with self._pg:
            return await tariffs.load_tariff(self.conn, name)

    async def _load_fx(self) -> FxTable:
        async with self._pg:
            return await load_fx_table(self.conn)

    async def _progress(self, *, finished: bool) -> None:
        s = self.summary
        await self.runs.progress(self.run_id, s.imported.count, s.duplicate.count, s.rejected.count, s.repaired,
                                 finished=finished)

    async def _prepare(self, items: list[CdrRecord | Rejected]) -> _Chunk:
        """Steps 1-3."""
        out = _Chunk()
        fresh = self._fresh(items, out.rejects)
        async with self._pg:
            known = await self.runs.known([r.key for r in fresh])
        todo = []
        for rec in fresh:
            if rec.key in known:
                self.summary.duplicate.add(rec.line)
            else:
                todo.append(rec)
        await self.rater.resolve(todo)
        for rec in todo:
            rated = self.rater.rate(rec)
            if isinstance(rated, Rejected):
                out.rejects.append(rated)
            else:
                out.charges.append((rec, rated))
        return out

    def _fresh(self, items: list[CdrRecord | Rejected], rejects: list[Rejected]) -> list[CdrRecord]:
        """Parsed records whose key is new in this chunk; the others rejected or duplicates."""
        seen: set[str] = set()
        out = []
        for it in items:
            if isinstance(it, Rejected):
                rejects.append(it)
            elif it.key in seen:
                self.summary.duplicate.add(it.line)
            else:
                seen.add(it.key)
                out.append(it)
        return out

    async def _write(self, chunk: _Chunk) -> None:
        """Steps 4-6 (6 for the previous chunk)."""
        codes = await self._charge(chunk.charges)
        if self.after_charge is not None:
            self.after_charge()
        await self._unmark()
        done = self._outcomes(chunk, codes)
        chunk.rejects.sort(key=lambda r: r.line)
        for rej in chunk.rejects:
            self.summary.reject(rej)
            if self.on_reject is not None:
                self.on_reject(rej)
        async with self._pg, self.conn.transaction():
            await self.runs.record([k for keys in done.values() for k in keys], self.run_id)
            await self._progress(finished=False)
        self._marked = done

    async def _unmark(self) -> None:
        marked, self._marked = self._marked, {}
        await asyncio.gather(*(self.charges.unmark(tag, self.run_id, keys) for tag, keys in marked.items()))

    def _tag(self, account: str) -> str:
        tag = self._tags.get(account)
        if tag is None:
            tag = self._tags[account] = self.charges.tag(account)
        return tag

    async def _charge(self, charges: list[tuple[CdrRecord, Charge]]) -> list[str]:
        """Script calls per shard batch, all pipelined; the code of each record, in ``charges`` order."""
        by_tag: dict[str, list[int]] = defaultdict(list)
        for i, (_rec, c) in enumerate(charges):
            by_tag[self._tag(c.account)].append(i)
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

    def _outcomes(self, chunk: _Chunk, codes: list[str]) -> dict[str, list[str]]:
        """Count each record's outcome; returns the keys this run charged, per tag (to record, then unmark)."""
        done: dict[str, list[str]] = defaultdict(list)
        for (rec, c), code in zip(chunk.charges, codes, strict=True):
            if code == "O":
                self.summary.imported.add(rec.line)
                self.summary.charged[c.currency] += c.charge
                done[self._tag(c.account)].append(c.key)
            elif code == "D":  # charged by this run already (the previous chunk, or a batch sent twice)
                self.summary.duplicate.add(rec.line)
            else:
                category, reason = _SCRIPT_REFUSALS.get(code, ("error", f"script answered {code!r}"))
                chunk.rejects.append(Rejected(rec.line, category, reason, rec.raw))
        return done
