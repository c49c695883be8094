"""Release the holds of sessions silent for validity + grace (docs/rating.md, RFC 4006 Tcc).

Safe to run on every daemon at once: candidates come from each shard's expiry
zset, and ``reap.lua`` re-checks the expiry atomically, so a session refreshed
in between, or reaped by another node, is left alone.  The reaper also
refreshes the active-session and reserved-money gauges.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog
from redis.asyncio import Redis

from ocs.config import Config
from ocs.metrics import Metrics
from ocs.model import StoreUnavailable
from ocs.store import placement
from ocs.store.charging_scripts import parse_member
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.replies import text
from ocs.store.scripts import Script
from ocs.store.session_state import ms

log = structlog.get_logger("ocs.reaper")
BATCH = 200


class Reaper:
    def __init__(self, cfg: Config, redis: Redis, metrics: Metrics, *,
                 keys: Keys | None = None, rp: AutoPipeline | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.keys = keys or Keys(cfg.redis.key_prefix, cfg.charging.shards)
        self.rp = rp or AutoPipeline(redis)
        self.script = Script("reap")
        self.rp.register(self.script)
        self.ttl = cfg.charging.tombstone_seconds

    async def run(self) -> None:
        interval = max(1, self.cfg.charging.reaper_interval_seconds)
        while True:
            try:
                await self.reap_once()
                await self.refresh_gauges()
            except StoreUnavailable as exc:
                log.warning("reaper_redis_unavailable", error=str(exc))
            except Exception as exc:  # keep reaping; one bad session must not stop the loop
                log.error("reaper_error", error=repr(exc))
            await asyncio.sleep(interval)

    async def reap_once(self, now: datetime | None = None) -> int:
        """Reap every expired session of every shard; returns how many were released."""
        now = now or datetime.now(UTC)
        now_ms = ms(now)
        results = await asyncio.gather(*(self._reap_shard(s, now, now_ms) for s in range(self.keys.shards)))
        return sum(results)

    async def _reap_shard(self, shard: int, now: datetime, now_ms: int) -> int:
        expiry = self.keys.expiry(shard)
        members = await self.rp.call("ZRANGEBYSCORE", expiry, "-inf", now_ms, "LIMIT", 0, BATCH)
        reaped = 0
        for raw in members:
            member = text(raw)
            account, sid, rg = parse_member(member)
            if self.keys.shard_for(account) != shard:  # a reseller's subscriber placed since this process loaded
                await placement.refresh(self.rp.call, self.keys, account)
            keys = [self.keys.account(account), self.keys.session(account, sid, rg), expiry,
                    self.keys.usage(shard), self.keys.seq(shard), self.keys.totals(shard), self.keys.live(account)]
            code, _released = await self.rp.script(
                self.script, keys, [now_ms, member, f"s{shard:02d}", now.isoformat(), self.ttl])
            if text(code) == "REAPED":
                reaped += 1
                self.metrics.reaped.inc()
                log.info("session_expired", session=sid, account=account, rating_group=rg)
        return reaped

    async def refresh_gauges(self) -> None:
        counts = await asyncio.gather(*(self.rp.call("ZCARD", self.keys.expiry(s))
                                        for s in range(self.keys.shards)))
        self.metrics.active_sessions.set(sum(int(c) for c in counts))
        totals = await asyncio.gather(*(self.rp.call("HGET", self.keys.totals(s), "rsv")
                                        for s in range(self.keys.shards)))
        reserved = sum(int(text(v) or 0) for v in totals)  # kept by the scripts that move holds
        self.metrics.reserved.set(reserved)
