"""bench/money.py, the check every bench load against ocsd ends with: it passes on honest books and
catches each kind of drift (a balance off by one micro-unit, a CDR missing, a session uncounted)."""

from __future__ import annotations

import asyncio

import pytest

from bench import money
from bench.diameter import _load
from tests.support.daemon import Daemon, _pg

pytestmark = pytest.mark.e2e


def test_money_check_passes_then_catches_drift(daemon: Daemon) -> None:
    daemon.ocsctl("topup", "alice", "1000.00", "--reference", "bench-money-1")  # no session refused for credit
    n, _elapsed, _lat = asyncio.run(_load(daemon.ports["diameter"], 5, 0.5))
    sessions = n // 4  # every session played to its CCR-T
    ok = money.check(daemon, "test", sessions)
    assert ok["status"] == "ok" and ok["cdrs"] == sessions and ok["usage_records"] >= 3 * sessions

    with pytest.raises(money.MoneyError, match=f"{sessions} CDRs for {sessions + 1} completed sessions"):
        money.check(daemon, "test", sessions + 1)

    keys = money._keys(daemon)
    r = daemon.redis()
    try:
        r.hincrby(keys.account("alice"), "bal", 1)
        with pytest.raises(money.MoneyError, match=r"alice: balance .*\(difference 1\)") as err:
            money.check(daemon, "test", sessions)
        assert "ocsctl reconcile" in str(err.value)  # the operator's proof sees it too
        r.hincrby(keys.account("alice"), "bal", -1)
    finally:
        r.close()
    assert money.check(daemon, "test", sessions)["status"] == "ok"

    _pg(daemon.dsn, "DELETE FROM cdrs WHERE record_id = (SELECT min(record_id) FROM cdrs)")
    with pytest.raises(money.MoneyError, match=r"CDR charges .* != usage records"):
        money.check(daemon, "test", sessions)
