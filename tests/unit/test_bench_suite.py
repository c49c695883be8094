"""bench.common helpers and the ``python -m bench`` entry (absent modules reported, JSON written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.__main__ as suite
from bench.common import format_table, percentile, row


def test_percentile_nearest_rank() -> None:
    data = [float(i) for i in range(1, 1001)]
    assert percentile(data, 50) == 500
    assert percentile(data, 99) == 990
    assert percentile(data, 99.9) == 999
    assert percentile([], 50) is None


def test_row_shape() -> None:
    r = row("x", 1000, 0.5, [0.001] * 1000, cpu_s=0.25, batch=10)
    assert r["throughput"] == 2000.0 and r["p50_ms"] == 1.0 and r["p999_ms"] == 1.0
    assert r["cpu_us_per_op"] == 250.0 and r["batch"] == 10
    assert {"name", "ops", "seconds", "p99_ms"} <= set(r)
    assert "x" in format_table([r])


def test_suite_absent_module_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(suite, "run_module", lambda name, quick: [{"name": name, "status": "not present"}])
    out = tmp_path / "r.json"
    assert suite.main(["--quick", "--json", str(out), "--only", "rating"]) == 0
    doc = json.loads(out.read_text())
    assert doc["results"] == [{"name": "rating", "status": "not present"}]
    assert doc["machine"]["nproc"] >= 1 and doc["quick"] is True


def test_targets_from_rows_of_the_same_run() -> None:
    rows = [
        {"name": "diameter CCR (10 concurrent sessions)", "throughput": 3000.0},
        {"name": "erlang reference CCR (10 concurrent sessions)", "throughput": 5000.0},
        {"name": "diameter CCR (200 concurrent sessions)", "throughput": 2000.0, "ocsd_cpu_us_per_ccr": 55.0},
        {"name": "erlang reference CCR (200 concurrent sessions)", "throughput": 5000.0},
        {"name": "radius Access-Request", "throughput": 1000.0, "server_cpu_us_per_req": 61.0},
        {"name": "freeradius reference Access-Request", "throughput": 4000.0},
        {"name": "diameter CCR open loop at half the max", "p99_ms": 5.0},
    ]
    got = {t["name"]: t for t in suite.targets(rows)}
    assert got["ratio diameter ocsd/OTP at 10 sessions"]["value"] == 0.6
    assert got["ratio diameter ocsd/OTP at 10 sessions"]["met"] == "met"
    assert got["ratio diameter ocsd/OTP at 200 sessions"]["met"] == "NOT MET"
    assert got["ratio diameter ocsd/OTP at 50 sessions"]["met"] == "n/a"  # rows not in this run
    assert got["ratio radius access ocsd/FreeRADIUS"]["value"] == 0.25
    assert got["ratio radius access ocsd/FreeRADIUS"]["met"] == "met"
    assert got["diameter p99 at half the max (open loop)"]["met"] == "NOT MET"  # strictly below 5 ms
    assert got["ocsd CPU per request: diameter CCR at 200 sessions"]["met"] == "met"
    assert got["ocsd CPU per request: radius Access-Request"]["met"] == "NOT MET"
    assert got["ocsd CPU per request: radius Accounting-Request"]["met"] == "n/a"


def test_suite_exits_non_zero_when_a_module_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(quick: bool) -> list[dict[str, object]]:
        raise AssertionError("money check diameter (ocsd) FAILED")

    monkeypatch.setattr(suite.importlib, "import_module", lambda name: type("M", (), {"run": staticmethod(broken)}))
    monkeypatch.setattr(suite.importlib.util, "find_spec", lambda name: object())
    out = tmp_path / "r.json"
    assert suite.main(["--quick", "--json", str(out), "--only", "diameter"]) == 1
    doc = json.loads(out.read_text())
    assert doc["results"][0]["status"].startswith("error: AssertionError: money check")
    assert {t["name"] for t in doc["targets"]} >= {"ratio radius access ocsd/FreeRADIUS"}
