"""The charging verbs: authorize / initiate / update / terminate / event (+ bind, terminate_origin).

Both front ends call these with a :class:`~ocs.model.ChargeRequest` and map the
tagged :class:`~ocs.model.Outcome` to their codes.  The core rates and decides;
the store only moves money: account and tariff resolution and rule 1 happen here,
every grant is planned here (pure :mod:`ocs.rating`), reported usage is charged by
:class:`~ocs.settlement.Settlement`, and one typed script call per request
(:class:`~ocs.store.charging_scripts.ChargingScripts`) writes it atomically.
Everything is injected by the composition root (:func:`ocs.app.build_core`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from fractions import Fraction

from ocs.config import Config
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, EventAction, Outcome, Service, Status
from ocs.rating import bundles
from ocs.rating.engine import CompiledTariff, Selection, affordable
from ocs.rating.fx import converted_charge, fold_plan, format_rate
from ocs.settlement import Settlement
from ocs.store import placement
from ocs.store.accounts_view import Account, AccountView
from ocs.store.charging_scripts import ChargingScripts, Target, bundle_reserve_arg, pack_context
from ocs.store.fx import FxCache, StaticFxSource
from ocs.store.pipeline import AutoPipeline
from ocs.store.refusals import RefusalRecords
from ocs.store.session_state import SessionState, SessionStates, iso, ms
from ocs.store.tariff_cache import TariffCache, TariffNotFound
from ocs.usage import BEYOND_EXACT, context

# Request numbers of the settlements terminate_origin makes: above every number a front end
# uses (Diameter: Unsigned32; RADIUS: below 2^35, radius/mapping.py), below 2^53 (exact in Lua).
SETTLE_BASE = 2**40
# Request numbers of re-authorizations (reauthorize): this base + epoch ms, unique per moment,
# above SETTLE_BASE + any last request number, below 2^53.
REAUTH_BASE = 2**42


def _now(req: ChargeRequest) -> datetime:
    return req.event_time or datetime.now(UTC)


def _retrieved(fut: asyncio.Future[object]) -> None:
    """Mark a side command's failure as seen when its caller stopped waiting (the script failed first)."""
    if not fut.cancelled():
        fut.exception()


