"""Mediation: ``ocsctl cdr import`` charges each switch CDR once, durably (docs/wholesale.md, "Mediation")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.mediation.cdr_csv import CdrReader
from ocs.mediation.importer import Importer
from ocs.metrics import Metrics
from ocs.store.cdr_imports import LOCK_CLASS
from ocs.store.flush import Flusher
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from tests.support.balance import make_cfg

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
RATES = ("prefix,destination,rate,connect_fee,first_increment,next_increment\n"
         "49,Germany,0.06,0.02,30,6\n44,United Kingdom,0.10,0,60,60\n")
HEADER = "start_time,calling,called,duration,account,record_id\n"
Run = Callable[..., subprocess.CompletedProcess[str]]


class Killed(Exception):
    """The process 'dies' here (the test hook raises it)."""


@pytest.fixture
def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection,
        redis_client: aioredis.Redis) -> tuple[Run, Path]:
    """ocsctl on this test's stores; tariff t; a1 prepaid 10.00 (alias 4915100), a2 postpaid (limit 5.00),
    a3 blocked (alias 4915300), a4 prepaid with nothing (alias 4915400)."""
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=120)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    (tmp_path / "rates.csv").write_text(RATES)
    run("tariff", "import", "t", str(tmp_path / "rates.csv"), "--currency", "EUR")
    run("account", "create", "a1", "--currency", "EUR", "--tariff", "t", "--alias", "4915100")
    run("topup", "a1", "10.00", "--reference", "t1")
    run("account", "create", "a2", "--currency", "EUR", "--tariff", "t", "--postpaid", "--credit-limit", "5")
    run("account", "create", "a3", "--currency", "EUR", "--tariff", "t", "--alias", "4915300")
    run("account", "block", "a3")
    run("account", "create", "a4", "--currency", "EUR", "--tariff", "t", "--alias", "4915400")
    return run, tmp_path


def _import(run: Run, path: Path, *extra: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(run("cdr", "import", str(path), "--format", "csv", *extra, "--json").stdout)
    return doc


def _balance(run: Run, account: str) -> str:
    return str(json.loads(run("account", "show", account, "--json").stdout)["balance"])


async def _flush(key_prefix: str, pg_dsn: str, redis_client: aioredis.Redis) -> None:
    pool = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    try:
        await Flusher(make_cfg(key_prefix, pg_dsn), redis_client, pool, Metrics()).flush_all()
    finally:
        await pool.close()


async def _redis_state(redis_client: aioredis.Redis, key_prefix: str) -> tuple[int, int]:
    """(entries left in the usage streams, import marker sets left)."""
    keys = Keys(key_prefix, 16)
    entries = sum([await redis_client.xlen(s) for s in keys.all_usage_streams()])
    marks = [k async for k in redis_client.scan_iter(match=f"{key_prefix}*:imp:*", count=1000)]
    return entries, len(marks)


async def test_import_charges_once_and_records_reach_postgres(ctl: tuple[Run, Path], pg: asyncpg.Connection,
                                                               redis_client: aioredis.Redis, key_prefix: str,
                                                               pg_dsn: str) -> None:
    run, tmp = ctl
    f = tmp / "sw.csv"
    f.write_text(HEADER
                 + "2026-11-02T10:00:00Z,4915100,+4930123456,61,,r1\n"      # a1 by alias: 0.086000
                 + "2026-11-02T11:00:00+01:00,+4915100,0044201234,120,,r2\n"  # normalised alias; UK 0.20
                 + "2026-11-02T12:00:00,999,4930123456,30,a2,r3\n"         # a2 by account: 0.05, below 0
                 + "2026-11-02T13:00:00Z,4915400,4930123456,661,,r4\n")    # a4 has nothing: 0.686, below 0
    doc = _import(run, f)
    assert (doc["imported"], doc["duplicate"], doc["rejected"]) == (4, 0, 0)
    assert doc["lines"]["imported"] == "2-5" and doc["charged"] == {"EUR": "1.022000"}
    assert (_balance(run, "a1"), _balance(run, "a2"), _balance(run, "a4")) == ("9.714", "-0.05", "-0.686")
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0  # records still in the stream
    await _flush(key_prefix, pg_dsn, redis_client)
    cdrs = {r["session_id"]: r for r in await pg.fetch("SELECT * FROM cdrs ORDER BY session_id")}
    assert set(cdrs) == {f"import:default:id:r{i}" for i in range(1, 5)}
    r1 = cdrs["import:default:id:r1"]
    assert (r1["account"], r1["protocol"], r1["called"], r1["prefix"], r1["destination"]) == (
        "a1", "import", "4930123456", "49", "Germany")
    assert (r1["duration"], r1["billed_seconds"], r1["charge"], r1["termination_cause"]) == (61, 66, 86_000, "imported")
    assert r1["start_time"].isoformat() == "2026-11-02T10:00:00+00:00"
    assert cdrs["import:default:id:r2"]["start_time"].isoformat() == "2026-11-02T10:00:00+00:00"
    assert (cdrs["import:default:id:r4"]["billed_seconds"], cdrs["import:default:id:r4"]["charge"]) == (666, 686_000)
    usage = await pg.fetch("SELECT account_id, sum(amount) AS s, count(*) AS n FROM usage GROUP BY 1 ORDER BY 1")
    assert [(u["account_id"], u["s"], u["n"]) for u in usage] == [
        ("a1", 286_000, 2), ("a2", 50_000, 1), ("a4", 686_000, 1)]
    # the same file again, after the flush: nothing in Redis remembers the first import, PostgreSQL does
    assert await _redis_state(redis_client, key_prefix) == (0, 0)
    again = _import(run, f)
    assert (again["imported"], again["duplicate"], again["rejected"], again["lines"]["duplicate"]) == (0, 4, 0, "2-5")
    assert again["charged"] == {}
    assert (_balance(run, "a1"), _balance(run, "a2"), _balance(run, "a4")) == ("9.714", "-0.05", "-0.686")
    assert await _redis_state(redis_client, key_prefix) == (0, 0)
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0


def test_duplicates_by_record_id_and_by_content(ctl: tuple[Run, Path]) -> None:
    run, tmp = ctl
    ids = tmp / "ids.csv"
    ids.write_text(HEADER + "2026-11-02T10:00:00Z,4915100,4930123456,61,,x1\n"
                   "2026-11-02T10:05:00Z,4915100,4930123456,30,,x1\n")  # same record id, other content
    doc = _import(run, ids, "--source", "sw1")
    assert (doc["imported"], doc["duplicate"], doc["lines"]["duplicate"]) == (1, 1, "3")
    content = tmp / "content.csv"
    content.write_text("start_time,calling,called,duration\n"
                       "2026-11-02T10:00:00Z,4915100,4930123456,61\n"
                       "2026-11-02T11:00:00+01:00,4915100,4930123456,61\n"  # the same instant
                       "2026-11-02T10:00:00Z,4915100,4930123456,62\n")      # another call
    doc = _import(run, content, "--source", "sw1")
    assert (doc["imported"], doc["duplicate"], doc["lines"]["imported"], doc["lines"]["duplicate"]) == (
        2, 1, "2,4", "3")
    assert _balance(run, "a1") == "9.742"  # 10 - 3 x 0.086
    # keys are per source: another switch's record x1 is another call
    doc = _import(run, ids, "--source", "sw2")
    assert (doc["imported"], doc["duplicate"]) == (1, 1)
    assert _balance(run, "a1") == "9.656"


def test_bad_lines_are_rejected_with_line_numbers(ctl: tuple[Run, Path]) -> None:
    run, tmp = ctl
    f, rejects = tmp / "mixed.csv", tmp / "out" / "rejects.csv"
    rejects.parent.mkdir()
    f.write_bytes((HEADER
                   + "2026-11-02T10:00:00Z,4915100,4930123456,61,,m2\n"
                   + "yesterday,4915100,4930123456,61,,m3\n"
                   + "2026-11-02T10:00:00Z,4915100,4930123456,1x,,m4\n"
                   + "2026-11-02T10:00:00Z,4915100,4930123456,61\n"
                   + "2026-11-02T10:00:00Z,4915999,4930123456,61,,m6\n"
                   + "2026-11-02T10:00:00Z,4915100,3312345,61,,m7\n"
                   + "2026-11-02T10:00:00Z,4915300,4930123456,61,,m8\n"
                   + "2099-01-01T00:00:00Z,4915100,4930123456,61,,m9\n"
                   + "2026-11-02T10:01:00Z,4915100,4930123456,61,,m10\n").encode()
                  + b"2026-11-02T10:00:00Z,49151\xff,4930123456,61,,m11\n")
    res = run("cdr", "import", str(f), "--rejects", str(rejects))
    assert res.stdout.startswith("imported 2 (lines 2,10), duplicate 0, rejected 8 (lines 3-9,11)")
    assert "line 7: destination not rated: '3312345'" in res.stdout
    lines = rejects.read_bytes().decode("utf-8", "surrogateescape").splitlines()
    assert lines[0] == "line,reason,start_time,calling,called,duration,account,record_id"
    reasons = {int(x.split(",", 1)[0]): x.split(",", 2)[1] for x in lines[1:]}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 11]
    assert "start_time" in reasons[3] and "duration" in reasons[4] and "fields" in reasons[5]
    assert "no account" in reasons[6] and "not rated" in reasons[7] and "blocked" in reasons[8]
    assert "future" in reasons[9] and "UTF-8" in reasons[11]
    assert lines[-1].endswith(",2026-11-02T10:00:00Z,49151\udcff,4930123456,61,,m11")  # the cells as they were
    assert _balance(run, "a1") == "9.828" and _balance(run, "a3") == "0.00"
    doc = _import(run, f, "--rejects", str(rejects))  # again: the good ones are duplicates, the bad still bad
    assert (doc["imported"], doc["duplicate"], doc["rejected"]) == (0, 2, 8)
    assert doc["reasons"] == {"bad field": 4, "bad line": 1, "unknown account": 1, "not rated": 1, "blocked": 1}


async def test_crash_after_charging_before_recording(ctl: tuple[Run, Path], pg_dsn: str, key_prefix: str,
                                                     redis_client: aioredis.Redis, pg: asyncpg.Connection) -> None:
    """A run dies after Redis charged its records and before their keys reached PostgreSQL: the next
    import records them from the marker sets, charges nothing twice and loses nothing."""
    run, tmp = ctl
    f = tmp / "crash.csv"
    f.write_text(HEADER + "".join(f"2026-11-03T10:0{i}:00Z,4915100,4930123456,61,,c{i}\n" for i in range(5)))
    conn = await asyncpg.connect(pg_dsn)
    rp = AutoPipeline(redis_client, raw=True)
    calls = 0

    def crash() -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Killed("after the second chunk was charged")

    try:
        importer = Importer(conn, rp, Keys(key_prefix, 16), node="n1", source="sw", chunk=2)
        importer.after_charge = crash
        reader = CdrReader(f)
        with pytest.raises(Killed):
            await importer.run(reader, str(f))
        reader.close()
    finally:
        await rp.drain()
        await conn.close()
    assert _balance(run, "a1") == "9.656"  # 4 calls charged (chunks 1 and 2) ...
    assert await pg.fetchval("SELECT count(*) FROM cdr_import_keys") == 2  # ... only chunk 1 recorded
    doc = _import(run, f, "--source", "sw")
    assert (doc["repaired"], doc["duplicate"], doc["imported"], doc["lines"]["imported"]) == (2, 4, 1, "6")
    assert _balance(run, "a1") == "9.57"  # 10 - 5 x 0.086: each call once
    dead = await pg.fetchrow("SELECT * FROM cdr_imports ORDER BY id LIMIT 1")
    assert dead["finished_at"] is not None and dead["repaired_by"] == doc["import_id"]
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0
    await _flush(key_prefix, pg_dsn, redis_client)
    assert await pg.fetchval("SELECT count(*) FROM usage") == 5
    assert await pg.fetchval("SELECT count(DISTINCT session_id) FROM cdrs") == 5
    assert await _redis_state(redis_client, key_prefix) == (0, 0)


async def test_bad_input_for_the_verb_changes_nothing(ctl: tuple[Run, Path], pg: asyncpg.Connection) -> None:
    run, tmp = ctl

    def one_line(res: subprocess.CompletedProcess[str]) -> str:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, res.stderr
        return lines[0]

    assert "cannot read" in one_line(run("cdr", "import", str(tmp / "missing.csv"), ok=1))
    (tmp / "bad.csv").write_text("start,calling,called,duration\n2026-11-02T10:00:00Z,4915100,4930,61\n")
    assert "header" in one_line(run("cdr", "import", str(tmp / "bad.csv"), ok=1))
    (tmp / "nocol.csv").write_text("start_time,calling,duration\n")
    assert "missing column 'called'" in one_line(run("cdr", "import", str(tmp / "nocol.csv"), ok=1))
    (tmp / "empty.csv").write_text("")
    assert "empty file" in one_line(run("cdr", "import", str(tmp / "empty.csv"), ok=1))
    (tmp / "ok.csv").write_text(HEADER + "2026-11-02T10:00:00Z,4915100,4930123456,61,,k1\n")
    assert "--format" in one_line(run("cdr", "import", str(tmp / "ok.csv"), "--format", "xml", ok=2))
    assert "--source" in one_line(run("cdr", "import", str(tmp / "ok.csv"), "--source", "a b", ok=2))
    await pg.execute("SELECT pg_advisory_lock($1, hashtext('busy'))", LOCK_CLASS)  # an import of 'busy' running
    try:
        assert "another import" in one_line(run("cdr", "import", str(tmp / "ok.csv"), "--source", "busy", ok=1))
    finally:
        await pg.execute("SELECT pg_advisory_unlock($1, hashtext('busy'))", LOCK_CLASS)
    assert await pg.fetchval("SELECT count(*) FROM cdr_imports") == 0
    assert await pg.fetchval("SELECT count(*) FROM cdr_import_keys") == 0
    assert _balance(run, "a1") == "10.00"
    assert not (tmp / "bad.csv.rejects.csv").exists() and not (tmp / "ok.csv.rejects.csv").exists()


async def test_account_in_another_currency_is_converted(ctl: tuple[Run, Path], pg: asyncpg.Connection,
                                                         redis_client: aioredis.Redis, key_prefix: str,
                                                         pg_dsn: str) -> None:
    """As the core charges it: the tariff's exact price times the rate in force at the call's start."""
    run, tmp = ctl
    run("account", "create", "u1", "--currency", "USD", "--tariff", "t", "--alias", "4915500")
    run("fx", "set", "EUR", "USD", "1.1", "--from", "2026-11-01")
    f = tmp / "fx.csv"
    f.write_text(HEADER + "2026-11-02T10:00:00Z,4915500,4930123456,61,,f1\n"   # 0.086 EUR = 0.0946 USD
                 "2026-10-02T10:00:00Z,4915500,4930123456,61,,f2\n")            # before any rate
    doc = _import(run, f)
    assert (doc["imported"], doc["rejected"], doc["charged"]) == (1, 1, {"USD": "0.094600"})
    assert "no FX rate" in doc["first_rejects"][0]["reason"]
    assert _balance(run, "u1") == "-0.0946"
    await _flush(key_prefix, pg_dsn, redis_client)
    cdr = await pg.fetchrow("SELECT * FROM cdrs WHERE session_id = 'import:default:id:f1'")
    assert (cdr["charge"], cdr["currency"].strip(), cdr["rate_currency"], cdr["fx_rate"]) == (94_600, "USD", "EUR", "1.1")


async def test_a_batch_sent_twice_is_charged_once(redis_client: aioredis.Redis, key_prefix: str) -> None:
    """A script call whose reply was lost and is sent again: the run's marker set answers 'D' (import.lua)."""
    from ocs.store.cdr_imports import Charge, ImportCharges

    keys = Keys(key_prefix, 16)
    await redis_client.hset(keys.account("z1"), mapping={"type": "prepaid", "st": "active", "bal": 1_000_000})
    await redis_client.hset(keys.account("z2"), mapping={"type": "prepaid", "st": "blocked", "bal": 0})
    rp = AutoPipeline(redis_client, raw=True)
    charges = ImportCharges(rp, keys, "n1")
    try:
        def one(account: str, n: int) -> Charge:
            return Charge(account, f"id:b{n}", f"import:sw:id:b{n}", "4915100", "4930123456", "49", "Germany",
                          "2026-11-02T10:00:00+00:00", "2026-11-02T10:01:01+00:00", 61, 66, 86_000, "EUR", "t", 1)

        for account in ("z1", "z2"):
            tag = charges.tag(account)
            batch = [one(account, 1), one(account, 2)]
            first = await charges.charge(tag, 7, batch)
            again = await charges.charge(tag, 7, batch)
            assert (first, again) == (("OO", "DD") if account == "z1" else ("BB", "BB"))
        assert int(await redis_client.hget(keys.account("z1"), "bal")) == 1_000_000 - 2 * 86_000
        assert sorted(await charges.marked(7)) == ["id:b1", "id:b2"]
        await charges.clear(7)
        assert await charges.marked(7) == []
    finally:
        await rp.drain()


