"""A tariff and a price quote as documents: what ``ocsctl tariff show|rate --json`` prints and the API answers.

Pure (no I/O): the caller loads the tariff (:func:`ocs.store.tariffs.load_tariff`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ocs import money
from ocs.model import Service
from ocs.rating.engine import CompiledTariff
from ocs.rating.tariff import Tariff


def tariff_document(t: Tariff) -> dict[str, Any]:
    rows = [{"prefix": r.prefix, "destination": r.destination, "service": r.service.value,
             "rate": money.format(r.rate), "connect_fee": money.format(r.connect_fee),
             "first_increment": r.first_increment, "next_increment": r.next_increment, "band": r.band,
             "effective_from": r.effective_from.isoformat() if r.effective_from else None}
            for r in sorted(t.rows, key=lambda r: (r.service.value, r.prefix, r.band))]
    return {"name": t.name, "version": t.version, "currency": t.currency, "timezone": t.timezone,
            "rows": rows, "bands": [{"band": b.band, "days": sorted(b.days), "start_minute": b.start_minute,
                                     "end_minute": b.end_minute} for b in t.bands]}


def quote(compiled: CompiledTariff, number: str, at: datetime, seconds: int) -> dict[str, Any] | None:
    """The price of a voice call to ``number`` starting ``at`` lasting ``seconds``; None when not rated."""
    sel = compiled.select(number, at, Service.VOICE)
    if sel is None:
        return None
    r = compiled.rate(sel, seconds)
    blocks = [{"offset": b.offset, "seconds": b.units, "count": b.count, "band": b.band,
               "rate": money.format(b.rate), "line": b.line,
               "price": money.format(money.div_round_half_up(b.price_num, 60), places=6)} for b in r.blocks]
    return {"prefix": sel.prefix, "destination": sel.destination, "billed_seconds": r.billed_units,
            "charge": money.format(r.charge, places=6), "currency": sel.currency, "blocks": blocks,
            "connect_fee": money.format(sel.row.connect_fee, places=6), "start": at.isoformat(), "seconds": seconds}
