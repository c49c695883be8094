"""A minimal blocking Diameter Gy client for tests (our codec on a plain socket)."""

from __future__ import annotations

import itertools
import socket

from ocs.diameter import codec
from ocs.diameter import constants as c

_ids = itertools.count(1)


class GyClient:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> codec.Message:
        while True:
            if len(self.buf) >= 20:
                _v, length = codec.decode_header(self.buf)
                if len(self.buf) >= length:
                    raw, self.buf = self.buf[:length], self.buf[length:]
                    return codec.decode(raw)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def request(self, code: int, app: int, *avps: bytes, flags: int = codec.FLAG_R) -> codec.Message:
        n = next(_ids)
        self.send(codec.message(code, flags, app, n, n, *avps))
        return self.recv()

    def cer(self, apps: tuple[int, ...] = (c.APP_CC,), host: str = "pgw.test") -> codec.Message:
        return self.request(c.CER, 0, codec.utf8(c.ORIGIN_HOST, host), codec.utf8(c.ORIGIN_REALM, "test"),
                            codec.address(c.HOST_IP_ADDRESS, "127.0.0.1"), codec.u32(c.VENDOR_ID, 0),
                            codec.utf8(c.PRODUCT_NAME, "pytest", mandatory=False),
                            *(codec.u32(c.AUTH_APPLICATION_ID, a) for a in apps))


def ccr(session: str, rtype: int, number: int, *, subscriber: str = "4915110000001", called: str = "",
        rg: int | None = None, requested: int | None = None, used: int | None = None,
        extra: tuple[bytes, ...] = (), mscc: bool = True, action: int | None = None) -> list[bytes]:
    avps = [codec.utf8(c.SESSION_ID, session), codec.utf8(c.ORIGIN_HOST, "pgw.test"),
            codec.utf8(c.ORIGIN_REALM, "test"), codec.utf8(c.DESTINATION_REALM, "test.example.net"),
            codec.u32(c.AUTH_APPLICATION_ID, 4), codec.utf8(c.SERVICE_CONTEXT_ID, "32260@3gpp.org"),
            codec.u32(c.CC_REQUEST_TYPE, rtype), codec.u32(c.CC_REQUEST_NUMBER, number)]
    if subscriber:
        avps.append(codec.grouped(c.SUBSCRIPTION_ID, codec.u32(c.SUBSCRIPTION_ID_TYPE, 0),
                                  codec.utf8(c.SUBSCRIPTION_ID_DATA, subscriber)))
    if action is not None:
        avps.append(codec.u32(c.REQUESTED_ACTION, action))
    if called:
        avps.append(codec.grouped(c.SERVICE_INFORMATION, codec.grouped(
            c.IMS_INFORMATION, codec.utf8(c.CALLED_PARTY_ADDRESS, called, vendor=c.VENDOR_3GPP),
            vendor=c.VENDOR_3GPP), vendor=c.VENDOR_3GPP))
    units = []
    if requested is not None:
        units.append(codec.grouped(c.REQUESTED_SERVICE_UNIT, codec.u32(c.CC_TIME, requested)))
    if used is not None:
        units.append(codec.grouped(c.USED_SERVICE_UNIT, codec.u32(c.CC_TIME, used)))
    if mscc:
        inner = [*units, *( [codec.u32(c.RATING_GROUP, rg)] if rg is not None else [])]
        avps.append(codec.grouped(c.MULTIPLE_SERVICES_CREDIT_CONTROL, *inner))
    else:
        avps += units
    return [*avps, *extra]


def result(msg: codec.Message) -> int:
    a = msg.first(c.RESULT_CODE)
    return a.u32() if a else -1


def granted_time(msg: codec.Message) -> int | None:
    for m in msg.all(c.MULTIPLE_SERVICES_CREDIT_CONTROL):
        g = codec.find(m.group(), c.GRANTED_SERVICE_UNIT)
        if g is not None:
            t = codec.find(g.group(), c.CC_TIME)
            return t.u32() if t else None
    g = msg.first(c.GRANTED_SERVICE_UNIT)
    if g is not None:
        t = codec.find(g.group(), c.CC_TIME)
        return t.u32() if t else None
    return None
