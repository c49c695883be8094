"""Provider and cost on CDR stream entries, before they become rows (docs/wholesale.md).

The fields are filled in place (``provider``, ``cost`` in micro-units, ``cost_currency``), so a
batch the flusher bisects, or a record it dead-letters, is priced once and keeps its price.
:func:`add_costs` yields to the event loop every :data:`YIELD_EVERY` CDRs: pricing is rating
work (about 20-50 us a call), and the flusher shares its loop with charging in ocsd.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime

import structlog

from ocs.model import Service
from ocs.wholesale.cost import CostBook

Fields = dict[str, str]
YIELD_EVERY = 128
log = structlog.get_logger("ocs.flush")


def add_cost(f: Fields, book: CostBook) -> bool:
    """Price one CDR's fields that name no provider yet; False when it is not a CDR to price.

    Never raises: a record the book cannot price (no route, no rate, a field it cannot read) keeps
    an empty provider and no cost.
    """
    if f.get("t") != "c" or f.get("provider") or not f.get("called") or not f.get("start_time"):
        return False
    try:
        found = book.cost_of(f["called"], datetime.fromisoformat(f["start_time"]), int(f.get("duration") or 0),
                             Service(f.get("service") or "voice"))
    except Exception as exc:  # a cost must never stop the flush
        log.error("cdr_cost_failed", record_id=f.get("record_id", ""), called=f.get("called"), error=repr(exc))
        return True
    if found is not None:
        f["provider"], f["cost"], f["cost_currency"] = found.provider, str(found.cost), found.currency
    return True


async def add_costs(fields: Iterable[Fields], book: CostBook) -> None:
    """:func:`add_cost` on each, letting the loop run between every :data:`YIELD_EVERY` priced CDRs."""
    if not book.routes:
        return  # no route table: nothing to price, not even a field to parse
    priced = 0
    for f in fields:
        if add_cost(f, book):
            priced += 1
            if priced % YIELD_EVERY == 0:
                await asyncio.sleep(0)
