"""The stored-outcome codec shared by the Lua scripts and the core.

A script stores, per request number, ``status|granted|final|charged|reserved|balance|validity``
on the session hash (``_lib.lua``'s ``outcome``).  Replaying that string gives
front ends everything they need to rebuild an identical answer, also after a
daemon restart (Diameter duplicate detection, RFC 6733 section 5.5.4 / RFC 4006 section 5.1).
"""

from __future__ import annotations

from ocs.model import Outcome, Status


def decode_outcome(raw: str | bytes, *, duplicate: bool, account: str, currency: str) -> Outcome:
    text = raw.decode() if isinstance(raw, bytes) else raw
    status, granted, final, charged, reserved, balance, validity = text.split("|")
    return Outcome(
        status=Status(status),
        granted_units=int(granted),
        final=final == "1",
        charged=int(charged),
        reserved=int(reserved),
        balance=int(balance),
        validity_seconds=int(validity),
        duplicate=duplicate,
        account=account,
        currency=currency,
    )

