"""``ocsctl tariff diff NAME RATES [--bands B] [--timezone TZ]``: what an import would change, changing nothing.

The file is read and validated exactly as ``tariff import`` would (the same
reader and row parser), so a file that diffs cleanly imports cleanly, and a bad
file is refused the same way (exit 1).  A diff is not an error: exit 0 whether or
not anything differs.  An unknown tariff is diffed against nothing (every row is
added), which is what importing it would do; the header says it is new.
"""

from __future__ import annotations

import argparse
from typing import Any
from zoneinfo import ZoneInfo

from ocs import money
from ocs.cli import rate_upload
from ocs.cli.context import Context, add_json, emit
from ocs.rating import diff
from ocs.rating.rate_table import DAYS
from ocs.rating.tariff import BandInterval, RateRow
from ocs.store import tariffs


def register(tsub: Any) -> None:
    p = tsub.add_parser("diff", help="show what importing RATES.csv|.xlsx would add, remove and change")
    p.add_argument("name")
    p.add_argument("rates")
    p.add_argument("--bands")
    p.add_argument("--timezone", help="for effective_from without offset (default: the tariff's)")
    add_json(p)
    p.set_defaults(func=diff_cmd)


def _when(row: RateRow, tz: ZoneInfo) -> str | None:
    return row.effective_from.astimezone(tz).isoformat() if row.effective_from else None


def _value(row: RateRow, name: str) -> Any:
    value = getattr(row, name)
    return money.format(value) if name in ("rate", "connect_fee") else value


def _row_doc(row: RateRow, tz: ZoneInfo) -> dict[str, Any]:
    doc = {"service": row.service.value, "prefix": row.prefix, "band": row.band, "effective_from": _when(row, tz)}
    return doc | {f: _value(row, f) for f in diff.FIELDS}


def _change_doc(c: diff.Change, tz: ZoneInfo) -> dict[str, Any]:
    return _row_doc(c.new, tz) | {"changes": {f: {"old": _value(c.old, f), "new": _value(c.new, f)}
                                              for f in c.fields}}


def _band_doc(b: BandInterval) -> dict[str, Any]:
    return {"band": b.band, "days": sorted(b.days), "start_minute": b.start_minute, "end_minute": b.end_minute}


def _place(row: RateRow, tz: ZoneInfo) -> str:
    prefix = row.prefix if row.service.value == "voice" else f"{row.prefix} ({row.service.value})"
    eff = row.effective_from.astimezone(tz).strftime("%Y-%m-%d %H:%M") if row.effective_from else "always"
    return f"{prefix:<14} {row.destination[:24]:<24} {row.band:<8} {eff:<16}"


def _prices(row: RateRow) -> str:
    return (f"rate {money.format(row.rate)}, connect_fee {money.format(row.connect_fee)},"
            f" increments {row.first_increment}/{row.next_increment}")


def _band_text(sign: str, b: BandInterval) -> str:
    days = ",".join(DAYS[d] for d in sorted(b.days))
    return (f"{sign} band {b.band} {days} {b.start_minute // 60:02d}:{b.start_minute % 60:02d}"
            f"-{b.end_minute // 60:02d}:{b.end_minute % 60:02d}")


def _text(head: str, d: diff.TariffDiff, tz: ZoneInfo) -> str:
    counts = f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed, {d.unchanged} unchanged"
    if d.bands_added or d.bands_removed:
        counts += f"; band intervals: {len(d.bands_added)} added, {len(d.bands_removed)} removed"
    lines = [f"{head}: {counts}" + ("" if not d.empty else " (no changes)")]
    lines += [f"+ {_place(r, tz)} {_prices(r)}" for r in d.added]
    lines += [f"- {_place(r, tz)} {_prices(r)}" for r in d.removed]
    for c in d.changed:
        what = ", ".join(f"{f} {_value(c.old, f)} -> {_value(c.new, f)}" for f in c.fields)
        lines.append(f"~ {_place(c.new, tz)} {what}")
    lines += [_band_text("+", b) for b in d.bands_added] + [_band_text("-", b) for b in d.bands_removed]
    return "\n".join(lines)


async def diff_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    current = await tariffs.load_tariff(await ctx.pg(), args.name)
    tz = rate_upload.timezone(args.timezone or (current.timezone if current else "UTC"))
    parsed, bands = rate_upload.read_rate_sheet(args.rates, args.bands, tz, refused="no diff")
    d = diff.diff(current.rows if current else (), parsed.rows, current.bands if current else (), bands)
    zone = ZoneInfo(tz)
    doc = {"tariff": args.name, "version": current.version if current else None, "file": args.rates,
           "timezone": tz, "rows_read": parsed.read, "unchanged": d.unchanged,
           "added": [_row_doc(r, zone) for r in d.added], "removed": [_row_doc(r, zone) for r in d.removed],
           "changed": [_change_doc(c, zone) for c in d.changed],
           "bands": {"added": [_band_doc(b) for b in d.bands_added],
                     "removed": [_band_doc(b) for b in d.bands_removed]}}
    version = f"v{current.version}" if current else "(new: every row is added)"
    emit(ctx, doc, _text(f"tariff {args.name} {version} -> {args.rates}", d, zone))
    return doc
