"""The REST API on the real stores (docs/api.md): every resource, the role matrix, idempotent top-ups,
problem+json errors naming the field, paging caps, the audit log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from ocs import config
from ocs.api import tokens
from ocs.api.deps import MAX_LIMIT
from ocs.billing import invoices
from tests.support.api import Api, api
from tests.support.billing import billing_db, cdr, usage

__all__ = ["api", "billing_db"]
pytestmark = pytest.mark.integration
PROBLEM = "application/problem+json"


async def test_accounts_create_get_update_block_unblock(api: Api) -> None:
    await api.tariff()
    r = await api.call("POST", "/accounts", json={"id": "a1", "currency": "EUR", "tariff": "t1",
                                                 "name": "Ada", "aliases": ["4915100001"], "tax_rate": "19"})
    assert r.status_code == 201, r.text
    assert r.json()["balance"] == "0.00" and r.json()["aliases"] == ["4915100001"]
    r = await api.call("GET", "/accounts/a1", "readonly")
    assert r.status_code == 200 and r.json()["name"] == "Ada" and r.json()["tax_rate"] == "19.0000"
    r = await api.call("PATCH", "/accounts/a1", "operator", json={"email": "ada@example.com", "payment_terms": 30})
    assert r.status_code == 200 and r.json()["changed"] == ["email", "payment_terms"]
    assert r.json()["email"] == "ada@example.com"
    r = await api.call("POST", "/accounts/a1/block", "operator")
    assert r.status_code == 200 and r.json()["status"] == "blocked" and r.json()["control"]["sent"] == 0
    assert (await api.svc.redis.hget(api.svc.keys.account("a1"), "st")) == b"blocked"
    r = await api.call("POST", "/accounts/a1/unblock", "operator")
    assert r.json()["status"] == "active"
    r = await api.call("POST", "/accounts", json={"id": "a1", "currency": "EUR", "tariff": "t1"})
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM


async def test_list_accounts_filters_and_pages(api: Api) -> None:
    await api.tariff()
    for i in range(5):
        await api.account(f"acc{i}")
    await api.call("POST", "/accounts/acc3/block")
    r = await api.call("GET", "/accounts", "readonly", params={"limit": 2, "tariff": "t1"})
    doc = r.json()
    assert [a["id"] for a in doc["accounts"]] == ["acc0", "acc1"] and doc["next_offset"] == 2
    r = await api.call("GET", "/accounts", params={"limit": 2, "offset": 4, "tariff": "t1"})
    assert [a["id"] for a in r.json()["accounts"]] == ["acc4"] and r.json()["next_offset"] is None
    r = await api.call("GET", "/accounts", params={"status": "blocked"})
    assert [a["id"] for a in r.json()["accounts"]] == ["acc3"]
    r = await api.call("GET", "/accounts", params={"limit": 10**9})
    assert r.status_code == 200 and r.json()["limit"] == MAX_LIMIT


async def test_topup_is_idempotent_by_reference(api: Api) -> None:
    await api.tariff()
    await api.account("a1")
    body = {"amount": "10.50", "reference": "pay-1"}
    first = await api.call("POST", "/accounts/a1/topups", "operator", json=body)
    assert first.status_code == 201 and first.json()["applied"] is True and first.json()["balance"] == "10.50"
    again = await api.call("POST", "/accounts/a1/topups", "operator", json=body)
    assert again.status_code == 200 and again.json()["applied"] is False and again.json()["balance"] == "10.50"
    other = await api.call("POST", "/accounts/a1/topups", "operator", json={"amount": "5", "reference": "pay-1"})
    assert other.status_code == 409 and "different operation" in other.json()["detail"]
    assert await api.pg.fetchval("SELECT count(*) FROM ledger WHERE reference = 'pay-1'") == 1
    r = await api.call("POST", "/accounts/a1/adjustments", json={"amount": "-0.50", "reason": "goodwill",
                                                                "reference": "adj-1"})
    assert r.status_code == 201 and r.json()["balance"] == "10.00"
    r = await api.call("POST", "/accounts/a1/adjustments", "operator",
                       json={"amount": "1", "reason": "x", "reference": "adj-2"})
    assert r.status_code == 403


async def test_problem_json_names_the_field(api: Api) -> None:
    await api.tariff()
    await api.account("a1")
    r = await api.call("POST", "/accounts/a1/topups", json={"amount": "ten", "reference": "x"})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    doc = r.json()
    assert doc["field"] == "amount" and doc["status"] == 422 and doc["type"].startswith("urn:ocs:problem:")
    assert {"type", "title", "status", "detail"} <= doc.keys()
    r = await api.call("POST", "/accounts/a1/topups", json={"reference": "x"})
    assert r.status_code == 422 and r.json()["field"] == "amount"
    r = await api.call("PATCH", "/accounts/a1", json={"tax_rate": "250"})
    assert r.status_code == 422 and r.json()["field"] == "tax_rate"
    r = await api.call("GET", "/accounts", params={"limit": 0})
    assert r.status_code == 422 and r.json()["field"] == "limit"
    r = await api.call("POST", "/accounts", json={"id": "b1", "currency": "EUR", "tariff": "nope"})
    assert r.status_code == 422 and r.json()["field"] == "tariff"
    r = await api.call("GET", "/accounts/nobody")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = await api.call("GET", "/nowhere")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM


async def test_401_without_a_valid_token(api: Api) -> None:
    assert (await api.call("GET", "/accounts", "")).status_code == 401
    r = await api.call("GET", "/accounts", "", headers={"Authorization": "Bearer ocs_forged"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.headers["content-type"] == PROBLEM
    r = await api.call("GET", "/accounts", "", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert r.status_code == 401
    expired = await tokens.create(api.pg, "soon", "admin", expires_at=datetime.now(UTC) + timedelta(seconds=1))
    await api.pg.execute("UPDATE api_tokens SET expires_at = now() - interval '1 s' WHERE name = 'soon'")
    r = await api.call("GET", "/accounts", "", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert await tokens.revoke(api.pg, "readonly") is True
    assert (await api.call("GET", "/accounts", "readonly")).status_code == 401


async def test_role_boundaries(api: Api) -> None:
    await api.tariff()
    await api.account("mine", reseller="r1")
    await api.account("theirs", reseller="r2")
    await api.account("direct")
    assert (await api.call("POST", "/accounts/mine/block", "readonly")).status_code == 403
    r = await api.call("POST", "/accounts/mine/topups", "readonly", json={"amount": "1", "reference": "r"})
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    assert (await api.call("GET", "/audit", "operator")).status_code == 403
    assert (await api.call("POST", "/products", "operator", json={
        "name": "p", "amount": "1", "currency": "EUR", "period": "monthly"})).status_code == 403
    # a reseller sees and changes only its own subscribers
    r = await api.call("GET", "/accounts", "reseller")
    assert [a["id"] for a in r.json()["accounts"]] == ["mine"]
    assert (await api.call("GET", "/accounts", "reseller", params={"reseller": "r2"})).json()["accounts"] == []
    assert (await api.call("GET", "/accounts/theirs", "reseller")).status_code == 404
    assert (await api.call("GET", "/accounts/direct", "reseller")).status_code == 404
    assert (await api.call("POST", "/accounts/theirs/block", "reseller")).status_code == 404
    r = await api.call("POST", "/accounts/theirs/topups", "reseller", json={"amount": "1", "reference": "t"})
    assert r.status_code == 404
    assert (await api.call("GET", "/accounts/mine", "reseller")).status_code == 200
    r = await api.call("POST", "/accounts/mine/topups", "reseller", json={"amount": "2", "reference": "m"})
    assert r.status_code == 201
    assert (await api.call("GET", "/tariffs", "reseller")).status_code == 403
    r = await api.call("POST", "/accounts", "reseller", json={"id": "new", "currency": "EUR", "tariff": "t1",
                                                             "reseller": "r2"})
    assert r.status_code == 201 and r.json()["reseller"] == "r1"
    assert (await api.call("GET", "/accounts/new", "other")).status_code == 404
    r = await api.call("POST", "/accounts", json={"id": "sub", "currency": "EUR", "tariff": "t1", "reseller": "r9"})
    assert r.status_code == 422 and r.json()["field"] == "reseller"
    with pytest.raises(tokens.Invalid, match="unknown reseller"):
        await tokens.create(api.pg, "r9", "reseller", "r9")


async def test_writes_are_audited(api: Api) -> None:
    await api.tariff()
    await api.account("a1")
    await api.call("POST", "/accounts/a1/topups", "operator", json={"amount": "1", "reference": "au-1"})
    await api.call("PATCH", "/accounts/a1", json={"password": "s3cret"})
    await api.call("POST", "/accounts/a1/block", "readonly")
    r = await api.call("GET", "/audit")
    rows = r.json()["audit"]
    assert [(x["token"], x["method"], x["status"]) for x in rows] == [
        ("operator", "POST", 201), ("admin", "PATCH", 200), ("readonly", "POST", 403)]
    assert rows[0]["target"] == "a1" and rows[0]["path"] == "/api/v1/accounts/a1/topups"
    assert '"reference":"au-1"' in rows[0]["body"] and rows[0]["result"] == "ok"
    assert "s3cret" not in rows[1]["body"] and '"password":"***"' in rows[1]["body"]
    assert "may not" in rows[2]["result"]


async def test_tariffs_and_quote(api: Api) -> None:
    await api.tariff()
    r = await api.call("GET", "/tariffs", "readonly")
    assert r.json()["tariffs"][0] == {"name": "t1", "currency": "EUR", "timezone": "UTC", "version": 1}
    r = await api.call("GET", "/tariffs/t1", params={"limit": 1})
    assert r.json()["version"] == 1 and len(r.json()["rows"]) == 1 and r.json()["next_offset"] == 1
    r = await api.call("GET", "/tariffs/t1/quote", params={"number": "493012345", "seconds": 31,
                                                           "at": "2026-01-05T10:00:00"})
    doc = r.json()
    assert r.status_code == 200 and doc["destination"] == "Berlin" and doc["billed_seconds"] == 36
    assert doc["charge"] == "0.028000"  # 0.01 connect + 36 s at 0.03/min
    r = await api.call("GET", "/tariffs/t1/quote", params={"number": "1555"})
    assert r.status_code == 404 and r.json()["field"] == "number"
    assert (await api.call("GET", "/tariffs/none")).status_code == 404


async def test_cdrs_page_and_export(api: Api) -> None:
    await api.tariff()
    await api.account("mine", reseller="r1")
    await api.account("theirs", reseller="r2")
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for i in range(3):
        await cdr(api.pg, "mine", f"s{i}", "Berlin", t0 + timedelta(minutes=i), charge=1_234_567)
    await cdr(api.pg, "theirs", "x", "Berlin", t0, charge=5)
    r = await api.call("GET", "/cdrs", params={"limit": 2})
    assert len(r.json()["cdrs"]) == 2 and r.json()["next_offset"] == 2
    r = await api.call("GET", "/cdrs", "reseller")
    assert {c["account"] for c in r.json()["cdrs"]} == {"mine"} and r.json()["cdrs"][0]["charge"] == "1.234567"
    r = await api.call("GET", "/cdrs", params={"from": "2026-03-01T12:01:00", "account": "mine"})
    assert [c["session_id"] for c in r.json()["cdrs"]] == ["s1", "s2"]
    r = await api.call("GET", "/cdrs/export", "reseller")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].startswith("session_id,account") and len(lines) == 4
    assert (await api.call("GET", "/cdrs", "reseller", params={"account": "theirs"})).status_code == 404
    r = await api.call("GET", "/cdrs", params={"from": "yesterday"})
    assert r.status_code == 422 and r.json()["field"] == "from"


async def test_sessions_list_and_disconnect_unknown(api: Api) -> None:
    r = await api.call("GET", "/sessions", "readonly")
    assert r.status_code == 200 and r.json()["sessions"] == []
    r = await api.call("DELETE", "/sessions/nosuch", "operator", params={"timeout": 1})
    assert r.status_code == 404 and r.json()["type"] == "urn:ocs:problem:disconnect-unknown_session"
    assert (await api.call("DELETE", "/sessions/nosuch", "readonly")).status_code == 403
    assert (await api.call("DELETE", "/sessions/nosuch", "reseller")).status_code == 404


async def test_products_subscriptions_invoices(api: Api) -> None:
    await api.tariff()
    await api.account("mine", reseller="r1")
    await api.account("theirs", reseller="r2")
    r = await api.call("POST", "/products", json={"name": "plan", "amount": "9.99", "currency": "EUR",
                                                 "period": "monthly"})
    assert r.status_code == 201 and r.json()["amount"] == "9.99"
    assert (await api.call("GET", "/products", "reseller")).json()["products"][0]["name"] == "plan"
    r = await api.call("POST", "/subscriptions", "reseller", json={"account": "mine", "product": "plan",
                                                                  "start": "2026-01-01"})
    assert r.status_code == 201, r.text
    r = await api.call("POST", "/subscriptions", "reseller", json={"account": "theirs", "product": "plan"})
    assert r.status_code == 404
    await api.call("POST", "/subscriptions", json={"account": "theirs", "product": "plan", "start": "2026-01-01"})
    assert [s["account"] for s in (await api.call("GET", "/subscriptions", "reseller")).json()["subscriptions"]] \
        == ["mine"]
    r = await api.call("DELETE", "/subscriptions/mine/plan", "operator", params={"at": "2026-02-01"})
    assert r.status_code == 200 and r.json()["until"] == "2026-02-01"
    r = await api.call("GET", "/invoices", "readonly")
    assert r.status_code == 200 and r.json()["invoices"] == []
    assert (await api.call("GET", "/invoices/INV-none")).status_code == 404
    assert (await api.call("GET", "/invoices/INV-none/pdf")).status_code == 404
    r = await api.call("GET", "/invoices", params={"period": "2026-13"})
    assert r.status_code == 422 and r.json()["field"] == "period"


async def test_openapi_is_valid_3_1_and_docs_are_local(api: Api) -> None:
    from openapi_spec_validator import validate

    r = await api.client.get("/api/v1/openapi.json")
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)
    assert "/api/v1/accounts/{account_id}/topups" in doc["paths"]
    page = (await api.client.get("/api/v1/docs")).text
    assert "/api/v1/docs/static/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    assert (await api.client.get("/api/v1/docs/static/swagger-ui-bundle.js")).status_code == 200


async def test_concurrency_cap_answers_503(api: Api) -> None:
    guard = api.client._transport.app  # type: ignore[attr-defined]
    guard.inflight = guard.max_inflight
    try:
        r = await api.call("GET", "/accounts")
    finally:
        guard.inflight = 0
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and r.headers["content-type"] == PROBLEM


async def test_a_store_away_is_503_not_500(api: Api) -> None:
    await api.svc.pool.close()  # PostgreSQL gone for the API
    r = await api.call("GET", "/accounts")
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM and r.headers["retry-after"] == "2"


async def test_invoice_list_get_and_pdf(api: Api, billing_db: asyncpg.Connection) -> None:
    await api.tariff()
    await api.account("mine", reseller="r1")
    await api.account("theirs", reseller="r2")
    for account in ("mine", "theirs"):
        await usage(billing_db, account, f"s-{account}", 1_234_567, datetime(2026, 5, 10, 12, tzinfo=UTC))
    res = await invoices.run(billing_db, config.BillingConfig(), date(2026, 5, 1), issue_date=date(2026, 6, 1))
    assert len(res.created) == 2
    r = await api.call("GET", "/invoices", "readonly", params={"period": "2026-05"})
    assert len(r.json()["invoices"]) == 2
    mine = (await api.call("GET", "/invoices", "reseller")).json()["invoices"]
    assert [i["account"] for i in mine] == ["mine"]
    number = mine[0]["number"]
    r = await api.call("GET", f"/invoices/{number}", "reseller")
    assert r.status_code == 200 and r.json()["account"] == "mine" and r.json()["lines"]
    r = await api.call("GET", f"/invoices/{number}/pdf", "reseller")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf" and r.content[:5] == b"%PDF-"
    assert (await api.call("GET", f"/invoices/{number}", "other")).status_code == 404
    assert (await api.call("GET", f"/invoices/{number}/pdf", "other")).status_code == 404


async def test_a_huge_body_is_413(api: Api) -> None:
    r = await api.call("POST", "/products", content=b'{"name": "' + b"x" * (2 << 20) + b'"}',
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
