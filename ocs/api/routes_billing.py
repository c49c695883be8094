"""``/api/v1/invoices``, ``/products``, ``/subscriptions`` and ``/audit`` (docs/api.md).

Thin over :mod:`ocs.billing.invoice_docs`, :mod:`ocs.billing.pdf`, :mod:`ocs.billing.products` and
:mod:`ocs.api.tokens`: the documents are those ``ocsctl invoice show|list``, ``product list``,
``subscription list`` and ``audit`` print with ``--json``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ocs.api.deps import Page, Services, allow, own_account, owned_ids, page, services
from ocs.api.problems import Problem, responses
from ocs.api.tokens import Principal, audit_log
from ocs.billing import invoice_docs, invoices, pdf, products
from ocs.billing.proration import PERIODS

router = APIRouter(responses=responses(401, 403, 422))
InvoiceNumber = Annotated[str, Path(min_length=1, max_length=64)]


async def _own_invoice(svc: Services, who: Principal, number: str) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        doc = await invoice_docs.show(conn, number)
        mine = await owned_ids(conn, who)
    if mine is not None and doc["account"] not in mine:
        raise Problem(404, f"unknown invoice {number!r}")
    return doc


@router.get("/invoices", tags=["invoices"], summary="Invoice summaries (paged, filtered)")
async def list_invoices(who: Annotated[Principal, Depends(allow("invoices:read"))],
                        svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)],
                        account: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
                        period: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", examples=["2026-11"])] = None,
                        status: Annotated[Literal["open", "paid", "void"] | None, Query()] = None
                        ) -> dict[str, Any]:
    month = invoices.parse_period(period) if period else None
    async with svc.pool.acquire() as conn:
        if account is not None:
            await own_account(conn, who, account)
        found = await invoice_docs.listing(conn, account=account, period=month, status=status)
        mine = await owned_ids(conn, who)
    if mine is not None:
        allowed = set(mine)
        found = [d for d in found if d["account"] in allowed]
    return pg.document(found[pg.offset:pg.offset + pg.limit + 1], "invoices")


@router.get("/invoices/{number}", tags=["invoices"], responses=responses(404), summary="One invoice, whole")
async def get_invoice(number: InvoiceNumber, who: Annotated[Principal, Depends(allow("invoices:read"))],
                      svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return await _own_invoice(svc, who, number)


@router.get("/invoices/{number}/pdf", tags=["invoices"], summary="The invoice as PDF",
            responses={**responses(404), 200: {"content": {"application/pdf": {}}}})
async def invoice_pdf(number: InvoiceNumber, who: Annotated[Principal, Depends(allow("invoices:read"))],
                      svc: Annotated[Services, Depends(services)],
                      with_calls: Annotated[bool, Query(description="append the calls of the period")] = False
                      ) -> Response:
    await _own_invoice(svc, who, number)
    async with svc.pool.acquire() as conn:
        data = await pdf.invoice_pdf(conn, number, with_calls=with_calls)
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="{number}.pdf"'})


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    amount: str = Field(min_length=1, max_length=32, examples=["9.99"])
    currency: str = Field(min_length=3, max_length=3)
    period: Literal[PERIODS] = Field(description="monthly or one-time")  # type: ignore[valid-type]
    description: str = Field("", max_length=500)


@router.get("/products", tags=["products"], summary="Every product")
async def list_products(_: Annotated[Principal, Depends(allow("products:read"))],
                        svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)]
                        ) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        found = [p.document() for p in await products.listing(conn)]
    return pg.document(found[pg.offset:pg.offset + pg.limit + 1], "products")


@router.post("/products", tags=["products"], status_code=201, responses=responses(409),
             summary="A new product (its price never changes: create another)")
async def create_product(body: ProductIn, _: Annotated[Principal, Depends(allow("products:write"))],
                         svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    product = products.Product(body.name, products.parse_amount(body.amount), body.currency, body.period,
                               body.description)
    async with svc.pool.acquire() as conn:
        return (await products.create(conn, product)).document()


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account: str = Field(min_length=1, max_length=128)
    product: str = Field(min_length=1, max_length=64)
    start: date | None = Field(None, description="first day charged (default: today in the account's timezone)")
    quantity: int = Field(1, ge=1, le=10_000)


@router.get("/subscriptions", tags=["products"], summary="Subscriptions, ended ones too")
async def list_subscriptions(who: Annotated[Principal, Depends(allow("subscriptions:read"))],
                             svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)],
                             account: Annotated[str | None, Query(min_length=1, max_length=128)] = None
                             ) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        if account is not None:
            await own_account(conn, who, account)
        found = [s.document() for s in await products.subscriptions(conn, account)]
        mine = await owned_ids(conn, who)
    if mine is not None:
        allowed = set(mine)
        found = [s for s in found if s["account"] in allowed]
    return pg.document(found[pg.offset:pg.offset + pg.limit + 1], "subscriptions")


@router.post("/subscriptions", tags=["products"], status_code=201, responses=responses(404, 409),
             summary="Subscribe an account to a product")
async def subscribe(body: SubscriptionIn, who: Annotated[Principal, Depends(allow("subscriptions:write"))],
                    svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        await own_account(conn, who, body.account)
        return (await products.subscribe(conn, body.account, body.product, body.start, body.quantity)).document()


@router.delete("/subscriptions/{account}/{product}", tags=["products"], responses=responses(404, 409),
               summary="End an account's subscription to a product")
async def unsubscribe(account: Annotated[str, Path(min_length=1, max_length=128)],
                      product: Annotated[str, Path(min_length=1, max_length=64)],
                      who: Annotated[Principal, Depends(allow("subscriptions:write"))],
                      svc: Annotated[Services, Depends(services)],
                      at: Annotated[date | None, Query(description="first day no longer charged"
                                                                   " (default: tomorrow)")] = None
                      ) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        await own_account(conn, who, account)
        return (await products.unsubscribe(conn, account, product, at)).document()


@router.get("/audit", tags=["audit"], summary="The audit log of API writes (admin)")
async def audit(_: Annotated[Principal, Depends(allow("audit:read"))],
                svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)],
                since: Annotated[datetime | None, Query(description="no offset: UTC")] = None) -> dict[str, Any]:
    when = since if since is None or since.tzinfo else since.replace(tzinfo=UTC)
    async with svc.pool.acquire() as conn:
        return pg.document(await audit_log(conn, when, pg.limit + 1, pg.offset), "audit")
