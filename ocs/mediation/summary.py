"""What an import did, line by line: imported / duplicate / rejected, as line ranges, and the rejects file.

Line numbers are kept as ranges (``2-1000001``), so the summary of a million-line file stays small
whatever happened, while still naming every line.
"""

from __future__ import annotations

import bisect
import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ocs import money
from ocs.mediation.cdr_csv import Rejected

FIRST_REJECTS = 20  # rejected lines named with their reason in the summary (the rejects file has all)


class Lines:
    """A set of line numbers, kept as merged ranges."""

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []
        self.count = 0

    def add(self, line: int) -> None:
        """Add a line not added before (each line has one outcome); any order, ranges stay merged."""
        self.count += 1
        r = self.ranges
        if r and r[-1][1] + 1 == line:  # the common case: the next line
            r[-1][1] = line
            return
        if not r or r[-1][1] < line:
            r.append([line, line])
            return
        i = bisect.bisect_left(r, [line, line])  # first range starting after the line
        prev = r[i - 1] if i > 0 else None
        nxt = r[i] if i < len(r) else None
        if prev is not None and prev[1] + 1 == line:
            prev[1] = line
            if nxt is not None and nxt[0] == line + 1:
                prev[1] = nxt[1]
                del r[i]
        elif nxt is not None and nxt[0] == line + 1:
            nxt[0] = line
        else:
            r.insert(i, [line, line])

    def __str__(self) -> str:
        return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ranges)


@dataclass
class Summary:
    source: str
    file: str
    import_id: int = 0
    imported: Lines = field(default_factory=Lines)
    duplicate: Lines = field(default_factory=Lines)
    rejected: Lines = field(default_factory=Lines)
    reasons: Counter[str] = field(default_factory=Counter)
    first_rejects: list[tuple[int, str]] = field(default_factory=list)
    charged: Counter[str] = field(default_factory=Counter)  # currency -> micro-units
    repaired: int = 0  # records a dead earlier run had charged, recorded by this run
    rejects_file: str = ""
    seconds: float = 0.0

    def reject(self, rej: Rejected) -> None:
        self.rejected.add(rej.line)
        self.reasons[rej.category] += 1
        if len(self.first_rejects) < FIRST_REJECTS:
            self.first_rejects.append((rej.line, rej.reason))

    def doc(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id, "source": self.source, "file": self.file,
            "imported": self.imported.count, "duplicate": self.duplicate.count, "rejected": self.rejected.count,
            "lines": {"imported": str(self.imported), "duplicate": str(self.duplicate),
                      "rejected": str(self.rejected)},
            "reasons": dict(self.reasons),
            "first_rejects": [{"line": n, "reason": r} for n, r in self.first_rejects],
            "charged": {c: money.format(v, places=6) for c, v in sorted(self.charged.items())},
            "repaired": self.repaired, "rejects_file": self.rejects_file, "seconds": round(self.seconds, 3),
        }

    def text(self) -> str:
        def part(name: str, lines: Lines) -> str:
            return f"{name} {lines.count}" + (f" (lines {lines})" if lines.count else "")

        out = [", ".join((part("imported", self.imported), part("duplicate", self.duplicate),
                          part("rejected", self.rejected)))]
        out += [f"  line {n}: {r}" for n, r in self.first_rejects]
        if self.rejected.count > len(self.first_rejects):
            out.append(f"  ... {self.rejected.count - len(self.first_rejects)} more")
        if self.rejected.count:
            out.append(f"rejected lines and reasons: {self.rejects_file}")
        if self.charged:
            out.append("charged: " + ", ".join(f"{money.format(v, places=6)} {c}"
                                               for c, v in sorted(self.charged.items())))
        if self.repaired:
            out.append(f"recorded {self.repaired} records an interrupted earlier import had charged")
        out.append(f"import {self.import_id} (source {self.source}) in {self.seconds:.1f} s")
        return "\n".join(out)


class RejectsFile:
    """The rejected lines, as CSV: ``line,reason`` then the file's own columns, cells as they were."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        # surrogateescape: bytes that were not UTF-8 are written back as they were read
        self._fh: TextIO = path.open("w", encoding="utf-8", errors="surrogateescape", newline="")
        self._w = csv.writer(self._fh, lineterminator="\n")
        self._w.writerow(["line", "reason", *columns])

    def write(self, rej: Rejected) -> None:
        self._w.writerow([rej.line, rej.reason, *rej.raw])

    def close(self) -> None:
        self._fh.close()
