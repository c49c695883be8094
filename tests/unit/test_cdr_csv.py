"""Switch CDR files: header, fields, duplicate keys, line ranges (ocs/mediation, docs/wholesale.md "Mediation")."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocs.mediation.cdr_csv import CdrReader, CdrRecord, HeaderError, Rejected, parse_duration, parse_start
from ocs.mediation.summary import Lines

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _read(tmp_path: Path, text: str) -> list[CdrRecord | Rejected]:
    f = tmp_path / "f.csv"
    f.write_text(text)
    reader = CdrReader(f, now=NOW)
    try:
        return [x for chunk in reader.chunks(2) for x in chunk]
    finally:
        reader.close()


@pytest.mark.parametrize(("raw", "want"), [
    ("2026-11-02T10:00:00Z", "2026-11-02T10:00:00+00:00"),
    ("2026-11-02T11:00:00+01:00", "2026-11-02T10:00:00+00:00"),
    ("2026-11-02 10:00:00", "2026-11-02T10:00:00+00:00"),  # no offset: UTC
    (" 2026-11-02T10:00:00.250Z ", "2026-11-02T10:00:00.250000+00:00"),
])
def test_start_times_are_utc(raw: str, want: str) -> None:
    ts = parse_start(raw)
    assert ts is not None and ts.isoformat() == want


@pytest.mark.parametrize(("raw", "want"), [("61", 61), ("0", 0), ("61.2", 62), ("61.000", 61), (" 7 ", 7),
                                           ("-1", None), ("1e3", None), ("", None), ("abc", None), ("٣", None)])
def test_durations_round_fractions_up(raw: str, want: int | None) -> None:
    assert parse_duration(raw) == want


def test_header_in_any_order_and_keys(tmp_path: Path) -> None:
    got = _read(tmp_path, "\ufeffrecord_id,called,calling,duration,start_time\n"
                          "r1,4930,4915,61,2026-11-02T10:00:00Z\n"
                          ",4930,4915,61,2026-11-02T11:00:00+01:00\n"
                          ",4930,4915,61,2026-11-02T10:00:00Z\n\n")
    assert [type(x) for x in got] == [CdrRecord] * 3
    a, b, c = got
    assert isinstance(a, CdrRecord) and isinstance(b, CdrRecord) and isinstance(c, CdrRecord)
    assert a.key == "id:r1" and b.key.startswith("h:") and b.key == c.key  # same call, however written
    assert (b.line, c.line) == (3, 4)


@pytest.mark.parametrize(("header", "needle"), [
    ("start_time,calling,called", "missing column 'duration'"),
    ("start_time,calling,called,duration,cost", "unknown column 'cost'"),
    ("start_time,calling,called,duration,calling", "twice"),
])
def test_bad_headers_refuse_the_file(tmp_path: Path, header: str, needle: str) -> None:
    f = tmp_path / "h.csv"
    f.write_text(header + "\n")
    with pytest.raises(HeaderError, match=needle):
        CdrReader(f)


def test_bad_lines_are_rejected_alone(tmp_path: Path) -> None:
    got = _read(tmp_path, "start_time,calling,called,duration,account\n"
                          "2026-11-02T10:00:00Z,,4930,61,\n"           # no calling and no account
                          "2026-11-02T10:00:00Z,,4930,61,a1\n"         # account: fine
                          "2026-11-02T10:00:00Z,4915,,61,\n"
                          "2026-11-02T10:00:00Z,4915,4930,700000,\n"
                          "2026-11-02T10:00:00Z,4915\x1fx,4930,61,\n"
                          "2026-12-02T10:00:00Z,4915,4930,61,\n"
                          f"2026-11-02T10:00:00Z,{'4' * 300},4930,61,\n")
    kinds = [(x.line, x.reason.split(":")[0]) if isinstance(x, Rejected) else (x.line, "ok") for x in got]
    assert kinds == [(2, "calling"), (3, "ok"), (4, "called"), (5, "duration"), (6, "the line has a control character"),
                     (7, "start_time in the future"), (8, "calling")]


@given(st.sets(st.integers(min_value=1, max_value=200)))
def test_lines_are_merged_ranges_in_any_order(lines: set[int]) -> None:
    ls = Lines()
    for n in sorted(lines, key=lambda x: (x * 7919) % 211):  # a scrambled order
        ls.add(n)
    assert ls.count == len(lines)
    expanded = set()
    for part in filter(None, str(ls).split(",")):
        a, _, b = part.partition("-")
        expanded.update(range(int(a), int(b or a) + 1))
    assert expanded == lines
    assert all(ls.ranges[i][1] + 1 < ls.ranges[i + 1][0] for i in range(len(ls.ranges) - 1))
