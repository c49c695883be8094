"""One typed call per charging script: arguments -> KEYS/ARGV in one place, reply -> Outcome.

The charging core decides *what* moves (it rates: the charge of the usage so far,
the plan of the next grant); these wrappers say *how* it is written: which keys a
script touches (all under the account's ``{sNN}`` hash tag, so every call is one
slot on Redis Cluster), in which ARGV position each value goes (the positions
exist only here and in the script's header), and what the reply means.

Each method returns ``(code, outcome)``: ``code`` is the script's first reply
element (``OK``, ``DUP``, ``CONFLICT`` ...; see each script's header), and
``outcome`` the decoded stored outcome, an outcome for a refusal code, or None
where the caller has to re-read and retry (``CONFLICT``, ``NOSESSION``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ocs.model import Outcome, Status
from ocs.rating.engine import GrantPlan
from ocs.store.keys import Keys
from ocs.store.outcomes import decode_outcome
from ocs.store.pipeline import AutoPipeline
from ocs.store.replies import text
from ocs.store.scripts import Script

SEP = "\x1f"  # separator of packed context and of expiry/origin members (ASCII unit separator)
GROUPS_TTL = 86400  # the set of a session's rating groups outlives any session
ScriptOutcome = tuple[str, Outcome | None]


def plan_arg(plan: GrantPlan | None) -> str:
    """A GrantPlan packed as the scripts read it (``_lib.lua`` ``grant``): one comma-separated argument."""
    if plan is None:
        return ""
    out = [plan.fee, plan.base_num, plan.charged_base, plan.per, plan.max_blocks, len(plan.segments)]
    for seg in plan.segments:
        out.extend(seg)
    return ",".join(map(str, out))


def bundle_reserve_arg(period_key: str, quota: int, cap: int) -> str:
    """``reserve.lua`` ARGV[12]: hold up to ``cap`` included seconds of the period, created at ``quota``."""
    return f"{period_key}{SEP}{quota}{SEP}{cap}"


def bundle_debit_arg(cap: int, included_total: int) -> str:
    """``debit.lua`` ARGV[19]: the next grant's cap and the included total the money part was rated from."""
    return f"{cap}{SEP}{included_total}"


def pack_context(ctx: Mapping[str, str]) -> str:
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


@dataclass(slots=True)  # built per request: slots, not frozen (a frozen init costs ~1 µs)
class Target:
    """The session a script call is about: whose, which, and where its keys live."""

    account: str
    sid: str
    rg: int
    currency: str = ""

    def __init__(self, account: str, sid: str, rg: int, currency: str = "") -> None:
        """Written out, not generated: mypyc compiles it."""
        self.account = account
        self.sid = sid
        self.rg = rg
        self.currency = currency

    def member(self) -> str:
        return member(self.account, self.sid, self.rg)


@dataclass(slots=True)
class Debit:
    """What ``debit.lua`` writes for one report of usage (the core rated it)."""

    request_number: int
    expect_used: str  # the session's ``used`` the rating started from (CAS)
    used: int
    charged: int
    billed: int
    units_now: int
    event_time: str
    excess_total: int
    excess: int
    cause: str = ""
    plan: GrantPlan | None = None  # None: terminate (release the rest, close, CDR)
    bundle: str = ""  # bundles: '' (none) or bundle_debit_arg(...)

    def __init__(self, request_number: int, expect_used: str, used: int, charged: int, billed: int, units_now: int,
                 event_time: str, excess_total: int, excess: int, cause: str = "", plan: GrantPlan | None = None,
                 bundle: str = "") -> None:
        """Written out, not generated: mypyc compiles it."""
        self.request_number = request_number
        self.expect_used = expect_used
        self.used = used
        self.charged = charged
        self.billed = billed
        self.units_now = units_now
        self.event_time = event_time
        self.excess_total = excess_total
        self.excess = excess
        self.cause = cause
        self.plan = plan
        self.bundle = bundle


