"""Session state in Redis and the script calls that move money for the verbs.

Session hash fields (``Keys.session``): rating context written once at open
(``acct sid rg proto svc cur node origin calling dest prefix dname t0 tariff tver``)
and the running state the scripts maintain (``used chg billed hold hunits rq exp
closed``) plus ``o:<request number>`` stored outcomes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from ocs.config import Config
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, Outcome, Service, Status
from ocs.rating.engine import CompiledTariff, GrantPlan, Rating, Selection
from ocs.store.accounts_view import Account, AccountView
from ocs.store.keys import Keys, shard_of
from ocs.store.outcomes import decode_outcome, fields, text
from ocs.store.pipeline import AutoPipeline
from ocs.store.scripts import Script
from ocs.store.tariff_cache import TariffCache, TariffNotFound

log = structlog.get_logger("ocs.sessions")
# How long reserve.lua remembers a refusal (no credit, blocked) as the request number's outcome: a
# gateway's retransmission within this gets the same refusal even if credit arrived meanwhile.
REFUSAL_TTL = 120
_REFUSED = ("NOCREDIT", "BLOCKED")
MAX_EXACT = 2**53 - 1  # largest charge (micro-units) the scripts' Lua numbers hold exactly
SEP = "\x1f"  # separator of packed context and of expiry/origin members (ASCII unit separator)
CACHE_LIMIT = 200_000  # entries per node-local cache (cleared whole when full: a miss only costs a read)


def plan_arg(plan: GrantPlan) -> str:
    """A GrantPlan packed as the scripts read it (``_lib.lua`` ``grant``): one comma-separated argument."""
    out = [plan.fee, plan.base_num, plan.charged_base, plan.per, plan.max_blocks, len(plan.segments)]
    for seg in plan.segments:
        out.extend(seg)
    return ",".join(map(str, out))


def pack_context(ctx: dict[str, str]) -> str:
    """Session fields as one argument (``_lib.lua`` ``set_context``).

    Values come from the wire (Session-Id, Calling-Station-Id, ...): a separator inside one
    would shift every later field (a calling number ``x\x1facct\x1fvictim`` would rewrite the
    session's account), so it is replaced by U+FFFD.
    """
    return SEP.join(x for k, v in ctx.items() for x in (k, v.replace(SEP, "\ufffd")))


def member(account: str, sid: str, rg: int) -> str:
    """A session's member in the shard expiry zset and the origin sets."""
    return f"{account}{SEP}{sid}{SEP}{rg}"


def parse_member(raw: str) -> tuple[str, str, int]:
    """Inverse of :func:`member`; a session id may itself contain the separator (it is the wire's)."""
    account, rest = raw.split(SEP, 1)
    sid, rg = rest.rsplit(SEP, 1)
    return account, sid, int(rg)


def _beyond_exact(req: ChargeRequest, account: str, charge: int) -> Outcome:
    """A charge no real usage reaches (beyond 2^53 micro-units): refused, nothing moved, logged."""
    log.error("charge_beyond_exact_range", session=req.session, account=account, charge=charge,
              reported=req.used_units, request_number=req.request_number)
    return Outcome(Status.ERROR, account=account, reason="reported usage beyond any plausible charge")


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat()


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


@dataclass(frozen=True)
class SessionState:
    account: str
    sid: str
    rg: int
    f: dict[str, str]
    sel: Selection | None = field(default=None, compare=False)  # rule 1 at the start, once computed

    @property
    def closed(self) -> bool:
        return self.f.get("closed") == "1"

    @property
    def used(self) -> int:
        return int(self.f.get("used") or 0)

    @property
    def charged(self) -> int:
        return int(self.f.get("chg") or 0)

    @property
    def tariff(self) -> str:
        return self.f["tariff"]

    @property
    def version(self) -> int:
        return int(self.f["tver"])

    @property
    def service(self) -> Service:
        return Service(self.f.get("svc") or "voice")

    @property
    def start(self) -> datetime:
        return datetime.fromisoformat(self.f["t0"])

    @property
    def excess(self) -> int:
        """Units reported so far beyond grant + overuse cap, not charged (``xs``)."""
        return int(self.f.get("xs") or 0)

    @property
    def granted(self) -> int:
        """Units of the current grant (``hunits``)."""
        return int(self.f.get("hunits") or 0)

    @property
    def last_request(self) -> int:
        return int(self.f.get("rq") or 0)

    def stored(self, request_number: int) -> Outcome | None:
        raw = self.f.get(f"o:{request_number}")
        if raw is None:
            return None
        return decode_outcome(raw, duplicate=True, account=self.account, currency=self.f.get("cur", ""))


class SessionStore:
    def __init__(self, cfg: Config, rp: AutoPipeline, keys: Keys, *, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.rp = rp
        self.keys = keys
        self.metrics = metrics or Metrics()
        self.reserve_s, self.debit_s, self.orphan_s = Script("reserve"), Script("debit"), Script("orphan")
        self.bind_s, self.event_s = Script("bind"), Script("event")
        rp.register(self.reserve_s, self.debit_s, self.orphan_s, self.bind_s, self.event_s, Script("reap"))
        # (subscriber, session id) -> account: saves resolving the subscriber on this node.  Keyed by
        # the subscriber too: RADIUS Acct-Session-Ids are unique per NAS only (RFC 2866 section 5.5).
        self._owner: dict[tuple[str, str], str] = {}
        # Last state this node wrote for a session: saves the session read before a debit.  Safe when
        # stale (another node moved the session, the reaper closed it): the script's CAS on ``used``
        # answers CONFLICT/NOSESSION, and the caller re-reads from Redis (``forget``).
        self._states: dict[tuple[str, str, int], SessionState] = {}
        c = cfg.charging
        self.validity = c.validity_seconds
        self.ttl = max(3600, c.validity_seconds + c.grace_seconds)

    # -- keys ------------------------------------------------------------------------------

    def _shard(self, account: str) -> int:
        return shard_of(account, self.keys.shards)

    def _remember(self, subscriber: str, sid: str, account: str) -> None:
        if len(self._owner) >= CACHE_LIMIT:
            self._owner.clear()
        self._owner[(subscriber, sid)] = account

    def _keep(self, st: SessionState) -> None:
        if len(self._states) >= CACHE_LIMIT:
            self._states.clear()
        self._states[(st.account, st.sid, st.rg)] = st

    def forget(self, account: str, sid: str, rg: int) -> None:
        """Drop the cached state (the script said it is stale); the next ``find`` reads Redis."""
        self._states.pop((account, sid, rg), None)

    def _member(self, account: str, sid: str, rg: int) -> str:
        return member(account, sid, rg)

    def _expiry_ms(self, req: ChargeRequest | None = None) -> int:
        now = datetime.now(UTC)
        hold = req.hold_seconds if req is not None and req.hold_seconds else None
        return ms(now + timedelta(seconds=hold or self.validity + self.cfg.charging.grace_seconds))

    def _context(self, req: ChargeRequest, acct: Account, sel: Selection, start: datetime,
                 **extra: str) -> dict[str, str]:
        return {
            "acct": acct.id, "sid": req.session, "rg": str(req.rating_group), "proto": req.protocol,
            "svc": req.service.value, "cur": acct.currency, "node": self.cfg.node.name,
            "origin": req.origin, "calling": req.calling, "dest": sel.number, "prefix": sel.prefix,
            "dname": sel.destination, "t0": iso(start), "tariff": sel.tariff, "tver": str(sel.version), **extra,
        }

    # -- open ------------------------------------------------------------------------------

    async def open(self, req: ChargeRequest, acct: Account, tariff: CompiledTariff, sel: Selection,
                   cap: int) -> Outcome:
        plan = tariff.grant_plan(sel, 0, cap)
        member = self._member(acct.id, req.session, req.rating_group)
        sh = self._shard(acct.id)
        now = datetime.now(UTC)
        keys = [self.keys.account(acct.id), self.keys.session(acct.id, req.session, req.rating_group),
                self.keys.expiry(sh), self.keys.totals(sh)]
        ctx = self._context(req, acct, sel, sel.start)
        args = [ms(now), req.request_number, self._expiry_ms(req), self.validity, member,
                pack_context(ctx), plan_arg(plan), REFUSAL_TTL]
        code, out = await self.rp.script(self.reserve_s, keys, args)
        code = text(code)
        if code == "OK":
            self._remember(req.subscriber, req.session, acct.id)
            granted = decode_outcome(out, duplicate=False, account=acct.id, currency=acct.currency).granted_units
            self._keep(SessionState(acct.id, req.session, req.rating_group,
                                    {**ctx, "used": "0", "chg": "0", "hunits": str(granted)}, sel))
            more = [self.rp.submit("SADD", self.keys.origin(req.origin), member)] if req.origin else []
            if req.rating_group:
                groups = self.keys.session_groups(req.session)
                more += [self.rp.submit("SADD", groups, req.rating_group), self.rp.submit("EXPIRE", groups, 86400)]
            await asyncio.gather(
                self.rp.submit("SET", self.keys.session_index(req.session), acct.id, "EX", 86400), *more)
        return self._result(code, out, acct.id, acct.currency, {
            "EXISTS": Outcome(Status.INVALID, reason="session already open", account=acct.id),
        })

    def _result(self, code: str, out: bytes, account: str, currency: str,
                other: dict[str, Outcome]) -> Outcome:
        if code in ("OK", "DUP") or (code in _REFUSED and out):  # the script's stored outcome
            return decode_outcome(out, duplicate=code == "DUP", account=account, currency=currency)
        if code == "NOACCT":
            return Outcome(Status.UNKNOWN_SUBSCRIBER, reason="unknown account")
        if code == "BLOCKED":
            return Outcome(Status.BLOCKED, reason="account blocked", account=account)
        return other.get(code, Outcome(Status.ERROR, reason=f"script answered {code}"))

    # -- find ------------------------------------------------------------------------------

    async def load(self, account: str, sid: str, rg: int) -> SessionState | None:
        raw = await self.rp.call("HGETALL", self.keys.session(account, sid, rg))
        return SessionState(account, sid, rg, fields(raw)) if raw else None

    async def find(self, req: ChargeRequest, accounts: AccountView) -> SessionState | None:
        """The request's session: the subscriber's account decides whose, when the request names one.

        Only a request without a subscriber (a Diameter CCR-U/T may omit Subscription-Id; Session-Ids
        are globally unique, RFC 6733 section 8.8) is found through the session index.
        """
        key = (req.subscriber, req.session)
        account = self._owner.get(key)
        if account is None and req.subscriber:
            acct = await accounts.resolve(req.subscriber)
            account = acct.id if acct is not None else None
        if account is None:
            account = text(await self.rp.call("GET", self.keys.session_index(req.session))) or None
        if account is None:
            return None
        cached = self._states.get((account, req.session, req.rating_group))
        if cached is not None:
            return cached
        state = await self.load(account, req.session, req.rating_group)
        if state is not None:
            self._remember(req.subscriber, req.session, account)
        return state

    # -- debit -----------------------------------------------------------------------------

    def _new_used(self, req: ChargeRequest, used: int, excess: int, granted: int) -> tuple[int, int]:
        """(new used total, excess units of this request) for usage reported against ``used``.

        Totals never go backwards (out-of-order interims).  Plausibility (docs/rating.md): time
        reported in one request beyond the grant plus ``charging.max_overuse_seconds`` is not
        charged; the excess is kept on the session (``xs``) so a later cumulative total (RADIUS
        Acct-Session-Time) does not count it again.  0 = no cap.  Octets and events: no cap.
        """
        new = max(used, req.used_units - excess) if req.used_is_total else used + max(0, req.used_units)
        cap = self.cfg.charging.max_overuse_seconds
        if cap and req.service is Service.VOICE and new - used > granted + cap:
            return used + granted + cap, new - used - granted - cap
        return new, 0

    def _overuse(self, req: ChargeRequest, account: str, excess: int, used: int) -> None:
        if excess:
            self.metrics.child(self.metrics.overuse, req.protocol or "other").inc()
            self.metrics.child(self.metrics.overuse_units, req.protocol or "other").inc(excess)
            log.warning("usage_beyond_grant_not_charged", session=req.session, account=account,
                        request_number=req.request_number, reported=req.used_units, charged_total=used,
                        excess_units=excess, max_overuse_seconds=self.cfg.charging.max_overuse_seconds)

    async def debit(self, req: ChargeRequest, st: SessionState, tariff: CompiledTariff, cap: int, *,
                    terminate: bool) -> Outcome | None:
        """One debit(-and-rereserve) call; None = CONFLICT/NOSESSION, the caller re-reads."""
        sel = st.sel if st.sel is not None and st.sel.version == tariff.tariff.version else \
            tariff.select(st.f["dest"], st.start, st.service)
        if sel is None:  # the version a session started on cannot lose its row; defensive
            return Outcome(Status.ERROR, reason="session no longer rateable")
        used, excess = self._new_used(req, st.used, st.excess, st.granted)
        rating = tariff.rate(sel, used)
        if rating.charge > MAX_EXACT:
            return _beyond_exact(req, st.account, rating.charge)
        self._overuse(req, st.account, excess, used)
        plan = "" if terminate else plan_arg(tariff.grant_plan(sel, used, cap, done=rating))
        sh = self._shard(st.account)
        keys = [self.keys.account(st.account), self.keys.session(st.account, st.sid, st.rg),
                self.keys.expiry(sh), self.keys.usage(sh), self.keys.seq(sh), self.keys.totals(sh)]
        now = datetime.now(UTC)
        args = [ms(now), req.request_number, self._expiry_ms(req), self.validity,
                self._member(st.account, st.sid, st.rg), f"s{sh:02d}", st.f.get("used", "0"), used,
                rating.charge, rating.billed_units, "terminate" if terminate else "update",
                req.termination_cause or "", iso(req.event_time or now), used - st.used, self.ttl, plan,
                st.excess + excess, excess]
        code, out = await self.rp.script(self.debit_s, keys, args)
        code = text(code)
        if code in ("CONFLICT", "NOSESSION"):
            self.forget(st.account, st.sid, st.rg)
            return None
        if terminate:
            self.forget(st.account, st.sid, st.rg)
            if code == "OK" and st.f.get("origin"):
                await self.rp.call("SREM", self.keys.origin(st.f["origin"]),
                                   self._member(st.account, st.sid, st.rg))
        result = self._result(code, out, st.account, st.f.get("cur", ""), {})
        if code == "OK" and not terminate:
            self._keep(SessionState(st.account, st.sid, st.rg, {
                **st.f, "used": str(used), "chg": str(rating.charge), "hunits": str(result.granted_units),
                "xs": str(st.excess + excess)}, sel))
        return result

    async def orphan(self, req: ChargeRequest, st: SessionState | None, accounts: AccountView,
                     tariffs: TariffCache, *, terminate: bool) -> Outcome | None:
        """Charge usage of a session we do not hold open, once; answer UNKNOWN_SESSION."""
        if st is not None:
            dup = st.stored(req.request_number)
            if dup is not None:
                return dup
            tariff = await tariffs.get(st.tariff, st.version)
            sel = tariff.select(st.f["dest"], st.start, st.service)
            account, ctx, expect, used0, chg0 = st.account, "", st.f.get("used", "0"), st.used, st.charged
            currency, xs0 = st.f.get("cur", ""), st.excess
        else:
            acct = await accounts.resolve(req.subscriber)
            if acct is None:
                return Outcome(Status.UNKNOWN_SESSION, reason="unknown session and subscriber")
            try:
                tariff = await tariffs.current(acct.tariff)
            except TariffNotFound:
                return Outcome(Status.UNKNOWN_SESSION, account=acct.id, reason="tariff missing")
            end = req.event_time or datetime.now(UTC)
            units = req.used_units
            start = end - timedelta(seconds=units) if req.service is Service.VOICE else end
            sel = tariff.select(req.destination or str(req.rating_group), start, req.service)
            if sel is None:
                return Outcome(Status.UNKNOWN_SESSION, account=acct.id, reason="destination not rated")
            account, expect, used0, chg0, currency, xs0 = acct.id, "", 0, 0, acct.currency, 0
            ctx = pack_context(self._context(req, acct, sel, start))
        if sel is None:
            return Outcome(Status.UNKNOWN_SESSION, account=account, reason="not rateable")
        # the grant a session we no longer hold had is unknown: the largest one there can have been
        used, excess = self._new_used(req, used0, xs0, self.cfg.charging.max_grant_seconds)
        rating: Rating = tariff.rate(sel, used)
        if rating.charge > MAX_EXACT:
            return _beyond_exact(req, account, rating.charge)
        self._overuse(req, account, excess, used)
        sh = self._shard(account)
        keys = [self.keys.account(account), self.keys.session(account, req.session, req.rating_group),
                self.keys.usage(sh), self.keys.seq(sh)]
        now = datetime.now(UTC)
        args = [ms(now), req.request_number, f"s{sh:02d}", expect, used, rating.charge,
                rating.billed_units, max(0, rating.charge - chg0), used - used0,
                iso(req.event_time or now), self.ttl, "1" if terminate else "0",
                req.termination_cause or "", ctx, xs0 + excess, excess]
        code, out = await self.rp.script(self.orphan_s, keys, args)
        code = text(code)
        if code == "CONFLICT":
            return None
        return self._result(code, out, account, currency, {})

    # -- events, bind, origins ----------------------------------------------------------------

    async def one_shot(self, req: ChargeRequest, acct: Account, sel: Selection, rating: Rating,
                       units: int, *, refund: bool) -> Outcome:
        sh = self._shard(acct.id)
        keys = [self.keys.account(acct.id), self.keys.session(acct.id, req.session, req.rating_group),
                self.keys.usage(sh), self.keys.seq(sh)]
        now = req.event_time or datetime.now(UTC)
        ctx = pack_context(self._context(req, acct, sel, now, billed=str(rating.billed_units)))
        amount = -rating.charge if refund else rating.charge
        args = [req.request_number, f"s{sh:02d}", amount, units, iso(now),
                self.ttl, "refund" if refund else "event", "0" if refund else "1", ctx]
        code, out = await self.rp.script(self.event_s, keys, args)
        return self._result(text(code), out, acct.id, acct.currency, {
            "NOCREDIT": Outcome(Status.OUT_OF_CREDIT, reason="no credit", account=acct.id,
                                currency=acct.currency, balance=acct.balance),
        })

    async def bind(self, acct: Account, old: str, new: str, hold_seconds: int | None = None,
                   subscriber: str = "") -> bool:
        sh = self._shard(acct.id)
        keys = [self.keys.session(acct.id, old, 0), self.keys.session(acct.id, new, 0), self.keys.expiry(sh)]
        expiry = ms(datetime.now(UTC) + timedelta(
            seconds=hold_seconds or self.validity + self.cfg.charging.grace_seconds))
        res = text(await self.rp.script(self.bind_s, keys, [self._member(acct.id, old, 0),
                                                             self._member(acct.id, new, 0), new, expiry]))
        if res != "OK":
            return False
        if old == new:
            return True  # the hold only lives longer now (bind.lua)
        self.forget(acct.id, old, 0)  # the hold lives under the new key now
        self._remember(subscriber or acct.id, new, acct.id)
        origin = text(await self.rp.call("HGET", keys[1], "origin"))
        await asyncio.gather(
            self.rp.submit("SET", self.keys.session_index(new), acct.id, "EX", 86400),
            *([self.rp.submit("SREM", self.keys.origin(origin), self._member(acct.id, old, 0)),
               self.rp.submit("SADD", self.keys.origin(origin), self._member(acct.id, new, 0))]
              if origin else []),
        )
        return True

    async def groups(self, session: str) -> list[int]:
        """The rating groups other than 0 that ``session`` opened, ascending."""
        return sorted(int(text(g)) for g in await self.rp.call("SMEMBERS", self.keys.session_groups(session)))

    async def of_origin(self, origin: str) -> list[tuple[str, str, int]]:
        members = await self.rp.call("SMEMBERS", self.keys.origin(origin))
        return [parse_member(text(m)) for m in members]
