"""ocsd killed with SIGKILL mid-session (no drain, no flush) and restarted: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from ocs.diameter import codec
from ocs.diameter import constants as c
from tests.support.daemon import Daemon
from tests.support.diameter_client import GyClient, ccr, result
from tests.support.radius_client import acct, send

pytestmark = pytest.mark.e2e


def _cl(d: Daemon) -> GyClient:
    cl = GyClient(d.ports["diameter"])
    assert result(cl.cer()) == 2001
    return cl


def _usage_rows(d: Daemon) -> list[tuple[str, int, int]]:
    async def go() -> list[tuple[str, int, int]]:
        conn = await asyncpg.connect(d.dsn)
        try:
            rows = await conn.fetch("SELECT session_id, request_number, amount FROM usage ORDER BY record_id")
            return [(r["session_id"], r["request_number"], r["amount"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(go())


def test_sigkill_mid_session_then_retransmissions(daemon: Daemon) -> None:
    cl = _cl(daemon)
    try:
        assert result(cl.request(c.CCR, 4, *ccr("k;1", c.INITIAL, 0, called="4930123456", rg=1))) == 2001
        first = cl.request(c.CCR, 4, *ccr("k;1", c.UPDATE, 1, rg=1, used=61))
        assert result(first) == 2001
    finally:
        cl.close()
    assert send(daemon.ports["acct"], acct(1, "k-r", time=0)) is not None
    stop = acct(2, "k-r", time=30)
    assert send(daemon.ports["acct"], stop) is not None
    assert daemon.proc is not None
    daemon.kill()  # SIGKILL: whatever was not flushed to PostgreSQL is only in the Redis streams
    daemon.start()
    cl = _cl(daemon)
    try:
        # the gateway never saw our answer: it resends with the T flag to the restarted server
        again = cl.request(c.CCR, 4, *ccr("k;1", c.UPDATE, 1, rg=1, used=61), flags=codec.FLAG_R | codec.FLAG_T)
        assert [a.raw for a in again.avps] == [a.raw for a in first.avps]
        assert result(cl.request(c.CCR, 4, *ccr("k;1", c.TERMINATION, 2, rg=1, used=0))) == 2001
    finally:
        cl.close()
    stop.id = (stop.id + 1) % 256  # the NAS resends the Stop with a new identifier after our restart
    assert send(daemon.ports["acct"], stop) is not None
    # 61 s of 4930 (0.086) + the RADIUS call of 30 s (0.02 + 30 * 0.001 = 0.05), each charged once
    assert daemon.ocsctl("account", "show", "alice", json_out=True)["balance"] == "9.864"
    rows: list[tuple[str, int, int]] = []
    for _ in range(100):
        rows = _usage_rows(daemon)
        if len(rows) >= 3:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # anything late would show up now
    rows = _usage_rows(daemon)
    assert len(rows) == len(set(rows)), rows  # each record once
    assert sum(r[2] for r in rows) == 86_000 + 50_000  # PostgreSQL agrees with the balance
    rec = daemon.ocsctl("reconcile", json_out=True)
    assert rec["differences"] == 0
