"""The REST API in-process over the real stores, for integration tests (httpx over ASGI, no socket).

:func:`api` yields an :class:`Api` with the app behind the same guard ocsd serves (concurrency cap,
audit log), a token per role, and helpers to make a tariff and accounts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from ocs import config
from ocs.api import tokens
from ocs.api.app import guarded
from ocs.api.deps import Services
from ocs.billing import customers, resellers
from ocs.rating.tariff import RateRow
from ocs.store import tariffs
from ocs.store.keys import Keys

ROLES = {"admin": None, "operator": None, "readonly": None, "reseller": "r1", "other": "r2"}


@dataclass
class Api:
    client: httpx.AsyncClient
    pg: asyncpg.Connection
    svc: Services
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def call(self, method: str, path: str, role: str = "admin", **kw: Any) -> httpx.Response:
        headers = {**(self.auth(role) if role else {}), **kw.pop("headers", {})}
        return await self.client.request(method, f"/api/v1{path}", headers=headers, **kw)

    async def tariff(self, name: str = "t1", currency: str = "EUR") -> None:
        rows = [RateRow("49", "Germany", 60_000, line=2),
                RateRow("4930", "Berlin", 30_000, connect_fee=10_000, first_increment=30, next_increment=6, line=3)]
        await tariffs.import_version(self.pg, name, currency, "UTC", rows, [])

    async def account(self, account_id: str, reseller: str | None = None, tariff: str = "t1") -> None:
        new = customers.NewAccount(account_id, "EUR", tariff)
        if reseller is None:
            await customers.create(self.pg, new)
        else:
            await resellers.create_subscriber(self.pg, new, reseller)
        await customers.sync(self.pg, self.svc.redis, self.svc.keys, account_id)


@pytest.fixture
async def api(pg: asyncpg.Connection, pg_dsn: str, redis_client: aioredis.Redis,
              key_prefix: str) -> AsyncIterator[Api]:
    base = config.Config()
    cfg = dataclasses.replace(base, api=dataclasses.replace(base.api, token_cache_seconds=0))
    pool = await asyncpg.create_pool(pg_dsn, min_size=0, max_size=4)
    svc = Services(cfg, pool, redis_client, Keys(key_prefix, cfg.charging.shards), tokens.TokenCache(pool, 0))
    transport = httpx.ASGITransport(app=guarded(svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        made = Api(client, pg, svc)
        await made.tariff("wholesale")
        for reseller in ("r1", "r2"):  # the resellers the reseller tokens are confined to
            await resellers.create(pg, redis_client, svc.keys, reseller, "EUR", "wholesale", 0)
        for name, reseller in ROLES.items():
            made.tokens[name] = await tokens.create(pg, name, "reseller" if reseller else name, reseller)
        try:
            yield made
        finally:
            await pool.close()
            await pg.execute("TRUNCATE api_tokens, api_audit, products, subscriptions, fees, resellers CASCADE")
