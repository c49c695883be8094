"""Versioned plain-SQL migrations (``ocs/store/sql/NNN_name.sql``), applied in order.

Idempotent: each file runs once, inside a transaction, under an advisory lock so
two ``ocsctl db migrate`` (or two daemons) never race; applied versions are
recorded in ``schema_migrations``.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn = asyncpg.Connection | PoolConnectionProxy

_LOCK_KEY = 0x0C5D_B001
_NAME_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def available() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every shipped migration, in order."""
    out = []
    for entry in resources.files("ocs.store").joinpath("sql").iterdir():
        m = _NAME_RE.match(entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(out)


async def applied_versions(conn: Conn) -> set[int]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return set()
    rows = await conn.fetch("SELECT version FROM schema_migrations")
    return {int(r["version"]) for r in rows}


async def migrate(conn: Conn) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    done: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = await applied_versions(conn)
        for version, name, sql in available():
            if version in have:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations(version, name) VALUES ($1, $2)", version, name
                )
            done.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return done


async def pending(conn: Conn) -> list[str]:
    """Names of shipped migrations not yet applied (ocsd refuses to start if any)."""
    have = await applied_versions(conn)
    return [name for version, name, _sql in available() if version not in have]
