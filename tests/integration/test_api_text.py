"""Text PostgreSQL cannot store (NUL, an unpaired surrogate) in an API request is the client's
value, answered 422 problem+json, never a 500 (docs/api.md; found by the schemathesis e2e run)."""

from __future__ import annotations

import pytest

from tests.support.api import Api, api
from tests.support.billing import billing_db

__all__ = ["api", "billing_db"]
pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


async def test_nul_in_a_query_filter_is_422(api: Api) -> None:
    r = await api.call("GET", "/cdrs", params={"account": "a\x00b"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text


async def test_nul_or_surrogate_in_a_body_is_422(api: Api) -> None:
    await api.tariff()
    await api.account("a1")
    for escaped in ("a\\u0000b", "a\\ud853b"):  # JSON escapes: a NUL, a lone high surrogate
        body = '{"account": "' + escaped + '", "product": "p1"}'
        r = await api.call("POST", "/subscriptions", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, (escaped, r.text)
    assert await api.pg.fetchval("SELECT count(*) FROM subscriptions") == 0
