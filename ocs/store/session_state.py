"""Session state as the charging core reads it: the Redis hash, and what this node remembers of it.

Session hash fields (``Keys.session``): rating context written once at open
(``acct sid rg proto svc cur node origin calling dest prefix dname t0 tariff tver``)
and the running state the scripts maintain (``used chg billed hold hunits xs rq exp
closed cause cdrrev``) plus ``o:<request number>`` stored outcomes.  A session that draws on a
bundle (docs/wholesale.md "Bundles") also has ``bk bq`` (its period key and quota, written at
open) and ``ih iu`` (included seconds held and consumed; the scripts keep them).

Two node-local caches, each bounded (``cache.sessions``, least recently written
first out):

- (subscriber, session id) -> account: saves resolving the subscriber on this node.
  Keyed by the subscriber too: RADIUS Acct-Session-Ids are unique per NAS only
  (RFC 2866 section 5.5).
- the last state this node wrote for a session: saves the session read before a
  debit.  Safe when stale (another node moved the session, the reaper closed it):
  the script's CAS on ``used`` answers CONFLICT/NOSESSION, and the caller forgets
  the entry and reads Redis again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ocs.model import Outcome, Service
from ocs.rating.engine import Selection
from ocs.store import placement
from ocs.store.charging_scripts import parse_member
from ocs.store.keys import Keys
from ocs.store.outcomes import decode_outcome
from ocs.store.pipeline import AutoPipeline
from ocs.store.replies import fields, text

CACHE_LIMIT = 50_000  # default entries per node-local cache (config ``cache.sessions``; a miss only costs a read)
INDEX_TTL = 86400  # the session-id index outlives any session


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC; the front ends' clock is already UTC (no astimezone copy then)."""
    return (ts if ts.tzinfo is UTC else ts.astimezone(UTC)).isoformat()


def ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


@dataclass(frozen=True)
class SessionState:
    account: str
    sid: str
    rg: int
    f: dict[str, str]
    sel: Selection | None = field(default=None, compare=False)  # rule 1 at the start, once computed

    def __init__(self, account: str, sid: str, rg: int, f: dict[str, str], sel: Selection | None = None) -> None:
        """Written out, not generated: mypyc compiles it (frozen: object.__setattr__, as the generated one)."""
        object.__setattr__(self, "account", account)
        object.__setattr__(self, "sid", sid)
        object.__setattr__(self, "rg", rg)
        object.__setattr__(self, "f", f)
        object.__setattr__(self, "sel", sel)

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

    @property
    def currency(self) -> str:
        return self.f.get("cur", "")

    def stored(self, request_number: int) -> Outcome | None:
        raw = self.f.get(f"o:{request_number}")
        if raw is None:
            return None
        return decode_outcome(raw, duplicate=True, account=self.account, currency=self.currency)


class SessionStates:
    """Reads sessions and the indexes around them; keeps this node's bounded caches."""

    def __init__(self, rp: AutoPipeline, keys: Keys, cache_entries: int = CACHE_LIMIT) -> None:
        self.rp = rp
        self.keys = keys
        self.cache_max = cache_entries
        self._owner: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._states: OrderedDict[tuple[str, str, int], SessionState] = OrderedDict()

    # -- the caches ----------------------------------------------------------------------------

    def remember(self, subscriber: str, sid: str, account: str) -> None:
        owner, key = self._owner, (subscriber, sid)
        owner[key] = account
        owner.move_to_end(key)
        if len(owner) > self.cache_max:
            owner.popitem(last=False)

    def keep(self, st: SessionState) -> None:
        states, key = self._states, (st.account, st.sid, st.rg)
        states[key] = st
        states.move_to_end(key)
        if len(states) > self.cache_max:
            states.popitem(last=False)

    def rekey(self, account: str, old: str, new: str, rg: int, changed: dict[str, str]) -> None:
        """Move the cached state of a session a script re-keyed (``bind.lua``: the RADIUS Start binds the
        Access-Request's hold to the call's key), with the fields the script changed; no entry, nothing.

        Why: without it the first Interim-Update of every call read the session back from Redis
        (a second round trip); a stale entry is as safe here as anywhere (the debit's CAS).
        """
        st = self._states.pop((account, old, rg), None)
        if st is not None:
            self.keep(SessionState(account, new, rg, {**st.f, **changed}, st.sel))

    def forget(self, account: str, sid: str, rg: int) -> None:
        """Drop the cached state (the script said it is stale); the next ``find`` reads Redis."""
        self._states.pop((account, sid, rg), None)

    def owner(self, subscriber: str, sid: str) -> str | None:
        return self._owner.get((subscriber, sid))

    # -- reads ---------------------------------------------------------------------------------

    async def load(self, account: str, sid: str, rg: int) -> SessionState | None:
        raw = await self.rp.call("HGETALL", self.keys.session(account, sid, rg))
        if not raw and await placement.refresh(self.rp.call, self.keys, account):
            return await self.load(account, sid, rg)  # a reseller's subscriber placed since this process loaded
        return SessionState(account, sid, rg, fields(raw)) if raw else None

    def cached(self, subscriber: str, sid: str, rg: int) -> SessionState | None:
        """The state this node last wrote for the subscriber's session, without a round trip (hot path)."""
        account = self._owner.get((subscriber, sid))
        return self._states.get((account, sid, rg)) if account is not None else None

    async def find(self, account: str | None, subscriber: str, sid: str, rg: int) -> SessionState | None:
        """The session of ``account`` (when the caller knows it), else through the session-id index.

        Only a request without a subscriber (a Diameter CCR-U/T may omit Subscription-Id; Session-Ids
        are globally unique, RFC 6733 section 8.8) is found through the index.
        """
        if account is None:
            account = await self.indexed(sid)
        if account is None:
            return None
        cached = self._states.get((account, sid, rg))
        if cached is not None:
            return cached
        state = await self.load(account, sid, rg)
        if state is not None:
            self.remember(subscriber, sid, account)
        return state

    async def indexed(self, sid: str) -> str | None:
        """The account the session-id index names for ``sid`` (None: not indexed)."""
        return text(await self.rp.call("GET", self.keys.session_index(sid))) or None

    async def groups(self, account: str, session: str) -> list[int]:
        """The rating groups other than 0 that ``session`` opened, ascending (the pre-0.3 set too)."""
        # *[...]: gather returns a list; two plain arguments are typed a tuple by mypy, which mypyc checks
        new, old = await asyncio.gather(*[self.rp.call("SMEMBERS", self.keys.groups(account, session)),
                                          self.rp.call("SMEMBERS", self.keys.session_groups(session))])
        return sorted({int(text(g)) for g in [*new, *old]})

    async def of_origin(self, origin: str) -> list[tuple[str, str, int]]:
        """Every session opened through ``origin`` on any shard (and in the pre-0.3 unsharded set)."""
        replies = await asyncio.gather(
            *(self.rp.call("SMEMBERS", self.keys.origin_in_shard(s, origin)) for s in range(self.keys.shards)),
            self.rp.call("SMEMBERS", self.keys.origin(origin)))
        return sorted({parse_member(text(m)) for reply in replies for m in reply})

    # -- the session-id index (outside the account's slot: one command in the same tick) ----------

    def index(self, sid: str, account: str) -> asyncio.Future[object]:
        return self.rp.submit("SET", self.keys.session_index(sid), account, "EX", INDEX_TTL)
