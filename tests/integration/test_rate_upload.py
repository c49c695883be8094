"""Rate upload from a spreadsheet and ``tariff diff`` as an operator runs them (docs/wholesale.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from openpyxl import Workbook

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "ocsctl"
HEADER = ["prefix", "destination", "rate", "connect_fee", "first_increment", "next_increment", "band",
          "effective_from"]
ROWS: list[list[Any]] = [
    [49, "Germany", 0.06, 0.02, 30, 6, "any", None],
    [49, "Germany", 0.05, 0.02, 30, 6, "peak", None],
    [4930, "Germany Berlin", 0.045, 0, 60, 60, "any", date(2026, 6, 1)],
    [33, "France", 0.1, None, None, None, None, None],
]
BANDS: list[list[Any]] = [["band", "days", "start", "end"], ["peak", "mon-fri", time(8, 0), "20:00"]]


def csv_of(rows: list[list[Any]]) -> str:
    def text(v: Any) -> str:
        return "" if v is None else v.isoformat() if isinstance(v, date | time) else str(v)
    return "\n".join(",".join(text(v) for v in r) for r in rows) + "\n"


def xlsx(path: Path, rows: list[list[Any]]) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


@pytest.fixture
def ctl(tmp_path: Path, pg_dsn: str, key_prefix: str, pg: asyncpg.Connection,
        redis_client: aioredis.Redis):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "ocs.toml"
    cfg.write_text(f'[redis]\nkey_prefix = "{key_prefix}"\n[postgres]\ndsn = "{pg_dsn}"\n')

    def run(*args: str, ok: int | None = 0) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([str(BIN), "--config", str(cfg), *args], capture_output=True, text=True, timeout=120)
        if ok is not None:
            assert res.returncode == ok, (args, res.returncode, res.stderr)
        return res

    (tmp_path / "bands.csv").write_text("band,days,start,end\npeak,mon-fri,08:00,20:00\n")
    return run, tmp_path


def _one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def _version(run: Any, name: str) -> int:
    return int(json.loads(run("tariff", "show", name, "--json").stdout)["version"])


def test_xlsx_import_matches_csv_import(ctl) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    (tmp / "rates.csv").write_text(csv_of([HEADER, *ROWS]))
    xlsx(tmp / "rates.xlsx", [HEADER, *ROWS])
    xlsx(tmp / "bands.xlsx", BANDS)
    tz = ("--currency", "EUR", "--timezone", "Europe/Berlin")
    run("tariff", "import", "c", str(tmp / "rates.csv"), "--bands", str(tmp / "bands.csv"), *tz)
    out = run("tariff", "import", "x", str(tmp / "rates.xlsx"), "--bands", str(tmp / "bands.xlsx"), *tz).stdout
    assert "tariff x version 1: 4 rows read, 0 rejected" in out
    c, x = (json.loads(run("tariff", "show", n, "--json").stdout) for n in ("c", "x"))
    assert x["rows"] == c["rows"] and x["bands"] == c["bands"] and len(x["rows"]) == 4
    assert {r["prefix"]: r["rate"] for r in x["rows"] if r["band"] == "any"} == {"49": "0.06", "4930": "0.045",
                                                                                "33": "0.10"}
    for number, at in (("+4930123", "2026-11-23T19:59:50"), ("4930123", "2026-05-01T10:00"), ("0033123", None)):
        opts = ("--at", at) if at else ()
        docs = [json.loads(run("tariff", "rate", n, number, "--seconds", "61", "--json", *opts).stdout)
                for n in ("c", "x")]
        assert docs[0] == docs[1] or (at is None and docs[0]["charge"] == docs[1]["charge"])


def test_bad_cell_refused_naming_row_and_column(ctl) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    (tmp / "rates.csv").write_text(csv_of([HEADER[:3], *(r[:3] for r in (ROWS[0], ROWS[3]))]))
    run("tariff", "import", "t", str(tmp / "rates.csv"), "--currency", "EUR")
    bad = [HEADER[:3], [49, "Germany", 0.07], [], [], [], ["4989", "Munich", "0,05"]]
    res = run("tariff", "import", "t", str(xlsx(tmp / "bad.xlsx", bad)), ok=1)
    assert _one_line(res) == ("ocsctl: bad.xlsx row 6, column C (rate): not a decimal amount: '0,05'"
                              " (1 rejected of 2 rows read; nothing imported)")
    res = run("tariff", "import", "t", str(xlsx(tmp / "third.xlsx", [HEADER[:3], [49, "DE", 1 / 3]])), ok=1)
    assert "third.xlsx row 2, column C (rate): more than 6 decimals" in _one_line(res)
    assert _version(run, "t") == 1
    assert json.loads(run("tariff", "rate", "t", "49", "--json").stdout)["charge"] == "0.060000"


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("r.xlsx", b"prefix,destination,rate\n49,DE,0.1\n", "r.xlsx: not a readable .xlsx workbook"),
    ("r.xls", b"\xd0\xcf\x11\xe0rest", "r.xls: an old binary .xls workbook; save it as .xlsx or CSV"),
    ("r.csv", b"prefix,destination,rate\n49,DE,x\n", "r.csv line 2: rate: not a decimal amount: 'x'"),
])
def test_unreadable_files_refused(ctl, name: str, content: bytes, needle: str) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    (tmp / name).write_bytes(content)
    for verb in ("import", "diff"):
        assert needle in _one_line(run("tariff", verb, "t", str(tmp / name), ok=1))
    assert "No such file" in _one_line(run("tariff", "diff", "t", str(tmp / "missing.xlsx"), ok=1))
    assert "unknown tariff" in _one_line(run("tariff", "show", "t", ok=1))


def test_diff_added_removed_changed(ctl) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    (tmp / "rates.csv").write_text(csv_of([HEADER, *ROWS]))
    run("tariff", "import", "t", str(tmp / "rates.csv"), "--bands", str(tmp / "bands.csv"), "--currency", "EUR",
        "--timezone", "Europe/Berlin")
    new = [HEADER, [49, "Germany", 0.07, 0.02, 60, 6, "any", None], ROWS[1], ROWS[2],
           [44, "United Kingdom", 0.08, None, None, None, None, "2026-07-01"]]
    sheet = xlsx(tmp / "new.xlsx", new)
    doc = json.loads(run("tariff", "diff", "t", str(sheet), "--bands", str(tmp / "bands.csv"), "--json").stdout)
    assert doc["version"] == 1 and doc["unchanged"] == 2 and doc["rows_read"] == 4
    assert [(r["prefix"], r["rate"], r["effective_from"]) for r in doc["added"]] == [
        ("44", "0.08", "2026-07-01T00:00:00+02:00")]
    assert [(r["prefix"], r["destination"]) for r in doc["removed"]] == [("33", "France")]
    assert [(c["prefix"], c["band"], c["changes"]) for c in doc["changed"]] == [
        ("49", "any", {"rate": {"old": "0.06", "new": "0.07"}, "first_increment": {"old": 30, "new": 60}})]
    assert doc["bands"] == {"added": [], "removed": []}
    text = run("tariff", "diff", "t", str(sheet), "--bands", str(tmp / "bands.csv")).stdout.splitlines()
    assert text[0] == f"tariff t v1 -> {sheet}: 1 added, 1 removed, 1 changed, 2 unchanged"
    assert text[1].startswith("+ 44 ") and "2026-07-01 00:00" in text[1] and "rate 0.08" in text[1]
    assert text[2].startswith("- 33 ") and "France" in text[2]
    assert text[3].startswith("~ 49 ") and text[3].endswith("rate 0.06 -> 0.07, first_increment 30 -> 60")
    assert _version(run, "t") == 1  # a diff changes nothing
    run("tariff", "import", "t", str(sheet), "--bands", str(tmp / "bands.csv"))
    again = run("tariff", "diff", "t", str(sheet), "--bands", str(tmp / "bands.csv")).stdout
    assert again.strip() == f"tariff t v2 -> {sheet}: 0 added, 0 removed, 0 changed, 4 unchanged (no changes)"


def test_diff_bands_and_unknown_tariff(ctl) -> None:  # type: ignore[no-untyped-def]
    run, tmp = ctl
    (tmp / "rates.csv").write_text(csv_of([HEADER, *ROWS]))
    doc = json.loads(run("tariff", "diff", "new", str(tmp / "rates.csv"), "--bands", str(tmp / "bands.csv"),
                         "--json").stdout)
    assert doc["version"] is None and len(doc["added"]) == 4 and not doc["removed"] and not doc["changed"]
    assert doc["bands"]["added"] == [{"band": "peak", "days": [0, 1, 2, 3, 4], "start_minute": 480,
                                      "end_minute": 1200}]
    text = run("tariff", "diff", "new", str(tmp / "rates.csv"), "--bands", str(tmp / "bands.csv")).stdout
    assert "tariff new (new: every row is added)" in text and "+ band peak mon,tue,wed,thu,fri 08:00-20:00" in text
    assert "unknown tariff" in _one_line(run("tariff", "show", "new", ok=1))
    # without --bands the import would refuse the band row, and so does the diff
    res = run("tariff", "diff", "new", str(tmp / "rates.csv"), ok=1)
    assert "line 3: band: 'peak' is not defined" in _one_line(res)
    assert "--timezone" in _one_line(run("tariff", "diff", "new", str(tmp / "rates.csv"), "--timezone", "Mars/Base",
                                         ok=1))
