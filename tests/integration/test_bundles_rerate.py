"""Re-rating a call a bundle partly covered prices only the seconds charged in money (docs/wholesale.md)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.store.keys import Keys
from tests.integration.test_rerate import V1, V2, Run, account, balance, charged, ctl, rerate_json, tariff

pytestmark = pytest.mark.integration
__all__ = ["ctl"]


async def test_included_seconds_are_not_rerated(ctl: Run, tmp_path: Path, pg: asyncpg.Connection,
                                                redis_client: aioredis.Redis, key_prefix: str) -> None:
    run = ctl
    keys = Keys(key_prefix, 16)
    tariff(run, tmp_path, "t", V1)
    account(run, "a1")
    # 100 s talked, 61 included: charged as a 39 s call, 0.02 + 42 s at 0.06/min = 0.062
    record = await charged(pg, redis_client, keys, "a1", "4930111", 100, 62_000)
    await pg.execute("UPDATE cdrs SET included_seconds = 61, billed_seconds = 42 WHERE record_id = $1", record)
    before = await balance(redis_client, keys, "a1")
    tariff(run, tmp_path, "t", V2)
    doc = rerate_json(run)
    assert doc["changed"] == 1
    assert await pg.fetchval("SELECT charge FROM cdrs WHERE record_id = $1", record) == 55_000  # 0.02 + 42 s at 0.05
    assert await balance(redis_client, keys, "a1") == before + 7_000
