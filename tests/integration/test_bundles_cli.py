"""ocsctl for bundles: product create --includes, subscribe writes the account's bundles to Redis,
account show prints what is left; bad --includes values are refused in one line and change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs import config
from ocs.billing import customers
from ocs.rating import bundles as rb
from ocs.store.keys import Keys

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
async def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection,
              redis_client: aioredis.Redis) -> AsyncIterator[Run]:
    """ocsctl on this test's database and key prefix; tariff t (UTC) and account a1 made directly."""
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    await pg.execute("INSERT INTO tariffs(name, currency, timezone, current_version) VALUES ('t', 'EUR', 'UTC', 1)")
    await customers.create(pg, customers.NewAccount("a1", "EUR", "t"))
    await customers.sync(pg, redis_client, Keys(key_prefix, config.ChargingConfig().shards), "a1")
    yield run
    await pg.execute("TRUNCATE products, subscriptions, fees CASCADE")


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_product_with_included_seconds(ctl: Run) -> None:
    doc = json.loads(ctl("product", "create", "Flat", "--amount", "10", "--currency", "EUR", "--period", "monthly",
                         "--includes", "3600:49", "--json").stdout)
    assert doc["includes"] == {"seconds": 3600, "prefix": "49"}
    out = ctl("product", "create", "Any", "--amount", "5", "--currency", "EUR", "--period", "monthly",
              "--includes", "600").stdout
    assert "includes 600 s" in out
    listed = json.loads(ctl("product", "list", "--json").stdout)["products"]
    assert [p.get("includes") for p in listed] == [{"seconds": 600, "prefix": ""}, {"seconds": 3600, "prefix": "49"}]


@pytest.mark.parametrize(("value", "period", "code", "needle"), [
    ("abc", "monthly", 2, "--includes: SECONDS[:PREFIX]"),
    ("0", "monthly", 2, "seconds must be 1-"),
    ("60:4a", "monthly", 2, "--includes: SECONDS[:PREFIX]"),
    ("60:", "monthly", 2, "--includes: SECONDS[:PREFIX]"),
    ("-5", "monthly", 2, "--includes"),
    ("99999999999", "monthly", 2, "--includes"),
    ("60", "once", 1, "--includes: included seconds are per month"),
])
def test_bad_includes_is_refused_in_one_line_and_changes_nothing(ctl: Run, value: str, period: str, code: int,
                                                                 needle: str) -> None:
    res = ctl("product", "create", "Bad", "--amount", "1", "--currency", "EUR", "--period", period,
              f"--includes={value}", ok=code)
    assert needle in _one_line(res)
    assert json.loads(ctl("product", "list", "--json").stdout)["products"] == []


async def test_subscribe_writes_bundles_and_account_show_prints_what_is_left(
        ctl: Run, redis_client: aioredis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix, config.ChargingConfig().shards)
    today = datetime.now(UTC).date()
    first = today.replace(day=1)
    shown = json.loads(ctl("account", "show", "a1", "--json").stdout)
    assert shown["bundles"] == []
    assert "bundles: none" in ctl("account", "show", "a1").stdout
    ctl("product", "create", "Flat", "--amount", "10", "--currency", "EUR", "--period", "monthly",
        "--includes", "3000:49")
    ctl("subscribe", "a1", "Flat", "--from", first.isoformat(), "--quantity", "2")
    raw = await redis_client.hget(keys.account("a1"), "bun")
    assert rb.decode(raw.decode()) == [rb.Bundle("Flat", "49", 6000, first, None)]
    pk = f"{today:%Y-%m}:Flat"
    await redis_client.hset(keys.bundles("a1"), mapping={f"q:{pk}": 6000, f"u:{pk}": 1500, f"h:{pk}": 120})
    shown = json.loads(ctl("account", "show", "a1", "--json").stdout)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    assert shown["bundles"] == [{"product": "Flat", "prefix": "49", "period": f"{today:%Y-%m}",
                                 "until": last.isoformat(), "included": 6000, "used": 1500, "held": 120,
                                 "left": 4380}]
    text = ctl("account", "show", "a1").stdout
    assert f"bundles: 4380 of 6000 s left (Flat, to 49, 120 s held, until {last.isoformat()})" in text
    ctl("unsubscribe", "a1", "Flat", "--at", today.isoformat())  # ended today: nothing left to use
    assert json.loads(ctl("account", "show", "a1", "--json").stdout)["bundles"] == []
    raw = await redis_client.hget(keys.account("a1"), "bun")
    assert rb.decode(raw.decode())[0].end == today  # kept (ended), so a call today no longer uses it


async def test_rebuild_balances_drops_bundle_holds_and_keeps_what_was_used(
        ctl: Run, redis_client: aioredis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix, config.ChargingConfig().shards)
    first = datetime.now(UTC).date().replace(day=1)
    ctl("product", "create", "Flat", "--amount", "0", "--currency", "EUR", "--period", "monthly", "--includes", "600")
    ctl("subscribe", "a1", "Flat", "--from", first.isoformat())
    pk = f"{first:%Y-%m}:Flat"
    await redis_client.hset(keys.bundles("a1"), mapping={f"q:{pk}": 600, f"u:{pk}": 100, f"h:{pk}": 60})
    await redis_client.hdel(keys.account("a1"), "bun")  # as after a Redis loss
    ctl("rebuild-balances")
    assert await redis_client.hgetall(keys.bundles("a1")) == {f"q:{pk}".encode(): b"600", f"u:{pk}".encode(): b"100"}
    assert await redis_client.hget(keys.account("a1"), "bun")  # written again from PostgreSQL
