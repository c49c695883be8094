"""What a CDR import writes: runs and import keys in PostgreSQL, charges in Redis (``import.lua``).

The durable duplicate check is the table ``cdr_import_keys`` (unique ``(source, key)``); the money
and its records move in Redis, one atomic script call per batch of one shard; the run's marker set
per shard (:func:`marks_key`) says which records the run charged until their keys are committed
in PostgreSQL.  Why this order is safe at every crash point: ocs/mediation/importer.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.replies import text
from ocs.store.scripts import Script

Conn = asyncpg.Connection | PoolConnectionProxy
FS, RS = "\x1f", "\x1e"  # field and record separators of the packed batch (import.lua)
LOCK_CLASS = 0x0C5D_0013  # advisory lock class of "one import per source at a time"
PROTOCOL = "import"  # protocol of imported usage records and CDRs
CAUSE = "imported"  # termination cause of imported CDRs (the file says nothing about it)


@dataclass(slots=True)
class Charge:
    """One rated record, as ``import.lua`` writes it (all text already checked for separators)."""

    account: str
    key: str
    sid: str
    calling: str
    called: str
    prefix: str
    destination: str
    start: str
    end: str
    duration: int
    billed: int
    charge: int
    currency: str
    tariff: str
    tariff_version: int
    rate_currency: str = ""  # FX: the tariff's currency when the account pays in another
    fx_rate: str = ""
    reseller: str = ""  # a reseller's subscriber: the reseller, debited ``reseller_charge`` in the same step
    reseller_charge: int = 0

    def packed(self, index: int, rindex: int = 0) -> str:
        """``index``/``rindex``: the account's and its reseller's (0: none) position among the call's accounts."""
        plain = FS.join((str(index), self.key, self.sid, self.calling, self.called, self.prefix,
                         self.destination.replace(FS, "\ufffd").replace(RS, "\ufffd"), self.start, self.end,
                         str(self.duration), str(self.billed), str(self.charge), self.currency, self.tariff,
                         str(self.tariff_version), PROTOCOL, CAUSE, self.rate_currency, self.fx_rate))
        return plain if not rindex else f"{plain}{FS}{rindex}{FS}{self.reseller_charge}"


class ImportRuns:
    """PostgreSQL side: runs, the source lock, import keys."""

    def __init__(self, conn: Conn, source: str) -> None:
        self.conn = conn
        self.source = source

    async def lock(self) -> bool:
        """One import per source at a time (session lock: released if the process dies)."""
        return bool(await self.conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", LOCK_CLASS,
                                             self.source))

    async def unlock(self) -> None:
        await self.conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", LOCK_CLASS, self.source)

    async def open_run(self, file: str, node: str) -> int:
        return int(await self.conn.fetchval(
            "INSERT INTO cdr_imports (source, file, node) VALUES ($1, $2, $3) RETURNING id", self.source, file, node))

    async def dead_runs(self, current: int) -> list[int]:
        """Runs of this source that never finished (under the source lock, none of them is running)."""
        rows = await self.conn.fetch("SELECT id FROM cdr_imports WHERE source = $1 AND finished_at IS NULL"
                                     " AND id <> $2 ORDER BY id", self.source, current)
        return [int(r["id"]) for r in rows]

    async def close_dead(self, dead: int, by: int, recorded: int) -> None:
        await self.conn.execute("UPDATE cdr_imports SET finished_at = now(), repaired_by = $2,"
                                " imported = imported + $3 WHERE id = $1", dead, by, recorded)

    async def known(self, keys: list[str]) -> set[str]:
        """Which of these keys were imported before (by any run of this source)."""
        if not keys:
            return set()
        rows = await self.conn.fetch("SELECT key FROM cdr_import_keys WHERE source = $1 AND key = ANY($2::text[])",
                                     self.source, keys)
        return {r["key"] for r in rows}

    async def record(self, keys: list[str], run: int) -> int:
        """Commit keys as imported (idempotent: a key already there stays with its first run); how many were new."""
        if not keys:
            return 0
        status = await self.conn.execute("INSERT INTO cdr_import_keys (source, key, import_id)"
                                         " SELECT $1, k, $2 FROM unnest($3::text[]) AS k ON CONFLICT DO NOTHING",
                                         self.source, run, keys)
        return int(status.split()[-1])  # "INSERT 0 <rows>"

    async def progress(self, run: int, imported: int, duplicate: int, rejected: int, repaired: int,
                       *, finished: bool) -> None:
        await self.conn.execute(
            "UPDATE cdr_imports SET imported = $2, duplicate = $3, rejected = $4, repaired = $5,"
            " finished_at = CASE WHEN $6 THEN now() END WHERE id = $1",
            run, imported, duplicate, rejected, repaired, finished)


def marks_key(tag: str, run: int) -> str:
    """The marker set of run ``run`` in the shard of ``tag``: keys of the records it charged there and has
    not yet committed to PostgreSQL (deleted once it has; ``Keys`` lists the permanent keys)."""
    return f"{tag}:imp:{run}"


class ImportCharges:
    """Redis side: ``import.lua`` per shard batch, and the runs' marker sets.

    Batches are grouped by the account key's hash tag (``Keys.tag_of``), so the account hashes, the
    shard's usage stream and the marker set of one call share a slot whatever decides the shard.
    """

    def __init__(self, rp: AutoPipeline, keys: Keys, node: str) -> None:
        self.rp = rp
        self.keys = keys
        self.node = node
        self.script = Script("import")
        rp.register(self.script)

    def tag(self, account: str) -> str:
        return self.keys.tag_of(account)

    async def charge(self, tag: str, run: int, batch: list[Charge]) -> str:
        """One atomic step for ``batch`` (all under ``tag``): one code character per record (import.lua)."""
        index: dict[str, int] = {}
        for c in batch:
            index.setdefault(c.account, len(index) + 1)
            if c.reseller:  # same hash tag as its subscriber (ocs/store/placement.py): same slot
                index.setdefault(c.reseller, len(index) + 1)
        keys = [f"{tag}:usage", marks_key(tag, run), *(self.keys.account(a) for a in index)]
        args = [self.node, FS.join(index),
                RS.join(c.packed(index[c.account], index[c.reseller] if c.reseller else 0) for c in batch)]
        return text(await self.rp.script(self.script, keys, args))

    def _tags(self) -> list[str]:
        return [self.keys.tag(s) for s in range(self.keys.shards)]

    async def marked(self, run: int) -> list[str]:
        """Every key a run charged whose marker set is still there (all shards)."""
        replies = await asyncio.gather(*(self.rp.call("SMEMBERS", marks_key(t, run)) for t in self._tags()))
        return [text(m) for members in replies for m in members or []]

    async def unmark(self, tag: str, run: int, keys: list[str]) -> None:
        """Take keys out of a run's marker set once PostgreSQL has them (and the next batch was checked)."""
        if keys:
            await self.rp.call("SREM", marks_key(tag, run), *keys)

    async def clear(self, run: int, tags: Iterable[str] | None = None) -> None:
        """Drop marker sets once their keys are committed in PostgreSQL (they are the only copy before)."""
        names = [marks_key(t, run) for t in (self._tags() if tags is None else tags)]
        await asyncio.gather(*(self.rp.call("DEL", name) for name in names))
