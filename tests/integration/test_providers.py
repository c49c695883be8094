"""Providers, routes and the cost of every CDR on the real stores (docs/wholesale.md).

The verbs run in-process (``ocsctl`` main in a thread) against the test database and Redis prefix;
the flusher is the real one, fed by real charging calls or by CDR entries appended to the stream.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.charging import Charging
from ocs.cli.main import main as ocsctl
from ocs.store import dead_letters
from ocs.store.flush import Flusher
from ocs.wholesale import cost_cache
from tests.support.balance import provision, voice

pytestmark = pytest.mark.integration

SHEET_A = "prefix,destination,rate,first_increment,next_increment\n49,Germany,0.010,60,60\n4915,DE mobile,0.09,60,60\n"
SHEET_B = ("prefix,destination,rate,connect_fee,first_increment,next_increment,band\n"
           "49,Germany,0.020,0,60,60,peak\n49,Germany,0.005,0,60,60,any\n4915,DE mobile,0.04,0.01,1,1,any\n")
BANDS_B = "band,days,start,end\npeak,mon-fri,08:00,20:00\n"


def _main(argv: list[str]) -> int:
    """``ocsctl`` main; argparse's usage errors exit through SystemExit (code 2)."""
    try:
        return ocsctl(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


class Ctl:
    """``ocsctl`` in-process; every call returns (exit code, stdout, stderr lines)."""

    def __init__(self, tmp: Path, dsn: str, prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp = tmp
        self.capsys = capsys
        self.prefix = prefix
        self.cfg = tmp / "ocs.toml"
        self.cfg.write_text(f'[postgres]\ndsn = "{dsn}"\n[redis]\nkey_prefix = "{prefix}"\n')

    def file(self, name: str, text: str) -> str:
        (self.tmp / name).write_text(text)
        return str(self.tmp / name)

    async def __call__(self, *args: str, code: int = 0) -> tuple[str, list[str]]:
        self.capsys.readouterr()
        rc = await asyncio.to_thread(_main, ["--config", str(self.cfg), *args])
        out = self.capsys.readouterr()
        err = [line for line in out.err.splitlines() if line.startswith("ocsctl")]
        assert rc == code, (args, rc, out.err)
        return out.out, err

    async def json(self, *args: str) -> Any:
        return json.loads((await self(*args, "--json"))[0])


@pytest.fixture
def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection, redis_client: aioredis.Redis,
        capsys: pytest.CaptureFixture[str]) -> Ctl:
    return Ctl(tmp_path, pg_dsn, key_prefix, capsys)


async def _two_providers(ctl: Ctl) -> None:
    await ctl("provider", "create", "A", "--currency", "EUR")
    await ctl("provider", "create", "B", "--currency", "eur", "--timezone", "UTC")
    await ctl("provider", "rates", "A", ctl.file("a.csv", SHEET_A))
    await ctl("provider", "rates", "B", ctl.file("b.csv", SHEET_B), "--bands", ctl.file("bands.csv", BANDS_B))


async def _state(pg: asyncpg.Connection, redis_client: aioredis.Redis, ctl: Ctl) -> tuple[object, ...]:
    gen = await redis_client.get(f"{ctl.prefix}providers:gen")
    return (
        [tuple(r) for r in await pg.fetch("SELECT name, currency, timezone FROM providers ORDER BY name")],
        [tuple(r) for r in await pg.fetch("SELECT prefix, providers, lcr FROM routes ORDER BY prefix")],
        [tuple(r) for r in await pg.fetch("SELECT tariff, version, rows FROM tariff_versions ORDER BY 1, 2")],
        await pg.fetchval("SELECT count(*) FROM rate_rows"), gen,
    )


async def test_provider_rates_import_show_list(ctl: Ctl, pg: asyncpg.Connection) -> None:
    await _two_providers(ctl)
    listed = await ctl.json("provider", "list")
    assert [(p["provider"], p["currency"], p["version"], p["rates"]) for p in listed["providers"]] == [
        ("A", "EUR", 1, 2), ("B", "EUR", 1, 3)]
    shown = await ctl.json("provider", "show", "B")
    assert shown["tariff"] == "provider:B" and shown["version"] == 1 and shown["routes"] == []
    assert {(r["prefix"], r["band"], r["rate"]) for r in shown["rows"]} == {
        ("49", "peak", "0.02"), ("49", "any", "0.005"), ("4915", "any", "0.04")}
    again = await ctl.json("provider", "rates", "A", ctl.file("a2.csv", SHEET_A.replace("0.010", "0.011")))
    assert again["version"] == 2 and again["currency"] == "EUR"
    # the sheet is an ordinary tariff: tariff rate prices with it
    priced = await ctl.json("tariff", "rate", "provider:A", "4930", "--seconds", "61")
    assert priced["charge"] == "0.022000"


async def test_bad_rate_lines_are_numbered_and_change_nothing(ctl: Ctl, pg: asyncpg.Connection,
                                                               redis_client: aioredis.Redis) -> None:
    await _two_providers(ctl)
    before = await _state(pg, redis_client, ctl)
    bad = "prefix,destination,rate\n49,Germany,0.01\n4915,DE mobile,-1\n44,UK,0.02\n"
    _, err = await ctl("provider", "rates", "A", ctl.file("bad.csv", bad), code=1)
    assert len(err) == 1 and err[0].startswith("ocsctl: bad.csv line 3: ")
    assert err[0].endswith("(1 rejected of 3 rows read; nothing imported)")
    two_bad = "prefix,destination,rate,band\n49,Germany,0.01,any\nx49,DE,0.02,any\n44,UK,0.02,night\n"
    _, err = await ctl("provider", "rates", "B", ctl.file("bad2.csv", two_bad),
                       "--bands", ctl.file("bands.csv", BANDS_B), code=1)
    assert "bad2.csv line 4" in err[0] and "bad2.csv line 3" in err[-1] and "2 rejected of 3 rows" in err[-1]
    _, err = await ctl("provider", "rates", "A", ctl.file("bands_bad.csv", SHEET_A),
                       "--bands", ctl.file("b.csv", "band,days,start,end\npeak,mon-fri,08:00,07:00\n"), code=1)
    assert len(err) == 1 and err[0].startswith("ocsctl: b.csv line 2: ") and "start must be before end" in err[0]
    assert await _state(pg, redis_client, ctl) == before


@pytest.mark.parametrize(("args", "code", "says"), [
    (("provider", "create", "C", "--currency", "EURO"), 2, "currency"),
    (("provider", "create", "bad name", "--currency", "EUR"), 2, "name"),
    (("provider", "create", "C", "--currency", "EUR", "--timezone", "Mars/Base"), 2, "timezone"),
    (("provider", "create", "A", "--currency", "USD"), 1, "provider 'A' exists"),
    (("provider", "create", "C"), 2, "--currency"),
    (("provider", "rates", "nobody", "RATES"), 1, "unknown provider 'nobody'"),
    (("provider", "rates", "A", "/nonexistent/rates.csv"), 1, "No such file"),
    (("provider", "rates", "A", "EMPTY"), 1, "empty file"),
    (("provider", "show", "nobody"), 1, "unknown provider"),
    (("provider", "list", "extra"), 2, "unrecognized"),
    (("route", "set", "+49", "A"), 2, "prefix"),
    (("route", "set", "49", "A", "nobody"), 1, "unknown provider 'nobody'"),
    (("route", "set", "49", "A", "A"), 2, "listed twice"),
    (("route", "set", "49"), 2, "PROVIDER"),
    (("route", "delete", "33"), 1, "no route for prefix 33"),
    (("route", "delete", "4x"), 2, "prefix"),
    (("route", "rate", "3312345"), 1, "no route"),
    (("route", "rate", "4930", "--seconds", "-1"), 2, "--seconds"),
    (("route", "rate", "4930", "--at", "noon"), 2, "--at"),
])
async def test_bad_input_one_line_and_nothing_changed(ctl: Ctl, pg: asyncpg.Connection, redis_client: aioredis.Redis,
                                                      args: tuple[str, ...], code: int, says: str) -> None:
    await _two_providers(ctl)
    await ctl("route", "set", "49", "A")
    args = tuple(ctl.file("rates.csv", SHEET_A) if a == "RATES" else ctl.file("e.csv", "\n") if a == "EMPTY" else a
                 for a in args)
    before = await _state(pg, redis_client, ctl)
    ctl.capsys.readouterr()
    rc = await asyncio.to_thread(_main, ["--config", str(ctl.cfg), *args])
    err = ctl.capsys.readouterr().err.strip().splitlines()
    assert rc == code and len(err) == 1 and says in err[0], (rc, err)
    assert await _state(pg, redis_client, ctl) == before


async def test_routes_longest_prefix_ordered_and_lcr(ctl: Ctl, pg: asyncpg.Connection) -> None:
    await _two_providers(ctl)
    await ctl("route", "set", "49", "A", "B")
    await ctl("route", "set", "4915", "B", "A", "--lcr")
    assert (await ctl.json("route", "list"))["routes"] == [
        {"prefix": "49", "providers": ["A", "B"], "lcr": False},
        {"prefix": "4915", "providers": ["B", "A"], "lcr": True}]
    off_peak = "2026-11-23T22:00:00+00:00"
    fixed = await ctl.json("route", "rate", "+49301234", "--at", off_peak)
    assert (fixed["route"], fixed["provider"], fixed["cost"]) == ("49", "A", "0.010000")  # ordered: A first
    mobile = await ctl.json("route", "rate", "00491511234", "--at", off_peak, "--seconds", "61")
    assert (mobile["route"], mobile["provider"], mobile["cost"]) == ("4915", "B", "0.050667")  # B 0.050667 < A 0.18
    await ctl("route", "set", "49", "A", "B", "--lcr")  # replaced: now the cheapest off-peak is B
    assert (await ctl.json("route", "rate", "4930", "--at", off_peak))["provider"] == "B"
    assert (await ctl.json("route", "rate", "4930", "--at", "2026-11-23T10:00:00+00:00"))["provider"] == "A"
    assert (await ctl.json("provider", "show", "A"))["routes"] == ["49", "4915"]
    assert "4915             B A  (lcr)" in (await ctl("route", "list"))[0]
    assert "A                    EUR v1       2 rates     2 routes" in (await ctl("provider", "list"))[0]
    assert "routes: 49 4915" in (await ctl("provider", "show", "A"))[0]
    await ctl("route", "delete", "4915")
    assert (await ctl.json("route", "rate", "4915123", "--at", off_peak))["route"] == "49"


def _cdr(record: str, called: str, *, duration: str = "60", **extra: str) -> dict[str, str]:
    f = {"t": "c", "record_id": record, "session_id": record, "rating_group": "0", "account": "alice",
         "protocol": "test", "service": "voice", "calling": "4915110000001", "called": called, "prefix": "49",
         "destination": "Germany", "start_time": "2026-11-23T22:00:00+00:00", "duration": duration,
         "billed_seconds": duration, "charge": "1000", "currency": "EUR", "termination_cause": "NORMAL",
         "end_time": "2026-11-23T22:01:00+00:00", "node": "n1", "revision": "1"}
    f.update(extra)
    return f


async def _cost(pg: asyncpg.Connection, record: str) -> tuple[str, int | None, str]:
    row = await pg.fetchrow("SELECT provider, cost, cost_currency FROM cdrs WHERE record_id = $1", record)
    assert row is not None, record
    return row["provider"], row["cost"], row["cost_currency"]


async def test_flusher_prices_every_cdr(ctl: Ctl, core: Charging, flusher: Flusher, redis_client: aioredis.Redis,
                                        pg: asyncpg.Connection) -> None:
    await _two_providers(ctl)
    await ctl("route", "set", "49", "B", "A", "--lcr")
    await provision(redis_client, core.keys, "alice", 10_000_000)
    await core.initiate(voice("call1", 0, req=300, dest="+4930123456"))  # Monday 10:00, peak: A is cheaper
    await core.terminate(voice("call1", 1, used=61))
    stream = flusher.keys.usage(0)
    for f in (_cdr("c:off", "4930111"), _cdr("c:none", "3312345"), _cdr("c:known", "4930", provider="X", cost="7",
                                                                         cost_currency="USD")):
        await redis_client.xadd(stream, f)  # type: ignore[arg-type]
    await flusher.flush_all()
    assert await _cost(pg, "cdr:call1:0") == ("A", 20_000, "EUR")  # 120 s billed at 0.01
    assert await _cost(pg, "c:off") == ("B", 5_000, "EUR")
    assert await _cost(pg, "c:none") == ("", None, "")  # no route: no provider, NULL cost
    assert await _cost(pg, "c:known") == ("X", 7, "USD")  # priced upstream (CDR import): kept
    margin = await pg.fetchval("SELECT charge - cost FROM cdrs WHERE record_id = 'cdr:call1:0'")
    assert margin == 86_000 - 20_000
    # a route change reaches the flusher through the generation counter
    assert flusher.costs.current is not None
    sheet_b = flusher.costs.current.sheets["B"]
    await ctl("route", "set", "33", "A")
    await ctl("provider", "rates", "A", ctl.file("a3.csv", SHEET_A + "33,France,0.03,1,1\n"))
    flusher.costs.invalidate()
    await redis_client.xadd(stream, _cdr("c:fr", "3312345", duration="10"))  # type: ignore[arg-type]
    await flusher.flush_all()
    assert await _cost(pg, "c:fr") == ("A", 5_000, "EUR")
    assert flusher.costs.current is not None and flusher.costs.current.sheets["B"] is sheet_b  # not reloaded
    assert flusher.costs.current.sheets["A"].tariff.version == 2


async def test_broken_configuration_never_stops_the_flush(ctl: Ctl, flusher: Flusher, redis_client: aioredis.Redis,
                                                          pg: asyncpg.Connection,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    await _two_providers(ctl)
    await ctl("route", "set", "49", "A")
    stream = flusher.keys.usage(2)
    await redis_client.xadd(stream, _cdr("c:1", "4930"))  # type: ignore[arg-type]
    await redis_client.xadd(stream, _cdr("c:odd", "4930", service="fax"))  # type: ignore[arg-type]
    await flusher.flush_all()
    assert await _cost(pg, "c:1") == ("A", 10_000, "EUR")
    assert await _cost(pg, "c:odd") == ("", None, "")  # cannot be priced: written without cost

    async def broken(*args: object) -> None:
        raise ValueError("a sheet that cannot be compiled")

    monkeypatch.setattr(cost_cache, "load_book", broken)
    await ctl("route", "set", "4915", "B")  # generation changes: the reload fails
    flusher.costs.invalidate()
    await redis_client.xadd(stream, _cdr("c:2", "4930"))  # type: ignore[arg-type]
    await flusher.flush_all()
    assert await _cost(pg, "c:2") == ("A", 10_000, "EUR")  # the last good book goes on
    flusher.costs.current = None
    flusher.costs._gen = None
    flusher.costs.invalidate()
    await redis_client.xadd(stream, _cdr("c:3", "4930"))  # type: ignore[arg-type]
    await flusher.flush_all()
    assert await _cost(pg, "c:3") == ("", None, "")  # no good book at all: flushed without cost
    assert await redis_client.xlen(stream) == 0


async def test_dead_letter_retry_prices_the_cdr(ctl: Ctl, flusher: Flusher, redis_client: aioredis.Redis,
                                                pg: asyncpg.Connection) -> None:
    await _two_providers(ctl)
    await ctl("route", "set", "49", "A")
    await pg.execute("ALTER TABLE cdrs ADD CONSTRAINT test_short CHECK (duration < 1000)")
    try:
        await redis_client.xadd(flusher.keys.usage(1), _cdr("c:long", "4930", duration="1200"))  # type: ignore[arg-type]
        await flusher.flush_all()
        dead_id = await pg.fetchval("SELECT id FROM usage_dead_letters WHERE record_id = 'c:long'")
        assert dead_id is not None
    finally:
        await pg.execute("ALTER TABLE cdrs DROP CONSTRAINT test_short")
    kept = json.loads(await pg.fetchval("SELECT fields FROM usage_dead_letters WHERE id = $1", dead_id))
    assert (kept["provider"], kept["cost"], kept["cost_currency"]) == ("A", "200000", "EUR")  # priced once, kept
    await ctl("usage", "retry", str(dead_id))
    assert await _cost(pg, "c:long") == ("A", 200_000, "EUR")
    # a dead letter written before its route existed is priced by the retry, as the flusher would
    await dead_letters.record_dead_letters(pg, [((flusher.keys.usage(1), "1-1", _cdr("c:old", "4930")), "x")], "n1")
    old_id = await pg.fetchval("SELECT id FROM usage_dead_letters WHERE record_id = 'c:old'")
    await ctl("usage", "retry", str(old_id))
    assert await _cost(pg, "c:old") == ("A", 10_000, "EUR")


async def test_postgres_lost_while_loading_routes_writes_nothing_without_cost(
        ctl: Ctl, flusher: Flusher, redis_client: aioredis.Redis, pg: asyncpg.Connection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lost connection is not a broken configuration: the flush backs off and the CDR waits for its cost."""
    await _two_providers(ctl)
    await ctl("route", "set", "49", "A")
    real = cost_cache.load_book

    async def lost(*args: object) -> None:
        raise ConnectionResetError("postgres went away")

    monkeypatch.setattr(cost_cache, "load_book", lost)
    await redis_client.xadd(flusher.keys.usage(4), _cdr("c:wait", "4930"))  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError):
        await flusher.flush_once()
    assert await pg.fetchval("SELECT count(*) FROM cdrs") == 0
    monkeypatch.setattr(cost_cache, "load_book", real)
    await flusher.flush_all()  # the pending entry is read again, now priced
    assert await _cost(pg, "c:wait") == ("A", 10_000, "EUR")
