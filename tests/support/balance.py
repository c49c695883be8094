"""Shared fixtures for balance-engine tests: a Charging core on real Redis with in-memory tariffs."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs import config
from ocs.app import build_core
from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, Service
from ocs.rating.tariff import RateRow, Tariff
from ocs.store.flush import Flusher
from ocs.store.keys import Keys
from ocs.store.reaper import Reaper
from ocs.store.tariff_cache import MemoryTariffSource

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday morning


def demo_tariff(version: int = 1) -> Tariff:
    return Tariff(
        name="t", version=version, currency="EUR", timezone="UTC",
        rows=(
            RateRow("49", "Germany fixed", 60_000, 20_000, 30, 6, line=2),
            RateRow("4915", "Germany mobile", 120_000, 0, 60, 60, line=3),
            RateRow("44", "United Kingdom", 30_000, 0, 1, 1, line=4),
            RateRow("10", "Data RG 10", 1_000_000, 0, 1024, 1024, service=Service.DATA, line=5),
            RateRow("49", "SMS Germany", 90_000, 0, 1, 1, service=Service.SMS, line=6),
        ),
    )


def make_cfg(prefix: str, dsn: str = "postgresql://postgres@127.0.0.1:5432/x", **charging: int) -> config.Config:
    cfg = config.from_mapping({"redis": {"key_prefix": prefix}, "postgres": {"dsn": dsn}}, env={})
    return dataclasses.replace(cfg, charging=dataclasses.replace(cfg.charging, **charging))


async def provision(r: aioredis.Redis, keys: Keys, account: str, balance: int, *, postpaid: bool = False,
                    credit_limit: int = 0, status: str = "active", alias: str | None = None,
                    password: str | None = None) -> None:
    mapping: dict[str, str | int] = {
        "bal": balance, "rsv": 0, "cl": credit_limit, "type": "postpaid" if postpaid else "prepaid",
        "st": status, "cur": "EUR", "tariff": "t",
    }
    if password:
        mapping["pw"] = password
    await r.hset(keys.account(account), mapping=mapping)
    if alias:
        await r.set(keys.alias(alias), account)


async def account_state(r: aioredis.Redis, keys: Keys, account: str) -> tuple[int, int]:
    bal, rsv = await r.hmget(keys.account(account), "bal", "rsv")
    return int(bal), int(rsv)


def voice(session: str, n: int, *, sub: str = "alice", used: int = 0, req: int | None = None,
          dest: str = "4930123456", at: datetime = T0, total: bool = False) -> ChargeRequest:
    return ChargeRequest(subscriber=sub, session=session, request_number=n, service=Service.VOICE,
                         destination=dest, event_time=at, used_units=used, requested_units=req,
                         used_is_total=total, protocol="test", origin="nas1", calling="4915110000001")


@pytest.fixture
async def core(redis_client: aioredis.Redis, key_prefix: str) -> AsyncIterator[Charging]:
    cfg = make_cfg(key_prefix)
    src = MemoryTariffSource()
    src.add(demo_tariff())
    c = build_core(cfg, redis_client, Metrics(), src)
    await c.start()
    yield c
    await c.close()


@pytest.fixture
async def flusher(core: Charging, redis_client: aioredis.Redis, pg_dsn: str,
                  pg: asyncpg.Connection) -> AsyncIterator[Flusher]:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    f = Flusher(core.cfg, redis_client, pool, core.metrics)
    yield f
    await pool.close()


@pytest.fixture
def reaper(core: Charging, redis_client: aioredis.Redis) -> Reaper:
    return Reaper(core.cfg, redis_client, core.metrics)
