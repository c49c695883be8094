"""Bundles on the billing side: ``--includes``, the Redis copy of an account's bundles, what is left.

PostgreSQL is the source of truth (products.included_seconds/included_prefix, subscriptions);
:func:`sync` writes the account's bundles to the ``bun`` field of its Redis hash, where the
charging core reads them with the account (:mod:`ocs.rating.bundles` says the rules).  It runs
after every subscribe/unsubscribe and every account sync, under the account's row lock, so two
changes reach Redis in the order PostgreSQL committed them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis

from ocs.billing.errors import Invalid
from ocs.rating import bundles as rb
from ocs.store.keys import Keys
from ocs.store.provision import Conn

MAX_SECONDS = 10**9  # a month has 2.7 million seconds; anything far above is a typo
FIELD = "bun"  # the account hash's field (ocs.store.accounts_view reads it)
KEEP_DAYS = 62  # subscriptions ended longer ago no longer matter to any call


def parse_includes(raw: str) -> tuple[int, str]:
    """``SECONDS[:PREFIX]`` -> (seconds, prefix); seconds 1-10^9, prefix digits (may be empty: none)."""
    m = re.fullmatch(r"(\d{1,10})(?::(\d{1,32}))?", raw.strip())
    if m is None:
        raise Invalid("includes", f"SECONDS[:PREFIX] (whole seconds, prefix of digits): {raw!r}")
    seconds = int(m.group(1))
    if not 1 <= seconds <= MAX_SECONDS:
        raise Invalid("includes", f"seconds must be 1-{MAX_SECONDS}: {raw!r}")
    return seconds, m.group(2) or ""


def format_includes(seconds: int, prefix: str) -> str:
    return f"{seconds}:{prefix}" if prefix else str(seconds)


async def account_bundles(conn: Conn, account_id: str) -> list[rb.Bundle]:
    rows = await conn.fetch(
        "SELECT s.product, p.included_prefix, p.included_seconds * s.quantity AS seconds, s.start_date, s.end_date"
        " FROM subscriptions s JOIN products p ON p.name = s.product"
        " WHERE s.account_id = $1 AND p.included_seconds > 0 AND s.period = 'monthly'"
        " AND (s.end_date IS NULL OR s.end_date > s.start_date AND s.end_date > current_date - $2::int)"
        " ORDER BY s.product, s.start_date", account_id, KEEP_DAYS)
    return [rb.Bundle(r["product"], r["included_prefix"], int(r["seconds"]), r["start_date"], r["end_date"])
            for r in rows]


async def sync(conn: Conn, redis: Redis, keys: Keys, account_id: str) -> None:
    """Write the account's bundles to its Redis hash (or drop the field: the plain path again).

    Under the account row's share lock (subscribe/unsubscribe take it for update), so the last
    change committed is the last one written.
    """
    async with conn.transaction():
        await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR SHARE", account_id)
        found = await account_bundles(conn, account_id)
        key = keys.account(account_id)
        if found:
            await redis.hset(key, FIELD, rb.encode(found))
        else:
            await redis.hdel(key, FIELD)


async def remaining(conn: Conn, redis: Redis, keys: Keys, account_id: str, tz: str,
                    at: datetime | None = None) -> list[dict[str, Any]]:
    """``account show``: each bundle active today, its period's quota, used, held and left seconds."""
    day = rb.local_day(at or datetime.now(UTC), tz)
    live = [b for b in await account_bundles(conn, account_id) if b.active(day)]
    if not live:
        return []
    names = [f"{k}:{rb.period_key(b, day)}" for b in live for k in ("q", "u", "h")]
    vals = [int(v) if v is not None else None for v in await redis.hmget(keys.bundles(account_id), names)]
    _first, after = rb.month_bounds(day)
    out = []
    for n, b in enumerate(live):
        q, u, h = vals[3 * n: 3 * n + 3]
        quota = q if q is not None else rb.quota(b, day)  # a period not used yet starts full
        used, held = u or 0, h or 0
        out.append({"product": b.product, "prefix": b.prefix, "period": f"{day:%Y-%m}",
                    "until": (after - timedelta(days=1)).isoformat(), "included": quota, "used": used,
                    "held": held, "left": max(0, quota - used - held)})
    return out


async def drop_holds(redis: Redis, keys: Keys, account_id: str) -> int:
    """``rebuild-balances``: the sessions holding included seconds are gone, so are their holds."""
    key = keys.bundles(account_id)
    held = [f for f in await redis.hkeys(key) if (f.decode() if isinstance(f, bytes) else f).startswith("h:")]
    if held:
        await redis.hdel(key, *held)
    return len(held)
