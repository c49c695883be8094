"""Usage records and CDRs from the stream as PostgreSQL rows, written idempotently in one transaction.

Shared by the flusher and by ``ocsctl usage retry`` (a dead letter is written the same way).  The
statement that inserts the usage rows also queues the alerts they raise
(:mod:`ocs.store.alert_detect`): same transaction, no extra statement.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ocs.store.alert_detect import USAGE_RETURNING, usage_insert_with_alerts
from ocs.wholesale.cost import CostBook
from ocs.wholesale.enrich import add_cost

Entry = tuple[str, str, dict[str, str]]  # stream, entry id, fields

USAGE_COLS = ("record_id", "account_id", "session_id", "rating_group", "request_number", "kind",
              "protocol", "service", "units", "used_total", "amount", "charged_total", "balance_after",
              "currency", "event_time", "node", "excess_units", "reseller", "reseller_amount",
              "included_units")  # bundles (010_bundles.sql)
CDR_COLS = ("record_id", "session_id", "rating_group", "account", "protocol", "service", "calling",
            "called", "prefix", "destination", "start_time", "duration", "billed_seconds", "charge",
            "currency", "termination_cause", "end_time", "node", "excess_units", "revision",
            # wholesale (007_wholesale_records.sql); stream fields carry the same names
            "rate_currency", "fx_rate", "provider", "cost", "cost_currency", "reseller", "reseller_charge",
            "rerated_from", "tariff", "tariff_version",
            "included_seconds")  # bundles (010_bundles.sql)
_INTS = {"rating_group", "request_number", "units", "used_total", "amount", "charged_total",
         "balance_after", "duration", "billed_seconds", "charge", "excess_units", "revision", "reseller_amount",
         "cost", "reseller_charge", "rerated_from", "tariff_version", "included_units", "included_seconds"}
_NULLABLE = {"balance_after", "cost", "reseller_charge", "rerated_from", "tariff_version"}
_TIMES = {"event_time", "start_time", "end_time"}


def _value(col: str, raw: str | None) -> Any:
    if col in _INTS:
        return int(raw) if raw not in (None, "") else (None if col in _NULLABLE else 0)
    if col in _TIMES:
        return datetime.fromisoformat(raw) if raw else None
    return raw or ""


def to_rows(entries: list[Entry], costs: CostBook | None = None) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Stream entries as rows; with ``costs``, a CDR that names no provider yet is priced first (in place)."""
    if costs is not None:
        for _stream, _id, f in entries:
            add_cost(f, costs)
    usage, cdrs = [], []
    for _stream, _id, f in entries:
        if f.get("t") == "c":
            cdrs.append(tuple(_value(c, f.get(c)) for c in CDR_COLS))
        else:
            usage.append(tuple(_value(c, f.get(c)) for c in USAGE_COLS))
    return usage, cdrs


_COLLIST = {"usage": ", ".join(USAGE_COLS), "cdrs": ", ".join(CDR_COLS)}
# A usage record is written once: a replay inserts nothing.  A CDR is the latest state of its session:
# the highest revision wins (a session charged again after it closed), a replay changes nothing.
_MOVE = {
    "usage": usage_insert_with_alerts(f"INSERT INTO usage ({_COLLIST['usage']}) SELECT {_COLLIST['usage']}"
                                      " FROM _in_usage ON CONFLICT (record_id) DO NOTHING", USAGE_RETURNING),
    "cdrs": f"INSERT INTO cdrs ({_COLLIST['cdrs']})"
            f" SELECT DISTINCT ON (record_id) {_COLLIST['cdrs']} FROM _in_cdrs ORDER BY record_id, revision DESC"
            " ON CONFLICT (record_id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in CDR_COLS if c != "record_id")
            + " WHERE cdrs.revision < EXCLUDED.revision",
}


# Records converted or encoded between two turns of the event loop.  The flusher shares the loop with
# the charging path: a batch of 2,000 converted in one go held every request for ~7 ms (and COPY's
# encoding as long again), the open-loop p99 of the bench (docs/performance.md).
SLICE = 200


async def _rows_in_slices(entries: list[Entry], costs: CostBook | None
                          ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """:func:`to_rows` a slice at a time, letting the loop run in between."""
    usage: list[tuple[Any, ...]] = []
    cdrs: list[tuple[Any, ...]] = []
    for i in range(0, len(entries), SLICE):
        if i:
            await asyncio.sleep(0)
        u, c = to_rows(entries[i:i + SLICE], costs)
        usage += u
        cdrs += c
    return usage, cdrs


async def write_batch(conn: asyncpg.Connection | PoolConnectionProxy, entries: list[Entry],
                      costs: CostBook | None = None) -> list[tuple[str, str]]:
    """Write a batch idempotently in one transaction (COPY into temp tables, then ON CONFLICT).

    ``costs``: the route table and provider sheets that price each CDR (:mod:`ocs.wholesale.cost`).
    Returns the (event, channel) of each alert the new usage rows queued (for ``ocs_alerts_total``).
    """
    usage, cdrs = await _rows_in_slices(entries, costs)
    alerts: list[tuple[str, str]] = []
    async with conn.transaction():
        for table, cols, rows in (("usage", USAGE_COLS, usage), ("cdrs", CDR_COLS, cdrs)):
            if not rows:
                continue
            tmp = f"_in_{table}"
            await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {tmp}"
                               f" (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            for i in range(0, len(rows), SLICE):  # one COPY per slice: each encodes ~1 ms, then the loop runs
                await conn.copy_records_to_table(tmp, records=rows[i:i + SLICE], columns=list(cols))
            if table == "usage":
                alerts = [(r[0], r[1]) for r in await conn.fetch(_MOVE[table])]
            else:
                await conn.execute(_MOVE[table])
    return alerts
