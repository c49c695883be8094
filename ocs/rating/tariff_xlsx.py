"""RATES.xlsx and BANDS.xlsx: the first sheet of a workbook read as the same table as the CSV, pure.

Why a conversion per cell: a spreadsheet types its cells, and the types lose what
the CSV text keeps.  Numbers are IEEE doubles (``0.06`` is stored as
0.059999999999999997779...), so a number becomes the shortest decimal that
reads back as the same double (``repr``) and then passes the same exact-decimal
check as CSV text: a cell holding ``0.06`` gives exactly 0.060000, one holding
``0.1 + 0.2`` (0.30000000000000004) is refused as more than 6 decimals, never
rounded.  A whole number stored as a double (``4930.0``) is the digits
``4930``; a number cell drops leading zeros, so a prefix keeps them only as a
text cell or under a ``0000``-style number format, which is honoured.  Dates
become ISO text, times ``HH:MM``.  After that the rows go through the one row
parser of :mod:`ocs.rating.rate_table`, and an error names the row and the
column letter of the cell.

openpyxl reads in read-only (streaming) mode with cached formula values; the
sheet's stored dimensions are ignored (writers other than Excel get them wrong).
"""

from __future__ import annotations

import io
import math
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import ParseError

from ocs.rating.rate_table import CsvError, Parsed, Table, bands_from, rates_from
from ocs.rating.tariff import BandInterval

_EXACT = 2 ** 53  # every integer below this is exact in a double
_ZEROS = re.compile(r"^0+$")
_UNREADABLE = (zipfile.BadZipFile, KeyError, ValueError, TypeError, IndexError, ParseError, EOFError, OSError)
"""What openpyxl raises on a damaged or foreign file (with its own InvalidFileException)."""


def _number(value: int | float, column: str, number_format: str) -> str:
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= _EXACT:
            return repr(value)  # not an exact amount: refused by the row parser rather than guessed
        if not value.is_integer():
            return format(Decimal(repr(value)), "f")  # repr: the shortest decimal of this double
        value = int(value)
    digits = str(value)
    if column == "prefix" and value >= 0 and _ZEROS.match(number_format):
        digits = digits.zfill(len(number_format))
    return digits


def _clock(value: datetime | time) -> str:
    if value.second or value.microsecond:
        return value.isoformat()
    return f"{value.hour:02d}:{value.minute:02d}"


def cell_text(value: Any, column: str, number_format: str = "General") -> str:
    """The CSV text a cell stands for (see the module docstring for why each type maps as it does)."""
    kind = type(value)  # exact types first: this runs once per cell (600,000 times for 100k rows)
    if kind is str:
        return str(value).strip()
    if value is None:
        return ""
    if kind is int and number_format == "General":
        return str(value)
    if kind is bool:
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return _number(value, column, number_format)
    if isinstance(value, datetime):
        return _clock(value) if column in ("start", "end") else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time):
        return _clock(value)
    if isinstance(value, timedelta) and value.total_seconds() >= 0 and value.total_seconds() % 60 == 0:
        minutes = int(value.total_seconds()) // 60  # a [h]:mm cell, the only way to write 24:00
        return f"{minutes // 60:02d}:{minutes % 60:02d}"
    return str(value).strip()


def _rows(data: bytes, what: str) -> Iterator[Sequence[Any]]:
    """The first sheet's rows as openpyxl cells; an unreadable workbook is a :class:`CsvError`."""
    from openpyxl import load_workbook  # imported here: openpyxl costs a few hundred ms, CSV files never need it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (*_UNREADABLE, InvalidFileException) as exc:
        raise CsvError(f"{what}: not a readable .xlsx workbook ({type(exc).__name__}: {exc})") from None
    try:
        if not book.worksheets:
            raise CsvError(f"{what}: the workbook has no worksheet")
        sheet = book.worksheets[0]
        sheet.reset_dimensions()
        yield from sheet.iter_rows()
    except _UNREADABLE as exc:
        raise CsvError(f"{what}: unreadable sheet ({type(exc).__name__}: {exc})") from None
    finally:
        book.close()


def _format(cell: Any) -> str:
    """The cell's number format; looked up only for prefixes (the one column it changes), it is not free."""
    return getattr(cell, "number_format", None) or "General"


def _trimmed(cells: list[str]) -> list[str]:
    end = len(cells)
    while end and not cells[end - 1]:
        end -= 1
    return cells[:end]


def xlsx_table(data: bytes, what: str) -> Table:
    """The first sheet of a workbook as a :class:`Table`: the first non-blank row is the header."""
    header: list[str] = []
    header_at = 0
    rows: list[tuple[int, list[str]]] = []
    with warnings.catch_warnings():  # openpyxl warns about styles it does not need; one error line only
        warnings.simplefilter("ignore")
        for number, cells in enumerate(_rows(data, what), start=1):
            if not header:
                header, header_at = _trimmed([cell_text(c.value, "") for c in cells]), number
                names = [h.lower() for h in header]
                names += [""] * (len(cells) - len(names))
                continue
            names += [""] * (len(cells) - len(names))
            text = _trimmed([cell_text(c.value, names[i], _format(c) if names[i] == "prefix" else "General")
                             for i, c in enumerate(cells)])
            if text:
                rows.append((number, text))
    if not header:
        raise CsvError(f"{what}: empty sheet")
    from openpyxl.utils import get_column_letter

    letters = {h.lower(): get_column_letter(i + 1) for i, h in enumerate(header)}
    return Table(what, "row", header_at, header, rows, letters)


def parse_rates(data: bytes, timezone: str, bands: set[str], what: str = "RATES.xlsx") -> Parsed:
    return rates_from(xlsx_table(data, what), timezone, bands)


def parse_bands(data: bytes, what: str = "BANDS.xlsx") -> tuple[list[BandInterval], list[str]]:
    return bands_from(xlsx_table(data, what))
