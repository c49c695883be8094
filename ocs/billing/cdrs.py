"""CDRs as operators read them: the export columns and one record's document, for ``ocsctl cdr export``
and the API's ``/cdrs`` (a page as JSON, the whole selection as CSV).

Money is formatted with six decimals (the records keep micro-units); the wholesale columns are
empty where they do not apply (docs/wholesale.md).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from ocs import money
from ocs.store.provision import Conn

CDR_COLUMNS = ("session_id", "account", "protocol", "service", "calling", "called", "prefix", "destination",
               "start_time", "duration", "billed_seconds", "charge", "currency", "termination_cause",
               # wholesale columns (docs/wholesale.md), empty where they do not apply
               "rate_currency", "fx_rate", "provider", "cost", "cost_currency", "reseller", "reseller_charge",
               "rerated_from")
_MONEY_OR_EMPTY = ("cost", "reseller_charge", "rerated_from")
_WHERE = ("($1::timestamptz IS NULL OR start_time >= $1) AND ($2::timestamptz IS NULL OR start_time < $2)"
          " AND ($3::text IS NULL OR account = $3) AND ($4::text IS NULL OR account IN"
          " (SELECT id FROM accounts WHERE reseller = $4))")
_ORDER = " ORDER BY start_time, session_id, rating_group"
YIELD_EVERY = 100


def _utc(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def document(r: asyncpg.Record) -> dict[str, Any]:
    f = dict(r.items())  # one C-level copy: a Record looked up by name per column costs twice as much
    return {
        **{c: f[c] for c in CDR_COLUMNS},
        "start_time": _utc(f["start_time"]), "charge": money.format(f["charge"], places=6),
        "currency": f["currency"].strip(),
        **{c: "" if f[c] is None else money.format(f[c], places=6) for c in _MONEY_OR_EMPTY},
    }


async def page(conn: Conn, start: datetime | None, end: datetime | None, account: str | None,
               reseller: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
    """CDRs starting in [start, end), of one account and/or of one reseller's accounts, in export order.

    Converted :data:`YIELD_EVERY` rows at a time with a pass through the event loop between: ocsd's
    charging path shares the loop, and a page of 1,000 would otherwise hold it for milliseconds.
    """
    rows = await conn.fetch(f"SELECT * FROM cdrs WHERE {_WHERE}{_ORDER} LIMIT $5 OFFSET $6",
                            start, end, account, reseller, limit, offset)
    out: list[dict[str, Any]] = []
    for i in range(0, len(rows), YIELD_EVERY):
        out += [document(r) for r in rows[i:i + YIELD_EVERY]]
        await asyncio.sleep(0)
    return out


async def stream(conn: Conn, start: datetime | None, end: datetime | None, account: str | None,
                 reseller: str | None, batch: int = 1000) -> AsyncIterator[list[dict[str, Any]]]:
    """The same selection in batches through a server-side cursor (the caller holds a transaction)."""
    cur = await conn.cursor(f"SELECT * FROM cdrs WHERE {_WHERE}{_ORDER}", start, end, account, reseller)
    while rows := await cur.fetch(batch):
        yield [document(r) for r in rows]


def csv_text(records: Iterable[dict[str, Any]], header: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(CDR_COLUMNS)
    for rec in records:
        w.writerow([rec[c] for c in CDR_COLUMNS])
    return buf.getvalue()
