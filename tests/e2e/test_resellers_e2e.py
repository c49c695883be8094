"""Resellers end to end: ocsd as a subprocess, Diameter and RADIUS on the wire (docs/wholesale.md).

Reseller ``rsl`` (wholesale tariff ``wh``: 0.03/min, 60/60) and its subscriber ``bob`` (tariff
``e2e``: 0.06/min, connect 0.02, 30/6) are provisioned while ocsd runs: the daemon finds bob's
placement on its reseller's shard on the first miss.
"""

from __future__ import annotations

import json
import time

import pytest
from pyrad import packet as rp

from ocs.diameter import constants as c
from tests.support.daemon import Daemon
from tests.support.diameter_client import GyClient, ccr, granted_time, result
from tests.support.radius_client import access, send

pytestmark = pytest.mark.e2e
BOB = "4915220000002"


def _provision(d: Daemon, reseller_balance: str = "5.00") -> None:
    rates = d.tmp / "wholesale.csv"
    rates.write_text("prefix,destination,rate,first_increment,next_increment\n49,Germany wholesale,0.03,60,60\n")
    d.ocsctl("tariff", "import", "wh", str(rates), "--currency", "EUR", "--timezone", "UTC")
    d.ocsctl("reseller", "create", "rsl", "--currency", "EUR", "--tariff", "wh")
    d.ocsctl("account", "create", "bob", "--currency", "EUR", "--tariff", "e2e", "--reseller", "rsl",
             "--alias", BOB, "--password", "bob-secret")
    d.ocsctl("topup", "bob", "10.00", "--reference", "e2e-bob")
    d.ocsctl("reseller", "topup", "rsl", reseller_balance, "--reference", "e2e-rsl")


def _balance(d: Daemon, account: str) -> str:
    return str(d.ocsctl("account", "show", account, json_out=True)["balance"])


def _client(d: Daemon) -> GyClient:
    cl = GyClient(d.ports["diameter"])
    assert result(cl.cer()) == 2001
    return cl


def _cdr(d: Daemon, sid: str) -> dict[str, str]:
    for _ in range(100):  # the flusher copies the CDR to PostgreSQL
        rows = [r for r in json.loads(d.ocsctl("cdr", "export", "--format", "json").stdout) if r["session_id"] == sid]
        if rows:
            return dict(rows[0])
        time.sleep(0.1)
    raise AssertionError(f"no CDR for {sid}")


def test_diameter_session_debits_subscriber_and_reseller(daemon: Daemon) -> None:
    _provision(daemon)
    cl = _client(daemon)
    try:
        cca = cl.request(c.CCR, 4, *ccr("rs;1", c.INITIAL, 0, subscriber=BOB, called="4930123456", rg=1,
                                       requested=300))
        assert result(cca) == 2001 and granted_time(cca) == 300
        assert daemon.ocsctl("reseller", "show", "rsl", json_out=True)["reserved"] == "0.15"  # 300 s wholesale
        assert result(cl.request(c.CCR, 4, *ccr("rs;1", c.UPDATE, 1, subscriber=BOB, rg=1, used=61))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("rs;1", c.TERMINATION, 2, subscriber=BOB, rg=1, used=0))) == 2001
    finally:
        cl.close()
    assert _balance(daemon, "bob") == "9.914"  # 10.00 - 0.086
    assert _balance(daemon, "rsl") == "4.94"  # 5.00 - 120 s at 0.03/min
    cdr = _cdr(daemon, "rs;1")
    assert (cdr["account"], cdr["charge"], cdr["reseller"], cdr["reseller_charge"]) == ("bob", "0.086000", "rsl",
                                                                                         "0.060000")
    doc = daemon.ocsctl("reconcile", json_out=True)
    assert doc["differences"] == 0
    rsl = next(r for r in doc["report"] if r["account"] == "rsl")
    assert (rsl["balance"], rsl["expected"], rsl["reseller_charges"]) == ("4.94", "4.94", "0.06")


def test_diameter_blocked_or_penniless_reseller_refuses(daemon: Daemon) -> None:
    _provision(daemon)
    daemon.ocsctl("reseller", "block", "rsl")
    cl = _client(daemon)
    try:
        cca = cl.request(c.CCR, 4, *ccr("rs;b", c.INITIAL, 0, subscriber=BOB, called="4930123456", rg=1))
        assert result(cca) == 4010
        daemon.ocsctl("reseller", "unblock", "rsl")
        cca = cl.request(c.CCR, 4, *ccr("rs;u", c.INITIAL, 0, subscriber=BOB, called="4930123456", rg=1))
        assert result(cca) == 2001
        cl.request(c.CCR, 4, *ccr("rs;u", c.TERMINATION, 1, subscriber=BOB, rg=1, used=0))
        daemon.ocsctl("adjust", "rsl", "-5.00", "--reason", "reseller out of credit")
        cca = cl.request(c.CCR, 4, *ccr("rs;n", c.INITIAL, 0, subscriber=BOB, called="4930123456", rg=1))
        assert result(cca) == 4012
        # alice has no reseller: served as before
        cca = cl.request(c.CCR, 4, *ccr("rs;a", c.INITIAL, 0, called="4930123456", rg=1))
        assert result(cca) == 2001
        cl.request(c.CCR, 4, *ccr("rs;a", c.TERMINATION, 1, rg=1, used=0))
    finally:
        cl.close()
    assert _balance(daemon, "bob") == "10.00"


def test_radius_blocked_or_penniless_reseller_rejects(daemon: Daemon) -> None:
    _provision(daemon)
    reply = send(daemon.ports["auth"], access("bob", password="bob-secret"))
    assert reply.code == rp.AccessAccept and reply["Session-Timeout"] == [3600]
    daemon.ocsctl("reseller", "block", "rsl")
    reply = send(daemon.ports["auth"], access("bob", password="bob-secret", called="4930999"))
    assert reply.code == rp.AccessReject and reply["Reply-Message"] == ["account blocked"]
    daemon.ocsctl("reseller", "unblock", "rsl")
    daemon.ocsctl("adjust", "rsl", "-5.00", "--reason", "reseller out of credit")
    reply = send(daemon.ports["auth"], access("bob", password="bob-secret", called="4930998"))
    assert reply.code == rp.AccessReject and reply["Reply-Message"] == ["no credit"]
