"""Time bands (BANDS.csv): which bands cover an instant, and when coverage can next change.

Wall-clock rules in the tariff's timezone (zoneinfo, so DST is honoured): a
band interval covers weekdays ``days`` from ``start_minute`` (inclusive) to
``end_minute`` (exclusive).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ocs.rating.tariff import BandInterval


class Calendar:
    def __init__(self, timezone: str, intervals: tuple[BandInterval, ...]) -> None:
        self.tz = ZoneInfo(timezone)
        self.by_band: dict[str, list[BandInterval]] = {}
        for iv in intervals:
            self.by_band.setdefault(iv.band, []).append(iv)
        edges = {0}
        for iv in intervals:
            edges.add(iv.start_minute * 60)
            edges.add(iv.end_minute * 60)
        self.edges = sorted(e for e in edges if e < 86400)

    def covers(self, band: str, instant: datetime) -> bool:
        local = instant.astimezone(self.tz)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        return any(day in iv.days and iv.start_minute <= minute < iv.end_minute
                   for iv in self.by_band.get(band, ()))

    def next_change(self, instant: datetime) -> datetime:
        """The next instant after ``instant`` at which band coverage may change (at most next midnight)."""
        local = instant.astimezone(self.tz)
        sec = local.hour * 3600 + local.minute * 60 + local.second
        nxt = next((e for e in self.edges if e > sec), 86400)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        wall = (midnight + timedelta(seconds=nxt)).replace(tzinfo=self.tz)
        out = wall.astimezone(UTC)
        return out if out > instant else instant + timedelta(seconds=1)


def seconds_between(start: datetime, end: datetime) -> int:
    """Whole seconds from ``start`` to ``end``, rounded up (a block starting at or after ``end``)."""
    return max(1, math.ceil((end - start).total_seconds()))
