"""The XLSX rate sheet reader (ocs/rating/tariff_xlsx.py): typed cells become the CSV's text, exactly."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from openpyxl import Workbook

from ocs.rating import tariff_csv, tariff_xlsx
from ocs.rating.tariff_xlsx import cell_text


def book(*rows: list[Any], more_sheets: int = 0, formats: dict[str, str] | None = None) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for r in rows:
        ws.append(r)
    for ref, fmt in (formats or {}).items():
        ws[ref].number_format = fmt
    for i in range(more_sheets):
        wb.create_sheet(f"s{i}").append(["prefix", "destination", "rate"] if i else ["junk"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_numbers_become_exact_text() -> None:
    data = book(["rate", "Prefix", "destination", "connect_fee", "first_increment", "next_increment"],
                [0.06, 49, "Germany", 0.02, 30, 6.0],
                [1e-05, 4930.0, "Berlin", 0, 60.0, 60],
                [0.123456, "0049", "Text prefix", 1, None, None])
    p = tariff_xlsx.parse_rates(data, "UTC", set())
    assert p.errors == [] and p.read == 3
    got = [(r.prefix, r.rate, r.connect_fee, r.first_increment, r.next_increment, r.line) for r in p.rows]
    assert got == [("49", 60_000, 20_000, 30, 6, 2), ("4930", 10, 0, 60, 60, 3), ("0049", 123_456, 1_000_000, 60, 60, 4)]


def test_zero_padded_number_format_keeps_leading_zeros() -> None:
    data = book(["prefix", "destination", "rate"], [49, "padded", 0.1], formats={"A2": "0000"})
    assert [r.prefix for r in tariff_xlsx.parse_rates(data, "UTC", set()).rows] == ["0049"]


@pytest.mark.parametrize(("cell", "column", "want"), [
    (1 / 3, "rate", "must not be accepted"), (0.0000001, "rate", "more than 6 decimals"),
    ("abc", "rate", "not a decimal amount: 'abc'"), (True, "rate", "not a decimal amount: 'TRUE'"),
    (float("nan"), "rate", "not a decimal amount"), (1e20, "rate", "not a decimal amount: '1e+20'"),
    (49.5, "prefix", "must be digits, got '49.5'"), (1.2345678901234567e16, "prefix", "must be digits"),
    (-49, "prefix", "must be digits, got '-49'"), (date(2026, 1, 1), "prefix", "must be digits"),
    (30.5, "first_increment", "positive whole number, got '30.5'"), ("soon", "effective_from", "not an ISO date"),
])
def test_bad_cell_names_row_and_column(cell: Any, column: str, want: str) -> None:
    header = ["prefix", "destination", "rate", "first_increment", "effective_from"]
    good = [49, "Germany", 0.06, 60, None]
    bad = list(good)
    bad[header.index(column)] = cell
    data = book(header, good, [], ["33", "France", 0.1, 60, None], bad)
    p = tariff_xlsx.parse_rates(data, "UTC", set())
    letter = "ABCDE"[header.index(column)]
    assert len(p.errors) == 1 and len(p.rows) == 2, p.errors
    assert p.errors[0].startswith(f"RATES.xlsx row 5, column {letter} ({column}): "), p.errors
    if want != "must not be accepted":
        assert want in p.errors[0]


def test_error_column_follows_header_order() -> None:
    p = tariff_xlsx.parse_rates(book(["destination", "prefix", "rate"], ["DE", "49", "x"]), "UTC", set())
    assert p.errors == ["RATES.xlsx row 2, column C (rate): not a decimal amount: 'x'"]


def test_empty_rows_skipped_and_numbering_kept() -> None:
    data = book([], [None, None], ["prefix", "destination", "rate"], [], ["", "  ", None], [49, "DE", 0.1],
                [None], [33, "FR", 0.2])
    p = tariff_xlsx.parse_rates(data, "UTC", set())
    assert p.errors == [] and p.read == 2 and [r.line for r in p.rows] == [6, 8]
    with pytest.raises(tariff_csv.CsvError, match=r"RATES\.xlsx row 2: missing column 'rate'"):
        tariff_xlsx.parse_rates(book([], ["prefix", "destination"]), "UTC", set())


def test_first_sheet_only() -> None:
    data = book(["prefix", "destination", "rate"], [49, "DE", 0.1], more_sheets=2)
    p = tariff_xlsx.parse_rates(data, "UTC", set())
    assert p.errors == [] and [r.prefix for r in p.rows] == ["49"]


def test_dates_as_cells_or_text() -> None:
    data = book(["prefix", "destination", "rate", "effective_from"],
                [49, "DE", 0.1, date(2026, 1, 1)], [49, "DE", 0.2, datetime(2026, 2, 1, 8, 30)],
                [49, "DE", 0.3, "2026-03-01"], [49, "DE", 0.4, "2026-04-01T00:00:00+00:00"])
    p = tariff_xlsx.parse_rates(data, "Europe/Berlin", set())
    assert p.errors == []
    got = [r.effective_from.astimezone(UTC) for r in p.rows if r.effective_from]
    assert got == [datetime(2025, 12, 31, 23, 0, tzinfo=UTC), datetime(2026, 2, 1, 7, 30, tzinfo=UTC),
                   datetime(2026, 2, 28, 23, 0, tzinfo=UTC), datetime(2026, 4, 1, 0, 0, tzinfo=UTC)]


def test_duplicate_and_overlong_rows() -> None:
    data = book(["prefix", "destination", "rate"], [49, "DE", 0.1], [49.0, "DE", 0.2], [33, "FR", 0.1, None, "x"])
    p = tariff_xlsx.parse_rates(data, "UTC", set())
    assert p.errors == ["RATES.xlsx row 3: duplicate prefix 49 band any effective_from - (first on row 2)",
                        "RATES.xlsx row 4: 5 fields, header has 3"]


def test_same_rows_as_csv() -> None:
    csv = (b"prefix,destination,rate,connect_fee,first_increment,next_increment,band,effective_from\n"
           b"49,Germany,0.06,0.02,30,6,peak,2026-01-01\n4930,Berlin,0.05,0,60,60,any,\n")
    data = book(["prefix", "destination", "rate", "connect_fee", "first_increment", "next_increment", "band",
                 "effective_from"],
                [49, "Germany", 0.06, 0.02, 30, 6, "peak", date(2026, 1, 1)],
                [4930, "Berlin", 0.05, 0, 60, 60, "any", None])
    from_xlsx, from_csv = tariff_xlsx.parse_rates(data, "UTC", {"peak"}), tariff_csv.parse_rates(csv, "UTC", {"peak"})
    assert (from_xlsx.rows, from_xlsx.read, from_xlsx.errors) == (from_csv.rows, from_csv.read, []) and from_csv.rows


def test_csv_entry_point_reads_workbooks_too() -> None:
    data = book(["prefix", "destination", "rate"], [49, "DE", 0.06])
    for name in ("RATES.xlsx", "upload.bin"):  # by suffix, or by the zip signature
        assert [r.rate for r in tariff_csv.parse_rates(data, "UTC", set(), name).rows] == [60_000]
    with pytest.raises(tariff_csv.CsvError, match=r"old binary \.xls workbook"):
        tariff_csv.parse_rates(b"\xd0\xcf\x11\xe0", "UTC", set(), "RATES.xls")
    assert tariff_csv.parse_rates(b"prefix,destination,rate\n49,DE,x\n", "UTC", set()).errors == [
        "RATES.csv line 2: rate: not a decimal amount: 'x'"]


def test_bands_sheet() -> None:
    data = book(["band", "days", "start", "end"], ["peak", "mon-fri", time(8, 0), "20:00"],
                ["night", "sat,sun", "00:00", timedelta(hours=24)], ["bad", "mon", time(8, 0, 30), "09:00"])
    bands, errors = tariff_xlsx.parse_bands(data)
    assert [(b.band, b.start_minute, b.end_minute) for b in bands] == [("peak", 480, 1200), ("night", 0, 1440)]
    assert errors == ["BANDS.xlsx row 4, column C (start): bad time '08:00:30' (HH:MM)"]


@pytest.mark.parametrize(("data", "want"), [
    (b"prefix,destination,rate\n49,DE,0.1\n", r"not a readable \.xlsx workbook"),
    (b"PK\x03\x04garbage", r"not a readable \.xlsx workbook"),
])
def test_not_a_workbook(data: bytes, want: str) -> None:
    with pytest.raises(tariff_csv.CsvError, match=want):
        tariff_xlsx.parse_rates(data, "UTC", set())


def test_zip_without_sheets_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hello.txt", "not a workbook")
    with pytest.raises(tariff_csv.CsvError, match=r"RATES\.xlsx: not a readable"):
        tariff_xlsx.parse_rates(out.getvalue(), "UTC", set())


def test_empty_sheet() -> None:
    with pytest.raises(tariff_csv.CsvError, match=r"RATES\.xlsx: empty sheet"):
        tariff_xlsx.parse_rates(book([], [None]), "UTC", set())


@pytest.mark.parametrize(("value", "column", "want"), [
    (None, "rate", ""), ("  x ", "destination", "x"), (0.06, "rate", "0.06"), (0.1 + 0.2, "rate", "0.30000000000000004"),
    (2.5e-06, "rate", "0.0000025"), (12.0, "rate", "12"), (7, "prefix", "7"), (float("inf"), "rate", "inf"), (float("nan"), "rate", "nan"),
    (datetime(2026, 1, 2, 3, 4), "effective_from", "2026-01-02T03:04:00"), (datetime(1899, 12, 30, 8, 0), "start", "08:00"),
    (time(20, 0), "end", "20:00"), (timedelta(hours=24), "end", "24:00"), (False, "band", "FALSE"),
])
def test_cell_text(value: Any, column: str, want: str) -> None:
    assert cell_text(value, column) == want
