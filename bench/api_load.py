"""The REST API under load beside the charging path (docs/api.md, docs/performance.md).

One ocsd with the API on: Diameter CCRs paced at RATE/s (bench/diameter.py's open loop) alone,
then again while another process reads heavy pages from the API (1,000 accounts or 1,000 CDRs
each): at 10 pages a second, and with 8 clients as fast as answered.  The rows say what the API costs the charging path
(CCR p50/p99 with and without it) and what the API itself serves meanwhile.  Last, "money check:
api_load" (bench/money.py) on alice, the one account charged: balance = ledger - usage, nothing
reserved, one CDR per session, every record once; raises if not.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import money
from bench.common import proc_cpu_seconds, row
from bench.diameter import _load, _paced
from tests.support.daemon import Daemon, _pg, free_port, provision_demo

API_CLIENTS = 8
PAGES_PER_SECOND = 10  # a busy dashboard or billing integration
RATE = 500  # CCR/s offered: well under the node's capacity, so a change in latency is the API's doing
HEAVY = ("/accounts?limit=1000", "/cdrs?limit=1000")


def _seed(d: Daemon, accounts: int, cdrs: int) -> None:
    """Accounts and CDRs straight into PostgreSQL (the API reads them; charging never does)."""
    _pg(d.dsn, f"""
        INSERT INTO accounts (id, type, currency, tariff) SELECT 'bulk' || lpad(i::text, 6, '0'), 'prepaid', 'EUR',
          'e2e' FROM generate_series(1, {accounts}) i;
        INSERT INTO cdrs (record_id, session_id, rating_group, account, called, destination, prefix, start_time,
          duration, billed_seconds, charge, currency)
        SELECT 'c' || i, 's' || i, 1, 'bulk' || lpad((i % {accounts} + 1)::text, 6, '0'), '4930123456', 'Berlin',
          '4930', now() - (i || ' s')::interval, 60, 60, 61234, 'EUR' FROM generate_series(1, {cdrs}) i;
    """)


def _hammer(base: str, token: str, seconds: float, rate: float | None, out: Any) -> None:
    """In its own process: API_CLIENTS clients reading HEAVY pages in turn until ``seconds`` pass,
    flat out (``rate`` None) or ``rate`` pages a second in all."""

    async def main() -> tuple[int, list[float], dict[int, int]]:
        lat: list[float] = []
        codes: dict[int, int] = {}
        t0 = time.perf_counter()
        stop = t0 + seconds
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                     timeout=30, limits=httpx.Limits(max_connections=API_CLIENTS)) as api:
            async def client(i: int) -> None:
                n = i
                while (now := time.perf_counter()) < stop:
                    if rate is not None:  # client i's n-th request is due at (n / clients) / rate
                        due = t0 + n / rate
                        if due > now:
                            await asyncio.sleep(due - now)
                    a = time.perf_counter()
                    r = await api.get(HEAVY[n % len(HEAVY)])
                    lat.append(time.perf_counter() - a)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    n += API_CLIENTS

            await asyncio.gather(*(client(i) for i in range(API_CLIENTS)))
        return len(lat), lat, codes

    out.put(asyncio.run(main()))


def _under_load(d: Daemon, port: int, token: str, seconds: int,
                rate: float | None) -> tuple[list[dict[str, Any]], int]:
    """The rows, and the Diameter sessions played (each to its CCR-T)."""
    assert d.proc is not None
    ctx = multiprocessing.get_context("fork")
    queue: Any = ctx.Queue()
    proc = ctx.Process(target=_hammer, args=(f"http://127.0.0.1:{port}/api/v1", token, seconds + 1, rate, queue))
    cpu0 = proc_cpu_seconds(d.proc.pid)
    proc.start()
    time.sleep(0.5)  # the API busy before the calls start
    n, elapsed, lat = asyncio.run(_paced(d.ports["diameter"], RATE, seconds))
    what = f"{rate:g} pages/s" if rate else f"{API_CLIENTS} clients flat out"
    rows = [row(f"diameter CCR paced at {RATE}/s, API {what}", n, elapsed, lat,
                ocsd_cpu_s=round(proc_cpu_seconds(d.proc.pid) - cpu0, 1))]
    api_n, api_lat, codes = queue.get(timeout=120)
    proc.join(30)
    rows.append(row(f"  API GET 1,000-row pages ({what})", api_n, seconds + 1, api_lat, statuses=codes))
    return rows, n // 4


def run(quick: bool = False) -> list[dict[str, Any]]:
    seconds = 4 if quick else 10
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp))
        port = free_port()
        d.extra_toml = f'[api]\nlisten = "127.0.0.1:{port}"\n'
        d.write_config()
        d.create_database()
        provision_demo(d, balance="100000.00")
        _seed(d, 2000, 20_000)
        token = d.ocsctl("api", "token", "create", "bench", "--role", "readonly", json_out=True)["token"]
        d.start()
        try:
            assert d.proc is not None
            warm, _e, _l = asyncio.run(_load(d.ports["diameter"], 10, 1))  # warm-up
            n, elapsed, lat = asyncio.run(_paced(d.ports["diameter"], RATE, seconds))
            rows.append(row(f"diameter CCR paced at {RATE}/s, API idle", n, elapsed, lat))
            sessions = (warm + n) // 4  # four CCRs a session, each played to its CCR-T
            for rate in (PAGES_PER_SECOND, None):
                more, played = _under_load(d, port, token, seconds, rate)
                rows += more
                sessions += played
            # alice only: the seeded accounts' CDRs have no usage records behind them
            rows.append(money.check(d, "api_load", sessions, accounts=["alice"]))
        finally:
            d.stop()
            d.cleanup()
    return rows
