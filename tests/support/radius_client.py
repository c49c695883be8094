"""Build and send RADIUS packets with pyrad's codec on a plain UDP socket (tests only)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from pyrad import packet as rp
from pyrad.dictionary import Dictionary

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"testing123"
DICT = Dictionary(str(ROOT / "radius" / "dictionary"))


def access(user: str, *, password: str | None = None, chap: str | None = None, called: str = "4930123456",
           session: str | None = None, ma: bool = True, secret: bytes = SECRET) -> Any:
    pkt = rp.AuthPacket(code=rp.AccessRequest, secret=secret, dict=DICT)
    pkt.AddAttribute("User-Name", user)
    pkt.AddAttribute("Called-Station-Id", called)
    pkt.AddAttribute("Calling-Station-Id", "4915110000001")
    pkt.AddAttribute("NAS-IP-Address", "127.0.0.1")
    if session:
        pkt.AddAttribute("Acct-Session-Id", session)
    if password is not None:
        pkt.AddAttribute("User-Password", pkt.PwCrypt(password))
    if chap is not None:
        import hashlib

        chap_id = b"\x07"
        pkt.authenticator = pkt.CreateAuthenticator()
        pkt.AddAttribute("CHAP-Password", chap_id + hashlib.md5(chap_id + chap.encode() + pkt.authenticator).digest())
    if ma:
        pkt.add_message_authenticator()
    return pkt


def acct(status: int, session: str, *, user: str = "alice", time: int = 0, called: str = "4930123456",
         secret: bytes = SECRET, cause: int | None = None, nas: str = "127.0.0.1") -> Any:
    pkt = rp.AcctPacket(code=rp.AccountingRequest, secret=secret, dict=DICT)
    pkt.AddAttribute("Acct-Status-Type", status)
    pkt.AddAttribute("Acct-Session-Id", session)
    pkt.AddAttribute("User-Name", user)
    pkt.AddAttribute("Called-Station-Id", called)
    pkt.AddAttribute("NAS-IP-Address", nas)
    pkt.AddAttribute("Acct-Session-Time", time)
    if cause is not None:
        pkt.AddAttribute("Acct-Terminate-Cause", cause)
    return pkt


def exchange(port: int, raw: bytes, timeout: float = 3.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(raw, ("127.0.0.1", port))
        try:
            return s.recv(4096)
        except TimeoutError:
            return None


def send(port: int, pkt: Any) -> Any:
    """Send a request, verify and decode the reply (None when nothing came back)."""
    raw = pkt.RequestPacket()
    reply_raw = exchange(port, raw)
    if reply_raw is None:
        return None
    reply = pkt.CreateReply(packet=reply_raw)
    assert pkt.VerifyReply(reply, reply_raw), "bad response authenticator"
    return reply
