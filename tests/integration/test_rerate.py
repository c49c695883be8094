"""``ocsctl rerate`` on the real stores (docs/wholesale.md, "Re-rating"): after a corrected rate the
records are priced again, each account gets one adjustment for the exact difference, its Redis
balance moves by it, ``reconcile`` still holds, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.billing import rerate
from ocs.billing.errors import Refused as BillingRefused
from ocs.charging import Charging
from ocs.store.flush import Flusher
from ocs.store.keys import Keys
from tests.support.balance import T0, voice

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
HEAD = "prefix,destination,rate,connect_fee,first_increment,next_increment\n"
V1 = HEAD + "49,Germany fixed,0.06,0.02,30,6\n4915,Germany mobile,0.12,0,60,60\n44,United Kingdom,0.03,0,1,1\n"
V2 = HEAD + "49,Germany fixed,0.05,0.02,30,6\n4915,Germany mobile,0.12,0,60,60\n44,United Kingdom,0.03,0,1,1\n"
DAY = ("--from", "2026-11-23", "--to", "2026-11-24")
_ids = itertools.count(1)

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

    return run


def tariff(run: Run, tmp_path: Path, name: str, rates: str, currency: str = "EUR") -> None:
    path = tmp_path / f"{name}-{next(_ids)}.csv"
    path.write_text(rates)
    run("tariff", "import", name, str(path), "--currency", currency, "--timezone", "UTC")


def account(run: Run, account_id: str, tariff_name: str = "t", currency: str = "EUR") -> None:
    run("account", "create", account_id, "--currency", currency, "--tariff", tariff_name)
    run("topup", account_id, "50.00", "--reference", f"init-{account_id}")


async def charged(pg: asyncpg.Connection, redis: aioredis.Redis, keys: Keys, acct: str, called: str,
                  duration: int, charge: int, *, start: datetime = T0, tariff_name: str = "t",
                  currency: str = "EUR", rate_currency: str = "", fx_rate: str = "") -> str:
    """A settled call as the core leaves it: the CDR, its usage record, the debit in Redis."""
    n = next(_ids)
    await pg.execute(
        "INSERT INTO cdrs (record_id, session_id, account, service, called, start_time, duration, billed_seconds,"
        " charge, currency, tariff, tariff_version, rate_currency, fx_rate)"
        " VALUES ($1, $2, $3, 'voice', $4, $5, $6, $6, $7, $8, $9, 1, $10, $11)",
        f"cdr:s{n}:0", f"s{n}", acct, called, start, duration, charge, currency, tariff_name, rate_currency, fx_rate)
    await pg.execute("INSERT INTO usage (record_id, account_id, session_id, kind, amount, currency, event_time)"
                     " VALUES ($1, $2, $3, 'terminate', $4, $5, $6)", f"u{n}", acct, f"s{n}", charge, currency, start)
    await redis.hincrby(keys.account(acct), "bal", -charge)
    return f"cdr:s{n}:0"


async def balance(redis: aioredis.Redis, keys: Keys, acct: str) -> int:
    return int(await redis.hget(keys.account(acct), "bal") or 0)


def rerate_json(run: Run, *args: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(run("rerate", *DAY, *args, "--json").stdout)
    return doc


async def snapshot(pg: asyncpg.Connection) -> tuple[list[Any], list[Any]]:
    return ([tuple(r) for r in await pg.fetch("SELECT record_id, charge, rerated_from FROM cdrs ORDER BY 1")],
            [tuple(r) for r in await pg.fetch("SELECT id, amount, applied_at FROM ledger ORDER BY id")])


async def test_calls_charged_by_the_core_are_rerated(ctl: Run, tmp_path: Path, core: Charging, flusher: Flusher,
                                                     pg: asyncpg.Connection, redis_client: aioredis.Redis) -> None:
    """The CDRs the charging path wrote (demo tariff: the same prices as V1) after a correction of +49."""
    tariff(ctl, tmp_path, "t", V1)
    account(ctl, "alice")
    for i in range(3):
        await core.initiate(voice(f"f{i}", 0))  # 4930...: Germany fixed
        await core.terminate(voice(f"f{i}", 1, used=61))
    await core.initiate(voice("uk", 0, dest="44207"))
    await core.terminate(voice("uk", 1, used=100))
    await flusher.flush_all()
    assert sorted(r["charge"] for r in await pg.fetch("SELECT charge FROM cdrs")) == [50_000, 86_000, 86_000, 86_000]
    before = await balance(redis_client, core.keys, "alice")
    tariff(ctl, tmp_path, "t", V2)  # 0.06 -> 0.05: a 61 s call is 0.02 + 66 * 0.05 / 60 = 0.075
    doc = rerate_json(ctl)
    assert (doc["examined"], doc["changed"], doc["accounts_adjusted"]) == (4, 3, 1)
    assert doc["total_difference"] == {"EUR": "-0.033000"}
    assert doc["adjustments"][0]["adjustment"] == "0.033000"
    assert await balance(redis_client, core.keys, "alice") == before + 33_000
    rows = await pg.fetch("SELECT charge, rerated_from FROM cdrs WHERE called LIKE '49%'")
    assert {(r["charge"], r["rerated_from"]) for r in rows} == {(75_000, 86_000)}
    ctl("reconcile")
    export = ctl("cdr", "export", *DAY).stdout.splitlines()
    assert export[0].endswith(",rerated_from") and sum(line.endswith(",0.086000") for line in export) == 3
    again = rerate_json(ctl)
    assert (again["changed"], again["accounts_adjusted"]) == (0, 0)
    assert await pg.fetchval("SELECT count(*) FROM ledger WHERE kind = 'adjustment'") == 1
    assert await balance(redis_client, core.keys, "alice") == before + 33_000


async def test_one_adjustment_per_account_with_the_exact_difference(
        ctl: Run, tmp_path: Path, pg: asyncpg.Connection, redis_client: aioredis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix, 16)
    tariff(ctl, tmp_path, "t", V1)
    for a in ("a1", "a2"):
        account(ctl, a)
    await charged(pg, redis_client, keys, "a1", "4930111", 61, 86_000)
    await charged(pg, redis_client, keys, "a1", "4930222", 7, 23_000)  # 30 s: 0.02 + 0.03
    await charged(pg, redis_client, keys, "a1", "44207", 100, 50_000)  # unchanged
    await charged(pg, redis_client, keys, "a2", "4930333", 0, 0)  # not answered: 0 either way
    await charged(pg, redis_client, keys, "a2", "004930444", 3601, 3_626_000)  # 3606 s billed
    await charged(pg, redis_client, keys, "a2", "4930555", 61, 86_000, start=T0 + timedelta(days=1))  # outside
    balances = {a: await balance(redis_client, keys, a) for a in ("a1", "a2")}
    tariff(ctl, tmp_path, "t", V2)
    doc = rerate_json(ctl)
    assert (doc["examined"], doc["changed"], doc["unrated"], doc["accounts_adjusted"]) == (5, 3, 0, 2)
    # a1: 86000 -> 75000, 23000 -> 0.02 + 30 * 0.05 / 60 = 45000; a2: 3626000 -> 0.02 + 3606 * 0.05 / 60
    want = {"a1": (86_000 - 75_000) + (23_000 - 45_000), "a2": 3_626_000 - 3_025_000}  # 23000: a wrong charge
    rows = await pg.fetch("SELECT account_id, amount, reference, kind FROM ledger WHERE reference LIKE 'rerate:%'")
    assert {r["account_id"]: r["amount"] for r in rows} == want
    assert {r["reference"] for r in rows} == {f"rerate:{doc['run']}:a1", f"rerate:{doc['run']}:a2"}
    for a in ("a1", "a2"):
        assert await balance(redis_client, keys, a) == balances[a] + want[a]
    assert doc["total_difference"] == {"EUR": "-0.590000"}
    ctl("reconcile")
    # the report rollups (docs/reports.md) follow the records' new charges
    assert await pg.fetchval("SELECT sum(revenue) FROM report_rollup WHERE dim = 'account'") == \
        await pg.fetchval("SELECT sum(charge) FROM cdrs")
    before = await snapshot(pg)
    again = rerate_json(ctl)
    assert (again["changed"], again["accounts_adjusted"], again["run"]) == (0, 0, None)
    assert await snapshot(pg) == before
    assert await pg.fetchval("SELECT count(*) FROM rerate_runs") == 1


async def test_dry_run_changes_nothing(ctl: Run, tmp_path: Path, pg: asyncpg.Connection,
                                       redis_client: aioredis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix, 16)
    tariff(ctl, tmp_path, "t", V1)
    account(ctl, "a1")
    await charged(pg, redis_client, keys, "a1", "4930111", 61, 86_000)
    tariff(ctl, tmp_path, "t", V2)
    before, bal = await snapshot(pg), await balance(redis_client, keys, "a1")
    doc = rerate_json(ctl, "--dry-run")
    assert (doc["dry_run"], doc["changed"], doc["accounts_adjusted"], doc["run"]) == (True, 1, 1, None)
    assert doc["adjustments"][0]["difference"] == "-0.011000"
    text = ctl("rerate", *DAY, "--dry-run").stdout
    assert text.startswith("dry run, nothing changed: 1 records examined, 1 changed")
    assert await snapshot(pg) == before and await balance(redis_client, keys, "a1") == bal
    assert await pg.fetchval("SELECT count(*) FROM rerate_runs") == 0


async def test_account_and_tariff_filters(ctl: Run, tmp_path: Path, pg: asyncpg.Connection,
                                          redis_client: aioredis.Redis, key_prefix: str) -> None:
    """--tariff: the records rated by it, and those without a rating tariff of accounts on it."""
    keys = Keys(key_prefix, 16)
    tariff(ctl, tmp_path, "t", V1)
    tariff(ctl, tmp_path, "w", V1)
    account(ctl, "a1")
    account(ctl, "a2", "w")
    a1 = await charged(pg, redis_client, keys, "a1", "4930111", 61, 86_000)
    a1_old = await charged(pg, redis_client, keys, "a1", "4930222", 61, 86_000, tariff_name="")  # account's: t
    a2_by_t = await charged(pg, redis_client, keys, "a2", "4930333", 61, 86_000)  # rated by t before a move
    a2 = await charged(pg, redis_client, keys, "a2", "4930444", 61, 86_000, tariff_name="w")
    tariff(ctl, tmp_path, "t", V2)
    tariff(ctl, tmp_path, "w", V2)

    async def changed() -> set[str]:
        return {r["record_id"] for r in await pg.fetch("SELECT record_id FROM cdrs WHERE rerated_from IS NOT NULL")}

    assert rerate_json(ctl, "--account", "a1", "--tariff", "w")["examined"] == 0
    assert rerate_json(ctl, "--tariff", "t", "--account", "a2")["changed"] == 1
    assert await changed() == {a2_by_t}
    doc = rerate_json(ctl, "--account", "a1")
    assert (doc["changed"], [a["account"] for a in doc["adjustments"]]) == (2, ["a1"])
    assert await changed() == {a2_by_t, a1, a1_old}
    assert rerate_json(ctl, "--tariff", "w")["changed"] == 1
    assert await changed() == {a2_by_t, a1, a1_old, a2}
    ctl("reconcile")


async def test_fx_record_is_converted_at_its_own_rate(ctl: Run, tmp_path: Path, pg: asyncpg.Connection,
                                                      redis_client: aioredis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix, 16)
    tariff(ctl, tmp_path, "usd", V1, currency="USD")
    account(ctl, "e1", "usd")
    rid = await charged(pg, redis_client, keys, "e1", "4930111", 61, 79_417, tariff_name="usd",
                        rate_currency="USD", fx_rate="0.923459119")  # 0.086 USD converted
    tariff(ctl, tmp_path, "usd", V2, currency="USD")
    doc = rerate_json(ctl)
    # exact 0.075 USD * 0.923459119 = 0.069259433925 EUR -> 0.069259, rounded once
    assert await pg.fetchval("SELECT charge FROM cdrs WHERE record_id = $1", rid) == 69_259
    assert doc["total_difference"] == {"EUR": "-0.010158"}
    ctl("reconcile")


async def test_bad_input_changes_nothing(ctl: Run, tmp_path: Path, pg: asyncpg.Connection,
                                         redis_client: aioredis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix, 16)
    tariff(ctl, tmp_path, "t", V1)
    account(ctl, "a1")
    await charged(pg, redis_client, keys, "a1", "4930111", 61, 86_000)
    tariff(ctl, tmp_path, "t", V2)
    before = await snapshot(pg)
    for args, code, needle in (
            (("--from", "2026-11-24", "--to", "2026-11-23"), 2, "--to"),
            (("--from", "2026-11-23", "--to", "2026-11-23"), 2, "--to"),
            (("--from", "yesterday", "--to", "2026-11-24"), 2, "--from"),
            (("--from", "2026-11-23"), 2, "--to"),
            ((*DAY, "--account", "nobody"), 1, "unknown account"),
            ((*DAY, "--tariff", "nope"), 1, "unknown tariff")):
        res = ctl("rerate", *args, ok=code)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, res.stderr)
    assert await snapshot(pg) == before


async def test_a_crash_after_the_commit_is_applied_once(ctl: Run, tmp_path: Path, pg: asyncpg.Connection,
                                                        redis_client: aioredis.Redis, key_prefix: str) -> None:
    """The records and the ledger rows are committed, Redis never heard of them: the next run applies them."""
    keys = Keys(key_prefix, 16)
    tariff(ctl, tmp_path, "t", V1)
    account(ctl, "a1")
    await charged(pg, redis_client, keys, "a1", "4930111", 61, 86_000)
    tariff(ctl, tmp_path, "t", V2)
    bal = await balance(redis_client, keys, "a1")
    seen: list[tuple[int, int]] = []  # the progress bar's calls: (done, total)
    res = await rerate.run(pg, rerate.Request(T0 - timedelta(hours=1), T0 + timedelta(hours=1)),
                           lambda done, total: seen.append((done, total)))  # then "crash" before Redis
    assert res.changed == 1 and len(await rerate.pending(pg)) == 1 and seen == [(1, 1)]
    ctl("reconcile")  # an unapplied row is not yet owed: the balance still matches
    doc = rerate_json(ctl)
    assert (doc["changed"], doc["applied"]) == (0, 1)
    assert await balance(redis_client, keys, "a1") == bal + 11_000
    rerate_json(ctl)
    assert await balance(redis_client, keys, "a1") == bal + 11_000 and await rerate.pending(pg) == []
    ctl("reconcile")


async def test_a_later_cdr_revision_is_not_adjusted_twice(ctl: Run, tmp_path: Path, pg: asyncpg.Connection,
                                                          redis_client: aioredis.Redis, key_prefix: str) -> None:
    """Late usage after re-rating: the flush writes the session's CDR again at the core's (old) price."""
    keys = Keys(key_prefix, 16)
    tariff(ctl, tmp_path, "t", V1)
    account(ctl, "a1")
    rid = await charged(pg, redis_client, keys, "a1", "4930111", 61, 86_000)
    tariff(ctl, tmp_path, "t", V2)
    rerate_json(ctl)  # 86000 -> 75000: +11000 back
    # 60 s more at the session's V1 price: 121 s billed 126 s = 0.02 + 0.126 = 0.146; 0.06 more debited
    await pg.execute("UPDATE cdrs SET revision = 1, duration = 121, charge = 146000, rerated_from = NULL"
                     " WHERE record_id = $1", rid)
    await pg.execute("INSERT INTO usage (record_id, account_id, session_id, kind, amount, currency, event_time)"
                     " VALUES ('late', 'a1', 'late', 'orphan', 60000, 'EUR', $1)", T0)
    await redis_client.hincrby(keys.account("a1"), "bal", -60_000)
    doc = rerate_json(ctl)
    # paid 146000 - 11000 = 135000; V2 price 0.02 + 126 * 0.05 / 60 = 0.125: 10000 more back, not 21000
    assert doc["adjustments"][0]["adjustment"] == "0.010000"
    row = await pg.fetchrow("SELECT charge, rerated_from, rerate_adjusted FROM cdrs WHERE record_id = $1", rid)
    assert tuple(row) == (125_000, 135_000, -21_000)
    ctl("reconcile")
    assert rerate_json(ctl)["changed"] == 0


async def test_batches_written_while_reading_and_a_conflict_keeps_nothing(
        ctl: Run, tmp_path: Path, pg: asyncpg.Connection, pg_dsn: str, redis_client: aioredis.Redis,
        key_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two connections, a batch per record: the same result; a record the flush rewrote meanwhile: nothing kept."""
    keys = Keys(key_prefix, 16)
    tariff(ctl, tmp_path, "t", V1)
    account(ctl, "a1")
    # the last one a day later: the flush's rewrite of it shares no rollup row (docs/reports.md) with the others
    rids = [await charged(pg, redis_client, keys, "a1", f"49301{i}", 61, 86_000, start=T0 + timedelta(days=i // 3))
            for i in range(4)]
    tariff(ctl, tmp_path, "t", V2)
    monkeypatch.setattr(rerate, "CHUNK", 1)
    monkeypatch.setattr(rerate, "BATCH", 1)
    period = rerate.Request(T0 - timedelta(hours=1), T0 + timedelta(days=2))
    before = await snapshot(pg)
    writer, reader, other = [await asyncpg.connect(pg_dsn) for _ in range(3)]
    try:
        late: list[Any] = []

        def flush_meanwhile(done: int, _total: int) -> None:  # after the first record was read
            if done == 1:
                late.append(asyncio.ensure_future(other.execute(
                    "UPDATE cdrs SET revision = revision + 1 WHERE record_id = $1", rids[-1])))

        with pytest.raises(BillingRefused, match="changed while re-rating"):
            await rerate.run(writer, period, flush_meanwhile, reader)
        await asyncio.gather(*late)
        assert await snapshot(pg) == before  # the first three updates were rolled back
        res = await rerate.run(writer, period, None, reader)
        assert (res.changed, [a.difference for a in res.adjusted]) == (4, [-44_000])
    finally:
        for c in (writer, reader, other):
            await c.close()
    ctl("rerate", *DAY)  # applies the adjustment
    assert {r["charge"] for r in await pg.fetch("SELECT charge FROM cdrs")} == {75_000}
    ctl("reconcile")
