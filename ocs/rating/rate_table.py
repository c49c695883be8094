"""RATES and BANDS tables (docs/tariffs.md): validate every row, pure, whatever the file format.

One row parser for every format: a reader (:mod:`ocs.rating.tariff_csv` for CSV,
:mod:`ocs.rating.tariff_xlsx` for a workbook) turns the file into a
:class:`Table` of text cells and says how to name a place in it ("RATES.csv line
7: rate", "RATES.xlsx row 7, column C (rate)"); the validation below is the same
for both, so a spreadsheet is accepted exactly when the same data as CSV would be.

Every problem is reported with its place, and one bad row rejects the whole
file (the importer changes nothing), so an operator fixes the file and imports
again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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
    """The file as a whole is unusable (encoding, not a workbook, empty, header)."""


class CellError(ValueError):
    """One bad value; ``column`` lets the reader name the cell (an XLSX column letter, say)."""

    def __init__(self, column: str, detail: str) -> None:
        super().__init__(f"{column}: {detail}")
        self.column = column
        self.detail = detail


@dataclass(frozen=True)
class Table:
    """A file read as text cells: the header row, then the data rows with their numbers, blank rows left out.

    ``unit`` is how the format numbers rows ("line" for CSV, "row" for a sheet); ``letters`` maps a
    header name to its spreadsheet column letter, so an error can name the exact cell.
    """

    what: str
    unit: str
    header_at: int
    header: list[str]
    rows: list[tuple[int, list[str]]]
    letters: dict[str, str] = field(default_factory=dict)

    def where(self, number: int, column: str | None = None) -> str:
        """``RATES.csv line 7: rate`` or ``RATES.xlsx row 7, column C (rate)``."""
        base = f"{self.what} {self.unit} {number}"
        if not column:
            return base
        letter = self.letters.get(column)
        return f"{base}, column {letter} ({column})" if letter else f"{base}: {column}"


@dataclass(frozen=True)
class Parsed:
    rows: list[RateRow]
    errors: list[str]
    read: int


def _names(table: Table, allowed: tuple[str, ...], required: tuple[str, ...]) -> list[str]:
    """The validated header: known columns, the required ones present, none twice."""
    where = table.where(table.header_at)
    names = [c.lower() for c in table.header]
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise CsvError(f"{where}: unknown column {unknown[0]!r}")
    missing = [n for n in required if n not in names]
    if missing:
        raise CsvError(f"{where}: missing column {missing[0]!r}")
    if len(set(names)) != len(names):
        raise CsvError(f"{where}: duplicate column")
    return names


def _records(table: Table, names: list[str], errors: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Each data row as column -> text; a row longer than the header is an error, not a record."""
    for line, cells in table.rows:
        if len(cells) > len(names):
            errors.append(f"{table.where(line)}: {len(cells)} fields, header has {len(names)}")
            continue
        yield line, dict(zip(names, cells, strict=False))


def _message(table: Table, line: int, exc: ValueError) -> str:
    if isinstance(exc, CellError):
        return f"{table.where(line, exc.column)}: {exc.detail}"
    return f"{table.where(line)}: {exc}"


def _days(spec: str) -> frozenset[int]:
    out: set[int] = set()
    for token in spec.lower().replace(" ", "").split(","):
        lo, _, hi = token.partition("-")
        if lo not in DAYS or (hi and hi not in DAYS):
            raise CellError("days", f"bad days {spec!r}")
        a, b = DAYS.index(lo), DAYS.index(hi or lo)
        out.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(out)


def _minute(hhmm: str, *, end: bool) -> int:
    column = "end" if end else "start"
    h, sep, m = hhmm.strip().partition(":")
    if not sep or not (h.isdigit() and m.isdigit()) or len(m) != 2:
        raise CellError(column, f"bad time {hhmm!r} (HH:MM)")
    value = int(h) * 60 + int(m)
    if int(m) > 59 or value > 1440 or (value == 1440 and not end):
        raise CellError(column, f"bad time {hhmm!r}")
    return value


