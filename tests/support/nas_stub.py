"""A NAS's RFC 5176 side for tests: a UDP Dynamic Authorization Server built on pyrad, not on ocs.

It decodes every Disconnect-Request / CoA-Request with pyrad's ``CoAPacket``, checks its Request
Authenticator (``VerifyCoARequest``) and Message-Authenticator (``verify_message_authenticator``)
with pyrad's code, records what came, and answers as told: ACK, NAK with an Error-Cause, nothing
(a silent NAS) or garbage.  It runs in a thread on a real socket, so the client under test (an
asyncio endpoint in the test's loop, or an ocsd subprocess) talks to it over loopback.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyrad import packet as rp

from tests.support.radius_client import DICT, SECRET


@dataclass
class Received:
    """One request as the stub saw it."""

    raw: bytes
    source: tuple[str, int]
    code: int
    ident: int
    attrs: dict[str, list[Any]]
    authentic: bool  # Request Authenticator and Message-Authenticator both verified by pyrad


Answer = Callable[[Received, Any], bytes | None]


def ack(rec: Received, req: Any) -> bytes:
    """Disconnect-ACK / CoA-ACK with a Message-Authenticator (pyrad computes both authenticators)."""
    reply = req.CreateReply()
    reply.add_message_authenticator()
    return bytes(reply.ReplyPacket())


def nak(cause: int | None) -> Answer:
    def answer(rec: Received, req: Any) -> bytes:
        reply = req.CreateReply()
        reply.code = rp.DisconnectNAK if req.code == rp.DisconnectRequest else rp.CoANAK
        if cause is not None:
            reply.AddAttribute("Error-Cause", cause)
        return bytes(reply.ReplyPacket())

    return answer


def silent(rec: Received, req: Any) -> None:
    return None


@dataclass
class NasStub:
    """``with NasStub() as nas:`` listens on 127.0.0.1:``nas.port``; ``answer`` decides each reply."""

    answer: Answer = ack
    secret: bytes = SECRET
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _seen: threading.Condition = field(default_factory=threading.Condition)

    @property
    def port(self) -> int:
        assert self.sock is not None
        return int(self.sock.getsockname()[1])

    def __enter__(self) -> NasStub:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, 0))
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, name="nas-stub", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.sock is not None:
            self.sock.close()

    def wait(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` requests arrived (or the timeout); returns what came."""
        with self._seen:
            self._seen.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)

    def _serve(self) -> None:
        assert self.sock is not None
        while not self._stop.is_set():
            try:
                data, src = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                req = rp.CoAPacket(packet=data, secret=self.secret, dict=DICT)
            except Exception:  # pyrad refuses it: a NAS drops what it cannot decode
                self.received.append(Received(data, src, data[0] if data else 0, -1, {}, False))
                continue
            authentic = bool(req.VerifyCoARequest()) and req.message_authenticator is not None and \
                bool(req.verify_message_authenticator())
            rec = Received(data, src, req.code, req.id, {str(k): list(req[k]) for k in req.keys()},  # noqa: SIM118
                           authentic)  # pyrad: keys() gives names, iteration the codes
            with self._seen:
                self.received.append(rec)
                self._seen.notify_all()
            out = self.answer(rec, req) if authentic else None  # a real NAS drops what fails (RFC 5176 3.3)
            if out is not None:
                self.sock.sendto(out, src)
