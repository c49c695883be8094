"""Hand-made RADIUS and Diameter encoders for the fuzzer: correct signing, and room for lies.

pyrad and ``ocs.diameter.codec`` build only well-formed packets.  The fuzzer
needs to sign packets correctly (so they pass the Request Authenticator and
Message-Authenticator checks and reach the charging logic) and then to say
things no codec says: attribute and AVP lengths that do not match, header
Length fields that lie, integers of the wrong width.  Everything here works on
bytes; nothing imports the daemon except the Diameter constants and the
well-formed AVP helpers of ``ocs.diameter.codec`` (read only).
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from collections.abc import Iterable

from ocs.diameter import codec as dc
from ocs.diameter import constants as c

SECRET = b"testing123"

# -- RADIUS (RFC 2865 / 2866 / 3579) ---------------------------------------------------------------

ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT, ACCOUNTING_REQUEST, ACCOUNTING_RESPONSE = 1, 2, 3, 4, 5
USER_NAME, USER_PASSWORD, CHAP_PASSWORD, NAS_IP_ADDRESS, NAS_PORT = 1, 2, 3, 4, 5
SERVICE_TYPE, REPLY_MESSAGE, CLASS, VENDOR_SPECIFIC, SESSION_TIMEOUT = 6, 18, 25, 26, 27
CALLED_STATION_ID, CALLING_STATION_ID, NAS_IDENTIFIER, PROXY_STATE = 30, 31, 32, 33
ACCT_STATUS_TYPE, ACCT_DELAY_TIME, ACCT_INPUT_OCTETS, ACCT_OUTPUT_OCTETS = 40, 41, 42, 43
ACCT_SESSION_ID, ACCT_SESSION_TIME, ACCT_TERMINATE_CAUSE, EVENT_TIMESTAMP = 44, 46, 49, 55
CHAP_CHALLENGE, NAS_PORT_TYPE, MESSAGE_AUTHENTICATOR, ACCT_INTERIM_INTERVAL = 60, 61, 80, 85
START, STOP, INTERIM, ACCOUNTING_ON, ACCOUNTING_OFF = 1, 2, 3, 7, 8

MA_ZERO = b"\x50\x12" + bytes(16)


def attr(kind: int, value: bytes) -> bytes:
    """One attribute; values longer than 253 octets are cut (use :func:`raw_attr` to lie)."""
    value = value[:253]
    return bytes((kind, len(value) + 2)) + value


def raw_attr(kind: int, value: bytes, length: int) -> bytes:
    """An attribute whose Length octet says ``length`` whatever the value is."""
    return bytes((kind, length & 0xFF)) + value


def int_attr(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("!I", value & 0xFFFFFFFF))


def attrs(pairs: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(attr(k, v) for k, v in pairs)


def pap(password: bytes, authenticator: bytes, secret: bytes = SECRET) -> bytes:
    """RFC 2865 section 5.2: User-Password hidden with the secret and the Request Authenticator."""
    padded = password + b"\0" * (-len(password) % 16) if password else bytes(16)
    out, last = bytearray(), authenticator
    for i in range(0, len(padded), 16):
        key = hashlib.md5(secret + last).digest()
        block = bytes(a ^ b for a, b in zip(padded[i:i + 16], key, strict=True))
        out += block
        last = block
    return bytes(out)


def _head(code: int, ident: int, length: int) -> bytes:
    return struct.pack("!BBH", code, ident & 0xFF, length & 0xFFFF)


def sign_access(ident: int, authenticator: bytes, body: bytes, *, ma: bool = True, secret: bytes = SECRET,
                code: int = ACCESS_REQUEST) -> bytes:
    """An Access-Request: ``body`` as given (lies included), Message-Authenticator first when ``ma``.

    The Message-Authenticator is HMAC-MD5 over the packet with its value zeroed and the Request
    Authenticator in place (RFC 3579 section 3.2).  It sits first so that the server finds and zeroes
    it even when a later attribute lies about its length.
    """
    if ma:
        body = MA_ZERO + body
    head = _head(code, ident, 20 + len(body))
    if ma:
        mac = hmac.new(secret, head + authenticator + body, "md5").digest()
        body = b"\x50\x12" + mac + body[18:]
    return head + authenticator + body


def sign_accounting(ident: int, body: bytes, *, ma: bool = False, secret: bytes = SECRET,
                    code: int = ACCOUNTING_REQUEST, length: int | None = None) -> bytes:
    """An Accounting-Request with a valid Request Authenticator (RFC 2866 section 3).

    ``length`` (default: the real one) goes into the header; the authenticator is computed over the
    first ``length`` octets as the server will see them, so a Length shorter than the datagram
    signs the packet and leaves the rest as padding.
    """
    if ma:
        body = MA_ZERO + body
    length = 20 + len(body) if length is None else length
    head = _head(code, ident, length)
    covered = body[:max(0, length - 20)]
    if ma and len(covered) >= 18:
        mac = hmac.new(secret, head + bytes(16) + covered, "md5").digest()
        body = b"\x50\x12" + mac + body[18:]
        covered = body[:max(0, length - 20)]
    auth = hashlib.md5(head + bytes(16) + covered + secret).digest()
    return head + auth + body


def resign(raw: bytes, secret: bytes = SECRET) -> bytes:
    """Sign ``raw`` again after a byte-level lie (Accounting: authenticator; Access: a leading MA)."""
    if len(raw) < 20:
        return raw
    code, ident, length = struct.unpack_from("!BBH", raw)
    body = raw[20:]
    if code == ACCOUNTING_REQUEST:
        ma = body[:2] == b"\x50\x12"
        return sign_accounting(ident, body[18:] if ma else body, ma=ma, secret=secret, length=length)
    if code == ACCESS_REQUEST and body[:2] == b"\x50\x12":
        head, auth = raw[:4], raw[4:20]
        zeroed = MA_ZERO + body[18:]
        covered = zeroed[:max(0, length - 20)]
        mac = hmac.new(secret, head + auth + covered, "md5").digest()
        return head + auth + b"\x50\x12" + mac + body[18:]
    return raw


def reply_ok(reply: bytes, request: bytes, secret: bytes = SECRET) -> bool:
    """The Response Authenticator of ``reply`` verifies against ``request`` (RFC 2865 section 3)."""
    if len(reply) < 20 or len(request) < 20:
        return False
    length = struct.unpack_from("!H", reply, 2)[0]
    if length != len(reply):
        return False
    expect = hashlib.md5(reply[:4] + request[4:20] + reply[20:] + secret).digest()
    return hmac.compare_digest(expect, reply[4:20])


def reply_attrs(reply: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    pos = 20
    while pos + 2 <= len(reply):
        kind, alen = reply[pos], reply[pos + 1]
        if alen < 2:
            break
        out.setdefault(kind, []).append(reply[pos + 2:pos + alen])
        pos += alen
    return out


def access_request(ident: int, authenticator: bytes, *, user: bytes, password: bytes | None, called: bytes,
                   nas_id: bytes | None = None, session: bytes | None = None, calling: bytes | None = None,
                   secret: bytes = SECRET) -> bytes:
    """A well-formed, signed Access-Request (PAP, Message-Authenticator)."""
    body = [attr(USER_NAME, user), attr(CALLED_STATION_ID, called), attr(NAS_IP_ADDRESS, bytes((127, 0, 0, 1)))]
    if calling is not None:
        body.append(attr(CALLING_STATION_ID, calling))
    if nas_id is not None:
        body.append(attr(NAS_IDENTIFIER, nas_id))
    if session is not None:
        body.append(attr(ACCT_SESSION_ID, session))
    if password is not None:
        body.append(attr(USER_PASSWORD, pap(password, authenticator, secret)))
    return sign_access(ident, authenticator, b"".join(body), secret=secret)


def accounting_request(ident: int, status: int, *, session: bytes | None, user: bytes | None = None,
                       nas_id: bytes | None = None, called: bytes | None = None, time: int | None = None,
                       delay: int | None = None, cause: int | None = None, secret: bytes = SECRET) -> bytes:
    """A well-formed, signed Accounting-Request."""
    body = [int_attr(ACCT_STATUS_TYPE, status)]
    for kind, value in ((ACCT_SESSION_ID, session), (USER_NAME, user), (NAS_IDENTIFIER, nas_id),
                        (CALLED_STATION_ID, called)):
        if value is not None:
            body.append(attr(kind, value))
    body.append(attr(NAS_IP_ADDRESS, bytes((127, 0, 0, 1))))
    for kind, num in ((ACCT_SESSION_TIME, time), (ACCT_DELAY_TIME, delay), (ACCT_TERMINATE_CAUSE, cause)):
        if num is not None:
            body.append(int_attr(kind, num))
    return sign_accounting(ident, b"".join(body), secret=secret)


def radius_exchange(port: int, raw: bytes, timeout: float = 2.0, tries: int = 3) -> bytes | None:
    """Send ``raw`` to 127.0.0.1:port and return a reply whose authenticator verifies (None if none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(tries):
            s.sendto(raw, ("127.0.0.1", port))
            try:
                while True:
                    data = s.recv(65535)
                    if len(data) >= 2 and data[1] == raw[1] and reply_ok(data, raw):
                        return data
            except TimeoutError:
                continue
    return None


# -- Diameter (RFC 6733 / 4006) --------------------------------------------------------------------

AVP_V, AVP_M, AVP_P = dc.AVP_V, dc.AVP_M, dc.AVP_P


def raw_avp(code: int, data: bytes, *, flags: int = AVP_M, vendor: int = 0, length: int | None = None,
            pad: bool = True) -> bytes:
    """An AVP whose header says ``flags`` and ``length`` (default: the truth) whatever the data is."""
    hdr = 12 if flags & AVP_V else 8
    real = hdr + len(data)
    head = struct.pack("!II", code & 0xFFFFFFFF, ((flags & 0xFF) << 24) | ((real if length is None else length)
                                                                          & 0xFFFFFF))
    if flags & AVP_V:
        head += struct.pack("!I", vendor & 0xFFFFFFFF)
    out = head + data
    return out + b"\0" * (-len(out) % 4) if pad else out


def message(code: int, flags: int, app: int, hbh: int, e2e: int, body: bytes, *, version: int = 1,
            length: int | None = None) -> bytes:
    """A Diameter message whose header says ``version`` and ``length`` (default: the truth)."""
    real = 20 + len(body)
    ln = real if length is None else length
    return (bytes([version & 0xFF]) + (ln & 0xFFFFFF).to_bytes(3, "big") + bytes([flags & 0xFF])
            + (code & 0xFFFFFF).to_bytes(3, "big") + struct.pack("!III", app & 0xFFFFFFFF, hbh & 0xFFFFFFFF,
                                                                 e2e & 0xFFFFFFFF) + body)


def cer(hbh: int, host: str = "fuzz.pgw.test", apps: tuple[int, ...] = (c.APP_CC,)) -> bytes:
    return dc.message(c.CER, dc.FLAG_R, 0, hbh, hbh, dc.utf8(c.ORIGIN_HOST, host), dc.utf8(c.ORIGIN_REALM, "test"),
                      dc.address(c.HOST_IP_ADDRESS, "127.0.0.1"), dc.u32(c.VENDOR_ID, 0),
                      dc.utf8(c.PRODUCT_NAME, "ocs-fuzz", mandatory=False),
                      *(dc.u32(c.AUTH_APPLICATION_ID, a) for a in apps))


def ccr_avps(session: bytes, rtype: int, number: int, *, subscriber: bytes | None, called: bytes | None = None,
             rg: int | None = 1, requested: int | None = 60, used: int | None = None, octets: bool = False,
             origin: bytes = b"fuzz.pgw.test") -> list[bytes]:
    """The AVPs of a well-formed CCR (voice in CC-Time, or data in CC-Total-Octets)."""
    out = [dc.avp(c.SESSION_ID, session), dc.avp(c.ORIGIN_HOST, origin), dc.utf8(c.ORIGIN_REALM, "test"),
           dc.utf8(c.DESTINATION_REALM, "test.example.net"), dc.u32(c.AUTH_APPLICATION_ID, c.APP_CC),
           dc.utf8(c.SERVICE_CONTEXT_ID, "32251@3gpp.org" if octets else "32260@3gpp.org"),
           dc.u32(c.CC_REQUEST_TYPE, rtype), dc.u32(c.CC_REQUEST_NUMBER, number & 0xFFFFFFFF)]
    if subscriber is not None:
        out.append(dc.grouped(c.SUBSCRIPTION_ID, dc.u32(c.SUBSCRIPTION_ID_TYPE, 0),
                              dc.avp(c.SUBSCRIPTION_ID_DATA, subscriber)))
    if called is not None:
        out.append(dc.grouped(c.SERVICE_INFORMATION, dc.grouped(
            c.IMS_INFORMATION, dc.avp(c.CALLED_PARTY_ADDRESS, called, vendor=c.VENDOR_3GPP),
            vendor=c.VENDOR_3GPP), vendor=c.VENDOR_3GPP))
    inner = []
    if requested is not None:
        unit = dc.u64(c.CC_TOTAL_OCTETS, requested) if octets else dc.u32(c.CC_TIME, requested)
        inner.append(dc.grouped(c.REQUESTED_SERVICE_UNIT, unit))
    if used is not None:
        unit = dc.u64(c.CC_TOTAL_OCTETS, used) if octets else dc.u32(c.CC_TIME, used)
        inner.append(dc.grouped(c.USED_SERVICE_UNIT, unit))
    if rg is not None:
        inner.append(dc.u32(c.RATING_GROUP, rg))
    out.append(dc.grouped(c.MULTIPLE_SERVICES_CREDIT_CONTROL, *inner))
    return out


def read_message(sock: socket.socket, buf: bytearray) -> bytes | None:
    """One whole message from ``sock`` (blocking with the socket's timeout); None on EOF."""
    while True:
        if len(buf) >= 20:
            length = int.from_bytes(buf[1:4], "big")
            if length < 20:
                raise ValueError(f"answer with header length {length}")
            if len(buf) >= length:
                raw = bytes(buf[:length])
                del buf[:length]
                return raw
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk


def result_code(raw: bytes) -> int:
    msg = dc.decode(raw)
    a = msg.first(c.RESULT_CODE)
    return a.u32() if a else -1
