"""``ocsctl fx set|list`` (docs/wholesale.md, "Currencies and FX"): exact, effective-dated, refusals change nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"


@pytest.fixture
def fx(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection,
       redis_client: aioredis.Redis):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), "fx", *args], capture_output=True, text=True,
                             timeout=60)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    return run


async def test_set_is_exact_effective_dated_and_signals_daemons(fx, pg: asyncpg.Connection,  # type: ignore[no-untyped-def]
                                                                redis_client: aioredis.Redis, key_prefix: str) -> None:
    doc = json.loads(fx("set", "EUR", "USD", "1.083275123456", "--from", "2026-01-01", "--json").stdout)
    assert doc == {"base": "EUR", "quote": "USD", "rate": "1.083275123456",
                   "valid_from": "2026-01-01T00:00:00+00:00", "replaced": False}
    assert await redis_client.get(f"{key_prefix}tariffs:gen") == b"1"  # the reload signal daemons watch
    fx("set", "EUR", "USD", "1.1", "--from", "2026-06-01T12:00:00+02:00")
    row = await pg.fetchrow("SELECT rate FROM fx_rates WHERE valid_from = '2026-01-01Z'")
    assert row is not None and row["rate"] == Decimal("1.083275123456")
    listed = json.loads(fx("list", "--json").stdout)["rates"]
    assert [(r["rate"], r["valid_from"]) for r in listed] == [
        ("1.083275123456", "2026-01-01T00:00:00+00:00"), ("1.1", "2026-06-01T10:00:00+00:00")]
    again = json.loads(fx("set", "EUR", "USD", "1.2", "--from", "2026-01-01", "--json").stdout)
    assert again["replaced"] is True
    assert "EUR USD" in fx("list").stdout


@pytest.mark.parametrize(("args", "code", "says"), [
    (("eur", "USD", "1.1"), 1, "currency code"),
    (("EURO", "USD", "1.1"), 1, "currency code"),
    (("EUR", "US1", "1.1"), 1, "currency code"),
    (("EUR", "EUR", "1.1"), 1, "no rate to itself"),
    (("EUR", "USD", "0"), 1, "positive"),
    (("EUR", "USD", "-1.1"), 1, "not a decimal rate"),
    (("EUR", "USD", "1e3"), 1, "not a decimal rate"),
    (("EUR", "USD", "1.0000000000001"), 1, "more than 12 decimals"),
    (("EUR", "USD", "abc"), 1, "not a decimal rate"),
    (("EUR", "USD", "1.1", "--from", "tomorrow"), 2, "--from"),
    (("EUR", "USD"), 2, "rate"),
])
async def test_bad_input_one_line_nothing_changed(fx, pg: asyncpg.Connection, redis_client: aioredis.Redis,  # type: ignore[no-untyped-def]
                                                  key_prefix: str, args: tuple[str, ...], code: int,
                                                  says: str) -> None:
    res = fx("set", *args, ok=code)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], res.stderr
    assert await pg.fetchval("SELECT count(*) FROM fx_rates") == 0
    assert await redis_client.get(f"{key_prefix}tariffs:gen") is None
