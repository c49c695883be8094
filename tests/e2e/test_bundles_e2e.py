"""Bundles over Diameter against ocsd (docs/wholesale.md "Bundles"): included seconds used up by two
concurrent sessions, then money; ``account show`` says what is left."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from ocs.diameter import constants as c
from tests.support.daemon import Daemon
from tests.support.diameter_client import GyClient, ccr, granted_time, result

pytestmark = pytest.mark.e2e


def _session(d: Daemon, sid: str, out: dict[str, list[int]], barrier: threading.Barrier) -> None:
    """One call to the UK (0.03 per minute, 1 s blocks): open asking 200 s, report 200 s, end with 60 s."""
    cl = GyClient(d.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        barrier.wait()  # both sessions open at the same moment
        cca = cl.request(c.CCR, 4, *ccr(sid, c.INITIAL, 0, called="+441234567", rg=1, requested=200))
        first = granted_time(cca) or 0
        barrier.wait()
        cca = cl.request(c.CCR, 4, *ccr(sid, c.UPDATE, 1, rg=1, requested=200, used=200))
        again = cl.request(c.CCR, 4, *ccr(sid, c.UPDATE, 1, rg=1, requested=200, used=200))  # retransmission
        assert result(cca) == result(again) == 2001 and granted_time(cca) == granted_time(again)
        end = cl.request(c.CCR, 4, *ccr(sid, c.TERMINATION, 2, rg=1, used=60))
        out[sid] = [result(cca), first, granted_time(cca) or 0, result(end)]
    finally:
        cl.close()


def test_bundle_used_up_by_two_concurrent_sessions_then_money(daemon: Daemon) -> None:
    first_day = datetime.now(UTC).date().replace(day=1).isoformat()  # the tariff's timezone is UTC
    daemon.ocsctl("product", "create", "Talk", "--amount", "0", "--currency", "EUR", "--period", "monthly",
                  "--includes", "300:44")
    daemon.ocsctl("subscribe", "alice", "Talk", "--from", first_day)
    shown = daemon.ocsctl("account", "show", "alice", json_out=True)
    assert [(b["included"], b["left"]) for b in shown["bundles"]] == [(300, 300)]

    out: dict[str, list[int]] = {}
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_session, args=(daemon, sid, out, barrier)) for sid in ("gy;b1", "gy;b2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(out) == ["gy;b1", "gy;b2"], out
    # both first grants are 200 s: one all included, the other 100 included + 100 bought (never 400 included)
    assert [v[1] for v in out.values()] == [200, 200]
    assert all(v[0] == 2001 and v[3] == 2001 and v[2] == 200 for v in out.values())

    shown = daemon.ocsctl("account", "show", "alice", json_out=True)
    assert [(b["used"], b["held"], b["left"]) for b in shown["bundles"]] == [(300, 0, 0)]
    # 520 s talked, 300 included: 220 s charged at 0.03 per minute = 0.11
    assert (shown["balance"], shown["reserved"]) == ("9.89", "0.00")
    assert "bundles: 0 of 300 s left (Talk, to 44" in daemon.ocsctl("account", "show", "alice").stdout

    # a call elsewhere is not covered by the UK bundle: Germany fixed, 0.02 connect + 30 s at 0.06/min = 0.05
    cl = GyClient(daemon.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        cl.request(c.CCR, 4, *ccr("gy;de", c.INITIAL, 0, called="+4930123456", rg=1, requested=60))
        cl.request(c.CCR, 4, *ccr("gy;de", c.TERMINATION, 1, rg=1, used=30))
    finally:
        cl.close()
    assert daemon.ocsctl("account", "show", "alice", json_out=True)["balance"] == "9.84"
