"""Tariff import: 100,000 CSV rows parsed, validated and COPYed as a new version (target < 10 s)."""

from __future__ import annotations

import asyncio
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


async def _run(n: int) -> dict[str, Any]:
    db = f"ocs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{db}"')
    try:
        conn = await asyncpg.connect(ADMIN.rsplit("/", 1)[0] + "/" + db)
        await migrate.migrate(conn)
        data = make_csv(n)
        t0 = time.perf_counter()
        parsed = tariff_csv.parse_rates(data, "UTC", set())
        assert not parsed.errors
        await tariffs.import_version(conn, "bench", "EUR", "UTC", parsed.rows, [])
        seconds = time.perf_counter() - t0
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.close()
    return row(f"tariff_import ({n} rows)", n, seconds, target_s=10)


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [asyncio.run(_run(20_000 if quick else 100_000))]


if __name__ == "__main__":
    print(format_table(run()))