WHOLESALE = ("prefix,destination,rate,connect_fee,first_increment,next_increment\n"
             "49,Germany,0.03,0.01,30,6\n44,United Kingdom,0.05,0,60,60\n")


def _reseller(run: Run, tmp: Path) -> None:
    """Reseller r1 (wholesale tariff w, EUR, limit 100.00) and its subscriber s1 (tariff t, alias 4915600)."""
    (tmp / "w.csv").write_text(WHOLESALE)
    run("tariff", "import", "w", str(tmp / "w.csv"), "--currency", "EUR")
    run("reseller", "create", "r1", "--currency", "EUR", "--tariff", "w", "--credit-limit", "100")
    run("account", "create", "s1", "--currency", "EUR", "--tariff", "t", "--reseller", "r1", "--alias", "4915600")


async def test_a_reseller_subscriber_is_charged_on_both_legs_once(ctl: tuple[Run, Path], pg: asyncpg.Connection,
                                                                  redis_client: aioredis.Redis, key_prefix: str,
                                                                  pg_dsn: str) -> None:
    """The subscriber at its tariff, the reseller at the wholesale tariff, in one step; a second run: nothing."""
    run, tmp = ctl
    _reseller(run, tmp)
    f = tmp / "rs.csv"
    f.write_text(HEADER + "2026-11-02T10:00:00Z,4915600,4930123456,61,,x1\n"  # retail 0.086, wholesale 0.043
                 + "2026-11-02T11:00:00Z,4915600,0044201234,120,,x2\n"       # retail 0.20, wholesale 0.10
                 + "2026-11-02T12:00:00Z,4915100,4930123456,61,,x3\n")       # a1, plain: 0.086
    doc = _import(run, f)
    assert (doc["imported"], doc["duplicate"], doc["rejected"]) == (3, 0, 0)
    assert (_balance(run, "s1"), _balance(run, "r1"), _balance(run, "a1")) == ("-0.286", "-0.143", "9.914")
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0  # records still in the stream
    await _flush(key_prefix, pg_dsn, redis_client)
    cdrs = {r["session_id"]: r for r in await pg.fetch("SELECT * FROM cdrs ORDER BY session_id")}
    x1, x2, x3 = (cdrs[f"import:default:id:x{i}"] for i in (1, 2, 3))
    assert (x1["account"], x1["charge"], x1["reseller"], x1["reseller_charge"]) == ("s1", 86_000, "r1", 43_000)
    assert (x2["charge"], x2["reseller"], x2["reseller_charge"]) == (200_000, "r1", 100_000)
    assert (x3["account"], x3["reseller"], x3["reseller_charge"]) == ("a1", "", None)
    usage = await pg.fetch("SELECT account_id, amount, reseller, reseller_amount FROM usage ORDER BY session_id")
    assert [tuple(u) for u in usage] == [("s1", 86_000, "r1", 43_000), ("s1", 200_000, "r1", 100_000),
                                         ("a1", 86_000, "", 0)]
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0
    again = _import(run, f)
    assert (again["imported"], again["duplicate"], again["rejected"]) == (0, 3, 0)
    assert (_balance(run, "s1"), _balance(run, "r1"), _balance(run, "a1")) == ("-0.286", "-0.143", "9.914")
    assert await _redis_state(redis_client, key_prefix) == (0, 0)
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0


