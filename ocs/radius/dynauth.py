"""RADIUS Dynamic Authorization, client side (RFC 5176): ocsd asks a NAS to end or change a session.

Why ocsd is the *client* here: in RFC 5176 the party that sends Disconnect-Request (section 2.1) and
CoA-Request (section 2.2) is the Dynamic Authorization Client, and the NAS listens (UDP 3799 by
default, section 3.4) as the Dynamic Authorization Server.  So this module owns one UDP endpoint of
its own, not the listeners of :mod:`ocs.radius.server`: answers to it come from the NAS's CoA port,
and a request must never be mistaken for an Access-Request or Accounting-Request.

- Requests are matched to answers by (destination, Identifier); Identifiers are allocated per
  destination, so 256 requests may be in flight to each NAS at once (RFC 2865 section 3: the
  Identifier only has to be unique per source/destination pair), more wait for a free one.
- Authenticators (RFC 5176 sections 2.3 and 3.3): Message-Authenticator (RFC 3579 3.2) is computed
  first, over the packet with the Request Authenticator field *zeroed*; then the Request
  Authenticator is computed as for an Accounting-Request (RFC 2866 section 3):
  MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret), the Attributes including
  the final Message-Authenticator.  FreeRADIUS computes and checks them in that order
  (tests/interop/test_radius_dynauth.py).
- Answers must come from the destination, carry the Identifier of a request in flight, the
  expected code (ACK or NAK of the request's kind) and a Response Authenticator
  MD5(Code + Identifier + Length + Request Authenticator + Attributes + Secret) (RFC 5176 3.3);
  a Message-Authenticator, when present, must verify (:func:`answer_authentic`).  Anything else is dropped and counted
  (``ocs_dropped_packets_total{protocol="radius",reason="bad_coa_answer"}``) and the request keeps
  waiting for its real answer: a forged or stale datagram can never decide an outcome.
- Retries: RFC 5176 section 2.3 leaves them to RFC 2865's client behaviour; here a request is sent,
  sent again after 1 s, again after 2 s more, and given up 2 s after that (``schedule``).  A
  retransmission is the same datagram (same Identifier, same authenticator), so a NAS that already
  acted answers it again instead of acting twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import random
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from ocs.control.model import Ack, ControlResult
from ocs.metrics import Metrics
from ocs.radius import codec
from ocs.wiretext import wire_bytes

log = structlog.get_logger("ocs.radius.dynauth")

RETRY_SCHEDULE = (1.0, 2.0, 2.0)  # seconds waited after each send: 3 sends, 5 s in all (spec section 9)
SESSION_CONTEXT_NOT_FOUND = 503
# RFC 5176 section 3.5, the Error-Cause values it registers; any other value is labelled "other"
ERROR_CAUSES = frozenset({201, 202, 401, 402, 403, 404, 405, 406, 407, 501, 502, 503, 504, 505, 506, 507, 508})
KIND = {codec.DISCONNECT_REQUEST: "disconnect", codec.COA_REQUEST: "coa"}
ANSWERS = {codec.DISCONNECT_REQUEST: (codec.DISCONNECT_ACK, codec.DISCONNECT_NAK),
           codec.COA_REQUEST: (codec.COA_ACK, codec.COA_NAK)}
_MA_PLACEHOLDER = bytes((codec.MESSAGE_AUTHENTICATOR, 18)) + bytes(16)


# -- what the session keeps to be reached ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Reach:
    """How to reach a RADIUS session's NAS later, as kept on the session hash (field ``reach``).

    Packed ``"source,nas_ip,user"``: the request's source address (finds the client entry: secret,
    coa, coa_port), the NAS-IP-Address attribute ("" when absent) and the User-Name as wire text
    (:func:`ocs.wiretext.wire_text`, may itself hold commas: it is last and split off with
    ``maxsplit=2``).
    """

    source: str
    nas_ip: str
    user: str

    @staticmethod
    def parse(packed: str) -> Reach | None:
        parts = packed.split(",", 2)
        if len(parts) != 3 or not parts[0]:
            return None
        return Reach(*parts)

    @property
    def destination(self) -> str:
        """Where the request goes: the NAS-IP-Address of the session, else the source (spec section 9)."""
        return self.nas_ip or self.source


def acct_session_id(session_id: str, user: str) -> bytes | None:
    """The Acct-Session-Id octets of a RADIUS session key, or None for a hold key.

    Keys are ``NAS|Acct-Session-Id`` (``|`` escaped in the NAS part, the id as wire text) or, for an
    Access-Request without Acct-Session-Id waiting for its Start, ``NAS|User-Name|Called-Station-Id``
    (:meth:`ocs.radius.server.RadiusServer._session_key`).  An Acct-Session-Id may itself contain
    ``|``, so a three-part key is a hold key only when its middle part is the session's User-Name
    (escaped as the hold key escapes it).
    """
    _nas, sep, rest = session_id.partition("|")
    if not sep:
        return None
    middle, sep, _called = rest.partition("|")
    if sep and middle == user.replace("|", "\\x7c"):
        return None
    return wire_bytes(rest)


def session_attributes(session_id: str, reach: Reach) -> list[bytes]:
    """Session identification (RFC 5176 section 3): Acct-Session-Id, User-Name, NAS-IP-Address as known."""
    out = []
    asid = acct_session_id(session_id, reach.user)
    if asid:
        out.append(codec.attribute(codec.ACCT_SESSION_ID, asid))
    if reach.user:
        out.append(codec.attribute(codec.USER_NAME, wire_bytes(reach.user)))
    if reach.nas_ip:
        out.append(codec.attribute(codec.NAS_IP_ADDRESS, ipaddress.IPv4Address(reach.nas_ip).packed))
    return out


# -- the wire ------------------------------------------------------------------------------------

def build_request(code: int, ident: int, secret: bytes, attributes: Sequence[bytes]) -> bytes:
    """A Disconnect-Request or CoA-Request with Message-Authenticator (first) and both authenticators.

    Order (RFC 5176 sections 2.3 and 3.3): Message-Authenticator = HMAC-MD5(secret, packet) with the
    authenticator field and the attribute's value zeroed; then the Request Authenticator =
    MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret) over the attributes
    holding that final Message-Authenticator (RFC 2866 section 3's Accounting-Request rule).
    """
    body = b"".join(attributes)
    head = struct.pack("!BBH", code, ident, codec.HEADER + len(_MA_PLACEHOLDER) + len(body))
    ma = codec.hmac_md5(secret, head + bytes(16) + _MA_PLACEHOLDER + body)
    attrs = _MA_PLACEHOLDER[:2] + ma + body
    return head + hashlib.md5(head + bytes(16) + attrs + secret).digest() + attrs


def answer_authentic(answer: codec.Packet, request_authenticator: bytes, secret: bytes) -> bool:
    """Response Authenticator (RFC 5176 3.3, as RFC 2865 section 3) and Message-Authenticator if present.

    The Response Authenticator is checked strictly.  The Message-Authenticator of an ACK/NAK is,
    by RFC 3579 3.2's rule for responses (and pyrad, and FreeRADIUS's own check), computed with the
    Request Authenticator in the authenticator field; FreeRADIUS 3.2 as a NAS *writes* it with 16
    zero octets there instead (its ``rad_sign`` treats Disconnect/CoA ACK and NAK like the requests).
    Both are keyed with the shared secret, so either proves the sender knows it: both are accepted.
    """
    expected = hashlib.md5(answer.raw[:4] + request_authenticator + answer.raw[codec.HEADER:] + secret).digest()
    if not hmac.compare_digest(expected, answer.authenticator):
        return False
    if answer.raw_attr(codec.MESSAGE_AUTHENTICATOR) is None:
        return True
    return codec.message_authenticator_matches(answer, request_authenticator, secret) or \
        codec.message_authenticator_matches(answer, bytes(16), secret)


def interpret(answer: codec.Packet) -> ControlResult:
    """ACK -> ACKED; NAK -> by Error-Cause (RFC 5176 3.5): 503 -> UNKNOWN_SESSION, else REFUSED with the code."""
    if answer.code in (codec.DISCONNECT_ACK, codec.COA_ACK):
        return ControlResult(Ack.ACKED)
    cause = answer.integer(codec.ERROR_CAUSE) or 0
    if cause == SESSION_CONTEXT_NOT_FOUND:
        return ControlResult(Ack.UNKNOWN_SESSION, cause, "NAK: Session-Context-Not-Found")
    return ControlResult(Ack.REFUSED, cause, f"NAK, Error-Cause {cause}" if cause else "NAK without Error-Cause")


def cause_label(code: int) -> str:
    """The ``error_cause`` label of ``ocs_radius_coa_nak_total``: bounded to RFC 5176 3.5's values."""
    if code in ERROR_CAUSES:
        return str(code)
    return "none" if code == 0 else "other"


