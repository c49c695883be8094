"""The reseller's leg of a charge (docs/wholesale.md, "Resellers"): what the reseller pays, rated here.

A reseller is an account of its own whose tariff is its wholesale tariff.  Each charge of one of
its subscribers debits the subscriber at the subscriber's tariff and the reseller at the
wholesale tariff, in the same script call (:class:`~ocs.store.charging_scripts.Leg`).  Python
rates both legs the same way: the wholesale charge of a session is the charge of one call of its
total usage (cumulative, rule 5), from the wholesale tariff version in force when the call
started, which the session keeps (fields ``rs``, ``rtar``, ``rtver``, ``rcur``).

Only accounts whose hash names a reseller (``rs``) come here; the plain path never does.  What
the reseller's money allows (blocked, no credit, how far a grant goes) is decided inside Redis by
the scripts (``_reseller.lua``), never from this process's caches.
"""

from __future__ import annotations

from datetime import datetime

from ocs.model import Outcome, Service, Status
from ocs.rating.engine import GrantPlan
from ocs.store.accounts_view import Account, AccountView
from ocs.store.charging_scripts import Leg
from ocs.store.session_state import SessionState
from ocs.store.tariff_cache import TariffCache, TariffNotFound


class Resale:
    def __init__(self, accounts: AccountView, tariffs: TariffCache) -> None:
        self.accounts = accounts
        self.tariffs = tariffs

    async def price(self, acct: Account, destination: str, start: datetime, service: Service, units: int,
                    cap: int | None = None) -> tuple[Leg, dict[str, str]] | Outcome:
        """The wholesale leg of ``units`` of a new call (and, with ``cap``, the plan of its first grant).

        Returns the leg and the session fields that keep how it is rated, or the refusal: a reseller
        that is gone counts as blocked; a destination its wholesale tariff does not rate is not rated.
        """
        reseller = await self.accounts.reseller(acct.reseller)
        if reseller is None:
            return Outcome(Status.BLOCKED, account=acct.id, currency=acct.currency, reason="reseller missing")
        try:
            tariff = await self.tariffs.current(reseller.tariff)
        except TariffNotFound:
            return Outcome(Status.NOT_RATED, account=acct.id, currency=acct.currency,
                           reason="reseller's tariff missing")
        sel = tariff.select(destination, start, service)
        if sel is None:
            return Outcome(Status.NOT_RATED, account=acct.id, currency=acct.currency,
                           reason="destination not rated for the reseller")
        rating = tariff.rate(sel, units)
        plan = tariff.grant_plan(sel, units, cap, done=rating) if cap is not None else None
        ctx = {"rs": reseller.id, "rtar": sel.tariff, "rtver": str(sel.version), "rcur": reseller.currency}
        return Leg(reseller.id, rating.charge, plan, 0), ctx

    async def settle(self, st: SessionState, used: int, plan: GrantPlan | None, cap: int) -> Leg:
        """The wholesale leg of a session's report: its charged total at ``used``, the next grant's plan.

        ``plan`` is the subscriber's next grant (None: terminate or orphan); the offset tells the
        script where the subscriber's blocks start relative to the reseller's.
        """
        tariff = await self.tariffs.get(st.f["rtar"], int(st.f["rtver"]))
        sel = tariff.select(st.f["dest"], st.start, st.service)
        if sel is None:  # the version a session started on cannot lose its row; defensive: charge nothing more
            return Leg(st.f["rs"], int(st.f.get("rchg") or 0))
        rating = tariff.rate(sel, used)
        if plan is None:
            return Leg(st.f["rs"], rating.charge)
        wplan = tariff.grant_plan(sel, used, cap, done=rating)
        return Leg(st.f["rs"], rating.charge, wplan, plan.position - wplan.position)
