"""The PostgreSQL side of accounts for alert tests (the core's tests make accounts in Redis only)."""

from __future__ import annotations

import asyncpg

from ocs.store import alerts_db
from ocs.store.alerts_db import Settings


async def pg_account(pg: asyncpg.Connection, account: str, *, postpaid: bool = False, credit_limit: int = 0,
                     **settings: object) -> None:
    """Tariff ``t`` and ``account`` in PostgreSQL, with alert ``settings`` when given (they reference the account)."""
    await pg.execute("INSERT INTO tariffs (name, currency, timezone, current_version) VALUES ('t', 'EUR', 'UTC', 1)"
                     " ON CONFLICT DO NOTHING")
    await pg.execute("INSERT INTO accounts (id, type, currency, tariff, credit_limit) VALUES ($1, $2, 'EUR', 't', $3)",
                     account, "postpaid" if postpaid else "prepaid", credit_limit)
    if settings:
        await alerts_db.put_settings(pg, Settings(account, **settings))  # type: ignore[arg-type]
