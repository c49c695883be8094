"""Interop: a Gy client on Erlang/OTP's ``diameter`` application drives ocsd (issue 4, item 4).

The client (tests/interop/erlang/ocs_gy_client.erl, dictionary ocs_gy.dia
compiled with ``diameterc`` at test time) does CER, CCR-I/U/T and, on
remove_transport, DPR.  OTP decodes every answer against the RFC 4006
grammar, so ``errors=0`` on each CCA means ocsd's answers are well formed to
an independent stack; tshark checks the same exchange on the wire.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.interop import otp
from tests.support.daemon import Daemon
from tests.support.tools import need

pytestmark = pytest.mark.interop


def _charge(seconds: int) -> Decimal:
    """Tariff e2e, prefix 49: 0.06/min, connect 0.02, increments 30/6 (tests/support/daemon.py DEMO_RATES)."""
    billed = 30 + max(0, math.ceil((seconds - 30) / 6)) * 6
    return Decimal("0.02") + billed * Decimal("0.001")


def _balance(d: Daemon) -> Decimal:
    return Decimal(str(d.ocsctl("account", "show", "alice", json_out=True)["balance"]))


@pytest.fixture
def ebin(tmp_path: Path) -> Path:
    """The dictionary and the client compiled into tmp (fails under CI=true when OTP is missing)."""
    try:
        return otp.build(tmp_path / "ebin", need=need)
    except otp.OtpMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@contextlib.contextmanager
def _capture(port: int, pcap: Path) -> Iterator[None]:
    cap = subprocess.Popen([need("tshark"), "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    try:
        yield
    finally:
        time.sleep(1.0)
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=20)


def _tshark(pcap: Path, port: int, *args: str) -> str:
    return subprocess.run([need("tshark"), "-r", str(pcap), "-d", f"tcp.port=={port},diameter", *args],
                          capture_output=True, text=True, timeout=60).stdout


def _check_pcap(pcap: Path, port: int, ccrs: int) -> None:
    """Every packet decodes cleanly; CER/CEA, the CCR/CCAs and the client's DPR/DPA are on the wire."""
    bad = _tshark(pcap, port, "-Y", "_ws.malformed || _ws.expert.severity >= error")
    assert bad.strip() == "", bad
    rows = [line.split("\t") for line in _tshark(
        pcap, port, "-Y", "diameter", "-T", "fields", "-E", "occurrence=f", "-e", "tcp.srcport",
        "-e", "diameter.cmd.code", "-e", "diameter.flags.request", "-e", "diameter.Result-Code",
        "-e", "diameter.Product-Name").splitlines()]
    msgs = [(int(src) == port, int(code), flag in ("1", "True"), res) for src, code, flag, res, _p in rows]
    assert (False, 257, True, "") in msgs  # CER from the OTP client ...
    assert next(r[4] for r in rows if r[1] == "257" and r[2] in ("1", "True")) == "ocs-interop-otp-diameter"
    assert (True, 257, False, "2001") in msgs  # ... answered 2001
    assert sum(1 for m in msgs if m[:3] == (False, 272, True)) == ccrs
    assert sum(1 for m in msgs if m[:3] == (True, 272, False)) == ccrs
    # OTP sets P on every CCR (RFC 4006 declares CCR/CCA proxiable); each CCA must carry it back (RFC 6733 6.2)
    flags = [line.split("\t") for line in _tshark(
        pcap, port, "-Y", "diameter.cmd.code == 272", "-T", "fields", "-e", "diameter.flags.request",
        "-e", "diameter.flags.proxyable").splitlines()]
    assert flags and all(p in ("1", "True") for _r, p in flags), flags
    assert (False, 282, True, "") in msgs, msgs  # DPR sent by OTP on remove_transport
    assert (True, 282, False, "2001") in msgs, msgs  # DPA from ocsd


