"""What a server-initiated control request is, and how it ended (docs/control.md).

Shared by the senders (Diameter ASR/RAR in :mod:`ocs.diameter`, RADIUS Disconnect/CoA in
:mod:`ocs.radius`), the per-node executor and ``ocsctl session disconnect``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Causes written on the record of a session ended from the network side (spec section 9).
ADMINISTRATIVE = "ADMINISTRATIVE"  # account blocked, operator disconnect
CREDIT_LIMIT = "CREDIT_LIMIT"  # a postpaid account passed its credit limit


class Op(enum.Enum):
    """What the network is asked to do with one session."""

    ABORT = "abort"  # Diameter ASR (RFC 6733 8.5) / RADIUS Disconnect-Request (RFC 5176 2.1)
    REAUTH = "reauth"  # Diameter RAR AUTHORIZE_ONLY (RFC 6733 8.3, RFC 4006 5.5) / RADIUS CoA-Request


class Ack(enum.Enum):
    """How a control request ended; the ``result`` label of ``ocs_control_requests_total``."""

    ACKED = "acked"  # 2001/2002, Disconnect-ACK, CoA-ACK
    UNKNOWN_SESSION = "unknown_session"  # 5002 / NAK Error-Cause 503 Session Context Not Found
    REFUSED = "refused"  # any other answer code (5012, 3xxx, NAK with another Error-Cause)
    NO_ANSWER = "no_answer"  # no answer after the retries
    PEER_GONE = "peer_gone"  # no node holds a connection to the session's peer (3002 semantics)
    NOT_ENABLED = "not_enabled"  # RADIUS client entry without coa = true: nothing sent
    BAD_ANSWER = "bad_answer"  # an answer that could not be decoded or authenticated


@dataclass(frozen=True, slots=True)
class ControlResult:
    """The outcome of one control request: ``code`` is the Result-Code or Error-Cause when one came."""

    ack: Ack
    code: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.ack is Ack.ACKED

    def to_dict(self) -> dict[str, object]:
        return {"result": self.ack.value, "code": self.code, "detail": self.detail}
