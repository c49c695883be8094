"""Suite entry: ``python -m bench [--quick] [--json PATH] [--only NAME...]``.

Imports each known bench module that exists, calls ``run(quick)``, prints one
table and writes JSON with a machine description so results are comparable
across hosts.  Modules not written yet are reported as "not present".

After the table, a second one checks the speed issue's targets against rows of
the same run (JSON key ``targets``): "ratio diameter ocsd/OTP at N sessions"
(ocsd's CCR/s over the Erlang/OTP reference server's, N = 10, 50, 200; >= 0.5),
once with this suite's asyncio generator and once "(OTP client)" with the
Erlang/OTP diameter client of bench/erlang/ocs_gy_load.erl; "ratio radius access
ocsd/FreeRADIUS" (>= 0.25); "p99 ... at half the max (open loop)" (< 5 ms); and
"ocsd CPU per request" (<= 60 us) for a CCR at 200 sessions (I, U, U, T), a RADIUS
Access-Request (a hold), an Accounting-Request (Start, Interims, Stop), and the two
requests the issue names alone: a CCR-U and an Interim-Update (each a debit and a
re-reservation).  A target whose rows are not in the run says
"n/a".  Each ratio needs both its modules (``--only diameter
diameter_reference radius``).

Exit status 1 when a module failed, including a money check (bench/money.py)
finding the books off after a load.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import format_table
from bench.diameter import CPU_TARGET_US, P99_TARGET_MS
from bench.diameter import OPEN_LOOP as DIAMETER_OPEN_LOOP
from bench.diameter import UPDATES as DIAMETER_UPDATES
from bench.radius import INTERIM as RADIUS_INTERIM
from bench.radius import NAMES as RADIUS_NAMES
from bench.radius import OPEN_LOOP as RADIUS_OPEN_LOOP

MODULES = ("rating", "tariff_import", "redis_scripts", "flush", "memory", "diameter", "diameter_reference", "radius",
           "scaling", "fuzz", "soak", "control", "invoicing", "reports", "cdr_import",
           "rerate", "api_load")
DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"
RATIO_SESSIONS = (10, 50, 200)
DIAMETER_RATIO, RADIUS_RATIO = 0.5, 0.25
FAILURES: list[str] = []  # modules that raised in this run (the exit status)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def _cmd_version(*argv: str) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else None


def machine() -> dict[str, Any]:
    """Describe the host: results without this are not comparable."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_mb": _mem_mb(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "redis": _cmd_version("redis-server", "--version"),
        "postgresql": _cmd_version("psql", "--version"),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def run_module(name: str, quick: bool) -> list[dict[str, Any]]:
    """Run one bench module; absent or failing modules become a single status row."""
    if importlib.util.find_spec(f"bench.{name}") is None:
        return [{"name": name, "status": "not present"}]
    try:
        mod = importlib.import_module(f"bench.{name}")
        rows: list[dict[str, Any]] = mod.run(quick)
    except Exception as exc:  # one broken bench must not hide the others
        traceback.print_exc(file=sys.stderr)
        FAILURES.append(f"{name}: {type(exc).__name__}: {exc}")
        return [{"name": name, "status": f"error: {type(exc).__name__}: {exc}"}]
    return rows


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((r for r in rows if r.get("name") == name), None)


def _target(name: str, value: float | None, target: str, met: bool | None, why: str = "") -> dict[str, Any]:
    return {"name": name, "value": value, "target": target,
            "met": "n/a" if met is None else ("met" if met else "NOT MET"), **({"note": why} if why else {})}


def _ratio(rows: list[dict[str, Any]], name: str, ours: str, theirs: str, least: float) -> dict[str, Any]:
    a, b = _row(rows, ours), _row(rows, theirs)
    if a is None or b is None or not a.get("throughput") or not b.get("throughput"):
        missing = " and ".join(f'"{n}"' for n, r in ((ours, a), (theirs, b)) if r is None or not r.get("throughput"))
        return _target(name, None, f">= {least:g}", None, f"no {missing} row in this run")
    value = round(a["throughput"] / b["throughput"], 3)
    return _target(name, value, f">= {least:g}", value >= least, f"{a['throughput']:,.0f}/s over {b['throughput']:,.0f}/s")


def _at_most(rows: list[dict[str, Any]], name: str, source: str, column: str, limit: float, unit: str,
             strict: bool = False) -> dict[str, Any]:
    r = _row(rows, source)
    value = r.get(column) if r is not None else None
    if value is None:
        return _target(name, None, f"{'<' if strict else '<='} {limit:g} {unit}", None, f'no "{source}" row in this run')
    met = value < limit if strict else value <= limit
    return _target(name, value, f"{'<' if strict else '<='} {limit:g} {unit}", met, f'{column} of "{source}"')


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The speed issue's targets, each computed from rows of this run (None/"n/a" when absent)."""
    out = []
    for n in RATIO_SESSIONS:
        out.append(_ratio(rows, f"ratio diameter ocsd/OTP at {n} sessions", f"diameter CCR ({n} concurrent sessions)",
                          f"erlang reference CCR ({n} concurrent sessions)", DIAMETER_RATIO))
    for n in RATIO_SESSIONS:
        out.append(_ratio(rows, f"ratio diameter ocsd/OTP at {n} sessions (OTP client)",
                          f"diameter CCR via OTP client ({n} sessions)",
                          f"erlang reference CCR via OTP client ({n} sessions)", DIAMETER_RATIO))
    out.append(_ratio(rows, "ratio radius access ocsd/FreeRADIUS", RADIUS_NAMES["ocsd"][0],
                      RADIUS_NAMES["freeradius"][0], RADIUS_RATIO))
    out.append(_at_most(rows, "diameter p99 at half the max (open loop)", DIAMETER_OPEN_LOOP, "p99_ms",
                        P99_TARGET_MS, "ms", strict=True))
    out.append(_at_most(rows, "radius Access-Request p99 at half the max (open loop)", RADIUS_OPEN_LOOP, "p99_ms",
                        P99_TARGET_MS, "ms", strict=True))
    out.append(_at_most(rows, "ocsd CPU per request: diameter CCR at 200 sessions",
                        "diameter CCR (200 concurrent sessions)", "ocsd_cpu_us_per_ccr", CPU_TARGET_US, "us"))
    out.append(_at_most(rows, "ocsd CPU per request: radius Access-Request", RADIUS_NAMES["ocsd"][0],
                        "server_cpu_us_per_req", CPU_TARGET_US, "us"))
    out.append(_at_most(rows, "ocsd CPU per request: radius Accounting-Request", RADIUS_NAMES["ocsd"][1],
                        "server_cpu_us_per_req", CPU_TARGET_US, "us"))
    out.append(_at_most(rows, "ocsd CPU per request: diameter CCR-U only", DIAMETER_UPDATES, "ocsd_cpu_us_per_ccr",
                        CPU_TARGET_US, "us"))
    out.append(_at_most(rows, "ocsd CPU per request: radius Interim-Update only", RADIUS_INTERIM,
                        "server_cpu_us_per_req", CPU_TARGET_US, "us"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short runs (seconds)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    ap.add_argument("--only", nargs="+", choices=MODULES, metavar="NAME", help="subset of modules")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    FAILURES.clear()
    for name in args.only or MODULES:
        print(f"# running {name} ...", file=sys.stderr, flush=True)
        rows += run_module(name, args.quick)
    print(format_table(rows))
    goals = targets(rows)
    print()
    print(format_table(goals))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), "quick": args.quick, "results": rows, "targets": goals}
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)
    for failure in FAILURES:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    raise SystemExit(main())
