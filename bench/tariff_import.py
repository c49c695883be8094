"""Tariff import: 100,000 rows, CSV and XLSX, parsed, validated and COPYed as a new version (target < 10 s)."""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from typing import Any

import asyncpg

from bench.common import format_table, row
from ocs.rating import tariff_csv
from ocs.store import migrate, tariffs

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def make_csv(n: int) -> bytes:
    rnd = random.Random(3)
    prefixes = sorted({str(rnd.randint(10, 99)) + str(rnd.randint(0, 10**8)) for _ in range(n * 2)})[:n]
    lines = ["prefix,destination,rate,connect_fee,first_increment,next_increment"]
    lines += [f"{p},Destination {i},0.{rnd.randint(1, 999999):06d},0.01,30,6" for i, p in enumerate(prefixes)]
    return ("\n".join(lines) + "\n").encode()


def make_xlsx(n: int) -> bytes:
    """The same rows as :func:`make_csv` as a workbook, numbers as number cells (as Excel saves them).

    Not openpyxl's write-only mode: it leaves out the sheet's ``<dimension>``, which Excel and
    LibreOffice always write, and without it openpyxl reads the whole sheet once more to size it.
    """
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    assert ws is not None
    lines = make_csv(n).decode().splitlines()
    ws.append(lines[0].split(","))
    for line in lines[1:]:
        prefix, dest, rate, fee, first, nxt = line.split(",")
        ws.append([int(prefix), dest, float(rate), float(fee), int(first), int(nxt)])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def _run(n: int, fmt: str = "csv") -> dict[str, Any]:
    db = f"ocs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    try:
        conn = await asyncpg.connect(ADMIN.rsplit("/", 1)[0] + "/" + db)
        await migrate.migrate(conn)
        data = make_xlsx(n) if fmt == "xlsx" else make_csv(n)
        t0, c0 = time.perf_counter(), time.process_time()
        parsed = tariff_csv.parse_rates(data, "UTC", set(), f"RATES.{fmt}")
        assert not parsed.errors and len(parsed.rows) == n, parsed.errors[:3]
        t_parse, cpu_parse = time.perf_counter() - t0, time.process_time() - c0
        await tariffs.import_version(conn, "bench", "EUR", "UTC", parsed.rows, [])
        seconds = time.perf_counter() - t0
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return row(f"tariff_import ({n} rows, {fmt})", n, seconds, target_s=10, parse_s=round(t_parse, 2),
               parse_cpu_s=round(cpu_parse, 2),
               file_mb=round(len(data) / 1e6, 1))


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 20_000 if quick else 100_000
    return [asyncio.run(_run(n)), asyncio.run(_run(n, "xlsx"))]


if __name__ == "__main__":
    print(format_table(run()))
