"""Requests ocsd sends on its own on an open peer connection: ASR and RAR, and what their answers mean.

- **ASR** (Abort-Session-Request, RFC 6733 section 8.5.1; command code 274, not the CCR's 272):
  the account was blocked, the operator disconnected the session, or a postpaid account passed its
  credit limit. The client answers ASA and ends the session with a CCR-T (RFC 4006 section 5.6).
- **RAR** (Re-Auth-Request, RFC 6733 section 8.3.1; command code 258) with Re-Auth-Request-Type
  AUTHORIZE_ONLY (RFC 4006 section 5.5, Figure 5): a top-up credited an account whose last grant
  was cut short; the client answers RAA and sends a CCR-U, which gets the larger grant.

Both are session-specific requests of the credit-control application: the header's Application-Id
and the Auth-Application-Id AVP are 4, the R and P bits are set (both grammars say ``REQ, PXY``),
and they carry, in the grammar's order, ``< Session-Id >`` (the octets the client sent: the stored
id is wire text, :func:`ocs.wiretext.wire_bytes` restores them), ``{ Origin-Host }``,
``{ Origin-Realm }``, ``{ Destination-Realm }`` and ``{ Destination-Host }`` (the peer's Origin-Realm
and Origin-Host from its CER), ``{ Auth-Application-Id }`` and, in a RAR, ``{ Re-Auth-Request-Type }``.
Every one of these base AVPs has the M bit (RFC 6733 section 4.5).

A retransmission keeps the End-to-End Identifier (the peer detects the duplicate by it and
Origin-Host, RFC 6733 section 6.1.1) and sets the T bit (RFC 6733 section 3: "the sender MUST set
this flag" when the request is not sent for the first time); the Hop-by-Hop Identifier is new.
"""

from __future__ import annotations

from dataclasses import dataclass

from ocs.control.model import Ack, ControlResult
from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.diameter.codec import CodecError, Message
from ocs.wiretext import wire_bytes

KINDS = {c.ASR: "asr", c.RAR: "rar"}  # the ``kind`` label of ocs_control_requests_total


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """One ASR or RAR, header fields aside: :meth:`encode` adds them per attempt."""

    code: int
    session_id: str  # wire text, as stored
    body: bytes  # the encoded AVPs

    @property
    def kind(self) -> str:
        return KINDS[self.code]

    def encode(self, hop_by_hop: int, end_to_end: int, *, retransmit: bool = False) -> bytes:
        """The whole message: R and P set, T on a retransmission (RFC 6733 section 3)."""
        flags = codec.FLAG_R | codec.FLAG_P | (codec.FLAG_T if retransmit else 0)
        return codec.message(self.code, flags, c.APP_CC, hop_by_hop, end_to_end, self.body)


def _head(session_id: str, origin_host: str, origin_realm: str, destination_host: str,
          destination_realm: str) -> list[bytes]:
    return [codec.avp(c.SESSION_ID, wire_bytes(session_id)),
            codec.utf8(c.ORIGIN_HOST, origin_host), codec.utf8(c.ORIGIN_REALM, origin_realm),
            codec.avp(c.DESTINATION_REALM, wire_bytes(destination_realm)),
            codec.avp(c.DESTINATION_HOST, wire_bytes(destination_host)),
            codec.u32(c.AUTH_APPLICATION_ID, c.APP_CC)]


def abort_session(session_id: str, *, origin_host: str, origin_realm: str, destination_host: str,
                  destination_realm: str) -> ServerRequest:
    """ASR (RFC 6733 section 8.5.1) for one credit-control session."""
    body = _head(session_id, origin_host, origin_realm, destination_host, destination_realm)
    return ServerRequest(c.ASR, session_id, b"".join(body))


def reauth(session_id: str, *, origin_host: str, origin_realm: str, destination_host: str,
           destination_realm: str) -> ServerRequest:
    """RAR (RFC 6733 section 8.3.1), Re-Auth-Request-Type AUTHORIZE_ONLY (RFC 4006 section 5.5)."""
    body = _head(session_id, origin_host, origin_realm, destination_host, destination_realm)
    body.append(codec.u32(c.RE_AUTH_REQUEST_TYPE, c.AUTHORIZE_ONLY))
    return ServerRequest(c.RAR, session_id, b"".join(body))


def build(code: int, session_id: str, *, origin_host: str, origin_realm: str, destination_host: str,
          destination_realm: str) -> ServerRequest:
    """:func:`abort_session` for ``c.ASR``, :func:`reauth` for ``c.RAR``."""
    make = {c.ASR: abort_session, c.RAR: reauth}[code]
    return make(session_id, origin_host=origin_host, origin_realm=origin_realm, destination_host=destination_host,
                destination_realm=destination_realm)


def outcome(request: ServerRequest, answer: Message) -> ControlResult:
    """What an ASA/RAA (RFC 6733 sections 8.5.2, 8.3.2) says.

    2001 DIAMETER_SUCCESS and 2002 DIAMETER_LIMITED_SUCCESS acknowledge; 5002
    DIAMETER_UNKNOWN_SESSION_ID means the client holds no such session (it ended meanwhile); any
    other code (5012, a 3xxx protocol error such as 3002 UNABLE_TO_DELIVER from an agent) is a
    refusal carrying its code. An answer with another command code, without a Result-Code (or
    Experimental-Result, which 3GPP clients may use) or with an AVP that does not decode is a bad
    answer.
    """
    if answer.code != request.code or answer.is_request:
        return ControlResult(Ack.BAD_ANSWER, detail=f"answer with command code {answer.code} to {request.kind}")
    try:
        rc = answer.first(c.RESULT_CODE)
        if rc is not None:
            code = rc.u32()
        else:
            exp = answer.first(c.EXPERIMENTAL_RESULT)
            inner = codec.find(exp.group(), c.EXPERIMENTAL_RESULT_CODE) if exp is not None else None
            if inner is None:
                return ControlResult(Ack.BAD_ANSWER, detail="no Result-Code")
            code = inner.u32()
        msg = answer.first(c.ERROR_MESSAGE)
        text = msg.wire() if msg is not None else ""
    except CodecError as exc:
        return ControlResult(Ack.BAD_ANSWER, detail=str(exc))
    if code in (c.SUCCESS, c.LIMITED_SUCCESS):
        return ControlResult(Ack.ACKED, code)
    if code == c.UNKNOWN_SESSION_ID:
        return ControlResult(Ack.UNKNOWN_SESSION, code, text or "the client holds no such session")
    return ControlResult(Ack.REFUSED, code, text)
