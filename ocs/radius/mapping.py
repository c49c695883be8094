"""RADIUS <-> charging verbs, as data (spec section 6, RFC 2865/2866).

Accounting idempotency: a charge is identified by (Acct-Session-Id, status,
session time), encoded as the core's request number, so an Interim or Stop
resent with a new RADIUS identifier (which defeats the RFC 5080 cache) is
still charged once:

- Access-Request: a number from the Request Authenticator (a new call under a
  reused hold key gets a new number; a retransmission the cache missed, the same);
- Interim-Update at session time T: ``1 + T``;
- Stop at session time T: ``STOP_BASE + T``.
"""

from __future__ import annotations

import enum

from ocs.model import Status

STOP_BASE = 2_000_000_000
MAX_SESSION_TIME = 1_000_000_000


class AcctStatus(enum.IntEnum):
    START = 1
    STOP = 2
    INTERIM = 3
    ACCOUNTING_ON = 7
    ACCOUNTING_OFF = 8


VERB_OF = {
    AcctStatus.START: "start",
    AcctStatus.INTERIM: "update",
    AcctStatus.STOP: "terminate",
    AcctStatus.ACCOUNTING_ON: "terminate_origin",
    AcctStatus.ACCOUNTING_OFF: "terminate_origin",
}

REJECT_REASON = {
    Status.UNKNOWN_SUBSCRIBER: "unknown account",
    Status.BLOCKED: "account blocked",
    Status.OUT_OF_CREDIT: "no credit",
    Status.NOT_RATED: "destination not rated",
    Status.BAD_CREDENTIALS: "bad password",
    Status.INVALID: "session already active",
    Status.UNKNOWN_SESSION: "unknown session",
    Status.ERROR: "internal error",
}

TERMINATE_CAUSES = {
    1: "User-Request", 2: "Lost-Carrier", 3: "Lost-Service", 4: "Idle-Timeout", 5: "Session-Timeout",
    6: "Admin-Reset", 7: "Admin-Reboot", 8: "Port-Error", 9: "NAS-Error", 10: "NAS-Request",
    11: "NAS-Reboot", 12: "Port-Unneeded", 13: "Port-Preempted", 14: "Port-Suspended",
    15: "Service-Unavailable", 16: "Callback", 17: "User-Error", 18: "Host-Request",
}


def request_number(status: AcctStatus, session_time: int) -> int:
    t = min(max(0, session_time), MAX_SESSION_TIME)
    return STOP_BASE + t if status is AcctStatus.STOP else 1 + t


def auth_request_number(authenticator: bytes) -> int:
    return int.from_bytes(authenticator[:4], "big") & 0x7FFFFFFF
