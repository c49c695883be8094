"""RADIUS <-> charging verbs, as data (docs/radius.md, RFC 2865/2866).

Accounting idempotency: a charge is identified by (Acct-Session-Id, status,
session time), encoded as the core's request number, so an Interim or Stop
resent with a new RADIUS identifier (which defeats the RFC 5080 cache) is
still charged once.  The numbers live in disjoint ranges above 2^32, wide
enough for any Unsigned32 the NAS sends (RFC 2866 section 5.7: Acct-Session-Time
is 32 bits), and well below 2^53 (exact in the scripts' Lua numbers) and 2^63
(the ``usage.request_number`` column):

- Interim-Update at session time T: ``1 + T``                   (1 .. 2^32)
- Stop at session time T:           ``STOP_BASE + T``            (2^33 .. 2^33 + 2^32 - 1)
- Access-Request: ``AUTH_BASE`` + the Request Authenticator's first 4 octets (2^34 ..), so a
  new call under a reused hold key gets a new number and a retransmission the
  cache missed gets the same one.
"""

from __future__ import annotations

import enum

from ocs.model import Status

UINT32_MAX = 2**32 - 1
STOP_BASE = 2**33
AUTH_BASE = 2**34


class AcctStatus(enum.IntEnum):
    START = 1
    STOP = 2
    INTERIM = 3
    ACCOUNTING_ON = 7
    ACCOUNTING_OFF = 8


VERB_OF = {  # the core verb each Acct-Status-Type lands on; the server dispatches through this table
    AcctStatus.START: "bind",  # bind the Access-Request's hold, else initiate
    AcctStatus.INTERIM: "update",
    AcctStatus.STOP: "terminate",
    AcctStatus.ACCOUNTING_ON: "terminate_origin",
    AcctStatus.ACCOUNTING_OFF: "terminate_origin",
}

ORIGIN_CAUSE = {AcctStatus.ACCOUNTING_ON: "NAS-Reboot", AcctStatus.ACCOUNTING_OFF: "NAS-Request"}
"""Termination cause on the records of sessions an Accounting-On/Off settles (RFC 2866 5.10 names)."""

NO_FX_RATE = "no FX rate"
"""How the core's reason starts when the tariff's currency has no rate into the account's."""

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

# Cisco voice gateways (radius/dictionary.cisco, vendor 9) do not enforce Session-Timeout; they read
# h323-credit-time and h323-return-code, each valued "name=value" by Cisco's AV-pair convention.
CISCO = 9
H323_CREDIT_TIME, H323_RETURN_CODE = 102, 103
CISCO_RETURN_CODE = {  # h323-return-code of an Access-Reject, by why (Cisco's IVR codes)
    Status.UNKNOWN_SUBSCRIBER: 1,  # invalid account number
    Status.BAD_CREDENTIALS: 2,  # invalid password
    Status.OUT_OF_CREDIT: 4,  # zero balance
    Status.BLOCKED: 4,
    Status.NOT_RATED: 9,  # destination blocked
}
CISCO_OTHER_REFUSAL = 8  # service not available

TERMINATE_CAUSES = {
    1: "User-Request", 2: "Lost-Carrier", 3: "Lost-Service", 4: "Idle-Timeout", 5: "Session-Timeout",
    6: "Admin-Reset", 7: "Admin-Reboot", 8: "Port-Error", 9: "NAS-Error", 10: "NAS-Request",
    11: "NAS-Reboot", 12: "Port-Unneeded", 13: "Port-Preempted", 14: "Port-Suspended",
    15: "Service-Unavailable", 16: "Callback", 17: "User-Error", 18: "Host-Request",
}


def request_number(status: AcctStatus, session_time: int) -> int:
    t = min(max(0, session_time), UINT32_MAX)
    return STOP_BASE + t if status is AcctStatus.STOP else 1 + t


def auth_request_number(authenticator: bytes) -> int:
    return AUTH_BASE + int.from_bytes(authenticator[:4], "big")
