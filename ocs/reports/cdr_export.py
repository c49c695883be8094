"""``cdr export`` as CSV, JSON, XLSX or XML, streamed: a million CDRs in bounded memory.

Rows come from a server-side cursor (one transaction, fetched in chunks) and each writer emits a
record as soon as it has it; XLSX uses XlsxWriter's constant-memory mode, which flushes every row
to its temporary file.  Columns and their order are the section 7 columns then the wholesale ones
(docs/provisioning.md, docs/wholesale.md); money with 6 decimals, times in UTC ISO 8601.

XML: ``<cdrs>`` holding one ``<cdr>`` per record with the columns as child elements, text escaped;
characters XML 1.0 cannot carry (controls from wire text) are written as ``\\xNN``.
XLSX: one sheet, typed cells: counts and money as numbers, times as dates.
"""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from typing import IO, Any, Protocol
from xml.sax.saxutils import escape

import asyncpg
import xlsxwriter

from ocs.billing import cdrs
from ocs.billing.cdrs import CDR_COLUMNS

FORMATS = ("csv", "json", "xlsx", "xml")
_MONEY = ("charge", "cost", "reseller_charge", "rerated_from")
_INTS = ("duration", "billed_seconds")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class Writer(Protocol):
    def row(self, doc: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class CsvWriter:
    def __init__(self, out: IO[str]) -> None:
        self.w = csv.writer(out, lineterminator="\n")
        self.w.writerow(CDR_COLUMNS)

    def row(self, doc: dict[str, Any]) -> None:
        self.w.writerow([doc[c] for c in CDR_COLUMNS])

    def close(self) -> None:
        pass


class JsonWriter:
    """A JSON array written one object at a time."""

    def __init__(self, out: IO[str]) -> None:
        self.out, self.first = out, True
        out.write("[")

    def row(self, doc: dict[str, Any]) -> None:
        self.out.write(("\n  " if self.first else ",\n  ") + json.dumps(doc, default=str))
        self.first = False

    def close(self) -> None:
        self.out.write("]\n" if self.first else "\n]\n")


class XmlWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        out.write('<?xml version="1.0" encoding="UTF-8"?>\n<cdrs>\n')

    @staticmethod
    def _text(value: object) -> str:
        text = "" if value is None else str(value)
        return escape(_NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text))

    def row(self, doc: dict[str, Any]) -> None:
        self.out.write("  <cdr>" + "".join(f"<{c}>{self._text(doc[c])}</{c}>" for c in CDR_COLUMNS) + "</cdr>\n")

    def close(self) -> None:
        self.out.write("</cdrs>\n")


class XlsxWriter:
    """One sheet, typed cells; constant memory (rows are flushed as they are written)."""

    def __init__(self, path: str) -> None:
        self.book = xlsxwriter.Workbook(path, {"constant_memory": True, "remove_timezone": True})
        self.sheet = self.book.add_worksheet("cdrs")
        bold = self.book.add_format({"bold": True})
        self.when = self.book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.amount = self.book.add_format({"num_format": "0.000000"})
        self.sheet.write_row(0, 0, CDR_COLUMNS, bold)
        self.sheet.set_column(0, len(CDR_COLUMNS) - 1, 14)
        self.sheet.set_column(8, 8, 20)
        self.n = 0

    def row(self, doc: dict[str, Any]) -> None:
        self.n += 1
        for c, name in enumerate(CDR_COLUMNS):
            value = doc[name]
            if name == "start_time":
                when = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
                self.sheet.write_datetime(self.n, c, when, self.when)
            elif name in _INTS:
                self.sheet.write_number(self.n, c, int(value))
            elif (name in _MONEY or name == "fx_rate") and value != "":
                self.sheet.write_number(self.n, c, float(value), self.amount if name in _MONEY else None)
            elif value not in ("", None):
                self.sheet.write_string(self.n, c, str(value))

    def close(self) -> None:
        self.book.close()


async def export(conn: asyncpg.Connection, writer: Writer, start: datetime | None, end: datetime | None,
                 account: str | None, reseller: str | None = None) -> int:
    """Stream the period's CDRs (ocs.billing.cdrs, a server-side cursor) into ``writer``; returns how many."""
    n = 0
    try:
        async with conn.transaction(readonly=True):
            async for batch in cdrs.stream(conn, start, end, account, reseller, batch=5000):
                for doc in batch:
                    writer.row(doc)
                n += len(batch)
    finally:
        writer.close()
    return n
