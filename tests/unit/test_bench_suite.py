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
