"""Usage records PostgreSQL refused on their own: kept whole, listed, retried (``ocsctl usage``).

A record lands here only after the flusher bisected its batch down to that one
record and PostgreSQL still refused it (:data:`ocs.store.POSTGRES_REFUSED`).
The stream entry is acknowledged only after its dead letter is committed, so
nothing is lost; the fields are stored as ASCII JSON, where a NUL or an
undecodable octet (kept by ``surrogateescape``) survives as a ``\\u`` escape,
so a retry writes exactly what the charging script emitted.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ocs.store.usage_rows import Entry, write_batch
from ocs.wholesale.cost import CostBook

Conn = asyncpg.Connection | PoolConnectionProxy


def encode_fields(fields: dict[str, str]) -> str:
    return json.dumps(fields, ensure_ascii=True, sort_keys=True)


def decode_fields(raw: str) -> dict[str, str]:
    out = json.loads(raw)
    if not isinstance(out, dict):
        raise ValueError("dead letter fields are not a JSON object")
    return {str(k): str(v) for k, v in out.items()}


async def record_dead_letters(conn: Conn, refused: list[tuple[Entry, str]], node: str) -> None:
    """Store refused entries; an entry seen again (re-read after a crash) counts one more attempt."""
    await conn.executemany(
        "INSERT INTO usage_dead_letters(stream, entry_id, record_id, fields, error, node)"
        " VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (stream, entry_id) DO UPDATE SET attempts = usage_dead_letters.attempts + 1,"
        " error = EXCLUDED.error",
        [(stream, entry_id, _printable(f.get("record_id", "")), encode_fields(f), _printable(error), node)
         for (stream, entry_id, f), error in refused])


def _printable(value: str) -> str:
    """Text PostgreSQL will take (the record id may be what was refused): NUL and surrogates escaped."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace").replace("\0", "\\x00")


async def list_open(conn: Conn, *, include_resolved: bool = False) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT id, stream, entry_id, record_id, fields, error, node, attempts, created_at, resolved_at"
        " FROM usage_dead_letters" + ("" if include_resolved else " WHERE resolved_at IS NULL") + " ORDER BY id")
    return [_row(r) for r in rows]


def _row(r: asyncpg.Record) -> dict[str, Any]:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t is not None else None

    return {"id": r["id"], "stream": r["stream"], "entry_id": r["entry_id"], "record_id": r["record_id"],
            "fields": decode_fields(r["fields"]), "error": r["error"], "node": r["node"],
            "attempts": r["attempts"], "created_at": iso(r["created_at"]), "resolved_at": iso(r["resolved_at"])}


class DeadLetterNotFound(LookupError):
    pass


class AlreadyResolved(Exception):
    pass


async def retry(conn: Conn, dead_id: int, costs: CostBook | None = None) -> None:
    """Write one dead letter again (idempotent by record id); marks it resolved, or raises the refusal.

    The refusal is re-raised after its attempt is counted (exit 1 in the CLI, the error named).
    """
    row = await conn.fetchrow("SELECT * FROM usage_dead_letters WHERE id = $1", dead_id)
    if row is None:
        raise DeadLetterNotFound(dead_id)
    if row["resolved_at"] is not None:
        raise AlreadyResolved(dead_id)
    entry: Entry = (row["stream"], row["entry_id"], decode_fields(row["fields"]))
    try:
        await write_batch(conn, [entry], costs)  # a CDR is priced as the flusher would (docs/wholesale.md)
    except BaseException as exc:
        await conn.execute("UPDATE usage_dead_letters SET attempts = attempts + 1, error = $2 WHERE id = $1",
                           dead_id, _printable(f"{type(exc).__name__}: {exc}"))
        raise
    await conn.execute("UPDATE usage_dead_letters SET resolved_at = now() WHERE id = $1", dead_id)
