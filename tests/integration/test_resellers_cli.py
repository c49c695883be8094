"""``ocsctl reseller ...`` and ``account create --reseller`` as an operator uses them, and the money proof.

Refusals: one line on stderr, exit 1 (refused) or 2 (usage), nothing changed.  A session of a
reseller's subscriber charged by the core on PostgreSQL tariffs, flushed, then ``reconcile``
proves both balances and ``cdr export`` shows the reseller's columns.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.app import build_core
from ocs.metrics import Metrics
from ocs.model import Status
from ocs.store.flush import Flusher
from tests.support.balance import make_cfg, voice

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection,
        redis_client: aioredis.Redis) -> Run:
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    (tmp_path / "t.csv").write_text("prefix,destination,rate,connect_fee,first_increment,next_increment\n"
                                    "49,Germany,0.06,0.02,30,6\n")
    (tmp_path / "w.csv").write_text("prefix,destination,rate,first_increment,next_increment\n49,Germany,0.03,60,60\n")
    run("tariff", "import", "t", str(tmp_path / "t.csv"), "--currency", "EUR", "--timezone", "UTC")
    run("tariff", "import", "w", str(tmp_path / "w.csv"), "--currency", "EUR", "--timezone", "UTC")
    return run


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_create_show_list_json(ctl: Run) -> None:
    doc = json.loads(ctl("reseller", "create", "acme", "--currency", "eur", "--tariff", "w", "--credit-limit",
                         "50.00", "--json").stdout)
    assert {k: doc[k] for k in ("id", "type", "currency", "tariff", "status", "credit_limit", "subscribers")} == {
        "id": "acme", "type": "postpaid", "currency": "EUR", "tariff": "w", "status": "active",
        "credit_limit": "50.00", "subscribers": 0}
    ctl("account", "create", "bob", "--currency", "EUR", "--tariff", "t", "--reseller", "acme")
    assert json.loads(ctl("account", "show", "bob", "--json").stdout)["reseller"] == "acme"
    doc = json.loads(ctl("reseller", "list", "--json").stdout)
    assert doc["count"] == 1 and doc["resellers"][0]["subscribers"] == 1
    assert doc["resellers"][0]["available"] == "50.00"
    doc = json.loads(ctl("reseller", "topup", "acme", "20.00", "--reference", "w1", "--json").stdout)
    assert doc["balance"] == "20.00"
    doc = json.loads(ctl("reseller", "block", "acme", "--json").stdout)
    assert doc["status"] == "blocked" and doc["control"] == {"sent": 0, "unreachable": []}
    assert json.loads(ctl("reseller", "unblock", "acme", "--json").stdout)["status"] == "active"
    assert json.loads(ctl("account", "list", "--reseller", "acme", "--json").stdout)["count"] == 1


def test_bad_input_is_refused_and_changes_nothing(ctl: Run) -> None:
    ctl("reseller", "create", "acme", "--currency", "EUR", "--tariff", "w")
    ctl("account", "create", "plain", "--currency", "EUR", "--tariff", "t")
    refused = [
        (("reseller", "create", "r2", "--currency", "EUR", "--tariff", "nope"), "unknown tariff"),
        (("reseller", "create", "r2", "--currency", "EURO", "--tariff", "w"), "--currency"),
        (("reseller", "create", "r2", "--currency", "EUR", "--tariff", "w", "--credit-limit", "abc"), "--credit-limit"),
        (("reseller", "create", "acme", "--currency", "EUR", "--tariff", "w"), "already exists"),
        (("reseller", "create", "plain", "--currency", "EUR", "--tariff", "w"), "already exists"),
        (("reseller", "create", "has space", "--currency", "EUR", "--tariff", "w"), "account id"),
        (("account", "create", "bob", "--currency", "EUR", "--tariff", "t", "--reseller", "nobody"),
         "unknown reseller"),
        (("account", "create", "bob", "--currency", "EUR", "--tariff", "t", "--reseller", "plain"),
         "unknown reseller"),
        (("reseller", "show", "plain"), "unknown reseller"),
        (("reseller", "block", "nobody"), "unknown reseller"),
        (("reseller", "unblock", "plain"), "unknown reseller"),
        (("reseller", "topup", "plain", "1.00"), "unknown reseller"),
        (("reseller", "topup", "acme", "-1"), "AMOUNT"),
    ]
    for args, needle in refused:
        assert needle in _one_line(ctl(*args, ok=1)), args
    for args in (("reseller", "create", "r3", "--currency", "EUR"), ("reseller", "frob"), ("reseller",)):
        _one_line(ctl(*args, ok=2))
    assert json.loads(ctl("reseller", "list", "--json").stdout)["count"] == 1
    assert [a["id"] for a in json.loads(ctl("account", "list", "--json").stdout)["accounts"]] == ["acme", "plain"]
    assert json.loads(ctl("reseller", "show", "acme", "--json").stdout)["balance"] == "0.00"


async def test_session_then_reconcile_proves_both(ctl: Run, key_prefix: str, pg_dsn: str,
                                                  redis_client: aioredis.Redis) -> None:
    ctl("reseller", "create", "acme", "--currency", "EUR", "--tariff", "w")
    ctl("reseller", "topup", "acme", "5.00", "--reference", "w1")
    ctl("account", "create", "bob", "--currency", "EUR", "--tariff", "t", "--reseller", "acme", "--alias", "4915220")
    ctl("topup", "bob", "10.00", "--reference", "b1")
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    cfg = make_cfg(key_prefix, pg_dsn)
    core = build_core(cfg, redis_client, Metrics(), pool=pool)
    try:
        await core.start()
        assert core.keys.shard_for("bob") == core.keys.shard_for("acme")  # loaded from P placement
        assert (await core.initiate(voice("s1", 0, sub="4915220"))).status is Status.GRANTED
        await core.update(voice("s1", 1, sub="4915220", used=61))
        # before the flush: reconcile counts the records still in the stream
        assert json.loads(ctl("reconcile", "--json").stdout)["differences"] == 0
        await core.terminate(voice("s1", 2, sub="4915220"))
        await Flusher(cfg, redis_client, pool, core.metrics, keys=core.keys).flush_once()
    finally:
        await core.close()
        await pool.close()
    doc = json.loads(ctl("reconcile", "--json").stdout)
    assert doc["differences"] == 0
    lines = {r["account"]: r for r in doc["report"]}
    assert (lines["bob"]["balance"], lines["acme"]["balance"]) == ("9.914", "4.94")
    assert lines["acme"]["reseller_charges"] == "0.06"
    rows = list(csv.DictReader(io.StringIO(ctl("cdr", "export").stdout)))
    assert [(r["account"], r["charge"], r["reseller"], r["reseller_charge"]) for r in rows] == [
        ("bob", "0.086000", "acme", "0.060000")]
    # drift on the reseller's side is found too
    await redis_client.hincrby(core.keys.account("acme"), "bal", 1)
    res = ctl("reconcile", "--json", ok=1)
    assert json.loads(res.stdout)["differences"] == 1


async def test_reseller_topup_reauthorizes_subscribers_cut_short(ctl: Run, key_prefix: str, pg_dsn: str,
                                                                  redis_client: aioredis.Redis) -> None:
    """A grant the reseller's money cut short is re-authorized when the reseller is topped up (RAR / CoA)."""
    ctl("reseller", "create", "acme", "--currency", "EUR", "--tariff", "w")
    ctl("reseller", "topup", "acme", "0.03", "--reference", "w1")  # one 60 s wholesale block
    ctl("account", "create", "bob", "--currency", "EUR", "--tariff", "t", "--reseller", "acme")
    ctl("topup", "bob", "10.00", "--reference", "b1")
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    core = build_core(make_cfg(key_prefix, pg_dsn), redis_client, Metrics(), pool=pool)
    try:
        await core.start()
        out = await core.initiate(voice("s1", 0, sub="bob"))
        assert out.status is Status.GRANTED and out.final and out.granted_units == 60
        res = ctl("reseller", "topup", "acme", "5.00", "--reference", "w2", "--json")
        doc = json.loads(res.stdout[res.stdout.index("{"):])  # the dispatcher's log line may come first
        control = doc["control"]  # no ocsd node runs here: the session is named as unreachable
        assert control["sent"] + len(control["unreachable"]) == 1 and control["unreachable"] in ([], ["s1"])
        await core.terminate(voice("s1", 1, sub="bob", used=10))
    finally:
        await core.close()
        await pool.close()
