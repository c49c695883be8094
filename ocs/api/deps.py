"""What every route needs: the stores, the caller (bearer token -> :class:`Principal`), the role
matrix, paging and the reseller's scope (docs/api.md, "Roles").

The role matrix is data (:data:`PERMISSIONS`), checked by one dependency per route
(``Depends(allow("accounts:write"))``); a reseller's confinement to its own subscribers is checked
on the account each route touches (:func:`own_account`), answering 404 for an account of
another reseller exactly as for one that does not exist, so a reseller cannot probe ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from redis.asyncio import Redis

from ocs import config
from ocs.api.problems import Problem
from ocs.api.tokens import Principal, TokenCache
from ocs.metrics import Metrics
from ocs.store import accounts_db, live_sessions
from ocs.store.keys import Keys
from ocs.store.provision import Conn

READS = {"accounts:read", "sessions:read", "tariffs:read", "cdrs:read", "invoices:read", "products:read",
         "subscriptions:read"}
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(READS | {"accounts:write", "topups:write", "adjustments:write", "sessions:write",
                                "products:write", "subscriptions:write", "audit:read"}),
    "operator": frozenset(READS | {"accounts:write", "topups:write", "sessions:write", "subscriptions:write"}),
    "readonly": frozenset(READS),
    "reseller": frozenset(READS - {"tariffs:read"} | {"accounts:write", "topups:write", "sessions:write",
                                                        "subscriptions:write"}),
}
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # a larger ?limit= is capped to this (the page says which limit it used)


@dataclass
class Services:
    """The stores the API shares with the daemon (Redis) or owns (its PostgreSQL pool)."""

    cfg: config.Config
    pool: asyncpg.Pool
    redis: Redis
    keys: Keys
    tokens: TokenCache
    requests_total: Callable[[], float] | None = None  # the daemon's charging requests so far (the dashboard)
    metrics: Metrics | None = None  # ocs_api_requests_total, ocs_api_request_seconds


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


bearer = HTTPBearer(auto_error=False, description="`ocsctl api token create NAME --role ROLE` prints one")
UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def principal(request: Request, svc: Annotated[Services, Depends(services)],
                    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """The caller, or 401 for a missing, unknown (forged), revoked or expired token."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise Problem(401, "an Authorization: Bearer token is needed", headers=UNAUTHORIZED)
    found = await svc.tokens.principal(creds.credentials)
    if found is None:
        raise Problem(401, "the token is not valid (unknown, revoked or expired)", headers=UNAUTHORIZED)
    request.state.principal = found  # the audit middleware names the caller
    return found


def allow(permission: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if its role has ``permission``; else 403."""

    async def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if permission not in PERMISSIONS.get(who.role, frozenset()):
            raise Problem(403, f"role {who.role} may not {permission.replace(':', ' ')}")
        return who

    return check


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int

    def document(self, items: list[Any], key: str = "items") -> dict[str, Any]:
        """``items`` were fetched with ``limit + 1``: one more than shown means there is a next page."""
        more = len(items) > self.limit
        return {key: items[:self.limit], "limit": self.limit, "offset": self.offset,
                "next_offset": self.offset + self.limit if more else None}


def page(limit: Annotated[int, Query(ge=1, description=f"items per page (default {DEFAULT_LIMIT}; more than"
                                                       f" {MAX_LIMIT} is capped to {MAX_LIMIT})")] = DEFAULT_LIMIT,
         offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> Page:
    return Page(min(limit, MAX_LIMIT), offset)


CHUNK = 100  # rows a list route converts between two passes through the event loop


async def chunked(fetch: Callable[[int, int], Awaitable[list[Any]]], limit: int, offset: int) -> list[Any]:
    """``fetch(limit, offset)`` in slices of :data:`CHUNK`, letting the loop run between them.

    ocsd's charging path shares the loop: one page of 1,000 documents built in one go held it for
    milliseconds (bench/api_load.py); in slices a CCR waits at most one slice.
    """
    out: list[Any] = []
    while len(out) < limit:
        got = await fetch(min(CHUNK, limit - len(out)), offset + len(out))
        out += got
        if len(got) < CHUNK:
            break
        await asyncio.sleep(0)
    return out


def reseller_of(who: Principal) -> str | None:
    return who.reseller if who.role == "reseller" else None


async def own_account(conn: Conn, who: Principal, account_id: str) -> asyncpg.Record:
    """The account's row if the caller may touch it; 404 when unknown or another reseller's."""
    row = await accounts_db.get(conn, account_id)
    if row is None or (who.role == "reseller" and row["reseller"] != who.reseller):
        raise Problem(404, f"unknown account {account_id!r}")
    return row


async def owned_ids(conn: Conn, who: Principal) -> list[str] | None:
    """The account ids a reseller may see; None for the other roles (no restriction)."""
    if who.role != "reseller":
        return None
    return [r["id"] for r in await conn.fetch("SELECT id FROM accounts WHERE reseller = $1", who.reseller)]


async def visible_sessions(svc: Services, who: Principal, account: str | None) -> list[dict[str, Any]]:
    """Open sessions the caller may see (of ``account``, checked as :func:`own_account`): a reseller's are
    one SCAN filtered by its subscribers, not one SCAN per subscriber."""
    async with svc.pool.acquire() as conn:
        if account is not None:
            await own_account(conn, who, account)
        mine = await owned_ids(conn, who)
    rows = await live_sessions.listing(svc.redis, svc.keys, account)
    if mine is not None and account is None:
        allowed = set(mine)
        rows = [r for r in rows if r["account"] in allowed]
    return rows
