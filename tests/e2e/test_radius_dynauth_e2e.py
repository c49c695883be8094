"""RADIUS Disconnect-Request and CoA-Request from a running ocsd to a NAS (spec section 9, RFC 5176).

ocsd runs as a subprocess with real Redis and PostgreSQL; its client entry for 127.0.0.1 has
``coa = true`` and ``coa_port`` pointing at a NAS stub built on pyrad (tests/support/nas_stub.py),
which checks every request's authenticators with pyrad's code before it answers.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrad import packet as rp

from tests.support.daemon import Daemon, provision_demo, require_services
from tests.support.nas_stub import NasStub
from tests.support.radius_client import access, acct, send

pytestmark = pytest.mark.e2e


def _daemon(tmp_path: Path, nas: NasStub, balance: str) -> Daemon:
    d = Daemon(tmp_path)
    d.write_config()
    text = d.config_path.read_text()
    entry = 'name = "local"\n'
    assert entry in text
    d.config_path.write_text(text.replace(entry, f"{entry}coa = true\ncoa_port = {nas.port}\n", 1))
    d.create_database()
    provision_demo(d, balance=balance)
    return d


@pytest.fixture
def nas() -> Iterator[NasStub]:
    with NasStub() as stub:
        yield stub


@pytest.fixture
def started(tmp_path: Path, nas: NasStub, request: pytest.FixtureRequest) -> Iterator[Daemon]:
    require_services()
    d = _daemon(tmp_path, nas, getattr(request, "param", "10.00"))
    try:
        d.start()
        yield d
        assert d.stop() == 0, d.log_path.read_text()[-4000:]
    finally:
        d.cleanup()



def _metric(d: Daemon, line_start: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_block_sends_a_disconnect_request_and_the_cdr_says_administrative(started: Daemon, nas: NasStub) -> None:
    d = started
    auth, acc = d.ports["auth"], d.ports["acct"]
    accept = send(auth, access("alice", password="alice-secret"))  # no Acct-Session-Id: held until the Start
    assert accept.code == rp.AccessAccept
    assert send(acc, acct(1, "rad-dm-1")).code == rp.AccountingResponse
    res = d.ocsctl("account", "block", "alice")
    assert "asked the network to end 1 session(s)" in res.stderr
    [dm] = nas.wait(1, timeout=15)
    assert dm.authentic and dm.code == rp.DisconnectRequest
    assert dm.attrs["Acct-Session-Id"] == ["rad-dm-1"] and dm.attrs["User-Name"] == ["alice"]
    assert dm.attrs["NAS-IP-Address"] == ["127.0.0.1"] and dm.attrs["Event-Timestamp"]
    # the NAS ended the call (the stub ACKed) and reports it
    assert send(acc, acct(2, "rad-dm-1", time=20, cause=6)).code == rp.AccountingResponse
    assert d.cdr_cause("127.0.0.1|rad-dm-1", tries=100) == "ADMINISTRATIVE"
    deadline = time.monotonic() + 10
    while _metric(d, 'ocs_control_requests_total{kind="disconnect",protocol="radius",result="acked"}') != 1:
        assert time.monotonic() < deadline, "Disconnect-ACK not counted"
        time.sleep(0.1)
    assert len(nas.received) == 1  # acknowledged at once: no retransmission


@pytest.mark.parametrize("started", ["0.10"], indirect=True)
def test_topup_of_a_call_cut_short_sends_a_coa_with_the_larger_session_timeout(started: Daemon, nas: NasStub) -> None:
    d = started
    auth, acc = d.ports["auth"], d.ports["acct"]
    accept = send(auth, access("alice", password="alice-secret", session="rad-coa-1"))
    assert accept.code == rp.AccessAccept
    short = accept["Session-Timeout"][0]
    assert 0 < short < 600  # 0.10 buys 0.02 connect fee + 80 s at 0.06/min: cut short by the balance
    assert send(acc, acct(1, "rad-coa-1")).code == rp.AccountingResponse
    d.ocsctl("topup", "alice", "5.00", "--reference", "e2e-coa-topup")
    [coa] = nas.wait(1, timeout=15)
    assert coa.authentic and coa.code == rp.CoARequest
    assert coa.attrs["Acct-Session-Id"] == ["rad-coa-1"] and coa.attrs["User-Name"] == ["alice"]
    # the new total: seconds used so far (0 at the Start) + the grant 5.10 now pays for, capped at max_grant_seconds
    assert coa.attrs["Session-Timeout"] == [3600] and short < 3600
    assert send(acc, acct(2, "rad-coa-1", time=120, cause=1)).code == rp.AccountingResponse
    assert d.cdr_cause("127.0.0.1|rad-coa-1", tries=100) != "ADMINISTRATIVE"
