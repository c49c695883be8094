"""Interop: a Gy client on Erlang/OTP's ``diameter`` application drives ocsd (issue 4, item 4).

The client (tests/interop/erlang/ocs_gy_client.erl, dictionary ocs_gy.dia
compiled with ``diameterc`` at test time) does CER, CCR-I/U/T and, on
remove_transport, DPR.  OTP decodes every answer against the RFC 4006
grammar, so ``errors=0`` on each CCA means ocsd's answers are well formed to
an independent stack; tshark checks the same exchange on the wire.

The server-initiated requests (docs/diameter.md, "Server-initiated requests"): the
client answers ocsd's ASR (account blocked mid-session) and RAR (top-up after a
grant cut short) and acts as RFC 4006 says (CCR-T, CCR-U), or stays silent so
ocsd retries once and counts no_answer.  OTP decodes the ASR/RAR against the
RFC 6733 grammar (``errors=0``), tshark decodes them and their answers.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
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


# -- server-initiated requests: ASR and RAR (RFC 6733 8.3, 8.5; RFC 4006 5.5, 5.6) -------------

class _Client:
    """The OTP client as a running process whose lines can be awaited (the test acts in between)."""

    def __init__(self, ebin: Path, port: int, *steps: str) -> None:
        self.proc = subprocess.Popen(otp.command(ebin, "ocs_gy_client", str(port), *steps, need=need),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.out: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def until(self, tag: str, timeout: float = 30.0, **fields: str) -> dict[str, str]:
        """The next line ``tag`` whose fields include ``fields``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError("client ended:\n" + "\n".join(self.out))
            self.out.append(line)
            (got, kv), = otp.parse_lines(line)
            if got == tag and fields.items() <= kv.items():
                return kv
        raise AssertionError(f"no {tag} {fields} within {timeout} s:\n" + "\n".join(self.out))

    def finish(self, timeout: float = 60.0) -> list[tuple[str, dict[str, str]]]:
        """Every line, once the client exited 0 (after its DPR)."""
        assert self.proc.wait(timeout=timeout) == 0, "\n".join(self.out)
        while (line := self._lines.get(timeout=5)) is not None:
            self.out.append(line)
        lines = otp.parse_lines("\n".join(self.out))
        assert [t for t, _ in lines][-2:] == ["down", "done"], self.out
        return lines

    def kill(self) -> None:
        """Ends the process if it still runs and closes its pipe (always called)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _server_requests(pcap: Path, port: int) -> list[dict[str, str]]:
    """The ASR/RAR/ASA/RAA on the wire, as tshark decodes them."""
    names = ["tcp.srcport", "diameter.cmd.code", "diameter.flags.request", "diameter.flags.proxyable",
             "diameter.flags.T", "diameter.applicationId", "diameter.Session-Id", "diameter.Result-Code",
             "diameter.Auth-Application-Id", "diameter.Re-Auth-Request-Type", "diameter.Destination-Host"]
    out = _tshark(pcap, port, "-Y", "diameter.cmd.code == 274 || diameter.cmd.code == 258", "-T", "fields",
                  "-E", "occurrence=f", *(x for n in names for x in ("-e", n)))
    rows = [dict(zip(names, line.split("\t"), strict=True)) for line in out.splitlines()]
    for r in rows:
        r["from_ocsd"] = str(int(r["tcp.srcport"]) == port)
        for flag in ("diameter.flags.request", "diameter.flags.proxyable", "diameter.flags.T"):
            r[flag] = str(r[flag] in ("1", "True"))
    return rows



def test_erlang_block_asr_asa_then_ccr_t_administrative(ebin: Path, daemon: Daemon, tmp_path: Path) -> None:
    """Block mid-session: ocsd sends ASR, OTP answers ASA 2001 and ends the session with CCR-T."""
    port = daemon.ports["diameter"]
    pcap = tmp_path / "erlang-asr.pcap"
    with _capture(port, pcap):
        client = _Client(ebin, port, "I,rg=1,rsu=60,called=4930123456", "W,req=asr,usu=20")
        try:
            i = client.until("cca", type="1")
            assert (i["result"], i["granted_time"]) == ("2001", "60"), i
            sid = i["session"]
            daemon.ocsctl("account", "block", "alice")
            asr = client.until("asr")
            t = client.until("cca", type="3")
            lines = client.finish()
        finally:
            client.kill()
    assert (asr["session"], asr["retransmitted"], asr["errors"], asr["answer"]) == (sid, "false", "0", "2001")
    assert (t["result"], t["mscc_result"], t["errors"], t["session"]) == ("2001", "2001", "0", sid)
    assert [tag for tag, _ in lines].count("asr") == 1  # acknowledged: no retransmission
    assert _balance(daemon) == Decimal("10.00") - _charge(20) == Decimal("9.95")  # the CCR-T is charged
    assert daemon.cdr_cause(sid) == "ADMINISTRATIVE"
    wire = _server_requests(pcap, port)
    assert [(r["from_ocsd"], r["diameter.cmd.code"], r["diameter.flags.request"]) for r in wire] == [
        ("True", "274", "True"), ("False", "274", "False")]
    req, ans = wire
    assert (req["diameter.flags.proxyable"], req["diameter.flags.T"], req["diameter.applicationId"]) == (
        "True", "False", "4")
    assert (req["diameter.Session-Id"], req["diameter.Auth-Application-Id"], req["diameter.Destination-Host"]) == (
        sid, "4", "pgw.erlang.test")
    assert (ans["diameter.Session-Id"], ans["diameter.Result-Code"]) == (sid, "2001")
    _check_pcap(pcap, port, ccrs=2)
    control = [e for e in daemon.logs() if e.get("event") == "diameter_control"]
    assert [(e["kind"], e["result"], e["session"], e["peer"]) for e in control] == [
        ("asr", "acked", sid, "pgw.erlang.test")]


def test_erlang_topup_rar_raa_then_ccr_u_larger_grant(ebin: Path, daemon: Daemon, tmp_path: Path) -> None:
    """A grant cut short by the balance (Final-Unit-Indication), then a top-up: RAR, RAA, CCR-U, more time."""
    daemon.ocsctl("adjust", "alice", "-9.90", "--reason", "erlang interop rar")  # 0.10 EUR left
    port = daemon.ports["diameter"]
    pcap = tmp_path / "erlang-rar.pcap"
    with _capture(port, pcap):
        client = _Client(ebin, port, "I,rg=1,rsu=300,called=4930123456", "W,req=rar,usu=10,rsu=300", "T,usu=5")
        try:
            i = client.until("cca", type="1")
            assert (i["result"], i["granted_time"], i["fui"]) == ("2001", "78", "true"), i
            sid = i["session"]
            daemon.ocsctl("topup", "alice", "10.00", "--reference", "erlang-rar-topup")
            rar = client.until("rar")
            u = client.until("cca", type="2")
            client.until("cca", type="3", result="2001")
            client.finish()
        finally:
            client.kill()
    assert (rar["session"], rar["retransmitted"], rar["errors"], rar["answer"]) == (sid, "false", "0", "2001")
    assert (u["result"], u["mscc_result"], u["errors"], u["session"]) == ("2001", "2001", "0", sid)
    assert (u["granted_time"], u["fui"]) == ("300", "false")  # the larger grant (78 s before), no longer final
    assert _balance(daemon) == Decimal("0.10") + Decimal("10.00") - _charge(15)
    wire = _server_requests(pcap, port)
    assert [(r["from_ocsd"], r["diameter.cmd.code"], r["diameter.flags.request"]) for r in wire] == [
        ("True", "258", "True"), ("False", "258", "False")]
    req, ans = wire
    assert (req["diameter.flags.proxyable"], req["diameter.applicationId"], req["diameter.Session-Id"]) == (
        "True", "4", sid)
    assert (req["diameter.Re-Auth-Request-Type"], req["diameter.Auth-Application-Id"]) == ("0", "4")
    assert (ans["diameter.Session-Id"], ans["diameter.Result-Code"]) == (sid, "2001")
    _check_pcap(pcap, port, ccrs=3)


def _metric(d: Daemon, line_start: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_erlang_silent_client_asr_retried_once_then_no_answer(ebin: Path, daemon: Daemon) -> None:
    """A client that never answers: one retransmission (T bit) after 5 s, then no_answer is counted."""
    port = daemon.ports["diameter"]
    client = _Client(ebin, port, "I,rg=1,rsu=60,called=4930123456", "W,req=asr,answer=none,count=2",
                     "P,ms=8000", "T,usu=5")  # stays connected while ocsd waits out the retry
    try:
        sid = client.until("cca", type="1")["session"]
        daemon.ocsctl("account", "block", "alice")
        first = client.until("asr")
        again = client.until("asr")
        no_answer = 'ocs_control_requests_total{kind="asr",protocol="diameter",result="no_answer"}'
        deadline = time.monotonic() + 15
        while _metric(daemon, no_answer) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _metric(daemon, no_answer) == 1
        assert _metric(daemon, 'ocs_control_retries_total{kind="asr",protocol="diameter"}') == 1
        client.until("cca", type="3", result="2001")
        lines = client.finish()
    finally:
        client.kill()
    assert (first["session"], first["retransmitted"], first["answer"]) == (sid, "false", "none")
    assert (again["session"], again["retransmitted"], again["answer"]) == (sid, "true", "none")
    assert 4500 <= int(again["ms"]) - int(first["ms"]) <= 7000  # the 5 s answer timeout
    assert [tag for tag, _ in lines].count("asr") == 2  # retried once, never a third time
    control = [e for e in daemon.logs() if e.get("event") == "diameter_control"]
    assert [(e["kind"], e["result"], e["attempts"]) for e in control] == [("asr", "no_answer", 2)]
