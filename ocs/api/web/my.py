"""Subscriber self-care at ``/my``: balance, recent calls, invoices, voucher redemption.

A subscriber logs in with one of its aliases (a phone number, a SIP URI, a calling card's PIN) and
the account's password, the one RADIUS PAP/CHAP checks.  An account without a password cannot log
in.  After five wrong passwords for one alias, that alias is refused for a minute (one process's
memory; it slows guessing without letting anyone lock a subscriber out for long).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response

from ocs import money
from ocs.api.deps import Services, services
from ocs.api.problems import Problem
from ocs.api.web import overview
from ocs.api.web.pages import pdf_response, redirect, render
from ocs.api.web.sessions import WebSession, end, login_page, login_posted, same, start
from ocs.billing import customers, invoice_docs, pdf, pins, vouchers
from ocs.billing.errors import Refused
from ocs.store import accounts_db

router = APIRouter(prefix="/my", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]
MAX_FAILURES, LOCK_SECONDS = 5, 60.0


class MyLoggedOut(Exception):
    """No self-care session: the handler answers with the login page."""


def _session(request: Request) -> WebSession:
    s: WebSession | None = request.app.state.web_sessions.get(request, "my")
    if s is None:
        raise MyLoggedOut
    return s


Me = Annotated[WebSession, Depends(_session)]


def _locked(request: Request, alias: str) -> bool:
    fails: dict[str, tuple[int, float]] = request.app.state.my_failures
    n, since = fails.get(alias, (0, 0.0))
    return n >= MAX_FAILURES and time.monotonic() - since < LOCK_SECONDS


def _failed(request: Request, alias: str) -> None:
    fails: dict[str, tuple[int, float]] = request.app.state.my_failures
    n, since = fails.get(alias, (0, 0.0))
    if time.monotonic() - since >= LOCK_SECONDS:
        n = 0
    fails[alias] = (n + 1, time.monotonic())
    if len(fails) > 100_000:
        fails.clear()


@router.get("/login")
async def login_form(request: Request, error: str = "") -> Response:
    return login_page(request, "my_login.html", "my", error)


async def _account_of(svc: Services, alias: str, password: str) -> str | None:
    async with svc.pool.acquire() as conn:
        owner = await conn.fetchval("SELECT account_id FROM aliases WHERE value = $1", alias)
        row = await accounts_db.get(conn, owner) if owner else None
    if row is None or not row["password"] or not same(password, row["password"]):
        return None
    return str(row["id"])


@router.post("/login")
async def login(request: Request, svc: Svc, alias: Annotated[str, Form(max_length=256)] = "",
                password: Annotated[str, Form(max_length=256)] = "",
                csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    alias = alias.strip()
    if not login_posted(request, csrf):
        return login_page(request, "my_login.html", "my", "The form expired: try again.")
    if _locked(request, alias):
        return login_page(request, "my_login.html", "my", "Too many wrong passwords: wait a minute and try again.")
    account = await _account_of(svc, alias, password) if alias and password else None
    if account is None:
        _failed(request, alias)
        return login_page(request, "my_login.html", "my", "Wrong number or password.")
    request.app.state.my_failures.pop(alias, None)
    return start(request, "my", account)


@router.post("/logout")
async def logout(request: Request) -> Response:
    return end(request, "my")


@router.get("")
async def home(request: Request, svc: Svc, s: Me) -> Response:
    async with svc.pool.acquire() as conn:
        doc = await customers.document(conn, svc.redis, svc.keys, s.subject)
        calls = await overview.recent_calls(conn, s.subject, 25)
        bills = (await invoice_docs.listing(conn, account=s.subject))[:24]
    flash, s.flash = s.flash, ""
    return render(request, "my_home.html", a=doc, calls=calls, invoices=bills, csrf=s.csrf, flash=flash,
                  vouchers=bool(svc.cfg.billing.pin_pepper_file))


@router.post("/voucher")
async def voucher(request: Request, svc: Svc, s: Me, pin: Annotated[str, Form(max_length=64)] = "",
                  csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    if not same(csrf, s.csrf):
        raise Problem(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    if not svc.cfg.billing.pin_pepper_file:
        s.flash = "Vouchers are not enabled here."
        return redirect("/my")
    try:
        async with svc.pool.acquire() as conn:
            done = await vouchers.redeem(conn, svc.redis, svc.keys, pins.load_pepper(svc.cfg.billing.pin_pepper_file),
                                         pin, s.subject)
        s.flash = f"Voucher redeemed: {money.format(done.amount)} {done.currency} added to your balance."
    except (Refused, pins.PinRefused) as exc:
        s.flash = f"Voucher not redeemed: {exc}"
    return redirect("/my")


@router.get("/invoices/{number}.pdf")
async def invoice_pdf(svc: Svc, s: Me, number: str) -> Response:
    async with svc.pool.acquire() as conn:
        doc = await invoice_docs.show(conn, number)
        if doc["account"] != s.subject:
            raise Problem(404, f"unknown invoice {number!r}")
        data = await pdf.invoice_pdf(conn, number)
    return pdf_response(number, data)
