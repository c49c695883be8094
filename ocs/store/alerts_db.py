"""Alert settings and the alert outbox in PostgreSQL: what ``ocsctl alert`` and the delivery worker ask.

Detection (the rows that enter the outbox) is :mod:`ocs.store.alert_detect`; this module is the
settings an operator writes and the outbox's life after that: lease, deliver, retry, give up,
requeue.  Money is integer micro-units.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from asyncpg.pool import PoolConnectionProxy

Conn = asyncpg.Connection | PoolConnectionProxy

EVENTS = ("low_balance", "credit_limit", "long_call", "expensive_call", "rate_change")
CHANNELS = ("email", "webhook")
STATUSES = ("pending", "delivered", "failed")


@dataclass(frozen=True)
class Settings:
    """One account's alert settings; ``None`` = that alert is off, ``""`` = no such channel."""

    account_id: str
    low_balance: int | None = None
    long_call_seconds: int | None = None
    expensive_call: int | None = None
    email: str = ""
    webhook: str = ""


async def get_settings(conn: Conn, account_id: str) -> Settings | None:
    row = await conn.fetchrow(
        "SELECT account_id, low_balance, long_call_seconds, expensive_call, email, webhook"
        " FROM alert_settings WHERE account_id = $1", account_id)
    return Settings(**dict(row)) if row is not None else None


async def put_settings(conn: Conn, s: Settings) -> None:
    """Store ``s`` whole (the caller merged it with what was there)."""
    await conn.execute(
        "INSERT INTO alert_settings (account_id, low_balance, long_call_seconds, expensive_call, email, webhook)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id) DO UPDATE SET"
        " low_balance = EXCLUDED.low_balance, long_call_seconds = EXCLUDED.long_call_seconds,"
        " expensive_call = EXCLUDED.expensive_call, email = EXCLUDED.email, webhook = EXCLUDED.webhook,"
        " updated_at = now()",
        s.account_id, s.low_balance, s.long_call_seconds, s.expensive_call, s.email, s.webhook)


async def delete_settings(conn: Conn, account_id: str) -> bool:
    return (await conn.execute("DELETE FROM alert_settings WHERE account_id = $1", account_id)) != "DELETE 0"


# Lease due rows: the chosen rows are locked (SKIP LOCKED: another node takes others), their next
# attempt is pushed past the send's time bound and the attempt counted, in one statement, so the
# sending itself holds no lock and no connection.  A rate change brings the changes it lists.
_CLAIM = """
WITH due AS (
  SELECT id FROM alert_outbox
  WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
  ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED),
claimed AS (
  UPDATE alert_outbox o SET next_attempt_at = now() + make_interval(secs => $2), attempts = o.attempts + 1
  FROM due WHERE o.id = due.id
  RETURNING o.id, o.event, o.account_id, o.subject, o.channel, o.target, o.payload, o.attempts, o.created_at)
SELECT c.id, c.event, c.account_id, c.subject, c.channel, c.target, c.payload::text AS payload, c.attempts,
       c.created_at, tc.total, tc.changes::text AS changes, tc.notes::text AS notes
FROM claimed c LEFT JOIN tariff_changes tc
  ON c.event = 'rate_change' AND tc.tariff = c.payload->>'tariff' AND tc.version = (c.payload->>'version')::int
ORDER BY c.id
"""


async def claim(conn: Conn, limit: int, lease_seconds: float) -> list[asyncpg.Record]:
    """Lease up to ``limit`` due deliveries for ``lease_seconds`` (longer than one send can take)."""
    return list(await conn.fetch(_CLAIM, limit, lease_seconds))


async def mark_delivered(conn: Conn, outbox_id: int) -> bool:
    """The server accepted it: delivered, once (False: it was marked before)."""
    status = await conn.execute(
        "UPDATE alert_outbox SET delivered_at = now(), failed_at = NULL, last_error = ''"
        " WHERE id = $1 AND delivered_at IS NULL", outbox_id)
    return status != "UPDATE 0"


async def mark_failed_attempt(conn: Conn, outbox_id: int, attempts: int, error: str, retry_in: float,
                              give_up: bool) -> None:
    """Record a failed attempt: retry after ``retry_in`` seconds, or give up (kept, requeueable).

    Only the lease holder writes (``attempts`` as claimed): a slower, older attempt of the same row
    does not overwrite what a newer one recorded.
    """
    await conn.execute(
        "UPDATE alert_outbox SET last_error = $3, next_attempt_at = now() + make_interval(secs => $4),"
        " failed_at = CASE WHEN $5 THEN now() END"
        " WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL",
        outbox_id, attempts, error[:1000], retry_in, give_up)


async def pending_count(conn: Conn) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL AND failed_at IS NULL"))


_STATUS_SQL = {
    "pending": "delivered_at IS NULL AND failed_at IS NULL",
    "delivered": "delivered_at IS NOT NULL",
    "failed": "failed_at IS NOT NULL",
}


async def outbox(conn: Conn, account_id: str | None, status: str | None, limit: int) -> list[asyncpg.Record]:
    """The latest outbox rows, newest first, optionally of one account and one status."""
    where = ["($1::text IS NULL OR account_id = $1)"]
    if status:
        where.append(_STATUS_SQL[status])
    return list(await conn.fetch(
        "SELECT id, event, account_id, subject, channel, target, created_at, attempts, next_attempt_at,"
        " last_error, delivered_at, failed_at FROM alert_outbox"
        f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT $2", account_id, limit))


async def requeue(conn: Conn, outbox_id: int | None) -> int:
    """Make given-up deliveries due now with a fresh schedule (one id, or all of them); returns how many.

    Only failed rows: a pending row may be leased by a worker sending it right now, and making it
    due again would let a second worker send it too.
    """
    status = await conn.execute(
        "UPDATE alert_outbox SET failed_at = NULL, next_attempt_at = now(), attempts = 0"
        " WHERE failed_at IS NOT NULL AND delivered_at IS NULL AND ($1::bigint IS NULL OR id = $1)", outbox_id)
    return int(status.split()[-1])
