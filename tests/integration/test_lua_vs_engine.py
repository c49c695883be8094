"""Property test of the Lua scripts against the pure rating engine (issue 3).

Random tariffs, balances and usage splits: the grant the reserve script finds
inside Redis equals the pure ``affordable()``, and the money debited over any
split of a session equals the one-shot rating of its total.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from ocs.app import build_core
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, Status
from ocs.rating.engine import CompiledTariff, affordable
from ocs.rating.tariff import BandInterval, RateRow, Tariff
from ocs.store.tariff_cache import MemoryTariffSource
from tests.support.balance import account_state, make_cfg, provision

pytestmark = pytest.mark.integration


async def test_lua_grants_and_debits_match_the_pure_engine(redis_client: aioredis.Redis, key_prefix: str) -> None:
    rnd = random.Random(20261122)
    src = MemoryTariffSource()
    core = build_core(make_cfg(key_prefix), redis_client, Metrics(), src)
    await core.start()
    for case in range(60):
        first, nxt = rnd.randint(1, 60), rnd.randint(1, 60)
        fee = rnd.choice([0, rnd.randint(0, 50_000)])
        t = Tariff("t", case + 1, "EUR", "Europe/Berlin", (
            RateRow("49", "peak", rnd.randint(0, 400_000), fee, first, nxt, band="peak"),
            RateRow("49", "any", rnd.randint(0, 400_000), fee, first, nxt)),
            (BandInterval("peak", frozenset(range(5)), 8 * 60, 20 * 60),))
        src.add(t)
        await core.tariffs.reload()
        core.tariffs._checked = 0.0
        compiled = CompiledTariff(t)
        start = datetime(2026, 11, 23, tzinfo=UTC) + timedelta(minutes=rnd.randint(0, 7 * 1440))
        balance = rnd.randint(0, 3_000_000)
        acct = f"p{case}"
        await provision(redis_client, core.keys, acct, balance)
        sel = compiled.select("4930", start)
        assert sel is not None
        cap = rnd.randint(1, 3600)

        def req(n: int, used: int = 0, acct: str = acct, start: datetime = start, cap: int = cap) -> ChargeRequest:
            return ChargeRequest(subscriber=acct, session="s", request_number=n, destination="4930",
                                 event_time=start, used_units=used, requested_units=cap)

        out = await core.initiate(req(0))
        k, units, hold = affordable(compiled.grant_plan(sel, 0, cap), balance)
        if k == 0:
            assert out.status is Status.OUT_OF_CREDIT
            continue
        assert (out.granted_units, out.reserved) == (units, hold), case
        parts = [rnd.randint(0, 400) for _ in range(rnd.randint(1, 5))]
        used = 0
        for n, p in enumerate(parts[:-1], start=1):
            out = await core.update(req(n, p))
            used += p
            k, units, hold = affordable(compiled.grant_plan(sel, used, cap),
                                        max(0, balance - compiled.rate(sel, used).charge))
            if k:
                assert (out.granted_units, out.reserved) == (units, hold), case
        await core.terminate(req(99, parts[-1]))
        bal, rsv = await account_state(redis_client, core.keys, acct)
        assert rsv == 0
        assert balance - bal == compiled.rate(sel, sum(parts)).charge, case
    await core.close()
