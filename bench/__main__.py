"""Suite entry: ``python -m bench [--quick] [--json PATH] [--only NAME...]``.

Imports each known bench module that exists, calls ``run(quick)``, prints one
table and writes JSON with a machine description so results are comparable
across hosts.  Modules not written yet are reported as "not present".
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

MODULES = ("rating", "tariff_import", "redis_scripts", "flush", "memory", "diameter", "diameter_reference", "radius",
           "scaling", "fuzz", "soak", "control", "invoicing", "reports", "cdr_import",
           "rerate", "api_load")
DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"


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
        return [{"name": name, "status": f"error: {type(exc).__name__}: {exc}"}]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short runs (seconds)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    ap.add_argument("--only", nargs="+", choices=MODULES, metavar="NAME", help="subset of modules")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for name in args.only or MODULES:
        print(f"# running {name} ...", file=sys.stderr, flush=True)
        rows += run_module(name, args.quick)
    print(format_table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine(), "quick": args.quick, "results": rows}
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
