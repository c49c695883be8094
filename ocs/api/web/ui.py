"""The operator's dashboard at ``/ui``: overview, accounts, sessions, CDRs, reports, invoices.

Server-rendered pages over the same service functions the REST API and ``ocsctl`` call (nothing
is implemented twice); a login with an API token (the role and the reseller scope of the API apply
unchanged, docs/api.md); every form carries the session's CSRF token; every write is in the audit
log like an API write (the request's principal is set for the audit layer).
"""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import Response, StreamingResponse

from ocs import money
from ocs.api.deps import PERMISSIONS, Services, own_account, owned_ids, reseller_of, services, visible_sessions
from ocs.api.problems import Problem
from ocs.api.tokens import Principal
from ocs.api.web import overview
from ocs.api.web.pages import pdf_response, redirect, render
from ocs.api.web.sessions import WebSession, end, login_page, login_posted, same, start
from ocs.billing import account_search, account_status, cdrs, customers, invoice_docs, ledger, pdf
from ocs.billing.errors import Refused
from ocs.control.dispatch import Dispatcher
from ocs.reports.usage_report import BY, TOTAL, Query, ReportError, documents, usage
from ocs.store import live_sessions
from ocs.store.control_bus import ControlBus

router = APIRouter(prefix="/ui", include_in_schema=False)
Svc = Annotated[Services, Depends(services)]


class LoggedOut(Exception):
    """No (valid) dashboard session: the handler answers with the login page."""


async def _who(request: Request, svc: Services) -> tuple[WebSession, Principal]:
    s = request.app.state.web_sessions.get(request, "ui")
    found = None if s is None else await svc.tokens.principal(s.subject)
    if s is None or found is None:
        raise LoggedOut
    return s, found


async def current(request: Request, svc: Svc) -> tuple[WebSession, Principal]:
    return await _who(request, svc)


Who = Annotated[tuple[WebSession, Principal], Depends(current)]


def _may(who: Principal, permission: str) -> None:
    if permission not in PERMISSIONS.get(who.role, frozenset()):
        raise Problem(403, f"role {who.role} may not {permission.replace(':', ' ')}")


