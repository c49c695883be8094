"""API bearer tokens and the audit log (docs/api.md, "Authentication"): the one implementation behind
``ocsctl api token create|revoke|list``, ``ocsctl audit`` and the API's own token check.

A token is 32 bytes from the OS CSPRNG (:func:`secrets.token_urlsafe`), shown once and stored only
as its SHA-256.  A plain hash is enough for a 256-bit random secret (nobody can search that space
from the hash), and it keeps the per-request check to one dictionary or index lookup; a slow
password hash would cost every request and protect nothing more.  Lookups are cached for
``api.token_cache_seconds`` in each daemon (:class:`TokenCache`): a revocation takes effect
within that time; an expiry is checked on every request against the cached ``expires_at``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ocs.billing import resellers
from ocs.billing.errors import Invalid, Refused
from ocs.store.provision import Conn

ROLES = ("admin", "operator", "readonly", "reseller")
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
PREFIX = "ocs_"  # makes a leaked token easy to recognise (secret scanners, logs)


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's name and role, and the reseller a reseller token is confined to."""

    name: str
    role: str
    reseller: str | None = None
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and (now or datetime.now(UTC)) >= self.expires_at


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


async def create(conn: Conn, name: str, role: str, reseller: str | None = None,
                 expires_at: datetime | None = None) -> str:
    """Store a new token's hash under ``name`` and return the token (the only time it is seen)."""
    if not NAME.fullmatch(name):
        raise Invalid("name", f"1-64 letters, digits or ._@-: {name!r}")
    if role not in ROLES:
        raise Invalid("role", f"one of {', '.join(ROLES)}: {role!r}")
    if (role == "reseller") != bool(reseller):
        raise Invalid("reseller", "needed with --role reseller, and only with it")
    if reseller and not await resellers.is_reseller(conn, reseller):
        raise Invalid("reseller", f"unknown reseller {reseller!r}")
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise Invalid("expires", f"in the past: {expires_at.isoformat()}")
    token = new_token()
    done = await conn.fetchval(
        "INSERT INTO api_tokens(name, token_hash, role, reseller, expires_at) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, role = excluded.role,"
        " reseller = excluded.reseller, expires_at = excluded.expires_at, created_at = now(), revoked_at = NULL"
        " WHERE api_tokens.revoked_at IS NOT NULL RETURNING 1", name, digest(token), role, reseller, expires_at)
    if done is None:
        raise Refused(f"token {name!r} exists (revoke it first to reuse the name)")
    return token


async def revoke(conn: Conn, name: str) -> bool:
    """Revoke ``name``; False when it was revoked already.  Unknown names are refused."""
    row = await conn.fetchrow("SELECT revoked_at FROM api_tokens WHERE name = $1", name)
    if row is None:
        raise Refused(f"unknown token {name!r}")
    if row["revoked_at"] is not None:
        return False
    await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name)
    return True


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(UTC).isoformat() if ts else None


async def listing(conn: Conn) -> list[dict[str, Any]]:
    rows = await conn.fetch("SELECT name, role, reseller, created_at, expires_at, revoked_at FROM api_tokens"
                            " ORDER BY name")
    now = datetime.now(UTC)
    return [{"name": r["name"], "role": r["role"], "reseller": r["reseller"], "created_at": _iso(r["created_at"]),
             "expires_at": _iso(r["expires_at"]), "revoked_at": _iso(r["revoked_at"]),
             "state": "revoked" if r["revoked_at"] else "expired" if r["expires_at"] and r["expires_at"] <= now
             else "active"} for r in rows]


async def lookup(conn: Conn, token: str) -> Principal | None:
    """The principal of a live (not revoked) token, or None.  Expiry is the caller's to check."""
    r = await conn.fetchrow("SELECT name, role, reseller, expires_at FROM api_tokens"
                            " WHERE token_hash = $1 AND revoked_at IS NULL", digest(token))
    return None if r is None else Principal(r["name"], r["role"], r["reseller"], r["expires_at"])


class TokenCache:
    """Token -> principal for ``ttl`` seconds (bounded), so a busy API does not ask PostgreSQL per request.

    Only found tokens are kept: a forged token costs one indexed lookup each time, which the
    API's concurrency cap bounds.  Keys are the SHA-256, never the token.
    """

    def __init__(self, pool: asyncpg.Pool, ttl: float, size: int = 10_000) -> None:
        self.pool = pool
        self.ttl = ttl
        self.size = size
        self._hits: dict[bytes, tuple[float, Principal]] = {}

    async def principal(self, token: str) -> Principal | None:
        key = digest(token)
        now = time.monotonic()
        hit = self._hits.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            found: Principal | None = hit[1]
        else:
            async with self.pool.acquire() as conn:
                found = await lookup(conn, token)
            self._hits.pop(key, None)
            if found is not None and self.ttl > 0:
                if len(self._hits) >= self.size:
                    self._hits.pop(next(iter(self._hits)))
                self._hits[key] = (now, found)
        if found is None or found.expired():
            return None
        return found


async def audit(conn: Conn, who: Principal, method: str, path: str, target: str, body: str, status: int,
                result: str) -> None:
    await conn.execute(
        "INSERT INTO api_audit(token, role, method, path, target, body, status, result)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", who.name, who.role, method, path, target, body, status, result)


async def audit_log(conn: Conn, since: datetime | None = None, limit: int = 1000,
                    offset: int = 0) -> list[dict[str, Any]]:
    """Audit rows from ``since`` (all when None), oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM api_audit WHERE ($1::timestamptz IS NULL OR at >= $1) ORDER BY at, id LIMIT $2 OFFSET $3",
        since, limit, offset)
    return [{"id": r["id"], "at": _iso(r["at"]), "token": r["token"], "role": r["role"], "method": r["method"],
             "path": r["path"], "target": r["target"], "body": r["body"], "status": r["status"],
             "result": r["result"]} for r in rows]
