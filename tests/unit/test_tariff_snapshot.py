"""A tariff version survives the trip through its Redis snapshot unchanged (restart during an outage)."""

from __future__ import annotations

from datetime import UTC, datetime

from ocs.model import Service
from ocs.rating.tariff import BandInterval, RateRow, Tariff
from ocs.store.tariff_snapshot import decode, encode


def test_snapshot_round_trip_keeps_every_field() -> None:
    t = Tariff(
        name="retail", version=7, currency="EUR", timezone="Europe/Berlin",
        rows=(RateRow("4930", "Berlin", 60_000, 20_000, 30, 6, "peak", datetime(2026, 1, 1, 8, tzinfo=UTC),
                      Service.VOICE, 2),
              RateRow("4930", "Berlin", 30_000, 0, 60, 60, "any", None, Service.VOICE, 3),
              RateRow("10", "Data", 1_000_000, 0, 1024, 1024, "any", None, Service.DATA, 4)),
        bands=(BandInterval("peak", frozenset({0, 1, 2, 3, 4}), 480, 1080),),
    )
    assert decode(encode(t)) == t
