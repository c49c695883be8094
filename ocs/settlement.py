"""Charging reported usage of a session: the core's half of CCR-U/T and RADIUS Interim/Stop.

Python rates (pure :mod:`ocs.rating`): the cumulative charge of the session's
total usage (docs/rating.md rule 5), capped for plausibility (:mod:`ocs.usage`),
and the plan of the next grant; one script call moves the money
(:class:`~ocs.store.charging_scripts.ChargingScripts`): idempotency by request
number, CAS on the usage Python rated from, debit, usage record, grant.

A CONFLICT (the session moved between our read and the script, e.g. two
retransmissions racing, or another node) re-reads and retries; the script's
stored-outcome check makes the retry answer the duplicate identically.  Usage of
a session not held open (unknown, closed, reaped) is charged once as an orphan.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from ocs.config import Config
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, Outcome, Service, Status
from ocs.rating.bundles import included_total
from ocs.rating.engine import CompiledTariff, GrantPlan, Selection
from ocs.rating.fx import converted_charge, fold_plan, format_rate, to_fraction
from ocs.resale import Resale
from ocs.store.accounts_view import AccountView
from ocs.store.charging_scripts import SEP, ChargingScripts, Debit, Leg, Orphan, Target, bundle_debit_arg, pack_context
from ocs.store.fx import FxCache, StaticFxSource
from ocs.store.session_state import SessionState, SessionStates, iso, ms
from ocs.store.tariff_cache import TariffCache, TariffNotFound
from ocs.usage import BEYOND_EXACT, beyond_exact, context, settle

log = structlog.get_logger("ocs.charging")
MAX_RETRIES = 8


class Settlement:
    def __init__(self, cfg: Config, metrics: Metrics, accounts: AccountView, tariffs: TariffCache,
                 states: SessionStates, scripts: ChargingScripts) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.accounts = accounts
        self.tariffs = tariffs
        self.states = states
        self.scripts = scripts
        self.fx = FxCache(StaticFxSource())  # Charging gives it the daemon's (ocs/app.py builds it)
        self.resale = Resale(accounts, tariffs, lambda: self.fx)  # the reseller leg of a reseller's subscriber
        # called (synchronously; it must only queue work) when a debit takes a postpaid account to or
        # past its credit limit: control ends the account's sessions (spec section 9, docs/control.md)
        self.on_credit_limit: Callable[[str], None] | None = None

    def expiry_ms(self, hold_seconds: int | None) -> int:
        """When a hold expires: ``hold_seconds`` from now (RADIUS), else validity + grace."""
        return ms(datetime.now(UTC) + timedelta(seconds=hold_seconds or self.cfg.charging.hold_seconds))

    def expiry_after(self, now_ms: int, hold_seconds: int | None) -> int:
        """:meth:`expiry_ms` from a ``now`` the caller already read (one clock read per request)."""
        return now_ms + 1000 * (hold_seconds or self.cfg.charging.hold_seconds)

    async def account_of(self, req: ChargeRequest) -> str | None:
        """Whose session: this node's memory, else the request's subscriber (None: the session index)."""
        account = self.states.owner(req.subscriber, req.session)
        if account is None and req.subscriber:
            acct = await self.accounts.resolve(req.subscriber)
            account = acct.id if acct is not None else None
        return account

    async def charge(self, req: ChargeRequest, plan_cap: int, *, terminate: bool) -> Outcome:
        for _ in range(MAX_RETRIES):
            st = self.states.cached(req.subscriber, req.session, req.rating_group) or \
                await self.states.find(await self.account_of(req), req.subscriber, req.session, req.rating_group)
            if st is None or st.closed:
                out = await self._orphan(req, st, terminate=terminate)
            else:
                dup = st.stored(req.request_number)
                if dup is not None:
                    return dup
                out = await self._debit(req, st, plan_cap, terminate=terminate)
            if out is not None:
                return out
        log.warning("charge_conflict_retries_exhausted", session=req.session)
        return Outcome(Status.ERROR, reason="too many concurrent changes to the session")

    def _overuse(self, req: ChargeRequest, account: str, excess: int, used: int) -> None:
        if excess:
            self.metrics.child(self.metrics.overuse, req.protocol or "other").inc()
            self.metrics.child(self.metrics.overuse_units, req.protocol or "other").inc(excess)
            log.warning("usage_beyond_grant_not_charged", session=req.session, account=account,
                        request_number=req.request_number, reported=req.used_units, charged_total=used,
                        excess_units=excess, max_overuse_seconds=self.cfg.charging.max_overuse_seconds)

    def _refuse_beyond_exact(self, req: ChargeRequest, account: str, charge: int) -> Outcome:
        log.error("charge_beyond_exact_range", session=req.session, account=account, charge=charge,
                  reported=req.used_units, request_number=req.request_number)
        return BEYOND_EXACT

    async def _debit(self, req: ChargeRequest, st: SessionState, cap: int, *, terminate: bool) -> Outcome | None:
        """One debit(-and-rereserve) call; None = CONFLICT/NOSESSION, the caller re-reads."""
        tariff = await self.tariffs.get(st.tariff, st.version)
        sel = st.sel if st.sel is not None and st.sel.version == tariff.tariff.version else \
            tariff.select(st.f["dest"], st.start, st.service)
        if sel is None:  # the version a session started on cannot lose its row; defensive
            return Outcome(Status.ERROR, reason="session no longer rateable")
        f, used0, xs0 = st.f, st.used, st.excess  # each property parses the hash field: read once
        used, excess = settle(req, used0, xs0, st.granted, self.cfg.charging.max_overuse_seconds)
        money_used, bundle = used, ""
        if "bk" in f:  # bundles: the included part is not charged; money rates the rest as one call
            inc = included_total(int(f.get("iu") or 0), int(f.get("ih") or 0), used0, used)
            money_used, bundle = used - inc, bundle_debit_arg(cap, inc)
        rating = tariff.rate(sel, money_used)
        fx = f.get("fx")  # a session charged in another currency than its tariff's: the rate of its start
        rate = to_fraction(fx) if fx else None
        charge = rating.charge if rate is None else converted_charge(rating, rate)
        if beyond_exact(charge):
            return self._refuse_beyond_exact(req, st.account, charge)
        if excess:
            self._overuse(req, st.account, excess, used)
        plan: GrantPlan | None = None if terminate else tariff.grant_plan(sel, money_used, cap, done=rating)
        if rate is not None and plan is not None:
            plan = fold_plan(plan, rate)
            if plan is None:
                return self._refuse_beyond_exact(req, st.account, charge)
        now = datetime.now(UTC)
        now_ms = ms(now)
        d = Debit(req.request_number, f.get("used", "0"), used, charge, rating.billed_units,
                  used - used0, iso(req.event_time or now), xs0 + excess, excess,
                  req.termination_cause or "", plan, bundle)
        t = Target(st.account, st.sid, st.rg, f.get("cur", ""))
        leg = await self.resale.settle(st, used, plan, cap) if "rs" in f else None  # resellers (ocs.resale)
        code, out = await self.scripts.debit(t, d, now_ms, self.expiry_after(now_ms, req.hold_seconds),
                                             f.get("origin", ""), leg)
        if code == "OK" and out is not None and (out.balance or 0) < 0 and self.on_credit_limit is not None:
            await self._watch_credit_limit(st.account, out)
        if out is None or terminate or bundle:  # a bundle session's new included hold is the script's
            self.states.forget(st.account, st.sid, st.rg)
        elif code == "OK":
            self.states.keep(SessionState(st.account, st.sid, st.rg, {
                **f, "used": str(used), "chg": str(charge), "hunits": str(out.granted_units),
                "xs": str(xs0 + excess)}, sel))
        return out

    async def _watch_credit_limit(self, account: str, out: Outcome) -> None:
        """Did this debit take a postpaid account to its credit limit (balance <= -limit), from above?

        Derived from what debit.lua returned (the balance after, the amount): no extra round trip;
        only debits that leave a balance below zero get here, and the account comes from the view's
        cache.  A retransmission answers DUP (its stored outcome), so one crossing is seen once.
        """
        acct = await self.accounts.resolve(account)
        if acct is None or acct.type != "postpaid":
            return
        floor, after = -acct.credit_limit, out.balance or 0
        if after <= floor < after + out.charged and self.on_credit_limit is not None:
            self.on_credit_limit(account)

    async def _orphan(self, req: ChargeRequest, st: SessionState | None, *, terminate: bool) -> Outcome | None:
        """Charge usage of a session we do not hold open, once; answer UNKNOWN_SESSION."""
        if st is not None:
            dup = st.stored(req.request_number)
            if dup is not None:
                return dup
            tariff = await self.tariffs.get(st.tariff, st.version)
            sel: Selection | None = tariff.select(st.f["dest"], st.start, st.service)
            t, ctx, expect = Target(st.account, st.sid, st.rg, st.currency), "", st.f.get("used", "0")
            used0, chg0, xs0 = st.used, st.charged, st.excess
            fx = st.f.get("fx", "")
            inc0 = int(st.f.get("iu") or 0)  # bundles: seconds a closed session had covered stay covered
            reseller = st.f.get("rs", "")
        else:
            found = await self._orphan_rating(req)
            if isinstance(found, Outcome):
                return found
            t, tariff, sel, ctx, reseller, fx = found
            expect, used0, chg0, xs0, inc0 = "", 0, 0, 0, 0
        if sel is None:
            return Outcome(Status.UNKNOWN_SESSION, account=t.account, reason="not rateable")
        # the grant a session we no longer hold had is unknown: the largest one there can have been
        c = self.cfg.charging
        used, excess = settle(req, used0, xs0, c.max_grant_seconds, c.max_overuse_seconds)
        rating = tariff.rate(sel, used - inc0)
        charge = rating.charge if not fx else converted_charge(rating, to_fraction(fx))
        if beyond_exact(charge):
            return self._refuse_beyond_exact(req, t.account, charge)
        self._overuse(req, t.account, excess, used)
        now = datetime.now(UTC)
        leg = None
        if reseller:  # resellers: the wholesale total of the usage, debited in the same call
            leg, ctx = await self._orphan_leg(req, st, sel, used, ctx)
        o = Orphan(req.request_number, expect, used, charge, rating.billed_units, max(0, charge - chg0),
                   used - used0, iso(req.event_time or now), terminate, req.termination_cause or "", ctx,
                   xs0 + excess, excess)
        return (await self.scripts.orphan(t, o, ms(now), leg))[1]

    async def _orphan_leg(self, req: ChargeRequest, st: SessionState | None, sel: Selection, used: int,
                          ctx: str) -> tuple[Leg | None, str]:
        """The reseller's leg of an orphan's usage, and the tombstone's context with its fields."""
        if st is not None:
            return await self.resale.settle(st, used, None, 0), ctx
        acct = await self.accounts.resolve(req.subscriber)  # the view's cache: _orphan_rating just read it
        priced = await self.resale.price(acct, sel.number, sel.start, sel.service, used) if acct else None
        if priced is None or isinstance(priced, Outcome):  # the usage happened: the subscriber is charged
            log.warning("orphan_reseller_not_rated", session=req.session, reason=getattr(priced, "reason", ""))
            return None, ctx
        leg, rctx = priced
        return leg, f"{ctx}{SEP}{pack_context(rctx)}"

    async def _orphan_rating(self, req: ChargeRequest
                             ) -> tuple[Target, CompiledTariff, Selection, str, str, str] | Outcome:
        """Account, tariff, selection, context, reseller and FX rate ('' none) of usage of a session never seen."""
        acct = await self.accounts.resolve(req.subscriber)
        if acct is None:
            return Outcome(Status.UNKNOWN_SESSION, reason="unknown session and subscriber")
        try:
            tariff = await self.tariffs.current(acct.tariff)
        except TariffNotFound:
            return Outcome(Status.UNKNOWN_SESSION, account=acct.id, reason="tariff missing")
        end = req.event_time or datetime.now(UTC)
        start = end - timedelta(seconds=req.used_units) if req.service is Service.VOICE else end
        sel = tariff.select(req.destination or str(req.rating_group), start, req.service)
        if sel is None:
            return Outcome(Status.UNKNOWN_SESSION, account=acct.id, reason="destination not rated")
        extra: dict[str, str] = {}
        if acct.currency != sel.currency and acct.currency:  # the rate in force when the call started
            rate = (await self.fx.table()).rate(sel.currency, acct.currency, start)
            if rate is None:
                return Outcome(Status.UNKNOWN_SESSION, account=acct.id,
                               reason=f"no FX rate {sel.currency}->{acct.currency}")
            extra = {"fxcur": sel.currency, "fx": format_rate(rate)}
        ctx = pack_context(context(req, acct, sel, start, self.cfg.node.name, **extra))
        return Target(acct.id, req.session, req.rating_group, acct.currency), tariff, sel, ctx, acct.reseller, \
            extra.get("fx", "")
