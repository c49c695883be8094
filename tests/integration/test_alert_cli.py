"""``ocsctl alert ...`` as an operator uses it: settings, bad input, the outbox, rate-change alerts (docs/alerts.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.rating.tariff import RateRow
from ocs.store import tariffs

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
RATES = "prefix,destination,rate,connect_fee,first_increment,next_increment\n49,Germany,0.06,0.02,30,6\n"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
async def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection,
              redis_client: aioredis.Redis) -> tuple[Run, Path]:
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n'
                   '[alerts]\nwebhook_secret = "k"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    (tmp_path / "rates.csv").write_text(RATES)
    await tariffs.import_version(pg, "t", "EUR", "UTC", [RateRow("49", "Germany", 60_000, 20_000, 30, 6, line=2)], [])
    await pg.execute("INSERT INTO accounts (id, type, currency, tariff) VALUES ('a1', 'prepaid', 'EUR', 't')")
    return run, tmp_path


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_set_show_unset_and_clear(ctl: tuple[Run, Path]) -> None:
    run, _ = ctl
    doc = json.loads(run("alert", "set", "a1", "--low-balance", "5.00", "--long-call", "60", "--expensive-call",
                         "2.5", "--email", "ops@example.com", "--json").stdout)
    assert doc == {"account": "a1", "currency": "EUR", "low_balance": "5.00", "long_call_minutes": 60,
                   "expensive_call": "2.50", "email": "ops@example.com", "webhook": None}
    run("alert", "set", "a1", "--webhook", "https://hooks.example.com/ocs?x=1", "--long-call", "off")
    doc = json.loads(run("alert", "show", "a1", "--json").stdout)
    assert (doc["long_call_minutes"], doc["low_balance"], doc["webhook"]) == (
        None, "5.00", "https://hooks.example.com/ocs?x=1")  # only what was given changed
    assert "long_call_minutes: off" in run("alert", "show", "a1").stdout
    run("alert", "set", "a1", "--email", "off", "--webhook", "off")
    res = run("alert", "set", "a1", "--low-balance", "1")
    assert "nowhere to go" in _one_line(res)  # stored, with a warning on stderr
    run("alert", "clear", "a1")
    doc = json.loads(run("alert", "show", "a1", "--json").stdout)
    assert [doc[k] for k in ("low_balance", "long_call_minutes", "expensive_call", "email", "webhook")] == [None] * 5


def test_bad_input_is_one_line_exit_2_and_stores_nothing(ctl: tuple[Run, Path]) -> None:
    """The binary's side of tests/unit/test_alert_cli_args.py (every bad value is checked there)."""
    run, _ = ctl
    assert "--email" in _one_line(run("alert", "set", "a1", "--email", "nope", "--low-balance", "1", ok=2))
    assert "--low-balance" in _one_line(run("alert", "set", "a1", "--low-balance", "-1", ok=2))
    assert json.loads(run("alert", "show", "a1", "--json").stdout)["low_balance"] is None


def test_unknown_account_is_refused(ctl: tuple[Run, Path]) -> None:
    run, _ = ctl
    assert "unknown account" in _one_line(run("alert", "set", "nobody", "--low-balance", "1", ok=1))
    assert "unknown account" in _one_line(run("alert", "show", "nobody", ok=1))
    assert "no such failed delivery" in _one_line(run("alert", "retry", "12345", ok=1))


async def test_tariff_import_queues_rate_change_only_when_prices_change(ctl: tuple[Run, Path],
                                                                         pg: asyncpg.Connection) -> None:
    run, tmp = ctl
    run("alert", "set", "a1", "--email", "a1@example.com")
    await pg.execute("INSERT INTO accounts (id, type, currency, tariff) VALUES ('a2', 'prepaid', 'EUR', 't')")
    run("tariff", "import", "t", str(tmp / "rates.csv"))  # the same prices: nothing
    assert json.loads(run("alert", "outbox", "--json").stdout)["count"] == 0
    (tmp / "new.csv").write_text(RATES.replace("0.06", "0.07"))
    run("tariff", "import", "t", str(tmp / "new.csv"))
    doc = json.loads(run("alert", "outbox", "--status", "pending", "--json").stdout)
    assert [(d["event"], d["account"], d["channel"], d["target"], d["status"]) for d in doc["deliveries"]] == [
        ("rate_change", "a1", "email", "a1@example.com", "pending")]  # a2 has no address: nothing for it
    assert json.loads(run("alert", "outbox", "--account", "a2", "--json").stdout)["count"] == 0
    assert "rate_change  a1  email a1@example.com  pending" in run("alert", "outbox").stdout
