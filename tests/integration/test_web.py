"""The dashboard (/ui) and self-care (/my) over the real stores, as a browser would talk to them
(httpx keeps the cookies; forms are posted with the CSRF token the page carries).  The headless
Chromium walk-through is tests/e2e/test_web_browser.py."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import httpx
import pytest

from ocs.billing import customers
from tests.support.api import Api, api

pytestmark = pytest.mark.integration
__all__ = ["api"]


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def _login(c: httpx.AsyncClient, token: str) -> httpx.Response:
    form = await c.get("/ui/login")
    return await c.post("/ui/login", data={"token": token, "csrf": _csrf(form)})


async def _client(a: Api) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=a.client._transport, base_url="http://api.test")


async def test_login_topup_block_logout(api: Api) -> None:
    await api.tariff()
    await api.account("alice")
    async with await _client(api) as c:
        assert (await c.get("/ui")).headers["location"] == "/ui/login"
        bad = await _login(c, "not-a-token")
        assert bad.status_code == 401 and "not valid" in bad.text
        ok = await _login(c, api.tokens["operator"])
        assert ok.status_code == 303 and ok.headers["location"] == "/ui"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        home = await c.get("/ui")
        assert home.status_code == 200 and "Live sessions" in home.text
        assert "alice" in (await c.get("/ui/accounts", params={"q": "ali"})).text
        for path in ("/ui/sessions", "/ui/cdrs", "/ui/invoices", "/ui/reports"):
            assert (await c.get(path)).status_code == 200, path
        page = await c.get("/ui/accounts/alice")
        ref = re.search(r'name="reference" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        form = {"amount": "12.50", "reference": ref, "csrf": _csrf(page)}
        assert (await c.post("/ui/accounts/alice/topup", data=form)).status_code == 303
        after = await c.get("/ui/accounts/alice")
        assert "Topped up 12.50." in after.text and "12.50 EUR" in after.text
        await c.post("/ui/accounts/alice/topup", data=form)  # the same form again: applied once
        again = await c.get("/ui/accounts/alice")
        assert "already applied" in again.text and "12.50 EUR" in again.text
        forged = await c.post("/ui/accounts/alice/topup", data={**form, "reference": "x2", "csrf": "forged"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        await c.post("/ui/accounts/alice/block", data={"csrf": _csrf(again)})
        assert (await customers.get(api.pg, "alice"))["status"] == "blocked"
        audit = await api.pg.fetch("SELECT token, path FROM api_audit ORDER BY id")
        assert [r["path"] for r in audit if r["path"].startswith("/ui/accounts")] == [
            "/ui/accounts/alice/topup", "/ui/accounts/alice/topup", "/ui/accounts/alice/block"]
        await c.post("/ui/logout", data={"csrf": _csrf(again)})
        assert (await c.get("/ui")).headers["location"] == "/ui/login"


async def test_login_form_needs_its_csrf_token(api: Api) -> None:
    async with await _client(api) as c:
        res = await c.post("/ui/login", data={"token": api.tokens["admin"], "csrf": "guess"})
        assert res.status_code == 401 and "expired" in res.text


async def test_roles_and_reseller_scope(api: Api) -> None:
    await api.tariff()
    await api.account("mine", reseller="r1")
    await api.account("theirs", reseller="r2")
    async with await _client(api) as c:
        await _login(c, api.tokens["readonly"])
        page = await c.get("/ui/accounts/mine")
        denied = await c.post("/ui/accounts/mine/topup", data={"amount": "1", "reference": "r", "csrf": _csrf(page)})
        assert denied.status_code == 403 and "may not" in denied.text
    async with await _client(api) as c:
        await _login(c, api.tokens["reseller"])
        assert (await c.get("/ui/accounts/mine")).status_code == 200
        assert (await c.get("/ui/accounts/theirs")).status_code == 404
        listed = await c.get("/ui/accounts")
        assert "mine" in listed.text and "theirs" not in listed.text
        assert (await c.get("/ui/reports")).status_code == 403


async def test_cdrs_reports_and_export(api: Api) -> None:
    await api.tariff()
    await api.account("bob")
    t = datetime.now(UTC).replace(microsecond=0)
    await api.pg.execute(
        "INSERT INTO cdrs (record_id, session_id, account, called, destination, start_time, duration, billed_seconds,"
        " charge, currency, termination_cause) VALUES ('cdr:s1:0', 's1', 'bob', '4930', 'Berlin', $1, 65, 66, 86000,"
        " 'EUR', 'NORMAL')", t)
    async with await _client(api) as c:
        await _login(c, api.tokens["admin"])
        assert "Berlin" in (await c.get("/ui/cdrs", params={"account": "bob"})).text
        csv = await c.get("/ui/cdrs/export.csv", params={"account": "bob"})
        assert csv.headers["content-type"].startswith("text/csv") and "s1,bob" in csv.text
        rep = await c.get("/ui/reports", params={"by": "destination"})
        assert 'id="chart-data"' in rep.text and "0.086000" in rep.text
        home = await c.get("/ui")
        assert "0.086 EUR" in home.text  # today's revenue from the rollups


async def test_self_care(api: Api) -> None:
    await api.tariff()
    await customers.create(api.pg, customers.NewAccount("carol", "EUR", "t1", aliases=("4930555",),
                                                        profile=customers.Profile(password="s3cret")))
    await customers.sync(api.pg, api.svc.redis, api.svc.keys, "carol")
    async with await _client(api) as c:
        form = await c.get("/my/login")
        wrong = await c.post("/my/login", data={"alias": "4930555", "password": "nope", "csrf": _csrf(form)})
        assert wrong.status_code == 401 and "Wrong number or password" in wrong.text
        ok = await c.post("/my/login", data={"alias": "4930555", "password": "s3cret", "csrf": _csrf(form)})
        assert ok.status_code == 303
        home = await c.get("/my")
        assert "0.00 EUR" in home.text and "Recent calls" in home.text
        assert (await c.get("/ui")).headers["location"] == "/ui/login"  # a subscriber is no operator
    async with await _client(api) as c:
        form = await c.get("/my/login")
        for _ in range(5):
            await c.post("/my/login", data={"alias": "4930555", "password": "guess", "csrf": _csrf(form)})
        locked = await c.post("/my/login", data={"alias": "4930555", "password": "s3cret", "csrf": _csrf(form)})
        assert "Too many wrong passwords" in locked.text


async def test_overview_rate_from_the_daemons_counter(api: Api) -> None:
    answered = [1000.0]
    api.svc.requests_total = lambda: answered[0]
    async with await _client(api) as c:
        await _login(c, api.tokens["readonly"])
        first = await c.get("/ui")
        assert re.search(r"Requests per second</span><span class=\"value\">–", first.text)
        await asyncio.sleep(1.1)
        answered[0] += 220
        second = await c.get("/ui")
        rate = float(re.search(r"Requests per second</span><span class=\"value\">([\d.,]+)", second.text)[1])  # type: ignore[index]
        assert 150 < rate < 201
