"""Shared helpers for bench modules: timing, percentiles, result rows, resource usage.

Kept dependency-free (no psutil): CPU time comes from resource.getrusage and
RSS from /proc/self/status so numbers mean the same on every Linux box.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Sequence
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of samples; None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered) / 100.0 - 1e-9) - 1))
    return ordered[rank]


def now() -> float:
    """Monotonic high-resolution clock in seconds."""
    return time.perf_counter()


def cpu_seconds() -> float:
    """User + system CPU seconds consumed by this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def rss_mb(pid: int | str = "self") -> float | None:
    """Resident set size in MiB from /proc of this process (or of ``pid``: the ocsd under load)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None


def row(
    name: str,
    ops: int,
    seconds: float,
    latencies_s: Sequence[float] = (),
    cpu_s: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build one result row in the suite's common shape (latencies in seconds in, ms out)."""

    def ms(q: float) -> float | None:
        p = percentile(latencies_s, q)
        return None if p is None else round(p * 1000.0, 4)

    out: dict[str, Any] = {
        "name": name,
        "ops": ops,
        "seconds": round(seconds, 4),
        "throughput": round(ops / seconds, 1) if seconds > 0 else None,
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "p999_ms": ms(99.9),
    }
    if cpu_s is not None and ops:
        out["cpu_us_per_op"] = round(cpu_s / ops * 1e6, 2)
    out["rss_mb"] = rss_mb()
    out.update(extra)
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Render rows as one aligned text table; columns are the union of keys in first-seen order."""
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _descendants(pid: int) -> list[int]:
    """pid and every process below it (``ocsd --workers``: the supervisor and its workers)."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of another process (the ocsd under load) and of every process under it.

    An ``ocsd`` with workers is a supervisor and N worker processes: its cost is their sum (and a
    reference server's is its whole tree too, so both sides are counted alike).  Children already
    reaped count through the parent's cutime/cstime.  Raises OSError when ``pid`` itself is gone.
    """
    import os
    from pathlib import Path

    total = 0.0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            if p == pid:
                raise
            continue  # a child that ended between the scan and now
        total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def tree_rss_mb(pid: int) -> float | None:
    """Resident set size of a process and every process under it (ocsd's supervisor and workers), MiB."""
    sizes = [rss_mb(p) for p in _descendants(pid)]
    return round(sum(s for s in sizes if s is not None), 1) if sizes[0] is not None else None


def product_defaults(d: Any) -> Any:
    """Run a bench's ``ocsd`` as an operator gets it, not as the test harness starts it.

    The harness pins one process and every request line logged (tests read them); the product
    default is one worker per core (``node.workers = 0``) and per-request info lines sampled at
    200 a second.  ``OCS_BENCH_WORKERS=N`` pins N workers (1: one process) to compare.
    """
    import os

    d.workers = int(os.environ.get("OCS_BENCH_WORKERS", "0"))
    d.request_lines_per_second = int(os.environ.get("OCS_BENCH_LOG_LINES", "200"))
    return d
