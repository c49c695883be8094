"""Grafana dashboard and docs/observability.md stay in step with ocs/metrics.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from ocs.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_bucket", "_sum", "_count", "_created", "_total")


def metric_names() -> set[str]:
    """Family names plus every sample name a scrape can expose."""
    m = Metrics()
    names: set[str] = set()
    for fam in m.registry.collect():
        names.add(fam.name)
        names.add(fam.name + "_total")
        names.update(f"{fam.name}{s}" for s in SUFFIXES)
    return names


def _exprs(panel: dict[str, object]) -> list[str]:
    targets = panel.get("targets", [])
    assert isinstance(targets, list)
    return [str(t["expr"]) for t in targets]


def test_dashboard_parses_and_uses_only_existing_metrics() -> None:
    doc = json.loads((ROOT / "docs" / "grafana" / "ocs-dashboard.json").read_text())
    known = metric_names()
    used: set[str] = set()
    for panel in doc["panels"]:
        for expr in _exprs(panel):
            used.update(re.findall(r"\bocs_[a-z_]+", expr))
    assert used, "dashboard references no metric"
    assert not used - known, f"unknown metrics in dashboard: {sorted(used - known)}"
    families = {f.name for f in Metrics().registry.collect()}
    covered = {n for n in families if any(u.startswith(n) for u in used)}
    assert covered == families, f"metrics without a panel: {sorted(families - covered)}"


def test_observability_doc_lists_every_metric() -> None:
    text = (ROOT / "docs" / "observability.md").read_text()
    from prometheus_client import generate_latest

    scraped = text_string_to_metric_families(generate_latest(Metrics().registry).decode())
    exposed = {f.name for f in scraped if not f.name.endswith("_created")}
    missing = [n for n in exposed if n not in text]
    assert not missing, f"metrics missing from docs/observability.md: {missing}"