def _band_row(rec: dict[str, str]) -> BandInterval:
    if not rec.get("band") or rec["band"].lower() == ANY_BAND:
        raise CellError("band", "band name missing or reserved")
    start, stop = _minute(rec.get("start", ""), end=False), _minute(rec.get("end", ""), end=True)
    if start >= stop:
        raise CellError("end", "start must be before end")
    return BandInterval(rec["band"], _days(rec.get("days", "")), start, stop)


def bands_from(table: Table) -> tuple[list[BandInterval], list[str]]:
    """Every band interval of ``table``, and an error per bad row."""
    names = _names(table, BAND_COLUMNS, BAND_COLUMNS)
    out: list[BandInterval] = []
    errors: list[str] = []
    for line, rec in _records(table, names, errors):
        try:
            out.append(_band_row(rec))
        except ValueError as exc:
            errors.append(_message(table, line, exc))
    return out, errors


def _when(raw: str, tz: ZoneInfo) -> datetime | None:
    if not raw:
        return None
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        try:
            ts = datetime.combine(date.fromisoformat(raw), datetime.min.time())
        except ValueError:
            raise CellError("effective_from", f"not an ISO date: {raw!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=tz)


def _positive(raw: str, default: int, name: str) -> int:
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise CellError(name, f"must be a positive whole number, got {raw!r}")
    return int(raw)


def _amount(rec: dict[str, str], name: str, default: str) -> int:
    try:
        return money.parse(rec.get(name) or default, allow_negative=False)
    except money.MoneyError as exc:
        raise CellError(name, str(exc)) from None


def _service(raw: str) -> Service:
    try:
        return Service(raw or "voice")
    except ValueError:
        raise CellError("service", f"must be voice, data or sms, got {raw!r}") from None


def _row(rec: dict[str, str], line: int, tz: ZoneInfo, bands: set[str]) -> RateRow:
    prefix = rec.get("prefix", "")
    if not prefix.isdigit():
        raise CellError("prefix", f"must be digits, got {prefix!r}")
    if not rec.get("destination"):
        raise CellError("destination", "empty")
    service = _service(rec.get("service", ""))
    rate, fee = _amount(rec, "rate", ""), _amount(rec, "connect_fee", "0")
    first_d, next_d = DEFAULT_INCREMENTS[service]
    band = rec.get("band") or ANY_BAND
    if band.lower() == ANY_BAND:
        band = ANY_BAND
    elif band not in bands:
        raise CellError("band", f"{band!r} is not defined in the bands file (--bands)")
    return RateRow(prefix, rec["destination"], rate, fee,
                   _positive(rec.get("first_increment", ""), first_d, "first_increment"),
                   _positive(rec.get("next_increment", ""), next_d, "next_increment"),
                   band, _when(rec.get("effective_from", ""), tz), service, line)


def rates_from(table: Table, timezone: str, bands: set[str]) -> Parsed:
    """Every rate row of ``table`` validated, an error per bad row, and how many data rows were read."""
    names = _names(table, RATE_COLUMNS, REQUIRED)
    tz = ZoneInfo(timezone)
    out: list[RateRow] = []
    errors: list[str] = []
    seen: dict[tuple[object, ...], int] = {}
    for line, rec in _records(table, names, errors):
        try:
            row = _row(rec, line, tz, bands)
        except ValueError as exc:
            errors.append(_message(table, line, exc))
            continue
        key = (row.service, row.prefix, row.band, row.effective_from)
        if key in seen:
            errors.append(f"{table.where(line)}: duplicate prefix {row.prefix} band {row.band}"
                          f" effective_from {rec.get('effective_from') or '-'} (first on {table.unit} {seen[key]})")
            continue
        seen[key] = line
        out.append(row)
    if not out and not errors:
        errors.append(f"{table.what}: no rate rows")
    return Parsed(out, errors, len(table.rows))
