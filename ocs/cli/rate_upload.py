"""Read a rate sheet and its bands from the paths an operator gives, CSV or XLSX (docs/tariffs.md).

The one entry point for every verb that takes RATES/BANDS files (``tariff import``,
``tariff diff``, a provider's rate sheet): the format is chosen by the file itself
(:func:`ocs.rating.tariff_csv.table`: an .xlsx suffix or a zip signature is a
workbook, an old binary .xls is refused with a hint, anything else is CSV) and
the rows go through the one row parser of :mod:`ocs.rating.rate_table`, so every
verb accepts and refuses the same files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ocs.cli.context import Refused
from ocs.rating import rate_table, tariff_csv
from ocs.rating.tariff import BandInterval


def timezone(name: str) -> str:
    """``name`` if it is an IANA timezone, else :class:`Refused` (effective_from without offset is read in it)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Refused(f"--timezone: unknown timezone {name!r}") from None
    return name


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror}") from None


def _table(path: str) -> rate_table.Table:
    """``path`` as a table of text cells, CSV or XLSX; an unusable file is :class:`Refused`."""
    try:
        return tariff_csv.table(_read(path), Path(path).name)
    except rate_table.CsvError as exc:
        raise Refused(str(exc)) from None


def read_rate_sheet(rates: str, bands: str | None, timezone: str, *, refused: str = "nothing imported",
                    ) -> tuple[rate_table.Parsed, list[BandInterval]]:
    """The validated rows of ``rates`` (CSV or XLSX) and the intervals of ``bands``, or :class:`Refused`.

    Every problem of either file is found: the first is the refusal's one line (with the count
    and ``refused``, what did not happen), the others go to stderr before it.
    """
    try:
        intervals, errors = ([], []) if not bands else rate_table.bands_from(_table(bands))
        parsed = rate_table.rates_from(_table(rates), timezone, {b.band for b in intervals})
    except rate_table.CsvError as exc:
        raise Refused(str(exc)) from None
    errors += parsed.errors
    if errors:
        for e in errors[1:]:
            print(f"ocsctl: {e}", file=sys.stderr)
        raise Refused(f"{errors[0]} ({len(errors)} rejected of {parsed.read} rows read; {refused})")
    return parsed, intervals