@dataclass(slots=True)
class Leg:
    """The reseller's part of one script call (docs/wholesale.md "Resellers"); None on the plain path.

    The reseller's account hash shares the subscriber's hash tag (:mod:`ocs.store.placement`), so
    passing it keeps the call in one slot.
    """

    account: str  # the reseller
    charged: int = 0  # the session's wholesale charged total after this request (event: its amount)
    plan: GrantPlan | None = None  # the wholesale plan of the next grant (reserve, debit update)
    offset: int = 0  # the subscriber's billed position minus the reseller's (where both plans start)

    def __init__(self, account: str, charged: int = 0, plan: GrantPlan | None = None, offset: int = 0) -> None:
        """Written out, not generated: mypyc compiles it."""
        self.account = account
        self.charged = charged
        self.plan = plan
        self.offset = offset

    def grant_arg(self) -> str:
        """``wholesale plan`` SEP ``offset``; '' when there is no plan (the script then grants nothing more)."""
        return f"{plan_arg(self.plan)}{SEP}{self.offset}" if self.plan is not None else ""


@dataclass(slots=True)
class Orphan:
    """What ``orphan.lua`` writes for usage of a session not held open."""

    request_number: int
    expect_used: str  # '' when no session hash was seen
    used: int
    charged: int
    billed: int
    amount: int
    units_now: int
    event_time: str
    terminate: bool
    cause: str
    context: str  # packed context for a new tombstone ('' when one exists)
    excess_total: int
    excess: int

    def __init__(self, request_number: int, expect_used: str, used: int, charged: int, billed: int, amount: int,
                 units_now: int, event_time: str, terminate: bool, cause: str, context: str, excess_total: int,
                 excess: int) -> None:
        """Written out, not generated: mypyc compiles it."""
        self.request_number = request_number
        self.expect_used = expect_used
        self.used = used
        self.charged = charged
        self.billed = billed
        self.amount = amount
        self.units_now = units_now
        self.event_time = event_time
        self.terminate = terminate
        self.cause = cause
        self.context = context
        self.excess_total = excess_total
        self.excess = excess


