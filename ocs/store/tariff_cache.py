"""Compiled tariffs per (name, version), loaded from PostgreSQL and kept in memory.

Sessions remember the tariff name and version they started on, so every daemon
re-rates a session identically whatever was imported since.  The current version
of each name is re-read when ``ocsctl tariff import`` bumps ``tariffs:gen`` in
Redis (checked at most every :data:`CHECK_SECONDS`) or on SIGHUP.

Charging must go on while PostgreSQL is down (docs/provisioning.md, runbook): every
tariff's current version is loaded at start-up (:meth:`TariffCache.preload`),
and when PostgreSQL cannot be asked which version is current, the last one
known keeps rating until the next change can be read.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

import asyncpg
import structlog

from ocs.rating.engine import CompiledTariff
from ocs.rating.tariff import Tariff
from ocs.store import POSTGRES_DOWN
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.replies import text

CHECK_SECONDS = 2.0
MAX_VERSIONS = 16  # default bound of compiled versions kept (config ``cache.tariff_versions``)
log = structlog.get_logger("ocs.tariffs")


class TariffNotFound(LookupError):
    """No tariff of that name (or version) in PostgreSQL."""


class TariffSource(Protocol):
    """Where tariff versions come from (PostgreSQL in the daemon, memory in tests and benchmarks)."""

    async def names(self) -> list[str]: ...

    async def current_version(self, name: str) -> int | None: ...

    async def load(self, name: str, version: int) -> Tariff | None: ...


class PgTariffSource:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def names(self) -> list[str]:
        async with self.pool.acquire() as conn:
            return [r["name"] for r in await conn.fetch("SELECT name FROM tariffs ORDER BY name")]

    async def current_version(self, name: str) -> int | None:
        from ocs.store import tariffs

        async with self.pool.acquire() as conn:
            return await tariffs.current_version(conn, name)

    async def load(self, name: str, version: int) -> Tariff | None:
        from ocs.store import tariffs

        async with self.pool.acquire() as conn:
            return await tariffs.load_tariff(conn, name, version)


class MemoryTariffSource:
    """Tariffs held in a dict: {name: [version 1, version 2, ...]}."""

    def __init__(self, tariffs: dict[str, list[Tariff]] | None = None) -> None:
        self.tariffs = tariffs or {}

    def add(self, tariff: Tariff) -> None:
        self.tariffs.setdefault(tariff.name, []).append(tariff)

    async def names(self) -> list[str]:
        return sorted(self.tariffs)

    async def current_version(self, name: str) -> int | None:
        versions = self.tariffs.get(name)
        return versions[-1].version if versions else None

    async def load(self, name: str, version: int) -> Tariff | None:
        return next((t for t in self.tariffs.get(name, []) if t.version == version), None)


class TariffCache:
    """Compiled versions, at most ``max_versions`` of them; a tariff's current version is never dropped.

    Beyond the bound the oldest-loaded version that is no tariff's current one is dropped (with more
    tariffs than the bound, only current versions stay); a session still rating on a dropped
    version has it loaded again (PostgreSQL, else the Redis snapshot).
    """

    def __init__(self, source: TariffSource, rp: AutoPipeline, keys: Keys, max_versions: int = MAX_VERSIONS) -> None:
        self.source = source
        self.rp = rp
        self.keys = keys
        self.max = max_versions
        self._compiled: OrderedDict[tuple[str, int], CompiledTariff] = OrderedDict()
        self._current: dict[str, int] = {}
        self._known: dict[str, int] = {}  # last current version seen per name; never cleared
        self._gen = ""
        self._checked = 0.0
        self._lock = asyncio.Lock()
        # called when tariffs:gen moves or on SIGHUP: what else reloads on the same signal (FX rates)
        self.on_change: list[Callable[[], None]] = []

    async def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_SECONDS:
            return
        self._checked = now
        gen = text(await self.rp.call("GET", self.keys.tariffs_gen()))
        if gen != self._gen:
            self._gen = gen
            self._current.clear()
            for hook in self.on_change:
                hook()

    async def reload(self) -> None:
        """Forget which version is current (SIGHUP); compiled versions stay valid."""
        self._current.clear()
        self._checked = 0.0
        for hook in self.on_change:
            hook()

    async def current(self, name: str) -> CompiledTariff:
        await self._maybe_refresh()
        version = self._current.get(name)
        if version is None:
            async with self._lock:
                version = self._current.get(name)  # a request queued on the lock finds it loaded
                if version is None:
                    version = await self._ask_current(name)
                    self._current[name] = self._known[name] = version
        return await self.get(name, version)

    async def _ask_current(self, name: str) -> int:
        try:
            version = await self.source.current_version(name)
        except POSTGRES_DOWN as exc:
            known = self._known.get(name)
            if known is None:
                raise
            log.warning("tariff_source_unavailable", tariff=name, using_version=known, error=repr(exc))
            return known
        if version is None:
            raise TariffNotFound(name)
        return version

    async def preload(self) -> int:
        """Load every tariff's current version (start-up); returns how many."""
        names = await self.source.names()
        for name in names:
            await self.current(name)
        return len(names)

    async def get(self, name: str, version: int) -> CompiledTariff:
        key = (name, version)
        compiled = self._compiled.get(key)
        if compiled is None:
            async with self._lock:
                compiled = self._compiled.get(key)
                if compiled is None:
                    tariff = await self.source.load(name, version)
                    if tariff is None:
                        raise TariffNotFound(f"{name} v{version}")
                    compiled = CompiledTariff(tariff)
                    self._compiled[key] = compiled
                    self._evict(key)
        return compiled

    def _evict(self, keep: tuple[str, int]) -> None:
        """Oldest first, beyond the bound; never ``keep`` (just loaded) nor a current version."""
        excess = len(self._compiled) - self.max
        if excess <= 0:
            return
        for key in list(self._compiled):
            if excess <= 0:
                break
            if key != keep and self._known.get(key[0]) != key[1] and self._current.get(key[0]) != key[1]:
                del self._compiled[key]
                excess -= 1
