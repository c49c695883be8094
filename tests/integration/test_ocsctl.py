"""ocsctl as an operator uses it: exit codes, one-line errors, nothing half-applied (docs/provisioning.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs import config
from ocs.store import provision
from ocs.store.keys import Keys

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
RATES = "prefix,destination,rate,connect_fee,first_increment,next_increment\n49,Germany,0.06,0.02,30,6\n"


@pytest.fixture
def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection,
        redis_client: aioredis.Redis):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    (tmp_path / "rates.csv").write_text(RATES)
    run("tariff", "import", "t", str(tmp_path / "rates.csv"), "--currency", "EUR")
    run("account", "create", "a1", "--currency", "EUR", "--tariff", "t", "--alias", "4915100")
    return run, tmp_path


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_topup_idempotent_by_reference(ctl) -> None:  # type: ignore[no-untyped-def]
    run, _ = ctl
    run("topup", "a1", "12.50", "--reference", "r1")
    res = run("topup", "a1", "12.50", "--reference", "r1")
    assert "already applied" in res.stdout
    doc = json.loads(run("account", "show", "a1", "--json").stdout)
    assert doc["balance"] == "12.50" and doc["available"] == "12.50" and doc["aliases"] == ["4915100"]
    assert set(doc) >= {"id", "type", "currency", "tariff", "status", "balance", "reserved", "available",
                        "credit_limit", "aliases"}
    run("adjust", "a1", "-2.5", "--reason", "goodwill reversal")
    assert json.loads(run("account", "show", "a1", "--json").stdout)["balance"] == "10.00"


@pytest.mark.parametrize("amount", ["-1", "1.0000001", "abc", "1e3", "0"])
def test_bad_amounts_refused(ctl, amount: str) -> None:  # type: ignore[no-untyped-def]
    run, _ = ctl
    res = run("topup", "a1", amount, ok=1)
    assert "AMOUNT" in _one_line(res)


def test_refusals_and_usage_errors(ctl) -> None:  # type: ignore[no-untyped-def]
    run, _ = ctl
    assert "unknown account" in _one_line(run("topup", "nobody", "1", ok=1))
    assert "unknown tariff" in _one_line(run("tariff", "show", "nope", ok=1))
    assert "unknown tariff" in _one_line(run("account", "create", "x", "--currency", "EUR", "--tariff", "nope",
                                             ok=1))
    run("account", "create", "a2", "--currency", "EUR", "--tariff", "t")
    assert "already belongs" in _one_line(run("account", "alias", "a2", "4915100", ok=1))
    _one_line(run("account", "frobnicate", ok=2))
    _one_line(run("tariff", "rate", "t", "49", "--at", "yesterday", ok=2))
    assert "not rated" in _one_line(run("tariff", "rate", "t", "33", ok=1))
    for bad in ("has space", "ctl\x1fchar", ""):
        assert "account id" in _one_line(run("account", "create", bad, "--currency", "EUR", "--tariff", "t", ok=1))


def test_tariff_rate_json(ctl) -> None:  # type: ignore[no-untyped-def]
    run, _ = ctl
    doc = json.loads(run("tariff", "rate", "t", "+4930123", "--seconds", "61", "--json").stdout)
    assert {k: doc[k] for k in ("prefix", "destination", "billed_seconds", "charge", "currency")} == {
        "prefix": "49", "destination": "Germany", "billed_seconds": 66, "charge": "0.086000", "currency": "EUR"}
    assert doc["blocks"]


@pytest.mark.parametrize(("content", "needle"), [
    (b"destination,rate\nX,0.1\n", "missing column 'prefix'"),
    (b"prefix,destination,rate\n49,DE,abc\n", "line 2: rate: not a decimal amount"),
    (b"prefix,destination,rate,band\n49,DE,0.1,peak\n", "line 2: band: 'peak' is not defined"),
    (b"prefix,destination,rate\n49,DE,0.1\n49,DE,0.2\n", "line 3: duplicate prefix 49"),
    (b"", "empty file"),
    (b"prefix,destination,rate\n49,D\xe9,0.1\n", "not UTF-8"),
    (b"prefix,destination,rate\n4x9,DE,0.1\n", "line 2: prefix: must be digits"),
])
def test_bad_csv_changes_nothing(ctl, content: bytes, needle: str) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    bad = tmp / "bad.csv"
    bad.write_bytes(content)
    res = run("tariff", "import", "t", str(bad), ok=1)
    assert needle in res.stderr
    assert json.loads(run("tariff", "show", "t", "--json").stdout)["version"] == 1


def test_bad_bands_file(ctl) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    (tmp / "bands.csv").write_text("band,days,start,end\npeak,mon-fry,08:00,20:00\n")
    (tmp / "r2.csv").write_text("prefix,destination,rate,band\n49,DE,0.1,peak\n")
    res = run("tariff", "import", "t", str(tmp / "r2.csv"), "--bands", str(tmp / "bands.csv"), ok=1)
    assert "bands.csv line 2" in res.stderr


async def test_crash_between_ledger_and_redis_converges(ctl, pg_dsn: str, key_prefix: str,  # type: ignore[no-untyped-def]
                                                        redis_client: aioredis.Redis) -> None:
    run, _ = ctl
    keys = Keys(key_prefix, config.ChargingConfig().shards)
    conn = await asyncpg.connect(pg_dsn)
    try:  # step 1 committed, the process died before step 2 (Redis) and step 3 (applied_at)
        await conn.execute("INSERT INTO ledger(account_id, kind, amount, reference) VALUES ('a1', 'topup', 5000000, 'crash-1')")
        assert int(await redis_client.hget(keys.account("a1"), "bal")) == 0
        res = run("topup", "a1", "5.00", "--reference", "crash-1")
        assert "already applied" in res.stdout
        assert int(await redis_client.hget(keys.account("a1"), "bal")) == 5_000_000
        # a crash after step 2 but before step 3: re-applying is a no-op
        await conn.execute("UPDATE ledger SET applied_at = NULL WHERE reference = 'crash-1'")
        assert await provision.apply_pending(conn, redis_client, keys, "a1") == 1
        assert int(await redis_client.hget(keys.account("a1"), "bal")) == 5_000_000
        res = run("reconcile", "--json")
        assert json.loads(res.stdout)["differences"] == 0
    finally:
        await conn.close()


async def test_reconcile_detects_and_rebuild_repairs(ctl, key_prefix: str, redis_client: aioredis.Redis) -> None:  # type: ignore[no-untyped-def]
    run, _ = ctl
    run("topup", "a1", "3.00", "--reference", "r9")
    keys = Keys(key_prefix, config.ChargingConfig().shards)
    await redis_client.hincrby(keys.account("a1"), "bal", 123)  # corruption
    doc = json.loads(run("reconcile", "--json", ok=1).stdout)
    assert doc["differences"] == 1
    await redis_client.delete(keys.account("a1"), keys.applied("a1"))  # Redis lost the account
    run("rebuild-balances")
    assert json.loads(run("account", "show", "a1", "--json").stdout)["balance"] == "3.00"
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0


def test_db_migrate_is_idempotent(ctl) -> None:  # type: ignore[no-untyped-def]
    run, _ = ctl
    assert json.loads(run("db", "migrate", "--json").stdout) == {"applied": [], "up_to_date": True}
    assert "up to date" in run("db", "migrate").stdout