class ChargingScripts:
    def __init__(self, rp: AutoPipeline, keys: Keys, *, validity: int, ttl: int, refusal_ttl: int) -> None:
        self.rp = rp
        self.keys = keys
        self.validity = validity
        self.ttl = ttl
        self.refusal_ttl = refusal_ttl
        self.reserve_s, self.debit_s, self.orphan_s = Script("reserve"), Script("debit"), Script("orphan")
        self.bind_s, self.event_s = Script("bind"), Script("event")
        rp.register(self.reserve_s, self.debit_s, self.orphan_s, self.bind_s, self.event_s, Script("reap"))

    def shard(self, account: str) -> int:
        return self.keys.shard_for(account)  # a reseller's subscriber: its reseller's shard

    async def reserve(self, t: Target, request_number: int, now_ms: int, expiry_ms: int, context: str,
                      plan: GrantPlan, origin: str, bundle: str = "", leg: Leg | None = None) -> ScriptOutcome:
        """``reserve.lua``: open the session and hold its first grant; index it by origin and rating group."""
        sh = self.shard(t.account)
        keys = [self.keys.account(t.account), self.keys.session(t.account, t.sid, t.rg), self.keys.expiry(sh),
                self.keys.totals(sh), self.keys.origin_in_shard(sh, origin), self.keys.groups(t.account, t.sid),
                self.keys.live(t.account)]
        args = [now_ms, request_number, expiry_ms, self.validity, t.member(), context, plan_arg(plan),
                self.refusal_ttl, "1" if origin else "0", t.rg, GROUPS_TTL, bundle]
        if leg is not None:
            keys.append(self.keys.account(leg.account))
            args.append(leg.grant_arg())
        code, out = await self.rp.script(self.reserve_s, keys, args)
        code = text(code)
        return code, self._outcome(code, out, t, {
            "EXISTS": Outcome(Status.INVALID, reason="session already open", account=t.account)})

    async def debit(self, t: Target, d: Debit, now_ms: int, expiry_ms: int, origin: str,
                    leg: Leg | None = None) -> ScriptOutcome:
        """``debit.lua``: charge the usage, then hold the next grant (update) or close (terminate)."""
        sh = self.shard(t.account)
        keys = [self.keys.account(t.account), self.keys.session(t.account, t.sid, t.rg), self.keys.expiry(sh),
                self.keys.usage(sh), self.keys.seq(sh), self.keys.totals(sh), self.keys.origin_in_shard(sh, origin),
                self.keys.live(t.account)]
        args = [now_ms, d.request_number, expiry_ms, self.validity, t.member(), f"s{sh:02d}", d.expect_used, d.used,
                d.charged, d.billed, "update" if d.plan is not None else "terminate", d.cause, d.event_time,
                d.units_now, self.ttl, plan_arg(d.plan), d.excess_total, d.excess, d.bundle]
        if leg is not None:
            keys.append(self.keys.account(leg.account))
            args.extend((leg.charged, leg.grant_arg() if d.plan is not None else ""))
        code, out = await self.rp.script(self.debit_s, keys, args)
        code = text(code)
        return code, self._outcome(code, out, t, {})

    async def orphan(self, t: Target, o: Orphan, now_ms: int, leg: Leg | None = None) -> ScriptOutcome:
        """``orphan.lua``: charge usage of a session not held open, once (answered as unknown session)."""
        sh = self.shard(t.account)
        keys = [self.keys.account(t.account), self.keys.session(t.account, t.sid, t.rg), self.keys.usage(sh),
                self.keys.seq(sh)]
        args = [now_ms, o.request_number, f"s{sh:02d}", o.expect_used, o.used, o.charged, o.billed, o.amount,
                o.units_now, o.event_time, self.ttl, "1" if o.terminate else "0", o.cause, o.context,
                o.excess_total, o.excess]
        if leg is not None:
            keys.append(self.keys.account(leg.account))
            args.append(leg.charged)
        code, out = await self.rp.script(self.orphan_s, keys, args)
        code = text(code)
        return code, self._outcome(code, out, t, {})

    async def event(self, t: Target, request_number: int, amount: int, units: int, event_time: str,
                    context: str, *, refund: bool, leg: Leg | None = None) -> ScriptOutcome:
        """``event.lua``: a one-shot debit or refund (CCR-E), with its record and CDR."""
        sh = self.shard(t.account)
        keys = [self.keys.account(t.account), self.keys.session(t.account, t.sid, t.rg), self.keys.usage(sh),
                self.keys.seq(sh)]
        args = [request_number, f"s{sh:02d}", amount, units, event_time, self.ttl,
                "refund" if refund else "event", "0" if refund else "1", context]
        if leg is not None:
            keys.append(self.keys.account(leg.account))
            args.append(-leg.charged if refund else leg.charged)
        code, out = await self.rp.script(self.event_s, keys, args)
        code = text(code)
        return code, self._outcome(code, out, t, {
            "NOCREDIT": Outcome(Status.OUT_OF_CREDIT, reason="no credit", account=t.account, currency=t.currency)})

    async def bind(self, account: str, old: str, new: str, expiry_ms: int, origin: str) -> bool:
        """``bind.lua``: move a hold to its call's key (or, same key, make it last); True when done."""
        sh = self.shard(account)
        keys = [self.keys.session(account, old, 0), self.keys.session(account, new, 0), self.keys.expiry(sh),
                self.keys.origin_in_shard(sh, origin), self.keys.live(account)]
        args = [member(account, old, 0), member(account, new, 0), new, expiry_ms]
        return text(await self.rp.script(self.bind_s, keys, args)) == "OK"

    @staticmethod
    def _outcome(code: str, out: bytes | str, t: Target, other: dict[str, Outcome]) -> Outcome | None:
        if code in ("OK", "DUP") or (code in ("NOCREDIT", "BLOCKED") and out):  # a stored outcome
            return decode_outcome(out, duplicate=code == "DUP", account=t.account, currency=t.currency)
        if code in ("CONFLICT", "NOSESSION"):
            return None
        if code == "NOACCT":
            return Outcome(Status.UNKNOWN_SUBSCRIBER, reason="unknown account")
        if code == "BLOCKED":
            return Outcome(Status.BLOCKED, reason="account blocked", account=t.account)
        return other.get(code, Outcome(Status.ERROR, reason=f"script answered {code}"))
