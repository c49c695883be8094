"""RADIUS load against a real ocsd (real holds): Access-Request/s and Accounting-Request/s.

Pre-encoded packets (pyrad), several UDP sockets each keeping up to 64 requests outstanding.
Targets on a 2-core machine: >= 4,000 Access-Request/s and >= 5,000 Accounting-Request/s.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import format_table, proc_cpu_seconds, row
from tests.e2e.daemon import Daemon, provision_demo
from tests.e2e.radius_client import access, acct

WINDOW = 64
SOCKETS = 4


class Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[int, tuple[float, asyncio.Future[None]]] = {}
        self.lat: list[float] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        hit = self.waiting.pop(data[1], None)
        if hit is not None:
            self.lat.append(time.perf_counter() - hit[0])
            hit[1].set_result(None)


async def _blast(port: int, packets: list[bytes]) -> tuple[int, float, list[float]]:
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(SOCKETS):
        tr, pr = await loop.create_datagram_endpoint(Client, remote_addr=("127.0.0.1", port))
        clients.append((tr, pr))
    chunks = [packets[i::SOCKETS] for i in range(SOCKETS)]

    async def drive(tr: Any, pr: Client, pkts: list[bytes]) -> None:
        sem = asyncio.Semaphore(WINDOW)

        async def one(raw: bytes) -> None:
            async with sem:
                fut: asyncio.Future[None] = loop.create_future()
                pr.waiting[raw[1]] = (time.perf_counter(), fut)
                tr.sendto(raw)
                try:
                    await asyncio.wait_for(fut, 3)
                except TimeoutError:
                    pr.waiting.pop(raw[1], None)

        for i in range(0, len(pkts), 256):  # identifiers are unique within a window of 256
            await asyncio.gather(*(one(p) for p in pkts[i:i + 256]))

    t0 = time.perf_counter()
    await asyncio.gather(*(drive(tr, pr, ch) for (tr, pr), ch in zip(clients, chunks, strict=True)))
    elapsed = time.perf_counter() - t0
    lat = [x for _, pr in clients for x in pr.lat]
    for tr, _ in clients:
        tr.close()
    return len(lat), elapsed, lat


def _packets(n: int, kind: str) -> list[bytes]:
    out = []
    for i in range(n):
        if kind == "auth":
            p = access("alice", password="alice-secret", session=f"bench-a-{i}")
        else:
            p = acct(3, f"bench-c-{i}", time=60)
        p.id = i % 256
        out.append(p.RequestPacket())
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 3000 if quick else 10_000
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp))
        d.write_config()
        d.create_database()
        provision_demo(d, balance="1000000.00")
        d.start()
        try:
            assert d.proc is not None
            for kind, port in (("auth", d.ports["auth"]), ("acct", d.ports["acct"])):
                pkts = _packets(n, kind)
                cpu0 = proc_cpu_seconds(d.proc.pid)
                done, elapsed, lat = asyncio.run(_blast(port, pkts))
                cpu = proc_cpu_seconds(d.proc.pid) - cpu0
                name = "radius Access-Request" if kind == "auth" else "radius Accounting-Request (Interim)"
                rows.append(row(name, done, elapsed, lat, sent=n, ocsd_cpu_us_per_req=round(cpu / max(done, 1) * 1e6, 1),
                                target="4000/s" if kind == "auth" else "5000/s"))
        finally:
            d.stop()
            d.cleanup()
    return rows


if __name__ == "__main__":
    print(format_table(run()))
