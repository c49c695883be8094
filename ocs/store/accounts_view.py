"""The charging core's read view of accounts in Redis (subscriber -> account, status, money)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass

from ocs.rating.engine import normalize_number
from ocs.store import placement
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.replies import text

_FIELDS = ("type", "st", "tariff", "cur", "pw", "bal", "rsv", "cl", "bun",  # bun: bundles (ocs.rating.bundles)
           "rs")  # rs: the account's reseller (docs/wholesale.md "Resellers")


@dataclass(frozen=True)
class Account:
    id: str
    type: str
    status: str
    tariff: str
    currency: str
    password: str
    balance: int
    reserved: int
    credit_limit: int
    bundles: str = ""  # packed included-seconds bundles ('' = none: the plain path)
    reseller: str = ""  # the reseller whose subscriber this is ('' = none: the plain path)

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"

    @property
    def available(self) -> int:
        """Spec section 4 (the scripts compute the same inside Redis for money moves)."""
        extra = self.credit_limit if self.type == "postpaid" else 0
        return max(0, self.balance + extra - self.reserved)


CACHE_SECONDS = 1.0
CACHE_LIMIT = 10_000  # default bound (config ``cache.accounts``)


class AccountView:
    """Subscriber -> account, with a one-second node-local cache of found accounts.

    Why a cache is safe: no money decision uses it.  The scripts read balance, holds, credit
    limit and status inside Redis; what the cache saves (2-3 commands per opening request) is the
    lookup of the account id, tariff, currency and password.  Callers that show money
    (CHECK_BALANCE, authorize) or would refuse on what they read (blocked, bad password) ask
    again with ``fresh=True``, so an unblock or a new password counts at once; an alias moved to
    another account counts within a second.

    Entries are kept in the order they were (re)filled, so the oldest is at the front: each fill
    drops expired entries from the front and, beyond ``max_entries``, the oldest live one.  The
    cache thus holds the subscribers of the last second, at most ``max_entries`` of them.
    """

    def __init__(self, rp: AutoPipeline, keys: Keys, max_entries: int = CACHE_LIMIT) -> None:
        self.rp = rp
        self.keys = keys
        self.max = max_entries
        self._cache: OrderedDict[str, tuple[float, Account]] = OrderedDict()

    async def resolve(self, subscriber: str, *, fresh: bool = False) -> Account | None:
        """Alias (as given, then normalised like a number), else the value as an account id."""
        if not subscriber:
            return None
        now = time.monotonic()
        if not fresh:
            hit = self._cache.get(subscriber)
            if hit is not None and hit[0] > now:
                return hit[1]
        found = await self._resolve(subscriber)
        if found is not None:
            self._fill(subscriber, found, now)
        return found

    def _fill(self, subscriber: str, found: Account, now: float) -> None:
        cache = self._cache
        cache[subscriber] = (now + CACHE_SECONDS, found)
        cache.move_to_end(subscriber)  # a refill of an expired entry goes to the back too
        while cache and (len(cache) > self.max or next(iter(cache.values()))[0] <= now):
            cache.popitem(last=False)

    async def _resolve(self, subscriber: str) -> Account | None:
        candidates = [subscriber]
        norm = normalize_number(subscriber)
        if norm and norm != subscriber:
            candidates.append(norm)
        # one round trip: every alias candidate and the value as an account id, pipelined together
        owners = [self.rp.submit("GET", self.keys.alias(v)) for v in candidates]
        results = await asyncio.gather(*owners, self.rp.submit("HMGET", self.keys.account(subscriber), *_FIELDS))
        for owner in results[:-1]:
            if owner:
                found = await self.get(text(owner))
                if found is not None:
                    return found
        found = self._account(subscriber, results[-1])
        if found is None and await placement.refresh(self.rp.call, self.keys, subscriber):
            return await self.get(subscriber)  # a reseller's subscriber placed since this process loaded
        return found

    async def get(self, account_id: str) -> Account | None:
        found = self._account(account_id, await self.rp.call("HMGET", self.keys.account(account_id), *_FIELDS))
        if found is None and await placement.refresh(self.rp.call, self.keys, account_id):
            return await self.get(account_id)
        return found

    async def reseller(self, account_id: str) -> Account | None:
        """A reseller's account by id (not an alias), through the same one-second cache.

        Only for rating its wholesale leg (tariff, currency): its status and money are read by the
        scripts inside Redis.  Cached under a key no subscriber string has (a leading NUL).
        """
        key, now = "\x00" + account_id, time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self.get(account_id)
        if found is not None:
            self._fill(key, found, now)
        return found

    @staticmethod
    def _account(account_id: str, raw: list[bytes | None]) -> Account | None:
        vals = [text(v) for v in raw] + [""] * (len(_FIELDS) - len(raw))  # fields added later read as ''
        if not vals[0]:
            return None
        typ, st, tariff, cur, pw, bal, rsv, cl, bun, rs = vals
        return Account(account_id, typ, st or "active", tariff, cur, pw, int(bal or 0), int(rsv or 0),
                       int(cl or 0), bun, rs)