def _checked(request: Request, s: WebSession, who: Principal, csrf: str, permission: str) -> None:
    """A form post: its CSRF token must be the session's; the role must allow it; it is audited."""
    if not same(csrf, s.csrf):
        raise Problem(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    _may(who, permission)
    request.state.principal = who


def _page(request: Request, template: str, s: WebSession, who: Principal, **ctx: Any) -> Response:
    flash, s.flash = s.flash, ""
    return render(request, template, who=who, csrf=s.csrf, flash=flash, **ctx)


# -- login -----------------------------------------------------------------------------------------

@router.get("/login")
async def login_form(request: Request, error: str = "") -> Response:
    return login_page(request, "login.html", "ui", error)


@router.post("/login")
async def login(request: Request, svc: Svc, token: Annotated[str, Form(max_length=512)] = "",
                csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    if not login_posted(request, csrf):
        return login_page(request, "login.html", "ui", "The form expired: try again.")
    who = await svc.tokens.principal(token.strip()) if token.strip() else None
    if who is None:
        return login_page(request, "login.html", "ui", "That token is not valid (unknown, revoked or expired).")
    return start(request, "ui", token.strip())


@router.post("/logout")
async def logout(request: Request) -> Response:
    return end(request, "ui")


# -- pages -----------------------------------------------------------------------------------------

@router.get("")
async def home(request: Request, svc: Svc, who: Who) -> Response:
    s, p = who
    facts = await overview.facts(request.app, svc, p)
    return _page(request, "overview.html", s, p, facts=facts)


@router.get("/accounts")
async def accounts(request: Request, svc: Svc, who: Who, q: str = "") -> Response:
    s, p = who
    _may(p, "accounts:read")
    async with svc.pool.acquire() as conn:
        found = await account_search.search(conn, q[:200], reseller_of(p))
    return _page(request, "accounts.html", s, p, q=q, found=found)


@router.get("/accounts/{account_id}")
async def account(request: Request, svc: Svc, who: Who, account_id: str) -> Response:
    s, p = who
    _may(p, "accounts:read")
    async with svc.pool.acquire() as conn:
        await own_account(conn, p, account_id)
        doc = await customers.document(conn, svc.redis, svc.keys, account_id)
        calls = await overview.recent_calls(conn, account_id)
        bills = (await invoice_docs.listing(conn, account=account_id))[:12]
    open_now = await live_sessions.listing(svc.redis, svc.keys, account_id)
    return _page(request, "account.html", s, p, a=doc, calls=calls, invoices=bills, sessions=open_now,
                 reference=f"ui-{secrets.token_hex(8)}")


@router.post("/accounts/{account_id}/topup")
async def topup(request: Request, svc: Svc, who: Who, account_id: str, amount: Annotated[str, Form(max_length=32)],
                reference: Annotated[str, Form(max_length=128)], csrf: Annotated[str, Form(max_length=64)] = ""
                ) -> Response:
    s, p = who
    _checked(request, s, p, csrf, "topups:write")
    async with svc.pool.acquire() as conn:
        await own_account(conn, p, account_id)
        try:
            micros = ledger.parse_amount(amount, "topup")
            done = await ledger.post(conn, svc.redis, svc.keys, account_id, "topup", micros, reference, "")
            s.flash = f"Topped up {money.format(micros)}." if done.applied else "That top-up was already applied."
        except Refused as exc:
            s.flash = f"Not topped up: {exc}"
    return redirect(f"/ui/accounts/{account_id}")


@router.post("/accounts/{account_id}/{action}")
async def block(request: Request, svc: Svc, who: Who, account_id: str, action: str,
                csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    s, p = who
    if action not in ("block", "unblock"):
        raise Problem(404, f"no action {action!r}")
    _checked(request, s, p, csrf, "accounts:write")
    async with svc.pool.acquire() as conn:
        await own_account(conn, p, account_id)
        if action == "block":
            await account_status.block(conn, svc.redis, svc.keys, account_id)
        else:
            await account_status.unblock(conn, svc.redis, svc.keys, account_id)
    s.flash = f"Account {action}ed."
    return redirect(f"/ui/accounts/{account_id}")


@router.get("/sessions")
async def sessions(request: Request, svc: Svc, who: Who, account: str = "") -> Response:
    s, p = who
    _may(p, "sessions:read")
    rows = await visible_sessions(svc, p, account or None)
    return _page(request, "sessions.html", s, p, sessions=rows[:500], total=len(rows), account=account)


@router.post("/sessions/disconnect")
async def disconnect(request: Request, svc: Svc, who: Who, session_id: Annotated[str, Form(max_length=512)],
                     back: Annotated[str, Form(max_length=600)] = "/ui/sessions",
                     csrf: Annotated[str, Form(max_length=64)] = "") -> Response:
    s, p = who
    _checked(request, s, p, csrf, "sessions:write")
    bus = ControlBus(svc.redis, svc.keys)
    found = await bus.find(session_id)
    async with svc.pool.acquire() as conn:
        mine = await owned_ids(conn, p)
    if not found or (mine is not None and found[0].account not in mine):
        s.flash = f"No open session {session_id}."
    else:
        result, _node = await Dispatcher(bus).disconnect(session_id, 10)
        s.flash = f"Session {session_id} disconnected." if result.ok else \
            f"Session {session_id} not disconnected: {result.ack.value} {result.detail}".strip()
    return redirect(back if back.startswith("/ui/") else "/ui/sessions")


def _period(start: str, end: str) -> tuple[datetime, datetime]:
    today = datetime.now(UTC).date()
    first = date.fromisoformat(start) if start else today.replace(day=1)
    last = date.fromisoformat(end) if end else today + timedelta(days=1)
    return (datetime.combine(first, datetime.min.time(), UTC), datetime.combine(last, datetime.min.time(), UTC))


@router.get("/cdrs")
async def cdr_page(request: Request, svc: Svc, who: Who, start: str = "", end: str = "", account: str = "",
                   offset: int = 0) -> Response:
    s, p = who
    _may(p, "cdrs:read")
    try:
        t0, t1 = _period(start, end)
    except ValueError:
        s.flash = "Dates are YYYY-MM-DD."
        t0, t1 = _period("", "")
    async with svc.pool.acquire() as conn:
        if account:
            await own_account(conn, p, account)
        rows = await cdrs.page(conn, t0, t1, account or None, reseller_of(p), 101, max(0, offset))
    return _page(request, "cdrs.html", s, p, rows=rows[:100], more=len(rows) > 100, offset=max(0, offset),
                 start=t0.date().isoformat(), end=t1.date().isoformat(), account=account)


@router.get("/cdrs/export.csv")
async def cdr_export(request: Request, svc: Svc, who: Who, start: str = "", end: str = "",
                     account: str = "") -> Response:
    _s, p = who
    _may(p, "cdrs:read")
    t0, t1 = _period(start, end)
    async with svc.pool.acquire() as conn:
        if account:
            await own_account(conn, p, account)

    async def body() -> Any:
        async with svc.pool.acquire() as conn, conn.transaction(readonly=True):
            yield cdrs.csv_text([], header=True)
            async for batch in cdrs.stream(conn, t0, t1, account or None, reseller_of(p)):
                yield cdrs.csv_text(batch, header=False)

    return StreamingResponse(body(), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="cdrs-{t0.date()}-{t1.date()}.csv"'})


@router.get("/reports")
async def reports(request: Request, svc: Svc, who: Who, start: str = "", end: str = "", by: str = "day") -> Response:
    s, p = who
    _may(p, "cdrs:read")
    if reseller_of(p) is not None:
        raise Problem(403, "reports cover every account: not for a reseller token")
    lines: list[dict[str, Any]] = []
    try:
        t0, t1 = _period(start, end)
        async with svc.pool.acquire() as conn:
            lines = documents(await usage(conn, Query(t0, t1, by if by in BY else "day")))
    except (ValueError, ReportError) as exc:
        s.flash = f"No report: {exc}"
        t0, t1 = _period("", "")
    chart = {"labels": [d["group"] for d in lines if d["group"] != TOTAL][:40],
             "revenue": [d["revenue"] for d in lines if d["group"] != TOTAL][:40],
             "cost": [d["cost"] or "0" for d in lines if d["group"] != TOTAL][:40]}
    return _page(request, "reports.html", s, p, lines=lines, by=by, choices=BY, chart=chart,
                 start=t0.date().isoformat(), end=t1.date().isoformat())


@router.get("/invoices")
async def invoice_list(request: Request, svc: Svc, who: Who, account: str = "") -> Response:
    s, p = who
    _may(p, "invoices:read")
    async with svc.pool.acquire() as conn:
        if account:
            await own_account(conn, p, account)
        found = await invoice_docs.listing(conn, account=account or None)
        mine = await owned_ids(conn, p)
    if mine is not None:
        found = [d for d in found if d["account"] in set(mine)]
    return _page(request, "invoices.html", s, p, invoices=found[:200], account=account)


@router.get("/invoices/{number}.pdf")
async def invoice_pdf(request: Request, svc: Svc, who: Who, number: str) -> Response:
    _s, p = who
    _may(p, "invoices:read")
    async with svc.pool.acquire() as conn:
        doc = await invoice_docs.show(conn, number)
        mine = await owned_ids(conn, p)
        if mine is not None and doc["account"] not in mine:
            raise Problem(404, f"unknown invoice {number!r}")
        data = await pdf.invoice_pdf(conn, number)
    return pdf_response(number, data)

