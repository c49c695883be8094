"""ocsctl invoice|payment|statement as an operator uses them: JSON documents, the summary line, the
same invoices printed on a re-run, one-line refusals (exit 1) naming the option or the CSV line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from tests.support.billing import billing_db, usage

pytestmark = pytest.mark.integration
__all__ = ["billing_db"]
BIN = Path(sys.executable).parent / "ocsctl"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, billing_db: asyncpg.Connection,
        redis_client: aioredis.Redis) -> tuple[Run, Path]:
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n'
                   '[billing]\ncompany = "Example Telecom GmbH"\nbank = "IBAN DE02 1203 0000 0000 2020 51"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    (tmp_path / "rates.csv").write_text("prefix,destination,rate\n49,Germany,0.06\n")
    run("tariff", "import", "t", str(tmp_path / "rates.csv"), "--currency", "EUR")
    run("account", "create", "c1", "--currency", "EUR", "--tariff", "t", "--postpaid", "--credit-limit", "100",
        "--tax-rate", "19", "--email", "ap@c1.example", "--name", "C1 Ltd")
    return run, tmp_path


def _err(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


async def test_invoice_verbs(ctl: tuple[Run, Path], billing_db: asyncpg.Connection) -> None:
    run, tmp = ctl
    await usage(billing_db, "c1", "s1", 12_345_678, datetime(2026, 5, 3, tzinfo=UTC))
    res = run("invoice", "run", "--period", "2026-05", "--issue-date", "2026-06-01")
    assert "invoice run 2026-05: 1 created, 0 already invoiced" in res.stdout and res.stderr == ""  # no TTY, no bar
    first = json.loads(run("invoice", "run", "--period", "2026-05", "--json").stdout)
    assert first["created"] == [] and first["existing"] == ["INV-2026-000001"]
    assert first["invoices"][0]["gross"] == "14.70" and first["invoices"][0]["account"] == "c1"
    doc = json.loads(run("invoice", "show", "INV-2026-000001", "--json").stdout)
    assert (doc["net"], doc["tax"], doc["gross"], doc["due_date"], doc["status"]) == (
        "12.35", "2.35", "14.70", "2026-06-15", "open")
    assert doc["lines"][0]["amount"] == "12.345678" and doc["lines"][0]["description"] == "Sessions not yet closed"
    assert "INV-2026-000001" in run("invoice", "list", "--status", "open").stdout
    assert json.loads(run("invoice", "list", "--period", "2026-04", "--json").stdout) == {"invoices": []}
    pdf = json.loads(run("invoice", "pdf", "INV-2026-000001", "-o", str(tmp / "i.pdf"), "--json").stdout)
    assert pdf["bytes"] > 1000 and (tmp / "i.pdf").read_bytes().startswith(b"%PDF-")
    sent = json.loads(run("invoice", "send", "INV-2026-000001", "--json").stdout)
    assert sent["queued"] and sent["to"] == "ap@c1.example"
    assert "nothing done" in run("invoice", "send", "INV-2026-000001").stdout
    assert "--period: not a month" in _err(run("invoice", "run", "--period", "May", ok=1))
    assert "--period: 2099-01 has not begun" in _err(run("invoice", "run", "--period", "2099-01", ok=1))
    assert "unknown invoice" in _err(run("invoice", "show", "INV-0000-000000", ok=1))
    _err(run("invoice", "list", "--status", "late", ok=2))
    void = json.loads(run("invoice", "void", "INV-2026-000001", "--reason", "test", "--json").stdout)
    assert void["credit_note"].startswith("CN-") and void["gross"] == "-14.70"
    assert "already void" in _err(run("invoice", "void", "INV-2026-000001", "--reason", "x", ok=1))


async def test_payment_import_and_statement(ctl: tuple[Run, Path], billing_db: asyncpg.Connection,
                                            redis_client: aioredis.Redis, key_prefix: str) -> None:
    run, tmp = ctl
    await usage(billing_db, "c1", "s1", 10_000_000, datetime(2026, 5, 3, tzinfo=UTC))
    run("invoice", "run", "--period", "2026-05", "--issue-date", "2026-06-01")
    bad = tmp / "bad.csv"
    bad.write_text("date,amount,currency,reference,account\n2026-06-02,5.00,EUR,p1,c1\n2026-06-02,x,EUR,p2,c1\n")
    assert _err(run("payment", "import", str(bad), ok=1)).startswith("ocsctl: line 3: amount:")
    good = tmp / "good.csv"
    good.write_text("date,amount,currency,reference,account,invoice\n2026-06-02,11.90,EUR,p1,c1,INV-2026-000001\n")
    doc = json.loads(run("payment", "import", str(good), "--json").stdout)
    assert doc["applied"] == ["p1"] and doc["allocations"] == [
        {"reference": "p1", "invoice": "INV-2026-000001", "amount": "11.90"}]
    assert "1 imported before" in run("payment", "import", str(good)).stdout
    st = json.loads(run("statement", "c1", "--json").stdout)
    assert (st["amount_due"], st["invoices"][0]["status"], st["payments"][0]["reference"]) == ("0.00", "paid", "p1")
    assert "amount due 0.00 EUR" in run("statement", "c1").stdout
    shown = json.loads(run("account", "show", "c1", "--json").stdout)
    assert shown["balance"] == "10.00"  # the invoice's 10.00 of lines given back (the test never debited them)
    assert "unknown account" in _err(run("statement", "nobody", ok=1))