class Charging:
    """The :class:`~ocs.model.ChargingCore` on Redis (money) and PostgreSQL (tariffs)."""

    def __init__(self, cfg: Config, metrics: Metrics, *, rp: AutoPipeline, accounts: AccountView,
                 tariffs: TariffCache, states: SessionStates, scripts: ChargingScripts,
                 fx: FxCache | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.rp = rp
        self.keys = scripts.keys
        self.accounts = accounts
        self.tariffs = tariffs
        self.states = states
        self.scripts = scripts
        self.refusals = RefusalRecords(rp, scripts.keys, cfg.node.name)
        self.settlement = Settlement(cfg, metrics, accounts, tariffs, states, scripts)
        self.fx = fx or FxCache(StaticFxSource())  # exchange rates in memory (docs/wholesale.md)
        self.settlement.fx = self.fx
        self._settling: dict[str, asyncio.Task[int]] = {}  # origin -> its running terminate_origin

    async def start(self) -> None:
        await self.rp.load_scripts()
        await placement.load(self.rp.call, self.keys)  # where resellers' subscribers live (ocs.store.placement)
        await self.tariffs.preload()  # rating must not need PostgreSQL later (outage)
        await self.fx.load()

    async def close(self) -> None:
        await self.rp.drain()

    async def reload_tariffs(self) -> None:
        await self.tariffs.reload()

    # -- helpers -----------------------------------------------------------------------------

    def _cap(self, req: ChargeRequest) -> int:
        c = self.cfg.charging
        if req.service is Service.DATA:
            return min(req.requested_units or c.grant_octets, c.max_grant_octets)
        if req.service is Service.SMS:
            return max(1, req.requested_units or 1)
        return min(req.requested_units or c.grant_seconds, c.max_grant_seconds)

    @staticmethod
    def _destination(req: ChargeRequest) -> str:
        if req.destination:
            return req.destination
        return str(req.rating_group) if req.service is Service.DATA else ""

    async def _account(self, req: ChargeRequest, *, fresh: bool = False) -> Account | Outcome:
        """Resolve the subscriber and apply the checks every opening verb shares.

        A refusal is never decided on the account view's cache: blocked or a bad password is
        checked again on a fresh read (an operator's unblock or new password counts at once).
        """
        acct = await self.accounts.resolve(req.subscriber, fresh=fresh)
        if acct is None:
            return Outcome(Status.UNKNOWN_SUBSCRIBER, reason="unknown account")
        if acct.blocked:
            if not fresh:
                return await self._account(req, fresh=True)
            return Outcome(Status.BLOCKED, account=acct.id, currency=acct.currency, reason="account blocked")
        if acct.password and req.password_check is not None and not req.password_check(acct.password):
            if not fresh:
                return await self._account(req, fresh=True)
            return Outcome(Status.BAD_CREDENTIALS, account=acct.id, reason="bad password")
        return acct

    async def _rated(self, req: ChargeRequest, *, fresh: bool = False
                     ) -> tuple[Account, CompiledTariff, Selection, Fraction | None] | Outcome:
        """Subscriber checks, then rule 1 on the account's current tariff: what every opening verb needs.

        The last element is the FX rate tariff -> account currency in force at the call's start (None:
        same currency, the plain path); no rate for the pair refuses the call as not rated.
        """
        acct = await self._account(req, fresh=fresh)
        if isinstance(acct, Outcome):
            return acct
        try:
            tariff = await self.tariffs.current(acct.tariff)
        except TariffNotFound:
            return Outcome(Status.NOT_RATED, account=acct.id, currency=acct.currency, reason="tariff missing")
        sel = tariff.select(self._destination(req), _now(req), req.service)
        if sel is None:
            return Outcome(Status.NOT_RATED, account=acct.id, currency=acct.currency, reason="destination not rated")
        if acct.currency == sel.currency or not acct.currency:  # the plain path: one comparison
            return acct, tariff, sel, None
        fx = (await self.fx.table()).rate(sel.currency, acct.currency, sel.start)
        if fx is None:
            return Outcome(Status.NOT_RATED, account=acct.id, currency=acct.currency,
                           reason=f"no FX rate {sel.currency}->{acct.currency}")
        return acct, tariff, sel, fx

    def _observe(self, verb: str, t0: float) -> None:
        self.metrics.child(self.metrics.core_latency, verb).observe(time.perf_counter() - t0)

    # -- verbs -------------------------------------------------------------------------------

    async def authorize(self, req: ChargeRequest) -> Outcome:
        """Would ``initiate`` grant?  Moves no money (price of the requested units in ``price``)."""
        rated = await self._rated(req, fresh=True)  # it reads the balance
        if isinstance(rated, Outcome):
            return rated
        acct, tariff, sel, fx = rated

        plan = tariff.grant_plan(sel, 0, self._cap(req))
        if fx is not None:
            folded = fold_plan(plan, fx)
            if folded is None:
                return BEYOND_EXACT
            plan = folded
        blocks, units, hold = affordable(plan, acct.available)
        status = Status.GRANTED if blocks else Status.OUT_OF_CREDIT
        return Outcome(status, granted_units=units, final=blocks < plan.max_blocks, price=hold,
                       balance=acct.balance, account=acct.id, currency=acct.currency,
                       validity_seconds=self.cfg.charging.validity_seconds)

    async def initiate(self, req: ChargeRequest) -> Outcome:
        t0 = time.perf_counter()
        try:
            rated = await self._rated(req)
            out = rated if isinstance(rated, Outcome) else await self._open(req, *rated)
            if not out.ok:  # refused attempts are records too (ASR): ocs.store.refusals
                await self.refusals.record(req, out, None if isinstance(rated, Outcome) else rated[2])
            return out
        finally:
            self._observe("initiate", t0)

    async def _open(self, req: ChargeRequest, acct: Account, tariff: CompiledTariff, sel: Selection,
                    fx: Fraction | None = None) -> Outcome:
        """Plan the first grant and reserve it (``reserve.lua`` also indexes origin and rating group)."""
        cap = self._cap(req)
        plan = tariff.grant_plan(sel, 0, cap)
        t = Target(acct.id, req.session, req.rating_group, acct.currency)
        ctx = context(req, acct, sel, sel.start, self.cfg.node.name)
        if fx is not None:  # the rate of the call's start, kept on the session: every debit uses it
            ctx["fxcur"], ctx["fx"] = sel.currency, format_rate(fx)
            folded = fold_plan(plan, fx)
            if folded is None:
                return BEYOND_EXACT
            plan = folded
        bundle = self._bundle(acct, tariff, sel, cap) if acct.bundles else ""
        leg = None
        if acct.reseller:  # resellers: the wholesale leg rides in the same script call (ocs.resale)
            priced = await self.settlement.resale.price(acct, self._destination(req), sel.start, sel.service, 0, cap)
            if isinstance(priced, Outcome):
                return priced
            leg, rctx = priced
            ctx.update(rctx)
        # the session-id index (outside the account's slot) goes in the same pipeline tick as the script,
        # not after its answer: a second round trip per CCR-I was one more loop tick and Redis read
        indexing = self.states.index(req.session, acct.id)
        indexing.add_done_callback(_retrieved)
        now_ms = ms(datetime.now(UTC))
        code, out = await self.scripts.reserve(t, req.request_number, now_ms,
                                               self.settlement.expiry_after(now_ms, req.hold_seconds),
                                               pack_context(ctx), plan, req.origin, bundle, leg)
        await indexing  # answered before the script (submitted first): no wait; a failure is raised here
        if code == "OK" and out is not None:
            self.states.remember(req.subscriber, req.session, acct.id)
            if not bundle:  # a bundle session's included hold is decided in the script: read it back next time
                self.states.keep(SessionState(acct.id, req.session, req.rating_group,
                                              {**ctx, "used": "0", "chg": "0", "hunits": str(out.granted_units)}, sel))
        return out or Outcome(Status.ERROR, reason=f"reserve answered {code}")

    @staticmethod
    def _bundle(acct: Account, tariff: CompiledTariff, sel: Selection, cap: int) -> str:
        """The bundle argument of a voice call's first grant ('' when no bundle applies)."""
        if sel.service is not Service.VOICE:
            return ""
        pick = bundles.choose(acct.bundles, sel.number, sel.start, tariff.tariff.timezone)
        return bundle_reserve_arg(pick.key, pick.quota, cap) if pick is not None else ""

    async def update(self, req: ChargeRequest) -> Outcome:
        t0 = time.perf_counter()
        try:
            return await self._charge(req, terminate=False)
        finally:
            self._observe("update", t0)

    async def terminate(self, req: ChargeRequest) -> Outcome:
        t0 = time.perf_counter()
        try:
            return await self._charge(req, terminate=True)
        finally:
            self._observe("terminate", t0)

    async def terminate_session(self, req: ChargeRequest) -> Outcome:
        """End every rating group of ``req.session`` (a Diameter CCR-T without MSCC).

        The single-service form (only rating group 0) is ``terminate``.  A session that opened
        rating groups through MSCC and ends without reporting them has each group closed with the
        usage charged so far (its hold released, its CDR written); usage reported at command
        level is attributed to the lowest group.  One outcome: the groups' charges summed.
        """
        t0 = time.perf_counter()
        try:
            account = await self.settlement.account_of(req) or await self.states.indexed(req.session)
            groups = await self.states.groups(account, req.session) if account else []
            if not groups:
                return await self._charge(req, terminate=True)
            zero = await self.states.find(account, req.subscriber, req.session, 0)
            if zero is not None and not zero.closed:
                groups = [0, *groups]  # rating group 0 opened too (an MSCC without Rating-Group)
            outs = await asyncio.gather(*(
                self._charge(dataclasses.replace(req, rating_group=rg, used_units=req.used_units if i == 0 else 0),
                             terminate=True) for i, rg in enumerate(groups)))
            ok = [o for o in outs if o.ok]
            if not ok:
                return outs[0]
            return dataclasses.replace(ok[0], charged=sum(o.charged for o in ok),
                                       duplicate=all(o.duplicate for o in ok))
        finally:
            self._observe("terminate", t0)

    async def _charge(self, req: ChargeRequest, *, terminate: bool) -> Outcome:
        return await self.settlement.charge(req, self._cap(req), terminate=terminate)

    async def event(self, req: ChargeRequest, action: EventAction) -> Outcome:
        t0 = time.perf_counter()
        try:
            if action is EventAction.CHECK_BALANCE:
                found = await self.accounts.resolve(req.subscriber, fresh=True)
                if found is None:
                    return Outcome(Status.UNKNOWN_SUBSCRIBER, reason="unknown account")
                return Outcome(Status.GRANTED, balance=found.balance, reserved=found.reserved,
                               price=found.available, account=found.id, currency=found.currency)
            rated = await self._rated(req, fresh=action is EventAction.PRICE_ENQUIRY)  # it shows the balance
            if isinstance(rated, Outcome):
                return rated
            acct, tariff, sel, fx = rated
            units = req.requested_units or req.used_units or 1
            rating = tariff.rate(sel, units)
            charge = rating.charge if fx is None else converted_charge(rating, fx)
            if action is EventAction.PRICE_ENQUIRY:
                return Outcome(Status.GRANTED, granted_units=units, price=charge,
                               balance=acct.balance, account=acct.id, currency=acct.currency)
            refund = action is EventAction.REFUND_ACCOUNT
            event_time = req.event_time or datetime.now(UTC)
            ctx = context(req, acct, sel, event_time, self.cfg.node.name, billed=str(rating.billed_units))
            if fx is not None:
                ctx["fxcur"], ctx["fx"] = sel.currency, format_rate(fx)
            leg = None
            if acct.reseller:  # resellers: the wholesale price of the event, debited (refunded) with it
                priced = await self.settlement.resale.price(acct, self._destination(req), event_time, sel.service,
                                                            units)
                if isinstance(priced, Outcome):
                    return priced
                leg, rctx = priced
                ctx.update(rctx)
            return (await self.scripts.event(Target(acct.id, req.session, req.rating_group, acct.currency),
                                             req.request_number, -charge if refund else charge, units,
                                             iso(event_time), pack_context(ctx), refund=refund, leg=leg))[1] \
                or Outcome(Status.ERROR, reason="event script")
        finally:
            self._observe("event", t0)

    async def bind(self, old_session: str, new_session: str, subscriber: str,
                   hold_seconds: int | None = None, origin: str = "") -> bool:
        """Move a hold to its call's key (RADIUS Start), or make it last the call when the key is the same."""
        acct = await self.accounts.resolve(subscriber)
        if acct is None:
            return False
        expiry = self.settlement.expiry_ms(hold_seconds)
        indexing = None
        if old_session != new_session:  # the new key's index in the same pipeline tick as the script (see _open)
            indexing = self.states.index(new_session, acct.id)
            indexing.add_done_callback(_retrieved)
        bound = await self.scripts.bind(acct.id, old_session, new_session, expiry, origin)
        if indexing is not None:
            await indexing
        if not bound:
            return False
        if old_session != new_session:  # the hold lives under the new key now (bind.lua set sid and exp)
            self.states.rekey(acct.id, old_session, new_session, 0, {"sid": new_session, "exp": str(expiry)})
            self.states.remember(subscriber or acct.id, new_session, acct.id)
        return True

    async def reauthorize(self, account: str, sid: str, rg: int, hold_seconds: int | None = None) -> Outcome:
        """A new grant for an open session at the usage charged so far (after a top-up).

        RADIUS has no request a NAS sends to be re-authorized: ocsd reserves what the balance now
        pays for itself and tells the NAS the new Session-Timeout in a CoA-Request (RFC 5176).  The
        same debit step as an Interim-Update reporting no new usage: nothing is charged, the old
        hold is released and the larger one held.
        """
        state = await self.states.load(account, sid, rg)
        if state is None or state.closed:
            return Outcome(Status.UNKNOWN_SESSION, account=account, reason="session not open")
        voice = state.service is Service.VOICE
        req = ChargeRequest(subscriber=account, session=sid, rating_group=rg,
                            request_number=REAUTH_BASE + ms(datetime.now(UTC)), service=state.service,
                            used_units=state.used, used_is_total=True,
                            requested_units=self.cfg.charging.max_grant_seconds if voice else None,
                            protocol=state.f.get("proto", ""), origin=state.f.get("origin", ""),
                            hold_seconds=hold_seconds)
        return await self._charge(req, terminate=False)

    async def terminate_origin(self, origin: str, cause: str) -> int:
        """Settle every open session of one NAS/peer (Accounting-On/Off) at the usage charged so far.

        Concurrent requests for the same origin (a NAS repeating Accounting-On, a burst of them) share
        one settlement run instead of each walking every session again.
        """
        running = self._settling.get(origin)
        if running is None:
            running = self._settling[origin] = asyncio.ensure_future(self._settle_origin(origin, cause))
            running.add_done_callback(lambda _t: self._settling.pop(origin, None))
        return await asyncio.shield(running)

    async def _settle_origin(self, origin: str, cause: str) -> int:
        count = 0
        for account, sid, rg in await self.states.of_origin(origin):
            state = await self.states.load(account, sid, rg)
            if state is None or state.closed:
                continue
            req = ChargeRequest(subscriber=account, session=sid, rating_group=rg,
                                request_number=SETTLE_BASE + state.last_request,
                                service=state.service, used_units=state.used, used_is_total=True,
                                termination_cause=cause, origin=origin)
            out = await self._charge(req, terminate=True)
            count += out.status is Status.GRANTED
        return count