def test_a_blocked_resellers_subscriber_is_rejected(ctl: tuple[Run, Path]) -> None:
    """A blocked reseller refuses its subscribers (as live calls): rejected, neither balance moves, and the
    record is imported once the reseller is unblocked (a rejected record's key is not kept)."""
    run, tmp = ctl
    _reseller(run, tmp)
    run("reseller", "block", "r1")
    f = tmp / "rs.csv"
    f.write_text(HEADER + "2026-11-02T10:00:00Z,4915600,4930123456,61,,y1\n")
    doc = _import(run, f)
    assert (doc["imported"], doc["rejected"], doc["reasons"]) == (0, 1, {"reseller blocked": 1})
    assert (_balance(run, "s1"), _balance(run, "r1")) == ("0.00", "0.00")
    run("reseller", "unblock", "r1")
    doc = _import(run, f)
    assert (doc["imported"], doc["rejected"]) == (1, 0)
    assert (_balance(run, "s1"), _balance(run, "r1")) == ("-0.086", "-0.043")


def test_a_resellers_wholesale_leg_in_its_own_currency(ctl: tuple[Run, Path]) -> None:
    """A USD reseller on a EUR wholesale tariff pays the exact wholesale price times the rate, rounded once."""
    run, tmp = ctl
    (tmp / "w.csv").write_text(WHOLESALE)
    run("tariff", "import", "w", str(tmp / "w.csv"), "--currency", "EUR")
    run("fx", "set", "EUR", "USD", "1.1", "--from", "2026-11-01")
    run("reseller", "create", "ru", "--currency", "USD", "--tariff", "w", "--credit-limit", "100")
    run("account", "create", "su", "--currency", "EUR", "--tariff", "t", "--reseller", "ru", "--alias", "4915700")
    f = tmp / "ru.csv"
    f.write_text(HEADER + "2026-11-02T10:00:00Z,4915700,4930123456,61,,z1\n")  # wholesale 0.043 EUR
    doc = _import(run, f)
    assert (doc["imported"], doc["rejected"]) == (1, 0)
    assert (_balance(run, "su"), _balance(run, "ru")) == ("-0.086", "-0.0473")
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0


def test_a_bundle_account_is_rejected(ctl: tuple[Run, Path]) -> None:
    """Included seconds are used by the charging scripts only: the import refuses rather than skip them."""
    run, tmp = ctl
    run("product", "create", "pb", "--amount", "1", "--currency", "EUR", "--period", "monthly", "--includes", "600")
    run("subscribe", "a1", "pb", "--from", "2026-11-01")
    f = tmp / "bun.csv"
    f.write_text(HEADER + "2026-11-02T10:00:00Z,4915100,4930123456,61,,b1\n")
    doc = _import(run, f)
    assert (doc["imported"], doc["rejected"], doc["reasons"]) == (0, 1, {"bundles": 1})
    assert _balance(run, "a1") == "10.00"
