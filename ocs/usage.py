"""Reported usage as the charging core settles it: totals, the plausibility cap, the exact range.

Pure functions of the request and the session so far (no I/O), used by every
verb that charges usage (``ocs.charging``).
"""

from __future__ import annotations

from datetime import datetime

from ocs.model import ChargeRequest, Outcome, Service, Status
from ocs.rating.engine import Selection
from ocs.store.accounts_view import Account
from ocs.store.session_state import iso

MAX_EXACT = 2**53 - 1  # largest charge (micro-units) the scripts' Lua numbers hold exactly


def settle(req: ChargeRequest, used: int, excess: int, granted: int, max_overuse: int) -> tuple[int, int]:
    """(new used total, excess units of this request) for usage reported against ``used``.

    Totals never go backwards (out-of-order interims).  Plausibility (docs/rating.md): time
    reported in one request beyond the grant plus ``max_overuse`` (``charging.max_overuse_seconds``)
    is not charged; the excess is kept on the session (``xs``) so a later cumulative total (RADIUS
    Acct-Session-Time) does not count it again.  0 = no cap.  Octets and events: no cap.
    """
    new = max(used, req.used_units - excess) if req.used_is_total else used + max(0, req.used_units)
    if max_overuse and req.service is Service.VOICE and new - used > granted + max_overuse:
        return used + granted + max_overuse, new - used - granted - max_overuse
    return new, 0


def beyond_exact(charge: int) -> bool:
    """A charge no real usage reaches (beyond 2^53 micro-units): refused, nothing moved."""
    return charge > MAX_EXACT


BEYOND_EXACT = Outcome(Status.ERROR, reason="reported usage beyond any plausible charge")


def context(req: ChargeRequest, acct: Account, sel: Selection, start: datetime, node: str,
            **extra: str) -> dict[str, str]:
    """The rating context a session keeps (written once at open): whose, what, how it is rated."""
    return {
        "acct": acct.id, "sid": req.session, "rg": str(req.rating_group), "proto": req.protocol,
        "svc": req.service.value, "cur": acct.currency, "node": node, "origin": req.origin,
        "calling": req.calling, "dest": sel.number, "prefix": sel.prefix, "dname": sel.destination,
        "t0": iso(start), "tariff": sel.tariff, "tver": str(sel.version), **extra,
        **({"reach": req.reach} if req.reach else {}),
    }
