"""RATES.csv and BANDS.csv (docs/tariffs.md): the CSV reader, and the one entry point for rate files as bytes.

:func:`parse_rates` and :func:`parse_bands` take a file's bytes and name and
read CSV or, when the bytes are a workbook, XLSX (:mod:`ocs.rating.tariff_xlsx`),
so every caller (``tariff import``, ``tariff diff``, a provider's rate sheet)
accepts both formats.  Validation is in :mod:`ocs.rating.rate_table`.
"""

from __future__ import annotations

import csv
import io

from ocs.rating import tariff_xlsx
from ocs.rating.rate_table import (
    BAND_COLUMNS,
    DAYS,
    RATE_COLUMNS,
    REQUIRED,
    CellError,
    CsvError,
    Parsed,
    Table,
    bands_from,
    rates_from,
)
from ocs.rating.tariff import BandInterval

__all__ = ["BAND_COLUMNS", "DAYS", "RATE_COLUMNS", "REQUIRED", "CellError", "CsvError", "Parsed", "Table",
           "bands_from", "csv_table", "parse_bands", "parse_rates", "table"]

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0"  # the old binary .xls container


def csv_table(data: bytes, what: str) -> Table:
    """A CSV file as a :class:`Table`; a row is numbered by the file line on which it ends."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvError(f"{what}: not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, [c.strip() for c in r]) for r in reader if any(c.strip() for c in r)]
    if not rows:
        raise CsvError(f"{what}: empty file")
    return Table(what, "line", rows[0][0], rows[0][1], rows[1:])


def table(data: bytes, what: str) -> Table:
    """``data`` as a :class:`Table`: a workbook (``.xlsx`` name or zip signature) or CSV; ``.xls`` is refused."""
    suffix = what.lower().rpartition(".")[2]
    if suffix == "xls" or data.startswith(_OLE):
        raise CsvError(f"{what}: an old binary .xls workbook; save it as .xlsx or CSV")
    if suffix == "xlsx" or data.startswith(_ZIP):
        return tariff_xlsx.xlsx_table(data, what)
    return csv_table(data, what)


def parse_bands(data: bytes, what: str = "BANDS.csv") -> tuple[list[BandInterval], list[str]]:
    return bands_from(table(data, what))


def parse_rates(data: bytes, timezone: str, bands: set[str], what: str = "RATES.csv") -> Parsed:
    return rates_from(table(data, what), timezone, bands)
