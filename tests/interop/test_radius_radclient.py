"""Interop: FreeRADIUS's radclient drives ocsd; tshark decodes every packet (issue 5).

The capture must contain no malformed packet and no error-level expert info,
and every response authenticator must verify with the shared secret
(RFC 2865 section 3, RFC 2866 section 3).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.tools import need

pytestmark = pytest.mark.interop
SECRET = b"testing123"



def radclient(port: int, kind: str, attrs: str) -> str:
    res = subprocess.run([need("radclient"), "-x", "-r", "1", "-t", "3", f"127.0.0.1:{port}", kind, "testing123"],
                         input=attrs, capture_output=True, text=True, timeout=30)
    return res.stdout + res.stderr


def _balance(d: Daemon) -> str:
    return str(d.ocsctl("account", "show", "alice", json_out=True)["balance"])


def _verify_responses(pcap: Path, ports: set[int]) -> int:
    out = subprocess.run([need("tshark"), "-r", str(pcap), "-T", "fields", "-e", "udp.srcport", "-e", "udp.payload"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    requests: dict[tuple[int, int], bytes] = {}
    checked = 0
    for line in out.splitlines():
        sport, payload = line.split("\t")
        data = bytes.fromhex(payload.replace(":", ""))
        if int(sport) not in ports:
            requests[(data[1], data[0])] = data[4:20]
            continue
        req_code = {2: 1, 3: 1, 5: 4}[data[0]]
        req_auth = requests[(data[1], req_code)]
        want = hashlib.md5(data[:4] + req_auth + data[20:] + SECRET).digest()
        assert data[4:20] == want, "bad response authenticator"
        checked += 1
    return checked


def test_radclient_session_and_tshark_clean(daemon: Daemon, tmp_path: Path) -> None:
    auth, acct = daemon.ports["auth"], daemon.ports["acct"]
    pcap = tmp_path / "radius.pcap"
    cap = subprocess.Popen([need("tshark"), "-q", "-i", "lo", "-f", f"udp port {auth} or udp port {acct}",
                            "-w", str(pcap)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    try:
        base = "Message-Authenticator = 0x00, Called-Station-Id = 4930123456, NAS-IP-Address = 127.0.0.1"
        out = radclient(auth, "auth", f"User-Name = alice, User-Password = alice-secret, {base}\n")
        assert "Access-Accept" in out and "Session-Timeout = 3600" in out
        out = radclient(auth, "auth", f"User-Name = alice, User-Password = wrong, {base}\n")
        assert "Access-Reject" in out and "bad password" in out
        out = radclient(auth, "auth", f"User-Name = nobody, User-Password = x, {base}\n")
        assert "Access-Reject" in out and "unknown account" in out
        acct_base = "User-Name = alice, Acct-Session-Id = rc-1, Called-Station-Id = 4930123456, NAS-IP-Address = 127.0.0.1"
        for status, t in (("Start", 0), ("Interim-Update", 30), ("Stop", 61), ("Stop", 61)):
            out = radclient(acct, "acct", f"{acct_base}, Acct-Status-Type = {status}, Acct-Session-Time = {t}\n")
            assert "Accounting-Response" in out, out
        assert _balance(daemon) == "9.914"
    finally:
        time.sleep(1.0)
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=20)
    bad = subprocess.run([need("tshark"), "-r", str(pcap), "-Y", "_ws.malformed || _ws.expert.severity >= error"],
                         capture_output=True, text=True, timeout=60)
    assert bad.stdout.strip() == "", bad.stdout
    assert _verify_responses(pcap, {auth, acct}) >= 7
