"""Diameter Gy against ocsd as a subprocess with real Redis and PostgreSQL (docs/diameter.md)."""

from __future__ import annotations

import time

import pytest

from ocs.diameter import codec
from ocs.diameter import constants as c
from tests.support.daemon import Daemon
from tests.support.diameter_client import GyClient, ccr, granted_time, result

pytestmark = pytest.mark.e2e


def _client(d: Daemon) -> GyClient:
    cl = GyClient(d.ports["diameter"])
    cea = cl.cer()
    assert result(cea) == 2001
    assert cea.first(c.ORIGIN_HOST).text() == "ocs.test.example.net"
    assert {a.u32() for a in cea.all(c.AUTH_APPLICATION_ID)} == {4}
    assert cea.first(c.SUPPORTED_VENDOR_ID).u32() == 10415
    return cl


def _balance(d: Daemon) -> str:
    return str(d.ocsctl("account", "show", "alice", json_out=True)["balance"])


def test_full_session_i_u_t(daemon: Daemon) -> None:
    cl = _client(daemon)
    try:
        cca = cl.request(c.CCR, 4, *ccr("gy;1", c.INITIAL, 0, called="+4930123456", rg=1, requested=300))
        assert result(cca) == 2001 and granted_time(cca) == 300
        assert cca.app_id == 4 and not cca.is_request
        assert cca.first(c.ORIGIN_HOST).mandatory and cca.first(c.ORIGIN_REALM).mandatory
        mscc = cca.first(c.MULTIPLE_SERVICES_CREDIT_CONTROL).group()
        assert codec.find(mscc, c.RESULT_CODE).u32() == 2001
        assert codec.find(mscc, c.VALIDITY_TIME).u32() == 1800
        cca = cl.request(c.CCR, 4, *ccr("gy;1", c.UPDATE, 1, rg=1, requested=300, used=61))
        assert result(cca) == 2001
        cca = cl.request(c.CCR, 4, *ccr("gy;1", c.TERMINATION, 2, rg=1, used=5))
        assert result(cca) == 2001
        assert _balance(daemon) == "9.914"  # 10.00 - 0.086 (spec worked example)
        for _ in range(50):  # the flusher copies the CDR to PostgreSQL
            out = daemon.ocsctl("cdr", "export").stdout.splitlines()
            if len(out) == 2:
                break
            time.sleep(0.1)
        assert out[0] == ("session_id,account,protocol,service,calling,called,prefix,destination,start_time,"
                          "duration,billed_seconds,charge,currency,termination_cause,rate_currency,fx_rate,"
                          "provider,cost,cost_currency,reseller,reseller_charge,rerated_from")
        row = out[1].split(",")
        assert row[:4] == ["gy;1", "alice", "diameter", "voice"]
        assert row[6:8] == ["49", "Germany fixed"] and row[9:13] == ["66", "66", "0.086000", "EUR"]
        assert row[8].endswith("Z") and row[13] == "DIAMETER_LOGOUT"
        dwa = cl.request(c.DWR, 0, codec.utf8(c.ORIGIN_HOST, "pgw.test"), codec.utf8(c.ORIGIN_REALM, "test"))
        assert result(dwa) == 2001
        dpa = cl.request(c.DPR, 0, codec.utf8(c.ORIGIN_HOST, "pgw.test"), codec.utf8(c.ORIGIN_REALM, "test"),
                         codec.u32(c.DISCONNECT_CAUSE, 0))
        assert result(dpa) == 2001
    finally:
        cl.close()


def test_duplicate_ccr_identical_answer_charged_once(daemon: Daemon) -> None:
    cl = _client(daemon)
    try:
        cl.request(c.CCR, 4, *ccr("gy;dup", c.INITIAL, 0, called="4930123456", rg=1))
        first = cl.request(c.CCR, 4, *ccr("gy;dup", c.UPDATE, 1, rg=1, used=61))
        again = cl.request(c.CCR, 4, *ccr("gy;dup", c.UPDATE, 1, rg=1, used=61), flags=codec.FLAG_R | codec.FLAG_T)
        assert [a.raw for a in first.avps] == [a.raw for a in again.avps]
        cl.request(c.CCR, 4, *ccr("gy;dup", c.TERMINATION, 2, rg=1, used=0))
        assert _balance(daemon) == "9.914"
    finally:
        cl.close()
    # across a restart: the stored outcome answers identically
    daemon.stop()
    daemon.start()
    cl = _client(daemon)
    try:
        again = cl.request(c.CCR, 4, *ccr("gy;dup", c.UPDATE, 1, rg=1, used=61))
        assert [a.raw for a in first.avps] == [a.raw for a in again.avps]
        assert _balance(daemon) == "9.914"
    finally:
        cl.close()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"subscriber": "49999"}, 5030),
        ({"called": "999123"}, 5031),
        ({"subscriber": ""}, 5005),
    ],
)
def test_result_codes(daemon: Daemon, kwargs: dict[str, str], code: int) -> None:
    cl = _client(daemon)
    try:
        args = {"called": "4930123456", **kwargs}
        cca = cl.request(c.CCR, 4, *ccr("gy;rc", c.INITIAL, 0, rg=1, **args))  # type: ignore[arg-type]
        assert result(cca) == code
        if code in (5031, 5005):
            assert cca.first(c.FAILED_AVP) is not None
    finally:
        cl.close()


