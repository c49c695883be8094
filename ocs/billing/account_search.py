"""Finding an account the way an operator types it: part of its id, name, e-mail or one of its aliases.

Used by the dashboard's search box; a reseller sees only its own subscribers.
"""

from __future__ import annotations

from typing import Any

from ocs import money
from ocs.store.provision import Conn

LIMIT = 50


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def search(conn: Conn, text: str, reseller: str | None = None, limit: int = LIMIT) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT a.id, a.name, a.type, a.currency, a.tariff, a.status, a.credit_limit, a.reseller FROM accounts a"
        " WHERE ($2::text IS NULL OR a.reseller = $2) AND ($1 = '%%' OR a.id ILIKE $1 OR a.name ILIKE $1"
        " OR a.email ILIKE $1 OR EXISTS (SELECT 1 FROM aliases l WHERE l.account_id = a.id AND l.value ILIKE $1))"
        " ORDER BY a.id LIMIT $3", _like(text.strip()), reseller, limit)
    return [{"id": r["id"], "name": r["name"], "type": r["type"], "currency": r["currency"].strip(),
             "tariff": r["tariff"], "status": r["status"], "credit_limit": money.format(int(r["credit_limit"])),
             "reseller": r["reseller"] or ""} for r in rows]
