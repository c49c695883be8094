"""RATES.csv and BANDS.csv (docs/tariffs.md): parse and validate every row, pure.

Every problem is reported with its line number, and one bad row rejects the
whole file (the importer changes nothing), so an operator fixes the file and
imports again.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from ocs import money
from ocs.model import Service
from ocs.rating.tariff import ANY_BAND, DEFAULT_INCREMENTS, BandInterval, RateRow

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RATE_COLUMNS = ("prefix", "destination", "rate", "connect_fee", "first_increment", "next_increment",
                "band", "effective_from", "service")
REQUIRED = ("prefix", "destination", "rate")
BAND_COLUMNS = ("band", "days", "start", "end")


class CsvError(Exception):
    """The file as a whole is unusable (encoding, empty, header)."""


@dataclass(frozen=True)
class Parsed:
    rows: list[RateRow]
    errors: list[str]
    read: int


def _text(data: bytes, what: str) -> list[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvError(f"{what}: not UTF-8 (byte {exc.start})") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise CsvError(f"{what}: empty file")
    return rows


def _header(cells: list[str], allowed: tuple[str, ...], required: tuple[str, ...], what: str) -> list[str]:
    names = [c.strip().lower() for c in cells]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise CsvError(f"{what} line 1: unknown column {unknown[0]!r}")
    missing = [n for n in required if n not in names]
    if missing:
        raise CsvError(f"{what} line 1: missing column {missing[0]!r}")
    if len(set(names)) != len(names):
        raise CsvError(f"{what} line 1: duplicate column")
    return names


def _days(spec: str) -> frozenset[int]:
    out: set[int] = set()
    for token in spec.lower().replace(" ", "").split(","):
        lo, _, hi = token.partition("-")
        if lo not in DAYS or (hi and hi not in DAYS):
            raise ValueError(f"bad days {spec!r}")
        a, b = DAYS.index(lo), DAYS.index(hi or lo)
        out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(out)


def _minute(hhmm: str, *, end: bool) -> int:
    h, sep, m = hhmm.strip().partition(":")
    if not sep or not (h.isdigit() and m.isdigit()) or len(m) != 2:
        raise ValueError(f"bad time {hhmm!r} (HH:MM)")
    value = int(h) * 60 + int(m)
    if int(m) > 59 or value > 1440 or (value == 1440 and not end):
        raise ValueError(f"bad time {hhmm!r}")
    return value


def parse_bands(data: bytes, what: str = "BANDS.csv") -> tuple[list[BandInterval], list[str]]:
    rows = _text(data, what)
    names = _header(rows[0], BAND_COLUMNS, BAND_COLUMNS, what)
    out, errors = [], []
    for line, cells in enumerate(rows[1:], start=2):
        rec = dict(zip(names, (c.strip() for c in cells), strict=False))
        try:
            if not rec.get("band") or rec["band"].lower() == ANY_BAND:
                raise ValueError("band name missing or reserved")
            start, stop = _minute(rec.get("start", ""), end=False), _minute(rec.get("end", ""), end=True)
            if start >= stop:
                raise ValueError("start must be before end")
            out.append(BandInterval(rec["band"], _days(rec.get("days", "")), start, stop))
        except ValueError as exc:
            errors.append(f"{what} line {line}: {exc}")
    return out, errors


def _when(raw: str, tz: ZoneInfo) -> datetime | None:
    if not raw:
        return None
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        ts = datetime.combine(date.fromisoformat(raw), datetime.min.time())
    return ts if ts.tzinfo else ts.replace(tzinfo=tz)


def _positive(raw: str, default: int, name: str) -> int:
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise ValueError(f"{name} must be a positive whole number, got {raw!r}")
    return int(raw)


def _row(rec: dict[str, str], line: int, tz: ZoneInfo, bands: set[str]) -> RateRow:
    prefix = rec.get("prefix", "")
    if not prefix.isdigit():
        raise ValueError(f"prefix must be digits, got {prefix!r}")
    if not rec.get("destination"):
        raise ValueError("destination is empty")
    try:
        service = Service(rec.get("service") or "voice")
    except ValueError:
        raise ValueError(f"service must be voice, data or sms, got {rec['service']!r}") from None
    try:
        rate = money.parse(rec.get("rate", ""), allow_negative=False)
        fee = money.parse(rec.get("connect_fee") or "0", allow_negative=False)
    except money.MoneyError as exc:
        raise ValueError(str(exc)) from None
    first_d, next_d = DEFAULT_INCREMENTS[service]
    band = rec.get("band") or ANY_BAND
    if band.lower() == ANY_BAND:
        band = ANY_BAND
    elif band not in bands:
        raise ValueError(f"band {band!r} is not defined in BANDS.csv")
    try:
        eff = _when(rec.get("effective_from", ""), tz)
    except ValueError:
        raise ValueError(f"effective_from is not an ISO date: {rec['effective_from']!r}") from None
    return RateRow(prefix, rec["destination"], rate, fee,
                   _positive(rec.get("first_increment", ""), first_d, "first_increment"),
                   _positive(rec.get("next_increment", ""), next_d, "next_increment"),
                   band, eff, service, line)


def parse_rates(data: bytes, timezone: str, bands: set[str], what: str = "RATES.csv") -> Parsed:
    rows = _text(data, what)
    names = _header(rows[0], RATE_COLUMNS, REQUIRED, what)
    tz = ZoneInfo(timezone)
    out: list[RateRow] = []
    errors: list[str] = []
    seen: dict[tuple[object, ...], int] = {}
    for line, cells in enumerate(rows[1:], start=2):
        if len(cells) > len(names):
            errors.append(f"{what} line {line}: {len(cells)} fields, header has {len(names)}")
            continue
        rec = dict(zip(names, (c.strip() for c in cells), strict=False))
        try:
            row = _row(rec, line, tz, bands)
        except ValueError as exc:
            errors.append(f"{what} line {line}: {exc}")
            continue
        key = (row.service, row.prefix, row.band, row.effective_from)
        if key in seen:
            errors.append(f"{what} line {line}: duplicate prefix {row.prefix} band {row.band}"
                          f" effective_from {rec.get('effective_from') or '-'} (first on line {seen[key]})")
            continue
        seen[key] = line
        out.append(row)
    if not out and not errors:
        errors.append(f"{what}: no rate rows")
    return Parsed(out, errors, len(rows) - 1)