def _run_client(ebin: Path, port: int, *steps: str) -> list[dict[str, str]]:
    res = subprocess.run(otp.command(ebin, "ocs_gy_client", str(port), *steps, need=need),
                         capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = otp.parse_lines(res.stdout)
    tags = [t for t, _ in lines]
    assert tags[:1] == ["cea"] and tags[-2:] == ["down", "done"], res.stdout
    cea = lines[0][1]
    assert cea == {"result": "2001", "origin_host": "ocs.test.example.net"}
    return [f for t, f in lines if t == "cca"]


def test_erlang_gy_session_cer_i_u_t_dpr(ebin: Path, daemon: Daemon, tmp_path: Path) -> None:
    port = daemon.ports["diameter"]
    pcap = tmp_path / "erlang-gy.pcap"
    with _capture(port, pcap):
        ccas = _run_client(ebin, port, "I,rg=1,rsu=60,called=4930123456", "U,rg=1,usu=61,rsu=60",
                           "T,rg=1,usu=10,cause=1")
    assert [(a["type"], a["number"]) for a in ccas] == [("1", "0"), ("2", "1"), ("3", "2")]
    for a in ccas:
        assert (a["result"], a["mscc_result"], a["errors"]) == ("2001", "2001", "0"), a
        assert a["session"].startswith("pgw.erlang.test;")
    i, u, t = ccas
    assert (i["granted_time"], i["validity"], i["fui"]) == ("60", "1800", "false")
    assert (u["granted_time"], u["validity"], u["fui"]) == ("60", "1800", "false")
    assert (t["granted_time"], t["validity"]) == ("none", "none")
    # 61 + 10 = 71 s: billed 30 + ceil(41/6)*6 = 72 s -> 0.02 + 0.072 = 0.092
    assert _charge(61 + 5) == Decimal("0.086")  # the spec's worked example, same rule
    assert _balance(daemon) == Decimal("10.00") - _charge(71) == Decimal("9.908")
    _check_pcap(pcap, port, ccrs=3)


def test_erlang_gy_unknown_subscriber_final_units_out_of_credit(ebin: Path, daemon: Daemon,
                                                                tmp_path: Path) -> None:
    daemon.ocsctl("adjust", "alice", "-9.90", "--reason", "erlang interop")  # 0.10 EUR left
    port = daemon.ports["diameter"]
    pcap = tmp_path / "erlang-gy-deny.pcap"
    with _capture(port, pcap):
        ccas = _run_client(ebin, port,
                           "I,sid=unknown,sub=49999,rg=1,rsu=60,called=4930123456",
                           "I,sid=last,rg=1,rsu=300,called=4930123456",
                           "T,sid=last,rg=1,usu=78",
                           "I,sid=broke,rg=1,rsu=60,called=4930123456")
    unknown, last_i, last_t, broke = ccas
    assert all(a["errors"] == "0" for a in ccas), ccas
    # unknown subscriber: 5030 as the command Result-Code and in the MSCC, nothing granted
    assert (unknown["result"], unknown["mscc_result"], unknown["granted_time"]) == ("5030", "5030", "none")
    # 0.10 EUR buys 78 s (0.02 + 0.078); the grant is cut short: Final-Unit-Indication TERMINATE
    assert (last_i["result"], last_i["mscc_result"]) == ("2001", "2001")
    assert (last_i["granted_time"], last_i["fui"], last_i["fua"]) == ("78", "true", "0")
    assert _charge(78) <= Decimal("0.10") < _charge(79)
    assert (last_t["result"], last_t["mscc_result"]) == ("2001", "2001")
    # 0.002 EUR left, less than connect fee + first 30 s: 4012 DIAMETER_CREDIT_LIMIT_REACHED
    assert (broke["result"], broke["mscc_result"], broke["granted_time"]) == ("4012", "4012", "none")
    assert _balance(daemon) == Decimal("0.10") - _charge(78) == Decimal("0.002")
    _check_pcap(pcap, port, ccrs=4)
