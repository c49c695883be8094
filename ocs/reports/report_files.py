"""A usage report as a terminal table, CSV, JSON or an XLSX workbook (typed cells).

The table is what an operator reads in a shell; CSV and XLSX are what accounting opens.  In the
workbook numbers are numbers (counts as integers, amounts as 6-decimal numbers formatted to 2
places, rates as percent/seconds) so a spreadsheet can sum them; money stays exact in CSV/JSON,
which carry the decimal strings of every ocsctl amount.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import xlsxwriter

from ocs.reports.usage_report import COLUMNS, TOTAL

FORMATS = ("table", "json", "csv", "xlsx")
_NUMERIC = {"attempts", "answered", "minutes", "asr", "acd", "revenue", "cost", "profit"}


def header(by: str) -> list[str]:
    return [by, *COLUMNS]


def rows(by: str, docs: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [[d["group"], *(d[c] for c in COLUMNS)] for d in docs]


def as_table(by: str, docs: Sequence[dict[str, Any]]) -> str:
    """Aligned columns: text left, numbers right; a rule above the totals."""
    head = header(by)
    body = [[str(v) for v in row] for row in rows(by, docs)]
    widths = [max(len(head[i]), *(len(r[i]) for r in body)) if body else len(head[i]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.rjust(widths[i]) if head[i] in _NUMERIC else cell.ljust(widths[i]))
        return "  ".join(out).rstrip()

    text = [line(head), line(["-" * w for w in widths])]
    ruled = False
    for row in body:
        if row[0] == TOTAL and not ruled:
            text.append(line(["-" * w for w in widths]))
            ruled = True
        text.append(line(row))
    if not body:
        text.append("(no usage in this period)")
    return "\n".join(text)


def as_csv(by: str, docs: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header(by))
    w.writerows(rows(by, docs))
    return buf.getvalue()


def as_json(by: str, docs: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    return json.dumps({**meta, "by": by, "lines": [d for d in docs if d["group"] != TOTAL],
                       "totals": [d for d in docs if d["group"] == TOTAL]}, indent=2)


def write_xlsx(path: str, by: str, docs: Sequence[dict[str, Any]], title: str) -> None:
    """One sheet: a title row, the header, one row per line; numbers typed, totals in bold."""
    book = xlsxwriter.Workbook(path, {"constant_memory": True})
    try:
        sheet = book.add_worksheet("report")
        bold = book.add_format({"bold": True})
        fmt = {"attempts": book.add_format({"num_format": "#,##0"}),
               "answered": book.add_format({"num_format": "#,##0"}),
               "minutes": book.add_format({"num_format": "#,##0.00"}),
               "asr": book.add_format({"num_format": "0.00"}),
               "acd": book.add_format({"num_format": "0.0"}),
               **{c: book.add_format({"num_format": "#,##0.00####"}) for c in ("revenue", "cost", "profit")}}
        sheet.write_row(0, 0, [title], bold)
        head = header(by)
        sheet.write_row(1, 0, head, bold)
        sheet.set_column(0, 0, 24)
        sheet.set_column(1, len(head) - 1, 13)
        for r, row in enumerate(rows(by, docs), start=2):
            for c, value in enumerate(row):
                name = head[c]
                if name in _NUMERIC and value != "":
                    sheet.write_number(r, c, float(Decimal(str(value))), fmt[name])
                else:
                    sheet.write_string(r, c, str(value), bold if row[0] == TOTAL and c == 0 else None)
    finally:
        book.close()
