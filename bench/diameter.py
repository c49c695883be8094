"""Diameter Gy load against a real ocsd (own Redis holds): full sessions I, 2xU, T.

Reports CCR/s and latency percentiles at 1, 10, 50 and 200 concurrent sessions.
Target on a 2-core machine: >= 3,000 CCR/s with p99 < 10 ms at half that rate.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import format_table, proc_cpu_seconds, row
from ocs.diameter import codec
from ocs.diameter import constants as c
from tests.e2e.daemon import Daemon, provision_demo
from tests.e2e.diameter_client import ccr


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.ids = itertools.count(1)
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            head = await self.r.readexactly(20)
            body = await self.r.readexactly(int.from_bytes(head[1:4], "big") - 20)
            hbh = int.from_bytes(head[12:16], "big")
            fut = self.waiting.pop(hbh, None)
            if fut is not None:
                fut.set_result(head + body)

    async def request(self, code: int, app: int, avps: list[bytes]) -> bytes:
        n = next(self.ids)
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[n] = fut
        self.w.write(codec.message(code, codec.FLAG_R, app, n, n, *avps))
        return await fut


async def _load(port: int, concurrency: int, seconds: float) -> tuple[int, float, list[float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = Conn(reader, writer)
    await conn.request(c.CER, 0, [codec.utf8(c.ORIGIN_HOST, "bench"), codec.utf8(c.ORIGIN_REALM, "b"),
                                  codec.u32(c.AUTH_APPLICATION_ID, 4)])
    lat: list[float] = []
    sessions = itertools.count()
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            sid = f"b;{concurrency};{next(sessions)}"
            for n, (rtype, used) in enumerate(((1, None), (2, 30), (2, 30), (3, 10))):
                a = time.perf_counter()
                await conn.request(c.CCR, 4, ccr(sid, rtype, n, called="4930123456", rg=1, used=used,
                                                 requested=None if rtype == 3 else 60))
                lat.append(time.perf_counter() - a)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    conn.task.cancel()
    writer.close()
    return len(lat), elapsed, lat


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp))
        d.extra_toml = ""
        d.write_config()
        d.create_database()
        provision_demo(d, balance="100000.00")
        d.start()
        try:
            assert d.proc is not None
            for conc in (1, 10, 50, 200):
                cpu0 = proc_cpu_seconds(d.proc.pid)
                n, elapsed, lat = asyncio.run(_load(d.ports["diameter"], conc, 3 if quick else 8))
                cpu = proc_cpu_seconds(d.proc.pid) - cpu0
                rows.append(row(f"diameter CCR ({conc} concurrent sessions)", n, elapsed, lat,
                                ocsd_cpu_us_per_ccr=round(cpu / n * 1e6, 1), target="3000/s"))
        finally:
            d.stop()
            d.cleanup()
    return rows


if __name__ == "__main__":
    print(format_table(run()))