# -- the client ----------------------------------------------------------------------------------

@dataclass(slots=True)
class _InFlight:
    code: int
    authenticator: bytes
    secret: bytes
    answer: asyncio.Future[codec.Packet]
    rejected: int = 0  # answers that matched (destination, Identifier) but failed checks


@dataclass(slots=True)
class _Destination:
    """Identifier state towards one (address, port)."""

    next: int
    used: set[int] = field(default_factory=set)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, client: DynAuthClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.client.received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:  # an ICMP error: the retries decide
        log.debug("dynauth_socket_error", error=repr(exc))


class DynAuthClient:
    """Sends Disconnect-Request / CoA-Request and waits for the verified answer (module docstring).

    The socket is opened on first use (most deployments never send one) and bound to ``bind_host``
    (the auth listener's address, so the NAS sees the address it already knows as ours) when the
    destination is of the same family.  :meth:`close` ends every request in flight.
    """

    def __init__(self, metrics: Metrics, *, bind_host: str = "", schedule: Sequence[float] = RETRY_SCHEDULE) -> None:
        self.metrics = metrics
        self.bind_host = bind_host
        self.schedule = tuple(schedule)
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._opening = asyncio.Lock()
        self._in_flight: dict[tuple[tuple[str, int], int], _InFlight] = {}
        self._dests: dict[tuple[str, int], _Destination] = {}
        self._closed = False

    # -- socket -----------------------------------------------------------------------------

    async def _transport(self, family: int) -> asyncio.DatagramTransport:
        async with self._opening:
            found = self._transports.get(family)
            if found is None:
                host = "::" if family == socket.AF_INET6 else "0.0.0.0"
                try:
                    if self.bind_host and _family(self.bind_host) == family and not \
                            ipaddress.ip_address(self.bind_host).is_unspecified:
                        host = self.bind_host
                except ValueError:  # a host name: the kernel picks the source address
                    pass
                loop = asyncio.get_running_loop()
                found, _p = await loop.create_datagram_endpoint(lambda: _Endpoint(self), local_addr=(host, 0),
                                                                family=family)
                if self._closed:  # close() ran while the socket was being made: it must not outlive it
                    found.close()
                    return found
                self._transports[family] = found
            return found

    def close(self) -> None:
        """Stopping: close the socket; requests in flight end as NO_ANSWER."""
        self._closed = True
        for t in self._transports.values():
            t.close()
        self._transports.clear()
        for flight in self._in_flight.values():
            if not flight.answer.done():
                flight.answer.cancel()

    # -- identifiers ------------------------------------------------------------------------

    async def _ident(self, dest: tuple[str, int]) -> int:
        while True:
            d = self._dests.get(dest)
            if d is None:
                d = self._dests[dest] = _Destination(random.randrange(256))
            if len(d.used) < 256:
                ident = d.next
                while ident in d.used:
                    ident = (ident + 1) & 0xFF
                d.next = (ident + 1) & 0xFF
                d.used.add(ident)
                return ident
            waiter = asyncio.get_running_loop().create_future()
            d.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in d.waiters:
                    d.waiters.remove(waiter)

    def _release(self, dest: tuple[str, int], ident: int) -> None:
        d = self._dests.get(dest)
        if d is None:
            return
        d.used.discard(ident)
        for w in d.waiters:
            if not w.done():
                w.set_result(None)
                break
        if not d.used and not d.waiters:
            del self._dests[dest]

    # -- one request ------------------------------------------------------------------------

    async def request(self, code: int, host: str, port: int, secret: bytes,
                      attributes: Sequence[bytes]) -> ControlResult:
        """Send ``code`` (Disconnect-Request or CoA-Request) to ``host:port`` and wait for its outcome.

        ``attributes`` are the request's attributes except Message-Authenticator and
        Event-Timestamp, which are added here (RFC 5176 3.3 and section 3: replay protection).
        """
        kind = KIND[code]
        if self._closed:
            return ControlResult(Ack.NO_ANSWER, detail="ocsd is stopping")
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return ControlResult(Ack.NOT_ENABLED, detail=f"no NAS address to send to: {host!r}")
        dest = (str(addr), port)
        family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
        transport = await self._transport(family)
        ident = await self._ident(dest)
        if self._closed:  # closed while this one waited for a free Identifier
            self._release(dest, ident)
            return ControlResult(Ack.NO_ANSWER, detail="ocsd is stopping")
        stamp = codec.integer_attribute(codec.EVENT_TIMESTAMP, int(time.time()) & 0xFFFFFFFF)
        packet = build_request(code, ident, secret, [*attributes, stamp])
        flight = _InFlight(code, packet[4:20], secret, asyncio.get_running_loop().create_future())
        self._in_flight[(dest, ident)] = flight
        try:
            for attempt, wait in enumerate(self.schedule):
                if attempt:
                    self.metrics.child(self.metrics.control_retries, "radius", kind).inc()
                transport.sendto(packet, dest)
                done, _ = await asyncio.wait((flight.answer,), timeout=wait)
                if done:
                    break
            else:
                if flight.rejected:
                    return ControlResult(Ack.BAD_ANSWER, detail=f"{flight.rejected} answer(s) from {dest[0]} failed"
                                         " authentication (shared secret?), none valid")
                return ControlResult(Ack.NO_ANSWER, detail=f"no answer from {dest[0]}:{port} after"
                                     f" {len(self.schedule)} sends")
            if flight.answer.cancelled():
                return ControlResult(Ack.NO_ANSWER, detail="ocsd is stopping")
            answer = flight.answer.result()
        finally:
            del self._in_flight[(dest, ident)]
            self._release(dest, ident)
        result = interpret(answer)
        if not result.ok:
            label = cause_label(result.code)
            self.metrics.child(self.metrics.coa_naks, kind, label).inc()
            log.warning("coa_nak", kind=kind, nas=dest[0], port=port, error_cause=result.code, label=label)
        return result

    # -- answers ----------------------------------------------------------------------------

    def received(self, data: bytes, src: tuple[str, int]) -> None:
        """An answer, or anything else arriving on our socket (module docstring: what is dropped)."""
        flight = self._in_flight.get((src, data[1])) if len(data) >= codec.HEADER else None
        if flight is None or flight.answer.done():  # unsolicited, late, or a second answer: not worth a log line
            self.metrics.child(self.metrics.dropped, "radius", "bad_coa_answer").inc()
            return
        try:
            answer = codec.decode(data)
        except codec.MalformedPacket as exc:
            flight.rejected += 1
            self._drop(src, str(exc))
            return
        if answer.code not in ANSWERS[flight.code]:
            flight.rejected += 1
            self._drop(src, f"code {answer.code} does not answer a {KIND[flight.code]} request")
            return
        if not answer_authentic(answer, flight.authenticator, flight.secret):
            flight.rejected += 1
            self._drop(src, "bad Response Authenticator or Message-Authenticator")
            return
        flight.answer.set_result(answer)

    def _drop(self, src: tuple[str, int], why: str) -> None:
        self.metrics.child(self.metrics.dropped, "radius", "bad_coa_answer").inc()
        log.warning("coa_answer_dropped", source=f"{src[0]}:{src[1]}", reason=why)


def _family(host: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
