"""What importing a rate sheet would change: rows added, removed and changed against a tariff version, pure.

A row is identified by what the importer refuses twice in one file, (service,
prefix, band, effective_from): the same key in both is the same row, changed
when its destination, prices or increments differ.  Effective-dated rows are
separate keys on purpose: adding a future price is an added row, not a change of
today's price.  Band intervals are compared as a whole set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from ocs.rating.tariff import BandInterval, RateRow

FIELDS = ("destination", "rate", "connect_fee", "first_increment", "next_increment")
"""The values of a row an import can change, in the order a change is shown."""

Key = tuple[str, str, str, datetime]
_ALWAYS = datetime.min.replace(tzinfo=UTC)  # a row without effective_from sorts before every dated one


def key(row: RateRow) -> Key:
    """The row's identity; aware datetimes, so the same instant written in two zones is the same key."""
    return (row.service.value, row.prefix, row.band, row.effective_from or _ALWAYS)


@dataclass(frozen=True)
class Change:
    old: RateRow
    new: RateRow
    fields: tuple[str, ...]  # which of FIELDS differ


@dataclass(frozen=True)
class TariffDiff:
    added: list[RateRow]
    removed: list[RateRow]
    changed: list[Change]
    unchanged: int
    bands_added: list[BandInterval]
    bands_removed: list[BandInterval]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.bands_added or self.bands_removed)


def _band_key(b: BandInterval) -> tuple[str, list[int], int, int]:
    return (b.band, sorted(b.days), b.start_minute, b.end_minute)


def diff(old: Iterable[RateRow], new: Iterable[RateRow], old_bands: Iterable[BandInterval] = (),
         new_bands: Iterable[BandInterval] = ()) -> TariffDiff:
    """``new`` against ``old``, each list sorted by key (service, prefix, band, effective_from)."""
    before = {key(r): r for r in old}
    after = {key(r): r for r in new}
    changed: list[Change] = []
    unchanged = 0
    for k in sorted(before.keys() & after.keys()):
        o, n = before[k], after[k]
        fields = tuple(f for f in FIELDS if getattr(o, f) != getattr(n, f))
        if fields:
            changed.append(Change(o, n, fields))
        else:
            unchanged += 1
    ob, nb = set(old_bands), set(new_bands)
    return TariffDiff(
        added=[after[k] for k in sorted(after.keys() - before.keys())],
        removed=[before[k] for k in sorted(before.keys() - after.keys())],
        changed=changed, unchanged=unchanged,
        bands_added=sorted(nb - ob, key=_band_key), bands_removed=sorted(ob - nb, key=_band_key))

