"""Switch CDR files (``start_time,calling,called,duration[,account][,record_id]``) read in chunks.

Pure parsing, no stores: each data line becomes a :class:`CdrRecord` or a :class:`Rejected` with the
line number and the reason, so one bad line never stops a file of a million good ones.  The header
is checked before anything else (a file whose header is wrong is refused whole, nothing imported).

Why each check (docs/wholesale.md, "Mediation"):

- control characters and undecodable bytes are refused: the values go into a packed script argument
  and into records other tools read; a record the switch garbled is better looked at by a person;
- a start time without an offset is UTC (switches in carriers' networks log UTC), with an offset it
  is converted; a start in the future is refused (a clock or a file that is wrong);
- a duration may carry fractions (``61.2``): fractions of a second round up (the rating rules);
  more than :data:`MAX_DURATION` seconds is refused as implausible;
- the key that makes a record a duplicate is ``id:<record_id>`` when the file has record ids, else
  ``h:`` and a hash of calling, called, start time (UTC, canonical) and duration: the same call
  written twice by a switch without ids is still the same call.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

REQUIRED = ("start_time", "calling", "called", "duration")
OPTIONAL = ("account", "record_id")
MAX_DURATION = 7 * 86_400
MAX_FIELD = 256  # characters of any field
MAX_RECORD_ID = 128
HEADER_HINT = "start_time,calling,called,duration[,account][,record_id]"

_BAD_CHARS = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")  # control characters; undecodable bytes (surrogateescape)
_DURATION = re.compile(r"^([0-9]{1,9})(?:\.([0-9]{1,6}))?$")


class HeaderError(ValueError):
    """The file cannot be imported at all (empty, wrong header, not CSV): refused whole."""


@dataclass(slots=True)
class CdrRecord:
    """One call as the switch wrote it, validated; ``start`` is UTC."""

    line: int
    start: datetime
    calling: str
    called: str
    duration: int
    account: str
    record_id: str
    raw: list[str]
    key: str = ""

    def start_iso(self) -> str:
        return self.start.isoformat()

    def end_iso(self) -> str:
        return (self.start + timedelta(seconds=self.duration)).isoformat()


@dataclass(slots=True)
class Rejected:
    """A line not imported: its number, why (``category``: a short name counted in the summary), the cells."""

    line: int
    category: str
    reason: str
    raw: list[str]


Parsed = CdrRecord | Rejected


def record_key(rec: CdrRecord) -> str:
    """The duplicate key within a source (module docstring)."""
    if rec.record_id:
        return "id:" + rec.record_id
    content = f"{rec.calling}\x1f{rec.called}\x1f{rec.start_iso()}\x1f{rec.duration}"
    return "h:" + hashlib.blake2b(content.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def parse_start(raw: str) -> datetime | None:
    """ISO 8601; no offset means UTC.  None: not a time."""
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        try:
            ts = datetime.fromisoformat(raw.strip())
        except ValueError:
            return None
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


def parse_duration(raw: str) -> int | None:
    """Whole seconds, fractions rounded up; None: not a non-negative decimal."""
    if raw.isdigit() and raw.isascii() and len(raw) < 10:  # the common case, fast
        return int(raw)
    m = _DURATION.match(raw.strip())
    if m is None:
        return None
    whole = int(m.group(1))
    return whole + 1 if m.group(2) and int(m.group(2)) else whole


def _header(cells: list[str]) -> list[str]:
    names = [c.strip().lower() for c in cells]
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    unknown = [n for n in names if n not in REQUIRED + OPTIONAL]
    if unknown:
        raise HeaderError(f"header: unknown column {unknown[0]!r} (expected {HEADER_HINT})")
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise HeaderError(f"header: column {dup!r} twice")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise HeaderError(f"header: missing column {missing[0]!r} (expected {HEADER_HINT})")
    return names


class CdrReader:
    """A CDR file opened and its header checked; :meth:`chunks` streams the records in order."""

    def __init__(self, path: Path, now: datetime | None = None) -> None:
        self.path = path
        self.now = now or datetime.now(UTC)
        # surrogateescape: a line with bytes that are not UTF-8 is rejected alone, not the whole file
        self._fh: TextIO = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
        self._rows = csv.reader(self._fh)
        try:
            first = next(self._rows, None)
        except csv.Error as exc:
            self.close()
            raise HeaderError(f"line 1: {exc}") from None
        if first is None:
            self.close()
            raise HeaderError("empty file (expected a header: " + HEADER_HINT + ")")
        try:
            self.columns = _header(first)
        except HeaderError:
            self.close()
            raise
        self._idx = [self.columns.index(c) if c in self.columns else -1 for c in REQUIRED + OPTIONAL]

    def close(self) -> None:
        self._fh.close()

    def chunks(self, size: int) -> Iterator[list[Parsed]]:
        """Lists of at most ``size`` parsed lines (blank lines skipped); bounded memory."""
        out: list[Parsed] = []
        rows = self._rows
        while True:
            try:
                row = next(rows, None)
            except csv.Error as exc:
                out.append(Rejected(rows.line_num, "bad line", f"not CSV: {exc}", []))
                continue
            if row is None:
                break
            if not row:
                continue
            out.append(self.parse(row, rows.line_num))
            if len(out) >= size:
                yield out
                out = []
        if out:
            yield out

    def parse(self, row: list[str], line: int) -> Parsed:
        if len(row) != len(self.columns):
            return Rejected(line, "bad line", f"{len(row)} fields, the header has {len(self.columns)}", row)
        joined = "".join(row)
        bad = _BAD_CHARS.search(joined)
        if bad is not None:
            what = "bytes that are not UTF-8" if bad.group() >= "\udc80" else "a control character"
            return Rejected(line, "bad field", f"the line has {what}", row)
        i = self._idx
        start_raw, calling, called, duration_raw = row[i[0]], row[i[1]].strip(), row[i[2]].strip(), row[i[3]]
        account = row[i[4]].strip() if i[4] >= 0 else ""
        record_id = row[i[5]].strip() if i[5] >= 0 else ""
        problem = _check(start_raw, calling, called, duration_raw, account, record_id, len(joined))
        if problem:
            return Rejected(line, "bad field", problem, row)
        start, duration = parse_start(start_raw), parse_duration(duration_raw)
        if start is None:
            return Rejected(line, "bad field", f"start_time: not an ISO 8601 time: {start_raw!r}", row)
        if start > self.now:
            return Rejected(line, "bad field", f"start_time in the future: {start_raw!r}", row)
        if duration is None or duration > MAX_DURATION:
            return Rejected(line, "bad field", f"duration: not whole seconds from 0 to {MAX_DURATION}: "
                                               f"{duration_raw!r}", row)
        rec = CdrRecord(line, start, calling, called, duration, account, record_id, row)
        rec.key = "id:" + record_id if record_id else record_key(rec)
        return rec


def _check(start: str, calling: str, called: str, duration: str, account: str, record_id: str, total: int) -> str:
    """The first problem of a line's text fields ('' when none); ``total``: the line's length."""
    if not called:
        return "called: empty"
    if not calling and not account:
        return "calling: empty and no account"
    if total <= MAX_RECORD_ID:  # the common case: no field can be too long
        return ""
    if len(record_id) > MAX_RECORD_ID:
        return f"record_id: longer than {MAX_RECORD_ID} characters"
    for name, value in (("start_time", start), ("calling", calling), ("called", called),
                        ("duration", duration), ("account", account)):
        if len(value) > MAX_FIELD:
            return f"{name}: longer than {MAX_FIELD} characters"
    return ""
