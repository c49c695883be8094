"""``/api/v1/accounts``: list, get, create, update, block, unblock, top-ups and adjustments.

Thin like ``ocsctl``: JSON -> :mod:`ocs.billing.customers` / :mod:`ocs.billing.account_status` /
:mod:`ocs.billing.ledger` -> the same documents ``ocsctl account show --json`` prints.  Money is a
decimal string (``"10.50"``), never a JSON number, so no client rounds it through a float.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ocs.api.deps import Page, Services, allow, chunked, own_account, page, reseller_of, services
from ocs.api.problems import Problem, responses
from ocs.api.tokens import Principal
from ocs.billing import account_status, customers, ledger, resellers
from ocs.control.dispatch import Dispatched

router = APIRouter(prefix="/accounts", tags=["accounts"], responses=responses(401, 403, 422))
AccountId = Annotated[str, Path(min_length=1, max_length=128, description="the account id")]
MoneyText = Annotated[str, Field(min_length=1, max_length=32, examples=["10.50"])]


class Profile(BaseModel):
    """Customer data; absent fields stay as they are (``password: ""`` removes the RADIUS password)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=254)
    address: str | None = Field(None, max_length=1000)
    tax_rate: str | None = Field(None, max_length=16, examples=["19"], description="percent")
    payment_terms: int | None = Field(None, ge=0, le=365, description="days")
    credit_limit: MoneyText | None = None
    password: str | None = Field(None, max_length=128)

    def parsed(self, tariff: str | None = None) -> customers.Profile:
        raw: dict[str, str | None] = {
            "name": self.name, "email": self.email, "address": self.address, "tax-rate": self.tax_rate,
            "payment-terms": None if self.payment_terms is None else str(self.payment_terms),
            "credit-limit": self.credit_limit, "password": self.password, "tariff": tariff}
        return customers.parse_profile(raw)


class AccountIn(Profile):
    id: str = Field(min_length=1, max_length=128)
    currency: str = Field(min_length=3, max_length=3, examples=["EUR"])
    tariff: str = Field(min_length=1, max_length=128)
    postpaid: bool = False
    aliases: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(default_factory=list, max_length=100)
    reseller: str | None = Field(None, max_length=128, description="the reseller of a subscriber (fixed; a"
                                 " reseller token always creates its own)")


class AccountPatch(Profile):
    tariff: str | None = Field(None, min_length=1, max_length=128)


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: MoneyText
    reference: str = Field(min_length=1, max_length=128, description="idempotency key: applied once")


class Adjustment(TopUp):
    reason: str = Field(min_length=1, max_length=500)


def control(done: Dispatched | None) -> dict[str, Any] | None:
    """What the network was asked (docs/control.md), as ``ocsctl`` reports it."""
    return None if done is None else {"sent": done.sent, "unreachable": [s.sid for s in done.unroutable]}


async def _document(svc: Services, account_id: str, **extra: Any) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        return {**await customers.document(conn, svc.redis, svc.keys, account_id), **extra}


@router.get("", summary="List accounts (paged, filtered)")
async def list_accounts(who: Annotated[Principal, Depends(allow("accounts:read"))],
                        svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)],
                        status: Annotated[Literal["active", "blocked"] | None, Query()] = None,
                        type: Annotated[Literal["prepaid", "postpaid"] | None, Query()] = None,
                        tariff: Annotated[str | None, Query(max_length=128)] = None,
                        reseller: Annotated[str | None, Query(max_length=128)] = None) -> dict[str, Any]:
    mine = reseller_of(who)
    if mine is not None and reseller not in (None, mine):
        return pg.document([], "accounts")
    async with svc.pool.acquire() as conn:
        found = await chunked(lambda n, at: customers.listing(conn, status, mine or reseller, kind=type, tariff=tariff,
                                                              limit=n, offset=at), pg.limit + 1, pg.offset)
    return pg.document(found, "accounts")


