"""Copy usage records and CDRs from the Redis streams to PostgreSQL, exactly once.

Exactly once = at least once + idempotent writes:
- records are read with a consumer group (``flush``, consumer = node name), so
  nothing is dropped: an entry leaves the stream only after XACK + XDEL;
- a batch is COPYed into a temp table and moved with
  ``INSERT ... ON CONFLICT (record_id) DO NOTHING`` in one transaction, so a
  batch replayed after a crash between COMMIT and XACK inserts nothing twice;
- acknowledgement happens only after COMMIT; on start (and after any failure)
  the consumer re-reads its own pending entries, and XAUTOCLAIM adopts entries a
  dead node left pending;
- while PostgreSQL is down the loop backs off (cap :data:`MAX_BACKOFF`) and the
  stream keeps everything; charging does not wait for PostgreSQL;
- a batch PostgreSQL *refuses* (a value it cannot store: the error is about the
  data, not the connection) is bisected until the refused records stand alone;
  each goes whole to ``usage_dead_letters`` (:mod:`ocs.store.dead_letters`),
  is counted and logged at error level, and the flush goes on: one poison
  record must never hold back the records behind it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from ocs.config import Config
from ocs.metrics import Metrics
from ocs.model import StoreUnavailable
from ocs.store import POSTGRES_DOWN, POSTGRES_REFUSED
from ocs.store.dead_letters import record_dead_letters
from ocs.store.keys import USAGE_GROUP, Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.usage_rows import Entry, write_batch
from ocs.wholesale.cost_cache import CostCache
from ocs.wholesale.enrich import add_costs

log = structlog.get_logger("ocs.flush")
MAX_BACKOFF = 5.0
CLAIM_IDLE_MS = 60_000

async def _write_or_bisect(pool: asyncpg.Pool, entries: list[Entry],
                           alerts: list[tuple[str, str]]) -> list[tuple[Entry, str]]:
    """Write ``entries``; returns the ones PostgreSQL refused even alone, with the error.

    Each half is its own transaction, so what can be written is committed and only the refused
    records are left.  A connection failure (:data:`POSTGRES_DOWN`) propagates: the caller backs
    off and nothing is acknowledged.  The (event, channel) of alerts queued by committed halves
    are appended to ``alerts``.
    """
    try:
        async with pool.acquire() as conn:
            alerts += await write_batch(conn, entries)
        return []
    except POSTGRES_REFUSED as exc:
        if len(entries) == 1:
            return [(entries[0], f"{type(exc).__name__}: {exc}")]
        mid = len(entries) // 2
        return [*await _write_or_bisect(pool, entries[:mid], alerts),
                *await _write_or_bisect(pool, entries[mid:], alerts)]


def _str(value: bytes) -> str:
    """A stream field as text; an undecodable octet survives (surrogateescape) for the dead letter."""
    return value.decode("utf-8", "surrogateescape")


class Flusher:
    def __init__(self, cfg: Config, redis: Redis, pool: asyncpg.Pool, metrics: Metrics, *,
                 keys: Keys | None = None, rp: AutoPipeline | None = None) -> None:
        self.cfg = cfg
        self.redis = redis
        self.pool = pool
        self.metrics = metrics
        self.rp = rp or AutoPipeline(redis)
        self.keys = keys or Keys(cfg.redis.key_prefix, cfg.charging.shards)
        self.consumer = cfg.node.name
        self.batch = max(1, cfg.postgres.flush_batch)
        # per stream: a round reads about ``batch`` records in all, not ``batch`` from each of the
        # shards (decoding 16 x 2,000 entries blocked the charging loop for ~0.5 s after an outage)
        self.per_stream = max(1, -(-self.batch // cfg.charging.shards))
        self.interval = max(1, cfg.postgres.flush_interval_ms) / 1000
        self._recover = True  # re-read our own pending entries first
        self._groups_ready = False
        self._last_claim = 0.0
        self.after_commit: Callable[[list[Entry]], None] | None = None  # test hook (crash injection)
        self.costs = CostCache(pool, self.rp, self.keys)  # provider and cost of each CDR (docs/wholesale.md)

    async def _ensure_groups(self) -> None:
        if self._groups_ready:
            return
        for stream in self.keys.all_usage_streams():
            try:
                await self.rp.call("XGROUP", "CREATE", stream, USAGE_GROUP, "0", "MKSTREAM")
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups_ready = True

    async def _claim_orphans(self) -> None:
        """Adopt entries left pending by consumers that died (another node, an old name)."""
        now = time.monotonic()
        if now - self._last_claim < CLAIM_IDLE_MS / 1000:
            return
        self._last_claim = now
        for stream in self.keys.all_usage_streams():
            # redis-py's own xautoclaim, which knows the JUSTID reply shape.  Sent as a raw command
            # through a pipeline, redis-py's XAUTOCLAIM callback parsed the bare ids as (id, fields)
            # entries and raised "'int' object is not iterable" whenever there was something to claim
            # (only after a restart under a new name or a node's death: hence seen once in the fuzz run).
            claimed = await self.redis.xautoclaim(stream, USAGE_GROUP, self.consumer, CLAIM_IDLE_MS,
                                                  "0-0", count=self.batch, justid=True)
            if claimed:
                self._recover = True

    async def _read(self) -> list[Entry]:
        start = "0" if self._recover else ">"
        entries: list[Entry] = []
        # One stream at a time, not the 16 reads in one pipeline: Redis runs a client's pipelined
        # commands back to back, and building ~2,000 entries' replies held every charging script
        # behind them for milliseconds (the open-loop p99, docs/performance.md).
        for s in self.keys.all_usage_streams():
            reply = await self.rp.call("XREADGROUP", "GROUP", USAGE_GROUP, self.consumer, "COUNT", self.per_stream,
                                       "STREAMS", s, start)
            for stream, items in reply or []:
                for entry_id, raw in items:
                    if raw:  # a pending entry deleted meanwhile comes back empty
                        entries.append((_str(stream), _str(entry_id), {_str(k): _str(v) for k, v in raw.items()}))
                    else:
                        await self._ack([(_str(stream), _str(entry_id), {})])
        if self._recover and not entries:
            self._recover = False
            return await self._read()
        return entries

    async def _ack(self, entries: list[Entry]) -> None:
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _f in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():  # a stream at a time, as _read and for the same reason
            await asyncio.gather(self.rp.call("XACK", stream, USAGE_GROUP, *ids), self.rp.call("XDEL", stream, *ids))

    async def flush_once(self) -> int:
        """Move one batch to PostgreSQL; returns how many records left the stream."""
        await self._ensure_groups()
        await self._claim_orphans()
        entries = await self._read()
        if not entries:
            return 0
        alerts: list[tuple[str, str]] = []
        try:
            book = await self.costs.book()
            if book is not None:  # priced once, in place, before any bisection (docs/wholesale.md)
                await add_costs((f for _s, _i, f in entries), book)
            refused = await _write_or_bisect(self.pool, entries, alerts)
            if refused:
                await self._dead_letter(refused)
            if self.after_commit is not None:
                self.after_commit(entries)
        except BaseException:
            self._recover = True  # whatever happened, re-read our pending entries next time
            raise
        await self._ack(entries)
        self.metrics.flushed.inc(len(entries) - len(refused))
        for event, channel in alerts:  # committed: each is in the outbox once (docs/alerts.md)
            self.metrics.child(self.metrics.alerts, event, channel, "queued").inc()
        return len(entries)

    async def _dead_letter(self, refused: list[tuple[Entry, str]]) -> None:
        """Keep each refused record whole in ``usage_dead_letters`` (before its entry is acknowledged)."""
        async with self.pool.acquire() as conn:
            await record_dead_letters(conn, refused, self.consumer)
        self.metrics.dead_letters.inc(len(refused))
        for (stream, entry_id, f), error in refused:
            log.error("usage_record_dead_lettered", stream=stream, entry=entry_id,
                      record_id=f.get("record_id", ""), session=f.get("session_id", ""), error=error,
                      hint="ocsctl usage dead-letters; ocsctl usage retry ID once the cause is fixed")

    async def update_lag(self) -> None:
        """Records not yet in PostgreSQL (unread + read but unacknowledged), pending alone, oldest age."""
        streams = self.keys.all_usage_streams()
        lens = await asyncio.gather(*(self.rp.call("XLEN", s) for s in streams))
        self.metrics.stream_lag.set(sum(int(n) for n in lens))  # acknowledged entries are XDELed
        pend = await asyncio.gather(*(self.rp.call("XPENDING", s, USAGE_GROUP) for s in streams),
                                    return_exceptions=True)
        self.metrics.stream_pending.set(sum(_pending_count(p) for p in pend))
        firsts = await asyncio.gather(*(self.rp.call("XRANGE", s, "-", "+", "COUNT", 1) for s in streams))
        oldest = [int(_str(f[0][0]).split("-")[0]) for f in firsts if f]
        age = (time.time() * 1000 - min(oldest)) / 1000 if oldest else 0.0
        self.metrics.stream_lag_seconds.set(max(0.0, age))

    async def run_lag(self, every: float = 1.0) -> None:
        """The lag gauges on their own clock: they must tell the truth exactly when flushing fails."""
        while True:
            try:
                await self.update_lag()
            except (StoreUnavailable, RedisError) as exc:
                log.debug("lag_update_failed", error=repr(exc))
            await asyncio.sleep(every)

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                n = await self.flush_once()
                backoff = 0.1
                if n < self.per_stream:  # no stream had a full batch waiting: idle a moment
                    await asyncio.sleep(self.interval)
            except POSTGRES_DOWN as exc:
                self.metrics.flush_errors.inc()
                log.warning("flush_failed", error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)
            except (StoreUnavailable, RedisError) as exc:
                log.warning("flush_redis_unavailable", error=repr(exc), retry_in=backoff)
                self._groups_ready = False
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF, backoff * 2)

    async def flush_all(self, max_rounds: int = 1000) -> int:
        """Drain the streams (shutdown, tests); stops at the first empty read."""
        total = 0
        for _ in range(max_rounds):
            n = await self.flush_once()
            total += n
            if n == 0:
                break
        return total


def _pending_count(reply: Any) -> int:
    """``XPENDING key group`` summary -> count (redis-py parses it into a dict; an error counts 0)."""
    if isinstance(reply, dict):
        return int(reply.get("pending") or 0)
    if isinstance(reply, list | tuple) and reply:
        return int(reply[0] or 0)
    return 0
