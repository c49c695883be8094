"""Interop: ocsd's Disconnect-Request / CoA-Request (RFC 5176) against stock FreeRADIUS as the NAS side.

FreeRADIUS 3 listens as a Dynamic Authorization Server (``listen { type = coa }``) with a client
entry for 127.0.0.1 that requires Message-Authenticator; its ``recv-coa`` policy ACKs, and NAKs
two user names (Error-Cause 503 and 501).  FreeRADIUS verifies the Request Authenticator and the
Message-Authenticator of every request and drops, without an answer, any that fails: so an answer
is proof that ours are right, and the two deliberately wrong variants sent here (a damaged Request
Authenticator; Message-Authenticator computed *after* the Request Authenticator) must get none.
tshark decodes every packet of the exchange: no malformed packet, no error-level expert info, and
with the shared secret it finds every authenticator valid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import re
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs import config
from ocs.config import RadiusClient
from ocs.control.model import Ack
from ocs.metrics import Metrics
from ocs.radius import codec, dynauth
from ocs.radius.server import RadiusServer
from tests.support.daemon import free_port
from tests.support.fake_core import FakeCore
from tests.support.tools import need

pytestmark = pytest.mark.interop
SECRET = "testing123"

RADIUSD_CONF = """
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {tmp}
raddbdir = {tmp}
radacctdir = {tmp}
name = freeradius
confdir = {tmp}
run_dir = {tmp}
db_dir = {tmp}
libdir = /usr/lib/freeradius
pidfile = {tmp}/radiusd.pid
correct_escapes = true
max_request_time = 30
cleanup_delay = 0
max_requests = 1024
hostname_lookups = no
log {{
	destination = stdout
}}
security {{
	allow_core_dumps = no
	max_attributes = 200
	reject_delay = 0
	status_server = no
}}
client ocsd {{
	ipaddr = 127.0.0.1
	secret = {secret}
	require_message_authenticator = yes
}}
modules {{
	always reject {{
		rcode = reject
	}}
	always ok {{
		rcode = ok
	}}
}}
server nas {{
	listen {{
		type = coa
		ipaddr = 127.0.0.1
		port = {port}
	}}
	recv-coa {{
		if (&User-Name == "gone") {{
			update reply {{
				&Error-Cause := Session-Context-Not-Found
			}}
			reject
		}}
		if (&User-Name == "refused") {{
			update reply {{
				&Error-Cause := Administratively-Prohibited
			}}
			reject
		}}
		ok
	}}
	send-coa {{
		ok
	}}
}}
"""


@dataclasses.dataclass
class FreeRadius:
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def freeradius(tmp_path: Path) -> Iterator[FreeRadius]:
    binary = need("freeradius")
    conf = tmp_path / "raddb"
    conf.mkdir()
    port = free_port(socket.SOCK_DGRAM)
    (conf / "radiusd.conf").write_text(RADIUSD_CONF.format(tmp=conf, secret=SECRET, port=port))
    log = tmp_path / "freeradius.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "-X", "-d", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "Ready to process requests" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"freeradius did not start:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        yield FreeRadius(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _server(port: int, secret: str = SECRET) -> RadiusServer:
    cfg = config.from_mapping({}, env={})
    clients = (RadiusClient(address="127.0.0.1", secret=secret, name="fr", coa=True, coa_port=port),)
    cfg = dataclasses.replace(cfg, radius=dataclasses.replace(cfg.radius, clients=clients))
    server = RadiusServer(cfg, FakeCore(), Metrics())
    server.dynauth.schedule = (0.5, 0.5, 0.5)
    return server


def _after_first_ma(code: int, ident: int, body: bytes, secret: bytes) -> bytes:
    """The wrong order: Request Authenticator over a zero Message-Authenticator, then the MA over that."""
    head = struct.pack("!BBH", code, ident, 20 + 18 + len(body))
    auth = hashlib.md5(head + bytes(16) + b"\x50\x12" + bytes(16) + body + secret).digest()
    ma = hmac.new(secret, head + auth + b"\x50\x12" + bytes(16) + body, "md5").digest()
    return head + auth + b"\x50\x12" + ma + body


def _no_answer(port: int, raw: bytes) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.5)
        s.sendto(raw, ("127.0.0.1", port))
        try:
            s.recv(4096)
        except TimeoutError:
            return True
    return False


async def _ask(port: int) -> None:
    """The four requests FreeRADIUS answers, and one with the wrong secret it must drop."""
    server = _server(port)
    try:
        ok = await server.disconnect("127.0.0.1|call-1", "127.0.0.1,127.0.0.1,alice")
        coa = await server.change_authorization("127.0.0.1|call-2", "127.0.0.1,127.0.0.1,bob", 1800)
        gone = await server.disconnect("127.0.0.1|call-3", "127.0.0.1,127.0.0.1,gone")
        refused = await server.change_authorization("127.0.0.1|call-4", "127.0.0.1,,refused", 60)
        assert ok.ack is Ack.ACKED and coa.ack is Ack.ACKED, (ok, coa)
        assert gone.ack is Ack.UNKNOWN_SESSION and gone.code == 503
        assert refused.ack is Ack.REFUSED and refused.code == 501
    finally:
        await server.stop(timeout=1)
    wrong_secret = _server(port, secret="not-testing123")
    try:
        assert (await wrong_secret.disconnect("127.0.0.1|call-5", "127.0.0.1,,alice")).ack is Ack.NO_ANSWER
    finally:
        await wrong_secret.stop(timeout=1)


def test_freeradius_accepts_our_disconnect_and_coa_and_tshark_decodes_them(freeradius: FreeRadius,
                                                                            tmp_path: Path) -> None:
    port = freeradius.port
    pcap = tmp_path / "dynauth.pcap"
    cap = subprocess.Popen([need("tshark"), "-q", "-i", "lo", "-f", f"udp port {port}", "-w", str(pcap)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.0)
    try:
        asyncio.run(_ask(port))
        # the two wrong constructions FreeRADIUS must drop (so accepting ours is not leniency)
        body = codec.attribute(codec.ACCT_SESSION_ID, b"call-6") + codec.attribute(codec.USER_NAME, b"alice")
        damaged = bytearray(dynauth.build_request(codec.DISCONNECT_REQUEST, 200, SECRET.encode(), [body]))
        damaged[10] ^= 0xFF
        assert _no_answer(port, bytes(damaged))
        assert _no_answer(port, _after_first_ma(codec.DISCONNECT_REQUEST, 201, body, SECRET.encode()))
    finally:
        time.sleep(1.0)
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=20)

    text = freeradius.text()
    received = re.findall(r"Received (Disconnect-Request|CoA-Request) Id \d+ from 127\.0\.0\.1", text)
    assert received.count("Disconnect-Request") >= 2 and received.count("CoA-Request") == 2, received
    for attr in ('Acct-Session-Id = "call-1"', 'User-Name = "alice"', "NAS-IP-Address = 127.0.0.1",
                 'Acct-Session-Id = "call-2"', "Session-Timeout = 1800", "Event-Timestamp = "):
        assert attr in text, attr
    assert re.findall(r"Sent (Disconnect-ACK|CoA-ACK|Disconnect-NAK|CoA-NAK)", text) == \
        ["Disconnect-ACK", "CoA-ACK", "Disconnect-NAK", "CoA-NAK"]
    assert text.count("invalid Message-Authenticator") >= 3 + 1  # the wrong secret (3 sends), the wrong order
    assert "invalid Request Authenticator" in text  # the damaged one

    tshark = [need("tshark"), "-r", str(pcap), "-d", f"udp.port=={port},radius", "-o", f"radius.shared_secret:{SECRET}",
              "-o", "radius.validate_authenticator:TRUE"]
    bad = subprocess.run([*tshark, "-Y", "_ws.malformed || _ws.expert.severity >= error"],
                         capture_output=True, text=True, timeout=60)
    assert bad.stdout.strip() == "", bad.stdout
    rows = subprocess.run([*tshark, "-T", "fields", "-e", "radius.code", "-e", "radius.authenticator.valid",
                           "-e", "radius.authenticator.invalid", "-Y", "radius"],
                          capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    codes = [r.split("\t")[0] for r in rows]
    for code in ("40", "41", "42", "43", "44", "45"):
        assert code in codes, rows
    # the four exchanges with the right secret; tshark (4.0) checks the Response Authenticators with the
    # secret (the requests' were checked by FreeRADIUS above)
    ours = [r.split("\t") for r in rows[:8]]
    assert [r[0] for r in ours] == ["40", "41", "43", "44", "40", "42", "43", "45"], rows
    assert all(r[1:] == ["1", "0"] for r in ours[1::2]), ours
