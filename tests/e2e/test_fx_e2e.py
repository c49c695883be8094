"""An account in USD on a EUR tariff, through ocsd over Diameter and RADIUS (docs/wholesale.md, "Currencies and FX").

The demo tariff (tests/support/daemon.py): 49 Germany fixed, 0.06/min, connect 0.02, increments 30/6.
At 1 EUR = 1.0832751 USD a 61 s call (66 s billed, 0.086 EUR exact) costs 0.0931616586 -> 0.093162 USD:
one rounding of the converted exact price.
"""

from __future__ import annotations

import json
import time

import pytest
from pyrad import packet as rp

from ocs.diameter import constants as c
from tests.support.daemon import Daemon
from tests.support.diameter_client import GyClient, ccr, granted_time, result
from tests.support.radius_client import access, acct, send

pytestmark = pytest.mark.e2e
RELOAD = 2.3  # tariffs:gen is checked every 2 s (ocs/store/tariff_cache.py CHECK_SECONDS)


def _account(d: Daemon, name: str, currency: str, alias: str, balance: str) -> None:
    d.ocsctl("account", "create", name, "--currency", currency, "--tariff", "e2e", "--alias", alias,
             "--password", f"{name}-secret")
    d.ocsctl("topup", name, balance, "--reference", f"fx-{name}")


def _money(d: Daemon, name: str) -> tuple[str, str]:
    doc = d.ocsctl("account", "show", name, json_out=True)
    return doc["balance"], doc["reserved"]


def _cdr(d: Daemon, sid: str) -> dict[str, str]:
    for _ in range(150):
        rows = json.loads(d.ocsctl("cdr", "export", "--format", "json").stdout)
        found = [r for r in rows if r["session_id"] == sid or r["session_id"].endswith(f"|{sid}")]
        if found:
            return dict(found[0])
        time.sleep(0.1)
    raise AssertionError(f"no CDR for {sid}")


def test_diameter_usd_account_on_eur_tariff(daemon: Daemon) -> None:
    _account(daemon, "usd1", "USD", "4915110000009", "10.00")
    cl = GyClient(daemon.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        # no rate yet, then only a future one: not rated (5031), nothing held
        assert result(cl.request(c.CCR, 4, *ccr("fx;0", c.INITIAL, 0, subscriber="4915110000009",
                                                called="4930123456", rg=1))) == 5031
        daemon.ocsctl("fx", "set", "EUR", "USD", "3", "--from", "2099-01-01")
        time.sleep(RELOAD)
        assert result(cl.request(c.CCR, 4, *ccr("fx;1", c.INITIAL, 0, subscriber="4915110000009",
                                                called="4930123456", rg=1))) == 5031
        daemon.ocsctl("fx", "set", "EUR", "USD", "1.0832751", "--from", "2020-01-01")
        time.sleep(RELOAD)
        cca = cl.request(c.CCR, 4, *ccr("fx;2", c.INITIAL, 0, subscriber="4915110000009", called="4930123456",
                                        rg=1, requested=300))
        assert result(cca) == 2001 and granted_time(cca) == 300
        # the hold of 300 s: 0.32 EUR exact -> 0.346648032 -> 0.346648 USD
        assert _money(daemon, "usd1") == ("10.00", "0.346648")
        # a new rate in force now changes nothing for this call (the rate is the call's start's)
        daemon.ocsctl("fx", "set", "EUR", "USD", "1.5")
        time.sleep(RELOAD)
        cca = cl.request(c.CCR, 4, *ccr("fx;2", c.UPDATE, 1, subscriber="4915110000009", rg=1, requested=300,
                                        used=61))
        assert result(cca) == 2001 and granted_time(cca) == 300
        cca = cl.request(c.CCR, 4, *ccr("fx;2", c.TERMINATION, 2, subscriber="4915110000009", rg=1, used=5))
        assert result(cca) == 2001
        assert _money(daemon, "usd1") == ("9.906838", "0.00")  # 10.00 - 0.093162
    finally:
        cl.close()
    cdr = _cdr(daemon, "fx;2")
    assert (cdr["charge"], cdr["currency"], cdr["rate_currency"], cdr["fx_rate"]) == (
        "0.093162", "USD", "EUR", "1.0832751")


def test_radius_usd_account_on_eur_tariff(daemon: Daemon) -> None:
    _account(daemon, "usd2", "USD", "4915110000008", "0.10")
    _account(daemon, "gbp1", "GBP", "4915110000007", "5.00")
    daemon.ocsctl("fx", "set", "EUR", "USD", "1.0832751", "--from", "2020-01-01")
    time.sleep(RELOAD)
    auth, acc = daemon.ports["auth"], daemon.ports["acct"]
    # 0.10 USD: the first 30 s block (0.05 EUR) and 7 blocks of 6 s: 0.092 EUR -> 0.099661 USD; 8 would be 0.10616
    reply = send(auth, access("usd2", password="usd2-secret"))
    assert reply.code == rp.AccessAccept and reply["Session-Timeout"] == [72]
    assert _money(daemon, "usd2") == ("0.10", "0.099661")
    assert send(acc, acct(1, "fx-r1", user="usd2")).code == rp.AccountingResponse
    assert send(acc, acct(2, "fx-r1", user="usd2", time=61, cause=1)).code == rp.AccountingResponse
    assert _money(daemon, "usd2") == ("0.006838", "0.00")
    cdr = _cdr(daemon, "fx-r1")
    assert (cdr["charge"], cdr["rate_currency"], cdr["fx_rate"]) == ("0.093162", "EUR", "1.0832751")
    # no EUR -> GBP rate: refused, and the Reply-Message says why
    reply = send(auth, access("gbp1", password="gbp1-secret"))
    assert reply.code == rp.AccessReject and reply["Reply-Message"] == ["no FX rate EUR->GBP"]
    assert _money(daemon, "gbp1") == ("5.00", "0.00")
    # an account in its tariff's currency: no conversion, empty FX columns
    send(acc, acct(1, "plain", user="alice"))
    send(acc, acct(2, "plain", user="alice", time=61))
    plain = _cdr(daemon, "plain")
    assert (plain["charge"], plain["rate_currency"], plain["fx_rate"]) == ("0.086000", "", "")
