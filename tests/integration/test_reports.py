"""Usage reports, charts and CDR exports against real PostgreSQL (docs/reports.md).

Totals are checked against an independent sum over generated CDRs, on both paths a report can take
(the rollups the cdrs triggers keep, and the CDRs themselves for one account or a period that does
not fall on whole days); ASR and ACD on a case computed by hand; the rollups follow every kind of
write (the flusher's revision upsert, an UPDATE such as re-rating, a DELETE).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import openpyxl
import pytest

from ocs.reports.usage_report import BY, TOTAL, Query, usage
from ocs.store.usage_rows import write_batch

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
NOV = datetime(2026, 11, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 1, tzinfo=UTC)
_COLS = ("record_id", "session_id", "account", "service", "called", "destination", "start_time", "duration",
         "billed_seconds", "charge", "currency", "termination_cause", "provider", "cost", "cost_currency",
         "reseller")


async def _insert(pg: asyncpg.Connection, rows: list[dict[str, Any]]) -> None:
    await pg.executemany(
        f"INSERT INTO cdrs ({', '.join(_COLS)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(_COLS)))})",
        [tuple(r[c] for c in _COLS) for r in rows])


def _cdr(n: int, account: str, dest: str, start: datetime, duration: int, charge: int, *, cost: int | None = None,
         provider: str = "", reseller: str = "", currency: str = "EUR", service: str = "voice") -> dict[str, Any]:
    return {"record_id": f"cdr:s{n}:0", "session_id": f"s{n}", "account": account, "service": service,
            "called": "49301", "destination": dest, "start_time": start, "duration": duration,
            "billed_seconds": duration, "charge": charge, "currency": currency,
            "termination_cause": "NORMAL" if duration else "out_of_credit", "provider": provider, "cost": cost,
            "cost_currency": currency if cost is not None else "", "reseller": reseller}


async def test_asr_acd_and_profit_by_hand(pg: asyncpg.Connection) -> None:
    t = NOV + timedelta(days=3, hours=10)
    await _insert(pg, [
        _cdr(1, "a", "Germany", t, 60, 60_000, cost=30_000, provider="p1"),
        _cdr(2, "a", "Germany", t, 30, 35_000, cost=15_000, provider="p1"),
        _cdr(3, "b", "Germany", t, 0, 0, provider="p1"),  # a refused attempt
        _cdr(4, "b", "France", t, 125, 100_000, cost=120_000, provider="p2"),
    ])
    lines = {ln.group: ln.document() for ln in await usage(pg, Query(NOV, DEC, "destination"))}
    de = lines["Germany"]
    assert (de["attempts"], de["answered"], de["minutes"], de["asr"], de["acd"]) == (3, 2, "1.50", "66.67", "45.0")
    assert (de["revenue"], de["cost"], de["profit"]) == ("0.095000", "0.045000", "0.050000")
    assert lines["France"]["profit"] == "-0.020000" and lines["France"]["asr"] == "100.00"
    total = lines[TOTAL]
    assert (total["attempts"], total["answered"], total["minutes"], total["revenue"]) == (4, 3, "3.58", "0.195000")
    assert total["acd"] == "71.7"  # (60 + 30 + 125) / 3
    by_provider = {ln.group: ln for ln in await usage(pg, Query(NOV, DEC, "provider"))}
    assert by_provider["p1"].attempts == 3 and by_provider["p2"].profit == -20_000


def _generated(seed: int, n: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        start = NOV + timedelta(seconds=rnd.randrange(-86400, 31 * 86400))  # some outside the month
        duration = rnd.choice([0, 0, rnd.randrange(1, 3600)])
        rows.append(_cdr(i, f"acct{rnd.randrange(6)}", rnd.choice(["Germany", "France", "Spain", ""]), start,
                         duration, rnd.randrange(0, 5_000_000) if duration else 0,
                         cost=rnd.choice([None, rnd.randrange(0, 3_000_000)]), provider=rnd.choice(["", "p1", "p2"]),
                         reseller=rnd.choice(["", "", "r1"]), currency=rnd.choice(["EUR", "USD"]),
                         service=rnd.choice(["voice", "voice", "data"])))
    return rows


def _truth(rows: list[dict[str, Any]], q: Query) -> dict[str, tuple[int, ...]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for r in rows:
        if not q.start <= r["start_time"] < q.end or (q.service != "all" and r["service"] != q.service):
            continue
        if (q.by == "reseller" and not r["reseller"]) or (q.account and r["account"] != q.account):
            continue
        t = out[r["currency"]]
        t[0] += 1
        t[1] += r["duration"] > 0
        t[2] += r["duration"] if r["service"] == "voice" else 0
        t[3] += r["charge"]
        t[4] += r["cost"] or 0
    return {c: tuple(v) for c, v in out.items()}


@pytest.mark.parametrize("by", BY)
async def test_totals_equal_the_records_on_both_paths(pg: asyncpg.Connection, by: str) -> None:
    rows = _generated(7, 600)
    await _insert(pg, rows[:300])
    await _insert(pg, rows[300:])  # two statements: the rollups add up across them
    for q in (Query(NOV, DEC, by), Query(NOV, DEC, by, service="all"),
              Query(NOV + timedelta(hours=5, minutes=30), DEC, by),  # not whole days: read from the CDRs
              Query(NOV, DEC, by, account="acct3")):
        lines = await usage(pg, q)
        got = {ln.currency: (ln.attempts, ln.answered, ln.seconds, ln.revenue, ln.cost)
               for ln in lines if ln.group == TOTAL}
        assert got == _truth(rows, q), (q.from_rollups(), q)
        groups = [ln for ln in lines if ln.group != TOTAL]
        for cur, total in got.items():  # the groups add up to the total
            assert sum(ln.attempts for ln in groups if ln.currency == cur) == total[0]


async def test_rollups_follow_revisions_updates_and_deletes(pg: asyncpg.Connection) -> None:
    t = NOV + timedelta(days=1)
    entry = {"t": "c", "record_id": "cdr:x:0", "session_id": "x", "rating_group": "0", "account": "a",
             "protocol": "diameter", "service": "voice", "called": "4930", "destination": "Germany",
             "start_time": t.isoformat(), "duration": "60", "billed_seconds": "60", "charge": "1000",
             "currency": "EUR", "revision": "1"}
    await write_batch(pg, [("s", "1-0", entry)])
    await write_batch(pg, [("s", "2-0", {**entry, "duration": "120", "charge": "2500", "revision": "2"})])
    await write_batch(pg, [("s", "1-0", entry)])  # a replay of the older revision changes nothing
    q = Query(NOV, DEC, "account")
    [line, _total] = await usage(pg, q)
    assert (line.attempts, line.seconds, line.revenue) == (1, 120, 2500)
    await pg.execute("UPDATE cdrs SET rerated_from = charge, charge = 2000")  # what re-rating does
    assert (await usage(pg, q))[0].revenue == 2000
    await pg.execute("DELETE FROM cdrs")
    assert await usage(pg, q) == []


def _piped_xlsx_head(cfg: Path) -> bytes:
    return subprocess.run(f"{BIN} --config {cfg} cdr export --format xlsx | head -c 2", shell=True,
                          capture_output=True, check=True).stdout


@pytest.fixture
def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=120)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    return run


async def test_report_cli_formats(ctl, pg: asyncpg.Connection, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = NOV + timedelta(days=2)
    await _insert(pg, [_cdr(1, "a", "Germany", t, 90, 150_000, cost=50_000, provider="p1"),
                       _cdr(2, "a", "France", t, 0, 0)])
    period = ("--from", "2026-11-01", "--to", "2026-12-01")
    table = ctl("report", "usage", *period, "--by", "destination").stdout
    assert table.splitlines()[0].split()[:3] == ["destination", "attempts", "answered"] and "TOTAL" in table
    doc = json.loads(ctl("report", "usage", *period, "--by", "day", "--json").stdout)
    assert doc["lines"][0]["group"] == "2026-11-03" and doc["totals"][0]["revenue"] == "0.150000"
    csv_text = ctl("report", "usage", *period, "--by", "account", "--format", "csv").stdout
    assert csv_text.splitlines()[1].startswith("a,2,1,1.50,50.00,90.0,0.150000,0.050000,0.100000,EUR")
    ctl("report", "usage", *period, "--by", "provider", "--format", "xlsx", "-o", str(tmp_path / "r.xlsx"))
    sheet = openpyxl.load_workbook(tmp_path / "r.xlsx", read_only=True).active
    values = list(sheet.iter_rows(values_only=True))  # type: ignore[union-attr]
    assert values[1][:3] == ("provider", "attempts", "answered")
    assert values[2][0] == "p1" and values[2][1] == 1 and values[2][6] == pytest.approx(0.15)


@pytest.mark.parametrize(("args", "needle"), [
    (("--from", "2026-12-01", "--to", "2026-11-01", "--by", "day"), "wrong way round"),
    (("--from", "2026-11-01", "--to", "2026-11-01", "--by", "day"), "wrong way round"),
    (("--from", "yesterday", "--to", "2026-11-01", "--by", "day"), "not an ISO 8601 date"),
    (("--from", "2026-11-01", "--to", "2026-12-01", "--by", "planet"), "invalid choice"),
    (("--from", "2026-11-01", "--to", "2026-12-01", "--by", "day", "--format", "xlsx"), "-o FILE.xlsx"),
])
def test_report_bad_input_one_line_exit_2(ctl, args: tuple[str, ...], needle: str) -> None:  # type: ignore[no-untyped-def]
    res = ctl("report", "usage", *args, ok=2)
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1


async def test_charts_png_and_svg(ctl, pg: asyncpg.Connection, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = NOV + timedelta(days=4)
    await _insert(pg, [_cdr(i, "a", f"Dest {i % 3}", t + timedelta(days=i % 5), 60 + i, 70_000 + i,
                            cost=40_000, provider=f"p{i % 2}") for i in range(1, 30)])
    period = ("--from", "2026-11-01", "--to", "2026-12-01")
    for kind in ("revenue-by-day", "top-destinations", "profit-by-provider"):
        png, svg = tmp_path / f"{kind}.png", tmp_path / f"{kind}.svg"
        ctl("report", "chart", *period, "--kind", kind, "-o", str(png))
        ctl("report", "chart", *period, "--kind", kind, "-o", str(svg))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert b"<svg" in svg.read_bytes()[:500]
    empty = tmp_path / "empty.png"
    ctl("report", "chart", "--from", "2025-01-01", "--to", "2025-02-01", "--kind", "revenue-by-day", "-o", str(empty))
    assert empty.stat().st_size > 1000
    res = ctl("report", "chart", *period, "--kind", "revenue-by-day", "-o", str(tmp_path / "x.gif"), ok=2)
    assert ".png or .svg" in res.stderr


async def test_cdr_export_xml_and_typed_xlsx(ctl, pg: asyncpg.Connection, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    t = NOV + timedelta(days=2, hours=3)
    row = _cdr(1, "a", "Germany <fixed> & co", t, 90, 150_000, cost=50_000, provider="p1")
    row["called"] = "49\x0130"  # a control character from the wire: XML 1.0 cannot carry it raw
    await _insert(pg, [row, _cdr(2, "b", "France", t + timedelta(seconds=1), 0, 0)])
    xml = ctl("cdr", "export", "--format", "xml").stdout
    cdrs = ET.fromstring(xml).findall("cdr")
    assert len(cdrs) == 2 and [c.tag for c in cdrs[0]][:3] == ["session_id", "account", "protocol"]
    first = {c.tag: c.text or "" for c in cdrs[0]}
    assert first["destination"] == "Germany <fixed> & co" and first["called"] == "49\\x0130"
    assert first["charge"] == "0.150000" and first["cost"] == "0.050000" and first["provider"] == "p1"
    assert {c.tag: c.text or "" for c in cdrs[1]}["cost"] == ""
    out = tmp_path / "cdrs.xlsx"
    ctl("cdr", "export", "--format", "xlsx", "-o", str(out))
    rows = list(openpyxl.load_workbook(out, read_only=True).active.iter_rows(values_only=True))  # type: ignore[union-attr]
    assert rows[0][:2] == ("session_id", "account") and len(rows) == 3
    assert rows[1][8] == datetime(2026, 11, 3, 3, 0) and rows[1][9] == 90 and rows[1][11] == pytest.approx(0.15)
    assert _piped_xlsx_head(tmp_path / "ocs.toml") == b"PK"  # a workbook on a pipe
    as_json = json.loads(ctl("cdr", "export", "--format", "json").stdout)
    assert [r["session_id"] for r in as_json] == ["s1", "s2"]