def test_blocked_and_out_of_credit_and_unknown_session(daemon: Daemon) -> None:
    cl = _client(daemon)
    try:
        cca = cl.request(c.CCR, 4, *ccr("gy;u", c.UPDATE, 1, rg=1, used=61, called="4930123456"))
        assert result(cca) == 5002
        assert _balance(daemon) == "9.914"  # the reported usage of an unknown session is charged
        daemon.ocsctl("account", "block", "alice")
        assert result(cl.request(c.CCR, 4, *ccr("gy;b", c.INITIAL, 0, called="4930123456", rg=1))) == 4010
        daemon.ocsctl("account", "unblock", "alice")
        daemon.ocsctl("adjust", "alice", "-9.90", "--reason", "test")
        cca = cl.request(c.CCR, 4, *ccr("gy;oc", c.INITIAL, 0, called="4930123456", rg=1))
        assert result(cca) == 4012
        cca = cl.request(c.CCR, 4, *ccr("gy;fin", c.INITIAL, 0, called="4420123456", rg=1, requested=3600))
        assert result(cca) == 2001 and granted_time(cca) == 28  # 0.014 at 0.03/min, 1 s blocks
        mscc = cca.first(c.MULTIPLE_SERVICES_CREDIT_CONTROL).group()
        fui = codec.find(mscc, c.FINAL_UNIT_INDICATION)
        assert fui is not None and codec.find(fui.group(), c.FINAL_UNIT_ACTION).u32() == 0
    finally:
        cl.close()


def test_protocol_errors(daemon: Daemon) -> None:
    cl = _client(daemon)
    try:
        ans = cl.request(999, 4, codec.utf8(c.ORIGIN_HOST, "x"), codec.utf8(c.ORIGIN_REALM, "x"))
        assert result(ans) == 3001 and ans.flags & codec.FLAG_E
        ans = cl.request(c.CCR, 16777238, *ccr("gy;app", c.INITIAL, 0, called="4930"))
        assert result(ans) == 3007 and ans.flags & codec.FLAG_E
        ans = cl.request(c.CCR, 4, *ccr("gy;m", c.INITIAL, 0, called="4930", extra=(codec.u32(9999, 1),)))
        assert result(ans) == 5001 and ans.first(c.FAILED_AVP) is not None
    finally:
        cl.close()
    cl = GyClient(daemon.ports["diameter"])
    try:  # a first message that is not a CER closes the connection
        cl.send(codec.message(c.DWR, codec.FLAG_R, 0, 1, 1, codec.utf8(c.ORIGIN_HOST, "x")))
        with pytest.raises((ConnectionError, OSError)):
            cl.recv()
    finally:
        cl.close()
    cl = GyClient(daemon.ports["diameter"])
    try:  # a 20-byte zero-length header closes that connection; others are served
        cl.send(b"\x01\x00\x00\x00" + b"\x00" * 16)
        with pytest.raises((ConnectionError, OSError)):
            cl.recv()
    finally:
        cl.close()
    _client(daemon).close()


def test_sms_event_and_price_enquiry(daemon: Daemon) -> None:
    cl = _client(daemon)
    try:
        cca = cl.request(c.CCR, 4, *ccr("gy;ev", c.EVENT, 0, called="4930123456", mscc=False, action=3))
        assert result(cca) == 2001 and cca.first(c.COST_INFORMATION) is not None
    finally:
        cl.close()


def test_ccr_t_without_mscc_ends_the_rating_groups(daemon: Daemon) -> None:
    """A gateway that opened Rating-Group 1 through MSCC and ends with a bare CCR-T: 2001, hold released."""
    cl = _client(daemon)
    try:
        assert result(cl.request(c.CCR, 4, *ccr("gy;bare", c.INITIAL, 0, called="4930123456", rg=1))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("gy;bare", c.UPDATE, 1, rg=1, used=61))) == 2001
        assert daemon.ocsctl("account", "show", "alice", json_out=True)["reserved"] != "0.00"
        assert result(cl.request(c.CCR, 4, *ccr("gy;bare", c.TERMINATION, 2, mscc=False))) == 2001
    finally:
        cl.close()
    shown = daemon.ocsctl("account", "show", "alice", json_out=True)
    assert (shown["balance"], shown["reserved"]) == ("9.914", "0.00")
