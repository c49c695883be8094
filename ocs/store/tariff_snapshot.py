"""Tariff versions kept in Redis, so ``ocsd`` can start and charge while PostgreSQL is down.

docs/architecture.md promises that charging needs PostgreSQL for nothing on the
request path.  Rating needs tariffs, which live in PostgreSQL; a daemon that is
restarted (or killed) during a PostgreSQL outage used to be unable to start at
all.  :class:`SnapshotTariffSource` wraps the PostgreSQL source: every version
it loads is written to Redis (compressed JSON, refreshed for 30 days), and the
current version of every name is kept in a hash.  When PostgreSQL cannot be
asked, the same questions are answered from Redis, which every node shares.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from datetime import datetime
from typing import Any

import structlog

from ocs.model import Service
from ocs.rating.tariff import BandInterval, RateRow, Tariff
from ocs.store import POSTGRES_DOWN
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.replies import text
from ocs.store.tariff_cache import TariffSource

KEEP_SECONDS = 30 * 86400
log = structlog.get_logger("ocs.tariffs")


def encode(t: Tariff) -> bytes:
    doc = {"name": t.name, "version": t.version, "currency": t.currency, "timezone": t.timezone,
           "rows": [[r.prefix, r.destination, r.rate, r.connect_fee, r.first_increment, r.next_increment, r.band,
                     r.effective_from.isoformat() if r.effective_from else None, r.service.value, r.line]
                    for r in t.rows],
           "bands": [[b.band, sorted(b.days), b.start_minute, b.end_minute] for b in t.bands]}
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)


def decode(blob: bytes) -> Tariff:
    doc: dict[str, Any] = json.loads(zlib.decompress(blob))
    return Tariff(
        name=doc["name"], version=int(doc["version"]), currency=doc["currency"], timezone=doc["timezone"],
        rows=tuple(RateRow(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6],
                           datetime.fromisoformat(r[7]) if r[7] else None, Service(r[8]), int(r[9]))
                   for r in doc["rows"]),
        bands=tuple(BandInterval(b[0], frozenset(b[1]), int(b[2]), int(b[3])) for b in doc["bands"]),
    )


class NoSnapshot(LookupError):
    """PostgreSQL is down and Redis holds no copy of what was asked."""


class SnapshotTariffSource:
    """A :class:`~ocs.store.tariff_cache.TariffSource` that remembers in Redis and falls back on it."""

    def __init__(self, primary: TariffSource, rp: AutoPipeline, keys: Keys) -> None:
        self.primary = primary
        self.rp = rp
        self.keys = keys
        self.fallbacks = 0  # answers given from Redis because PostgreSQL was down

    async def names(self) -> list[str]:
        try:
            return await self.primary.names()
        except POSTGRES_DOWN as exc:
            names = sorted(text(n) for n in await self.rp.call("HKEYS", self.keys.tariff_snapshot_current()))
            if not names:
                raise NoSnapshot("postgres is down and Redis holds no tariff snapshot") from exc
            self._fell_back(exc, tariffs=len(names))
            return names

    async def current_version(self, name: str) -> int | None:
        try:
            version = await self.primary.current_version(name)
        except POSTGRES_DOWN as exc:
            raw = text(await self.rp.call("HGET", self.keys.tariff_snapshot_current(), name))
            if not raw:
                raise
            self._fell_back(exc, tariff=name, version=int(raw))
            return int(raw)
        if version is not None:
            await self.rp.call("HSET", self.keys.tariff_snapshot_current(), name, version)
        return version

    async def load(self, name: str, version: int) -> Tariff | None:
        key = self.keys.tariff_snapshot(name, version)
        try:
            tariff = await self.primary.load(name, version)
        except POSTGRES_DOWN as exc:
            blob = await self.rp.call("GET", key)
            if not blob:
                raise
            self._fell_back(exc, tariff=name, version=version)
            return await asyncio.to_thread(decode, blob if isinstance(blob, bytes) else blob.encode())
        if tariff is not None and await self.rp.call("EXPIRE", key, KEEP_SECONDS) == 0:  # not stored yet
            blob = await asyncio.to_thread(encode, tariff)
            await self.rp.call("SET", key, blob, "EX", KEEP_SECONDS)
        return tariff

    def _fell_back(self, exc: BaseException, **what: Any) -> None:
        self.fallbacks += 1
        log.warning("tariff_from_redis_snapshot", reason=repr(exc), **what)
