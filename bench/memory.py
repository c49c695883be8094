"""Memory per active session: Redis bytes (session hash, expiry and origin entries, session index) and
the charging process's own growth (its node-local session caches), at 100,000 open sessions.

Sessions are opened through the real charging core (``initiate``, a voice call with a hold), the way a
front end opens them; Redis ``used_memory`` and the process RSS are read before and after.
"""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from typing import Any

from bench.common import format_table, row, rss_mb
from bench.redis_scripts import T0, cleanup, make_core
from ocs.model import ChargeRequest


async def _run(sessions: int) -> dict[str, Any]:
    prefix = f"ocsbench:{uuid.uuid4().hex[:6]}:"
    core, r = await make_core(prefix, 1000)
    try:
        gc.collect()
        redis0 = int((await r.info("memory"))["used_memory"])
        rss0 = rss_mb() or 0.0
        t0 = time.perf_counter()
        step = 2000
        for base in range(0, sessions, step):
            outs = await asyncio.gather(*(core.initiate(ChargeRequest(
                subscriber=f"a{i % 1000}", session=f"mem-{i}", request_number=0, destination="4930123456",
                event_time=T0, requested_units=300, protocol="diameter", origin="pgw1.example.net",
                calling="4915110000001")) for i in range(base, min(sessions, base + step))))
            assert all(o.ok for o in outs)
        seconds = time.perf_counter() - t0
        gc.collect()
        redis1 = int((await r.info("memory"))["used_memory"])
        rss1 = rss_mb() or 0.0
        keys = 0
        async for _ in r.scan_iter(match=f"{prefix}*", count=10_000):
            keys += 1
    finally:
        await core.close()
        await cleanup(r, prefix)
    return row(f"memory per active session ({sessions} sessions)", sessions, seconds,
               redis_bytes_per_session=round((redis1 - redis0) / sessions),
               process_bytes_per_session=round((rss1 - rss0) * 1024 * 1024 / sessions),
               redis_keys=keys, redis_used_mb=round(redis1 / 2**20, 1))


def run(quick: bool = False) -> list[dict[str, Any]]:
    import uvloop  # as in ocsd

    return [uvloop.run(_run(10_000 if quick else 100_000))]


if __name__ == "__main__":
    print(format_table(run()))
