"""The route table: which providers terminate calls to a prefix (docs/wholesale.md).

Longest prefix wins (:class:`ocs.wholesale.cost.CostBook`); a route lists its providers in order
(the first that has a rate terminates) or, with ``lcr``, as candidates of which the cheapest for
each call terminates.  Every provider named must exist; setting a prefix again replaces its route.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ocs.billing.errors import Invalid, Refused
from ocs.wholesale.cost import Route

Conn = asyncpg.Connection | PoolConnectionProxy
PREFIX_RE = re.compile(r"^[0-9]{1,32}$")


def check_prefix(prefix: str) -> str:
    """Digits only, as a RATES.csv prefix (the number is normalised before matching, the prefix is not)."""
    if not PREFIX_RE.match(prefix):
        raise Invalid("prefix", f"digits only (1-32), got {prefix!r}")
    return prefix


async def set_route(conn: Conn, prefix: str, providers: list[str], lcr: bool = False) -> dict[str, Any]:
    """Create or replace the route of ``prefix``; refused (nothing changed) if a provider is unknown or repeated."""
    check_prefix(prefix)
    if not providers:
        raise Invalid("providers", "at least one provider")
    if len(set(providers)) != len(providers):
        raise Invalid("providers", "a provider is listed twice")
    known = {r["name"] for r in await conn.fetch("SELECT name FROM providers WHERE name = ANY($1::text[])",
                                                 providers)}
    missing = [p for p in providers if p not in known]
    if missing:
        raise Refused(f"unknown provider {missing[0]!r}")
    await conn.execute(
        "INSERT INTO routes(prefix, providers, lcr) VALUES ($1, $2, $3) ON CONFLICT (prefix) DO UPDATE"
        " SET providers = EXCLUDED.providers, lcr = EXCLUDED.lcr, updated_at = now()", prefix, providers, lcr)
    return {"prefix": prefix, "providers": providers, "lcr": lcr}


async def delete_route(conn: Conn, prefix: str) -> dict[str, Any]:
    check_prefix(prefix)
    row = await conn.fetchrow("DELETE FROM routes WHERE prefix = $1 RETURNING prefix", prefix)
    if row is None:
        raise Refused(f"no route for prefix {prefix}")
    return {"prefix": prefix, "deleted": True}


async def load(conn: Conn) -> list[Route]:
    rows = await conn.fetch("SELECT prefix, providers, lcr FROM routes ORDER BY prefix")
    return [Route(r["prefix"], tuple(r["providers"]), bool(r["lcr"])) for r in rows]


async def list_all(conn: Conn) -> list[dict[str, Any]]:
    return [{"prefix": r.prefix, "providers": list(r.providers), "lcr": r.lcr} for r in await load(conn)]
