"""Provider, cost and margin on the CDR of a real Diameter call to ocsd (docs/wholesale.md)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ocs.diameter import constants as c
from tests.support.daemon import Daemon
from tests.support.diameter_client import GyClient, ccr, result

pytestmark = pytest.mark.e2e


def _cdr(d: Daemon, sid: str) -> dict[str, Any]:
    for _ in range(100):  # the flusher copies the CDR to PostgreSQL
        rows = json.loads(d.ocsctl("cdr", "export", "--format", "json").stdout)
        found = [r for r in rows if r["session_id"] == sid]
        if found:
            return dict(found[0])
        time.sleep(0.1)
    raise AssertionError(f"no CDR for {sid}")


def _call(d: Daemon, sid: str, called: str) -> None:
    cl = GyClient(d.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        assert result(cl.request(c.CCR, 4, *ccr(sid, c.INITIAL, 0, called=called, rg=1, requested=300))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr(sid, c.UPDATE, 1, rg=1, requested=300, used=61))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr(sid, c.TERMINATION, 2, rg=1, used=5))) == 2001  # 66 s
    finally:
        cl.close()


def test_cdr_export_shows_provider_cost_and_currency(daemon: Daemon) -> None:
    d = daemon
    (d.tmp / "eur.csv").write_text("prefix,destination,rate,first_increment,next_increment\n49,DE,0.03,1,1\n")
    (d.tmp / "usd.csv").write_text("prefix,destination,rate,first_increment,next_increment\n"
                                   "49,DE,0.02,1,1\n4930,Berlin,0.05,1,1\n")
    d.ocsctl("provider", "create", "carrier-eur", "--currency", "EUR")
    d.ocsctl("provider", "create", "carrier-usd", "--currency", "USD")
    d.ocsctl("provider", "rates", "carrier-eur", str(d.tmp / "eur.csv"))
    d.ocsctl("provider", "rates", "carrier-usd", str(d.tmp / "usd.csv"))
    d.ocsctl("fx", "set", "USD", "EUR", "0.9", "--from", "2020-01-01")
    d.ocsctl("route", "set", "49", "carrier-eur", "carrier-usd", "--lcr")
    d.ocsctl("route", "set", "44", "carrier-eur")
    time.sleep(2.5)  # the flusher re-reads routes on the providers:gen signal (checked every 2 s)

    _call(d, "gy;lcr-de", "+4989123456")  # 0.02 USD = 0.018 EUR < 0.03 EUR: carrier-usd
    cdr = _cdr(d, "gy;lcr-de")
    assert (cdr["charge"], cdr["currency"]) == ("0.086000", "EUR")
    assert (cdr["provider"], cdr["cost"], cdr["cost_currency"]) == ("carrier-usd", "0.022000", "USD")

    _call(d, "gy;lcr-berlin", "+4930123456")  # Berlin: 0.05 USD = 0.045 EUR > 0.03 EUR: carrier-eur
    cdr = _cdr(d, "gy;lcr-berlin")
    assert (cdr["provider"], cdr["cost"], cdr["cost_currency"]) == ("carrier-eur", "0.033000", "EUR")

    _call(d, "gy;uk", "+447700900123")  # routed to carrier-eur, which has no UK rate: no cost
    cdr = _cdr(d, "gy;uk")
    assert (cdr["provider"], cdr["cost"], cdr["cost_currency"]) == ("", "", "")
    csv_rows = d.ocsctl("cdr", "export").stdout.splitlines()
    header = csv_rows[0].split(",")
    berlin = next(r.split(",") for r in csv_rows if r.startswith("gy;lcr-berlin"))
    assert [berlin[header.index(k)] for k in ("provider", "cost", "cost_currency")] == [
        "carrier-eur", "0.033000", "EUR"]
