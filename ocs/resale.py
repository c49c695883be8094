"""The reseller's leg of a charge (docs/wholesale.md, "Resellers"): what the reseller pays, rated here.

A reseller is an account of its own whose tariff is its wholesale tariff.  Each charge of one of
its subscribers debits the subscriber at the subscriber's tariff and the reseller at the
wholesale tariff, in the same script call (:class:`~ocs.store.charging_scripts.Leg`).  Python
rates both legs the same way: the wholesale charge of a session is the charge of one call of its
total usage (cumulative, rule 5), from the wholesale tariff version in force when the call
started, which the session keeps (fields ``rs``, ``rtar``, ``rtver``, ``rcur``).  A wholesale tariff
in another currency than the reseller's is converted like a subscriber's (:mod:`ocs.rating.fx`):
the exact price times the rate in force when the call started, rounded once; the session keeps
that rate (``rfx``) for every later report.

Only accounts whose hash names a reseller (``rs``) come here; the plain path never does.  What
the reseller's money allows (blocked, no credit, how far a grant goes) is decided inside Redis by
the scripts (``_reseller.lua``), never from this process's caches.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from fractions import Fraction

from ocs.model import Outcome, Service, Status
from ocs.rating.engine import CompiledTariff, GrantPlan, Rating, Selection
from ocs.rating.fx import converted_charge, fold_plan, format_rate, to_fraction
from ocs.store.accounts_view import Account, AccountView
from ocs.store.charging_scripts import Leg
from ocs.store.fx import FxCache
from ocs.store.session_state import SessionState
from ocs.store.tariff_cache import TariffCache, TariffNotFound


class Resale:
    def __init__(self, accounts: AccountView, tariffs: TariffCache, fx: Callable[[], FxCache]) -> None:
        self.accounts = accounts
        self.tariffs = tariffs
        self.fx = fx  # the settlement's exchange rates (the daemon's, given after construction)

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
        ctx = {"rs": reseller.id, "rtar": sel.tariff, "rtver": str(sel.version), "rcur": reseller.currency}
        rate = None
        if reseller.currency and reseller.currency != sel.currency:
            rate = (await self.fx().table()).rate(sel.currency, reseller.currency, start)
            if rate is None:
                return Outcome(Status.NOT_RATED, account=acct.id, currency=acct.currency,
                               reason=f"no FX rate {sel.currency}->{reseller.currency} for the reseller")
            ctx["rfx"] = format_rate(rate)
        leg = self._leg(reseller.id, tariff, sel, units, cap, rate)
        if leg is None:
            return Outcome(Status.ERROR, account=acct.id, reason="wholesale price beyond any plausible charge")
        return leg, ctx

    @staticmethod
    def _leg(reseller: str, tariff: CompiledTariff, sel: Selection, used: int, cap: int | None,
             rate: Fraction | None, position: int | None = None) -> Leg | None:
        """The leg at ``used`` units (converted at ``rate``), with the plan of the next grant when ``cap``."""
        rating: Rating = tariff.rate(sel, used)
        charge = rating.charge if rate is None else converted_charge(rating, rate)
        if cap is None:
            return Leg(reseller, charge)
        plan: GrantPlan | None = tariff.grant_plan(sel, used, cap, done=rating)
        if rate is not None and plan is not None:
            plan = fold_plan(plan, rate)
        if plan is None:
            return None
        return Leg(reseller, charge, plan, 0 if position is None else position - plan.position)

    async def settle(self, st: SessionState, used: int, plan: GrantPlan | None, cap: int) -> Leg:
        """The wholesale leg of a session's report: its charged total at ``used``, the next grant's plan.

        ``plan`` is the subscriber's next grant (None: terminate or orphan); the offset tells the
        script where the subscriber's blocks start relative to the reseller's.
        """
        tariff = await self.tariffs.get(st.f["rtar"], int(st.f["rtver"]))
        sel = tariff.select(st.f["dest"], st.start, st.service)
        rate = to_fraction(st.f["rfx"]) if st.f.get("rfx") else None
        leg = None if sel is None else self._leg(st.f["rs"], tariff, sel, used, None if plan is None else cap, rate,
                                                 None if plan is None else plan.position)
        # defensive (a version cannot lose its row; a plan beyond 2^53): charge nothing more, grant nothing
        return leg or Leg(st.f["rs"], int(st.f.get("rchg") or 0))
