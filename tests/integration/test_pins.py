"""Vouchers and calling cards through ocsctl and the service layer, on real PostgreSQL and Redis (docs/billing.md)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import hmac
import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs import config
from ocs.billing import pin_lots, vouchers
from ocs.billing.pins import LotSpec, PinRefused
from ocs.store.keys import Keys

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
RATES = "prefix,destination,rate,connect_fee,first_increment,next_increment\n49,Germany,0.06,0.02,30,6\n"
PEPPER = b"a test pepper of more than sixteen bytes"


@pytest.fixture
def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection,
        redis_client: aioredis.Redis):  # type: ignore[no-untyped-def]
    (tmp_path / "pepper").write_bytes(PEPPER + b"\n")
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n'
                   f'[billing]\npin_pepper_file = "{tmp_path / "pepper"}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=120)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    (tmp_path / "rates.csv").write_text(RATES)
    run("tariff", "import", "t", str(tmp_path / "rates.csv"), "--currency", "EUR")
    run("account", "create", "a1", "--currency", "EUR", "--tariff", "t")
    return run, tmp_path


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def _pins(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _generate(run, tmp: Path, lot: str, *extra: str, count: int = 50, value: str = "10.00"):  # type: ignore[no-untyped-def]
    out = tmp / f"{lot}.csv"
    run("pin", "generate", "--count", str(count), "--value", value, "--currency", "EUR", "--lot", lot,
        "-o", str(out), *extra)
    return _pins(out), out


def _balance(run, account: str) -> str:  # type: ignore[no-untyped-def]
    return str(json.loads(run("account", "show", account, "--json").stdout)["balance"])


async def test_generation_file_hashes_and_uniqueness(ctl, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    rows, out = _generate(run, tmp, "v1", "--length", "14", count=300)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    pins = [r["pin"] for r in rows]
    assert len(pins) == len(set(pins)) == 300
    assert all(len(p) == 14 and p.isdigit() and p[0] != "0" for p in pins)
    assert [int(r["serial"]) for r in rows] == list(range(1, 301))
    stored = {bytes(r["pin_hash"]) for r in await pg.fetch("SELECT pin_hash FROM pins WHERE lot = 'v1'")}
    assert stored == {hmac.new(PEPPER, p.encode(), hashlib.sha256).digest() for p in pins}
    dump = ""
    for table in ("pins", "pin_lots", "ledger", "aliases", "accounts"):
        dump += "\n".join(await pg.fetchval(f"SELECT coalesce(array_agg(t::text), '{{}}') FROM {table} t"))
    assert not any(p in dump for p in pins)  # no cleartext anywhere for vouchers
    listing = run("pin", "list", "--lot", "v1", "--json").stdout
    assert not any(p in listing for p in pins)
    doc = json.loads(listing)
    assert (doc["used"], doc["unused"], doc["expired"], doc["count"], doc["pepper_current"]) == (0, 300, 0, 300, True)
    assert set(doc["pins"][0]) >= {"id", "state", "redeemed_by", "redeemed_at", "expires"}
    # the file is never overwritten, a lot name is used once, and a refusal leaves nothing behind
    before = out.read_bytes()
    assert "never overwritten" in _one_line(run("pin", "generate", "--count", "1", "--value", "1", "--currency",
                                                "EUR", "--lot", "v2", "-o", str(out), ok=1))
    assert out.read_bytes() == before
    assert "already exists" in _one_line(run("pin", "generate", "--count", "1", "--value", "1", "--currency",
                                             "EUR", "--lot", "v1", "-o", str(tmp / "new.csv"), ok=1))
    assert not (tmp / "new.csv").exists()
    assert await pg.fetchval("SELECT count(*) FROM pin_lots") == 1


async def test_voucher_redeemed_once_and_the_ledger_holds(ctl, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    rows, _ = _generate(run, tmp, "v1", count=3)
    pin = rows[0]["pin"]
    doc = json.loads(run("pin", "redeem", pin, "a1", "--json").stdout)
    assert (doc["balance"], doc["applied"], doc["reference"]) == ("10.00", True, "pin:v1:1")
    assert "already redeemed" in _one_line(run("pin", "redeem", pin, "a1", ok=1))
    run("account", "create", "a2", "--currency", "EUR", "--tariff", "t")
    assert "already redeemed" in _one_line(run("pin", "redeem", pin, "a2", ok=1))
    run("pin", "redeem", rows[1]["pin"], "a1")
    assert _balance(run, "a1") == "20.00" and _balance(run, "a2") == "0.00"
    assert await pg.fetchval("SELECT count(*) FROM ledger WHERE account_id = 'a1' AND applied_at IS NOT NULL") == 2
    listing = json.loads(run("pin", "list", "--lot", "v1", "--json").stdout)
    assert (listing["used"], listing["unused"], listing["expired"]) == (2, 1, 0)
    assert [(p["state"], p["redeemed_by"]) for p in listing["pins"]] == [("used", "a1"), ("used", "a1"),
                                                                          ("unused", None)]
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0
    for bad, needle in (("123456789012", "unknown PIN"), ("12ab", "not a valid PIN")):
        assert needle in _one_line(run("pin", "redeem", bad, "a1", ok=1))
    assert "unknown account" in _one_line(run("pin", "redeem", rows[2]["pin"], "nobody", ok=1))


async def test_concurrent_redeems_exactly_one_wins(ctl, pg_dsn: str, key_prefix: str,  # type: ignore[no-untyped-def]
                                                   redis_client: aioredis.Redis) -> None:
    run, tmp = ctl
    rows, _ = _generate(run, tmp, "v1", count=1, value="5.00")
    for n in range(2, 9):
        run("account", "create", f"a{n}", "--currency", "EUR", "--tariff", "t")
    keys = Keys(key_prefix, config.ChargingConfig().shards)
    conns = [await asyncpg.connect(pg_dsn) for _ in range(8)]
    try:
        results = await asyncio.gather(*(vouchers.redeem(c, redis_client, keys, PEPPER, rows[0]["pin"], f"a{n}")
                                         for n, c in enumerate(conns, start=1)), return_exceptions=True)
    finally:
        for c in conns:
            await c.close()
    won = [r for r in results if isinstance(r, vouchers.Redeemed)]
    assert len(won) == 1, results
    assert all(isinstance(r, PinRefused) and "already redeemed" in str(r) for r in results if r is not won[0])
    balances = [_balance(run, f"a{n}") for n in range(1, 9)]
    assert sorted(balances) == ["0.00"] * 7 + ["5.00"]
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0


async def test_expired_card_and_foreign_currency_vouchers_refused(ctl, pg: asyncpg.Connection) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    rows, _ = _generate(run, tmp, "v1", "--expires", "2099-12-31", count=2)
    assert rows[0]["expires"] == "2100-01-01T00:00:00Z"  # valid through the day named
    await pg.execute("UPDATE pin_lots SET expires_at = now() - interval '1 second' WHERE name = 'v1'")
    assert "expired" in _one_line(run("pin", "redeem", rows[0]["pin"], "a1", ok=1))
    doc = json.loads(run("pin", "list", "--lot", "v1", "--json").stdout)
    assert (doc["used"], doc["unused"], doc["expired"]) == (0, 0, 2)
    cards, _ = _generate(run, tmp, "c1", "--kind", "card", "--tariff", "t", count=1)
    assert "calling card" in _one_line(run("pin", "redeem", cards[0]["pin"], "a1", ok=1))
    (tmp / "usd.csv").write_text(RATES)
    run("tariff", "import", "tu", str(tmp / "usd.csv"), "--currency", "USD")
    run("account", "create", "u1", "--currency", "USD", "--tariff", "tu")
    fresh, _ = _generate(run, tmp, "v2", count=1)
    assert "voucher is in EUR, account u1 in USD" in _one_line(run("pin", "redeem", fresh[0]["pin"], "u1", ok=1))
    assert _balance(run, "a1") == "0.00" and _balance(run, "u1") == "0.00"
    assert await pg.fetchval("SELECT count(*) FROM pins WHERE redeemed_at IS NOT NULL") == 0


async def test_cards_are_accounts_with_pin_alias_password_and_balance(ctl, pg: asyncpg.Connection, key_prefix: str,  # type: ignore[no-untyped-def]
                                                                     redis_client: aioredis.Redis) -> None:
    run, tmp = ctl
    rows, out = _generate(run, tmp, "c1", "--kind", "card", "--tariff", "t", count=20, value="2.50")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    keys = Keys(key_prefix, config.ChargingConfig().shards)
    for r in rows[:3]:
        doc = json.loads(run("account", "show", r["account"], "--json").stdout)
        assert r["account"] == f"card-c1-{r['serial']}"
        assert (doc["type"], doc["currency"], doc["tariff"], doc["balance"], doc["aliases"]) == (
            "prepaid", "EUR", "t", "2.50", [r["pin"]])
        assert await redis_client.get(keys.alias(r["pin"])) == r["account"].encode()
        assert await redis_client.hget(keys.account(r["account"]), "pw") == r["pin"].encode()
    assert await pg.fetchval("SELECT count(*) FROM ledger WHERE reason = 'card lot c1' AND applied_at IS NULL") == 0
    assert await pg.fetchval("SELECT count(*) FROM aliases WHERE kind = 'pin'") == 20
    assert json.loads(run("reconcile", "--json").stdout)["differences"] == 0
    doc = json.loads(run("pin", "list", "--lot", "c1", "--json").stdout)
    assert (doc["kind"], doc["unused"], doc["pins"][4]["account"]) == ("card", 20, "card-c1-5")


@pytest.mark.slow
async def test_ten_thousand_cards_in_reasonable_time(ctl, pg: asyncpg.Connection, key_prefix: str,  # type: ignore[no-untyped-def]
                                                     redis_client: aioredis.Redis) -> None:
    run, tmp = ctl
    started = time.monotonic()
    rows, _ = _generate(run, tmp, "big", "--kind", "card", "--tariff", "t", count=10_000, value="1.00")
    assert time.monotonic() - started < 30, "10,000 cards should take seconds"
    assert len({r["pin"] for r in rows}) == 10_000
    keys = Keys(key_prefix, config.ChargingConfig().shards)
    pipe = redis_client.pipeline(transaction=False)
    for r in rows:
        pipe.hget(keys.account(r["account"]), "bal")
        pipe.get(keys.alias(r["pin"]))
    got = await pipe.execute()
    assert set(got[0::2]) == {b"1000000"} and got[1::2] == [r["account"].encode() for r in rows]
    assert await pg.fetchval("SELECT count(*) FROM ledger WHERE applied_at IS NULL") == 0
    assert await pg.fetchval("SELECT sum(amount) FROM ledger") == 10_000 * 1_000_000
    # the fixture deletes keys one by one; 30,000 of them go faster in batches
    batch = [k async for k in redis_client.scan_iter(match=f"{key_prefix}*", count=5000)]
    for start in range(0, len(batch), 5000):
        await redis_client.unlink(*batch[start:start + 5000])


async def test_failed_commit_removes_the_file_and_the_redis_accounts(ctl, pg_dsn: str, key_prefix: str,  # type: ignore[no-untyped-def]
                                                                     redis_client: aioredis.Redis) -> None:
    _run, tmp = ctl
    keys = Keys(key_prefix, config.ChargingConfig().shards)
    spec = LotSpec("c9", "card", 3, 1_000_000, "EUR", tariff="t")
    seen: list[str] = []

    def sink(issued):  # type: ignore[no-untyped-def]
        seen.extend(p.pin for p in issued)
        pin_lots.write_csv(tmp / "c9.csv", spec, issued)
        raise OSError("disk full")

    conn = await asyncpg.connect(pg_dsn)
    try:
        with pytest.raises(OSError, match="disk full"):
            await pin_lots.generate(conn, redis_client, keys, PEPPER, spec, sink)
        assert await conn.fetchval("SELECT count(*) FROM pin_lots") == 0
        assert await conn.fetchval("SELECT count(*) FROM accounts WHERE id LIKE 'card-c9-%'") == 0
    finally:
        await conn.close()
    assert seen and not any([await redis_client.exists(keys.alias(p)) for p in seen])
    assert not await redis_client.exists(keys.account("card-c9-1"))


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("--count", "0"), 2, "--count"),
    (("--count", "x"), 2, "--count"),
    (("--kind", "card"), 2, "--tariff is required"),
    (("--expires", "next tuesday"), 2, "--expires"),
    (("--expires", "2001-01-01"), 2, "already past"),
    (("--kind", "card", "--tariff", "t", "--expires", "2099-01-01"), 2, "--expires applies to vouchers"),
    (("--length", "4"), 2, "--length"),
    (("--count", "100000", "--length", "8"), 2, "too short"),
    (("--lot", "has space"), 2, "--lot"),
    (("--value", "0"), 1, "--value"),
    (("--value", "1.0000001"), 1, "--value"),
    (("--kind", "card", "--tariff", "nope"), 1, "unknown tariff"),
    (("--kind", "card", "--tariff", "t", "--currency", "USD"), 1, "does not match tariff"),
])
def test_bad_generate_requests(ctl, args: tuple[str, ...], code: int, needle: str) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    opts = {"--count": "5", "--value": "1.00", "--currency": "EUR", "--lot": "L"}
    opts.update(zip(args[::2], args[1::2], strict=True))
    res = run("pin", "generate", *[x for kv in opts.items() for x in kv], "-o", str(tmp / "bad.csv"), ok=code)
    assert needle in _one_line(res)
    assert not (tmp / "bad.csv").exists()


def test_unknown_lot_and_missing_pepper(ctl) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    assert "unknown lot" in _one_line(run("pin", "list", "--lot", "nope", ok=1))
    cfg = tmp / "ocs.toml"
    cfg.write_text(cfg.read_text().replace(str(tmp / "pepper"), ""))
    res = run("pin", "generate", "--count", "1", "--value", "1", "--currency", "EUR", "--lot", "x",
              "-o", str(tmp / "x.csv"), ok=2)
    assert "billing.pin_pepper_file" in _one_line(res)
    (tmp / "short").write_text("tiny\n")
    cfg.write_text(cfg.read_text().replace('pin_pepper_file = ""', f'pin_pepper_file = "{tmp / "short"}"'))
    assert "fewer than 16 bytes" in _one_line(run("pin", "redeem", "123456789012", "a1", ok=2))
