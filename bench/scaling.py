"""One ocsd against two on the same ports (``node.reuse_port``), sharing one Redis: docs/scaling.md.

The same loads run against one instance and then against two started from the same config file
(each with its own ``OCS_NODE_NAME`` and ``OCS_HTTP_LISTEN``): Diameter from 8 connections (the
kernel spreads connections over the listeners) and the RADIUS accounting mix from 8 sockets (it
spreads datagrams by source address and port).  CPU is summed over the instances.  On a 2-core
machine that also runs Redis and the load generator, a second process can only use what is left
of the two cores; the rows show how much that is.

After each pair of loads, "money check: scaling, N ocsd" (bench/money.py): balances = ledger - usage,
nothing reserved, one CDR per completed session or call, every record once; raises if not.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import money
from bench.common import format_table, proc_cpu_seconds, row, tree_rss_mb
from bench.diameter import _load
from bench.radius import INTERIMS, _acct_packets, _run, blast, make_plan, warm_up
from tests.support.daemon import Daemon, provision_demo

CONNECTIONS = 8


@contextlib.contextmanager
def instances(tmp: Path, n: int) -> Iterator[list[Daemon]]:
    (tmp / "0").mkdir()
    first = Daemon(tmp / "0", reuse_port=True)
    first.write_config()
    first.create_database()
    provision_demo(first, balance="1000000.00")
    out = [first] + [first.sibling(tmp / str(i), str(i)) for i in range(1, n)]
    try:
        for d in out:
            d.start()
        yield out
    finally:
        for d in out[1:]:
            d.stop()
        first.stop()
        first.cleanup()


def _cpu(ds: list[Daemon]) -> float:
    return sum(proc_cpu_seconds(d.proc.pid) for d in ds if d.proc is not None)


def _rss(ds: list[Daemon]) -> float:
    return round(sum(tree_rss_mb(d.proc.pid) or 0.0 for d in ds if d.proc is not None), 1)


async def _diameter(port: int, seconds: float) -> tuple[int, float, list[float]]:
    parts = await asyncio.gather(*(_load(port, 25, seconds) for _ in range(CONNECTIONS)))
    return sum(p[0] for p in parts), max(p[1] for p in parts), [x for p in parts for x in p[2]]


def _measure(n: int, quick: bool) -> list[dict[str, Any]]:
    seconds, calls = (3.0, 2000) if quick else (8.0, 6000)
    with tempfile.TemporaryDirectory() as tmp, instances(Path(tmp), n) as ds:
        ports = ds[0].ports
        warm, _e, _l = asyncio.run(_load(ports["diameter"], 10, 1))  # warm-up
        warm_up(ports["auth"], ports["acct"])  # one whole RADIUS call
        c0 = _cpu(ds)
        done, elapsed, lat = asyncio.run(_diameter(ports["diameter"], seconds))
        dia = row(f"scaling: diameter CCR, {n} ocsd on one port ({CONNECTIONS} connections)", done, elapsed, lat,
                  ocsd_cpu_us_per_req=round((_cpu(ds) - c0) / max(done, 1) * 1e6, 1), ocsd_rss_mb=_rss(ds),
                  instances=n)
        c0 = _cpu(ds)
        res = _run(blast(ports["acct"], make_plan(calls, _acct_packets, sockets=CONNECTIONS, window=32), 60.0,
                         call_len=INTERIMS + 2))
        rad = row(f"scaling: radius Start/Interim/Stop, {n} ocsd on one port ({CONNECTIONS} sockets)", res.answered,
                  res.elapsed, res.latencies, lost=res.lost,
                  ocsd_cpu_us_per_req=round((_cpu(ds) - c0) / max(res.answered, 1) * 1e6, 1), ocsd_rss_mb=_rss(ds),
                  instances=n)
        # every Diameter session the generator starts is played to its CCR-T (4 CCRs each)
        ended = (warm + done) // 4 + 1 + calls - res.lost_ends
        checked = money.check(ds[0], f"scaling, {n} ocsd", ended, lost_ends=res.lost_ends)
    return [dia, rad, checked]


def run(quick: bool = False) -> list[dict[str, Any]]:
    return _measure(1, quick) + _measure(2, quick)


if __name__ == "__main__":
    print(format_table(run()))
