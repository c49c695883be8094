"""``GET /api/v1/reports/usage``: the report as JSON, its roles and its bad input (docs/api.md, docs/reports.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.api import Api, api

pytestmark = pytest.mark.integration
__all__ = ["api"]


async def test_usage_report_json_roles_and_bad_input(api: Api) -> None:
    await api.pg.execute(
        "INSERT INTO cdrs (record_id, session_id, account, destination, start_time, duration, charge, currency)"
        " VALUES ('cdr:a:0', 'a', 'x', 'Berlin', $1, 60, 50000, 'EUR'), ('ref:b:0:0', 'b', 'x', 'Berlin', $1, 0, 0,"
        " 'EUR')", datetime(2026, 11, 5, 10, tzinfo=UTC))
    period = {"from": "2026-11-01", "to": "2026-12-01"}
    res = await api.call("GET", "/reports/usage", "readonly", params={**period, "by": "destination"})
    assert res.status_code == 200, res.text
    doc = res.json()
    assert doc["lines"][0]["group"] == "Berlin" and doc["lines"][0]["asr"] == "50.00"
    assert doc["totals"] == [{**doc["lines"][0], "group": "TOTAL"}]
    assert (await api.call("GET", "/reports/usage", "reseller", params={**period, "by": "day"})).status_code == 403
    assert (await api.call("GET", "/reports/usage", "", params={**period, "by": "day"})).status_code == 401
    wrong = await api.call("GET", "/reports/usage", params={"from": "2026-12-01", "to": "2026-11-01", "by": "day"})
    assert wrong.status_code == 422 and wrong.headers["content-type"].startswith("application/problem+json")
    assert "wrong way round" in wrong.json()["detail"] and wrong.json()["field"] == "from"
    unknown = await api.call("GET", "/reports/usage", params={**period, "by": "planet"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "by"
    bad_date = await api.call("GET", "/reports/usage", params={"from": "soon", "to": "2026-11-01", "by": "day"})
    assert bad_date.status_code == 422 and bad_date.json()["field"] == "from"