@router.post("", status_code=201, summary="Create an account", responses=responses(409))
async def create_account(body: AccountIn, who: Annotated[Principal, Depends(allow("accounts:write"))],
                         svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    new = customers.NewAccount(body.id, body.currency, body.tariff, body.postpaid, tuple(body.aliases),
                               body.parsed())
    reseller = reseller_of(who) or body.reseller
    async with svc.pool.acquire() as conn:
        if reseller is not None:  # fixed at create: the subscriber's keys live on its reseller's shard
            await resellers.create_subscriber(conn, new, reseller)
        else:
            await customers.create(conn, new)
        await customers.sync(conn, svc.redis, svc.keys, body.id)
    return await _document(svc, body.id)


@router.get("/{account_id}", summary="An account with its balance", responses=responses(404))
async def get_account(account_id: AccountId, who: Annotated[Principal, Depends(allow("accounts:read"))],
                      svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        await own_account(conn, who, account_id)
    return await _document(svc, account_id)


@router.patch("/{account_id}", summary="Change customer data, credit limit, tariff or password",
              responses=responses(404, 409))
async def update_account(account_id: AccountId, body: AccountPatch,
                         who: Annotated[Principal, Depends(allow("accounts:write"))],
                         svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    profile = body.parsed(body.tariff)
    if not profile.given():
        raise Problem(422, "nothing to change: give at least one field", field="body")
    async with svc.pool.acquire() as conn:
        await own_account(conn, who, account_id)
        await customers.update(conn, account_id, profile)
        await customers.sync(conn, svc.redis, svc.keys, account_id)
    return await _document(svc, account_id, changed=sorted(profile.given()))


@router.post("/{account_id}/block", summary="Block, and end its open sessions in the network",
             responses=responses(404))
async def block_account(account_id: AccountId, who: Annotated[Principal, Depends(allow("accounts:write"))],
                        svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        await own_account(conn, who, account_id)
        done = await account_status.block(conn, svc.redis, svc.keys, account_id)
    return await _document(svc, account_id, control=control(done))


@router.post("/{account_id}/unblock", summary="Unblock", responses=responses(404))
async def unblock_account(account_id: AccountId, who: Annotated[Principal, Depends(allow("accounts:write"))],
                          svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        await own_account(conn, who, account_id)
        await account_status.unblock(conn, svc.redis, svc.keys, account_id)
    return await _document(svc, account_id)


async def _post(svc: Services, who: Principal, account_id: str, kind: str, body: TopUp, reason: str,
                response: Response) -> dict[str, Any]:
    amount = ledger.parse_amount(body.amount, kind)
    async with svc.pool.acquire() as conn:
        await own_account(conn, who, account_id)
        done = await ledger.post(conn, svc.redis, svc.keys, account_id, kind, amount, body.reference, reason)
    response.status_code = 201 if done.applied else 200
    return await _document(svc, account_id, applied=done.applied, reference=done.reference,
                           control=control(done.control))


@router.post("/{account_id}/topups", status_code=201, responses={
    **responses(404, 409), 200: {"description": "the reference was applied before: nothing done (`applied` false)"}},
    summary="Top up once per reference")
async def top_up(account_id: AccountId, body: TopUp, response: Response,
                 who: Annotated[Principal, Depends(allow("topups:write"))],
                 svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return await _post(svc, who, account_id, "topup", body, "", response)


@router.post("/{account_id}/adjustments", status_code=201, responses={
    **responses(404, 409), 200: {"description": "the reference was applied before: nothing done (`applied` false)"}},
    summary="Credit or debit with a reason, once per reference")
async def adjust(account_id: AccountId, body: Adjustment, response: Response,
                 who: Annotated[Principal, Depends(allow("adjustments:write"))],
                 svc: Annotated[Services, Depends(services)]) -> dict[str, Any]:
    return await _post(svc, who, account_id, "adjustment", body, body.reason, response)
