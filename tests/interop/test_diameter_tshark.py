"""tshark decodes every Diameter packet of a Gy session with ocsd: no malformed packet, no expert error.

(The Erlang/OTP diameter client is in test_diameter_erlang.py; see docs/diameter.md, "Interop status".)
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from ocs.diameter import codec
from ocs.diameter import constants as c
from tests.support.daemon import Daemon
from tests.support.diameter_client import GyClient, ccr, result
from tests.support.tools import need

pytestmark = pytest.mark.interop


def test_gy_session_decodes_cleanly(daemon: Daemon, tmp_path: Path) -> None:
    port = daemon.ports["diameter"]
    pcap = tmp_path / "gy.pcap"
    cap = subprocess.Popen([need("tshark"), "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    try:
        cl = GyClient(port)
        assert result(cl.cer()) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("ts;1", c.INITIAL, 0, called="4930123456", rg=1))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("ts;1", c.UPDATE, 1, rg=1, used=61))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("ts;1", c.TERMINATION, 2, rg=1, used=1))) == 2001
        assert result(cl.request(c.DPR, 0, codec.utf8(c.ORIGIN_HOST, "pgw.test"), codec.utf8(c.ORIGIN_REALM, "test"),
                                 codec.u32(c.DISCONNECT_CAUSE, 0))) == 2001
        cl.close()
    finally:
        time.sleep(1.0)
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=20)
    decode_as = ["-d", f"tcp.port=={port},diameter"]
    decoded = subprocess.run([need("tshark"), "-r", str(pcap), *decode_as, "-Y", "diameter"], capture_output=True, text=True,
                             timeout=60).stdout.splitlines()
    assert len(decoded) >= 10, decoded
    bad = subprocess.run([need("tshark"), "-r", str(pcap), *decode_as, "-Y",
                          "_ws.malformed || _ws.expert.severity >= error"],
                         capture_output=True, text=True, timeout=60)
    assert bad.stdout.strip() == "", bad.stdout
