"""Charging across currencies on real Redis: the Lua grant over a folded plan equals the pure model, and the
money debited over any split of a session equals the converted one-shot price, rounded once (docs/wholesale.md)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
import redis.asyncio as aioredis

from ocs.app import build_core
from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, EventAction, Status
from ocs.rating.engine import CompiledTariff, affordable
from ocs.rating.fx import FxTable, converted_charge, fold_plan, format_rate
from ocs.rating.tariff import RateRow, Tariff
from ocs.store.fx import StaticFxSource
from ocs.store.tariff_cache import MemoryTariffSource
from tests.support.balance import account_state, make_cfg, provision

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


async def _core(redis_client: aioredis.Redis, key_prefix: str, src: MemoryTariffSource,
                rows: list[tuple[str, str, datetime, str]]) -> Charging:
    core = build_core(make_cfg(key_prefix), redis_client, Metrics(), src, fx=StaticFxSource(FxTable.from_rows(rows)))
    await core.start()
    return core


async def _usd(redis_client: aioredis.Redis, core: Charging, acct: str, balance: int) -> None:
    await provision(redis_client, core.keys, acct, balance)
    await redis_client.hset(core.keys.account(acct), "cur", "USD")


def _req(acct: str, n: int, used: int = 0, cap: int | None = None, at: datetime = T0, sid: str = "s") -> ChargeRequest:
    return ChargeRequest(subscriber=acct, session=sid, request_number=n, destination="4930", event_time=at,
                         used_units=used, requested_units=cap)


async def test_lua_grants_and_debits_match_the_converted_model(redis_client: aioredis.Redis,
                                                               key_prefix: str) -> None:
    rnd = random.Random(20261203)
    src = MemoryTariffSource()
    rates = ["1.0832751", "0.917431192660", "1.5", "1234.56789", "0.000123456789"]
    core = await _core(redis_client, key_prefix, src, [("EUR", "USD", T0 - timedelta(days=1), rates[0])])
    for case in range(40):
        text = rnd.choice(rates)
        rate = Fraction(text)
        core.fx.source = StaticFxSource(FxTable.from_rows([("EUR", "USD", T0 - timedelta(days=1), text)]))
        first, nxt = rnd.choice([1, 6, 30, 60]), rnd.choice([1, 6, 60])
        fee = rnd.choice([0, rnd.randint(0, 50_000)])
        t = Tariff("t", case + 1, "EUR", "UTC", (RateRow("49", "DE", rnd.randint(0, 400_000), fee, first, nxt),))
        src.add(t)
        await core.tariffs.reload()
        compiled = CompiledTariff(t)
        sel = compiled.select("4930", T0)
        assert sel is not None
        balance, acct, cap = rnd.randint(0, 3_000_000), f"p{case}", rnd.randint(1, 3600)
        await _usd(redis_client, core, acct, balance)
        out = await core.initiate(_req(acct, 0, cap=cap))
        plan = fold_plan(compiled.grant_plan(sel, 0, cap), rate)
        assert plan is not None
        k, units, hold = affordable(plan, balance)
        if k == 0:
            assert out.status is Status.OUT_OF_CREDIT, case
            continue
        assert (out.granted_units, out.reserved) == (units, hold), (case, text)
        assert hold == converted_charge(compiled.rate(sel, units), rate)
        parts = [rnd.randint(0, 400) for _ in range(rnd.randint(1, 4))]
        used = 0
        for n, p in enumerate(parts[:-1], start=1):
            out = await core.update(_req(acct, n, p, cap))
            used += p
            charged = converted_charge(compiled.rate(sel, used), rate)
            folded = fold_plan(compiled.grant_plan(sel, used, cap), rate)
            assert folded is not None
            k, units, hold = affordable(folded, max(0, balance - charged))
            if k:
                assert (out.granted_units, out.reserved) == (units, hold), (case, text)
        await core.terminate(_req(acct, 99, parts[-1]))
        bal, rsv = await account_state(redis_client, core.keys, acct)
        assert rsv == 0
        assert balance - bal == converted_charge(compiled.rate(sel, sum(parts)), rate), (case, text)
    await core.close()


async def test_rate_fixed_at_start_events_and_refusals(redis_client: aioredis.Redis, key_prefix: str) -> None:
    src = MemoryTariffSource()
    src.add(Tariff("t", 1, "EUR", "UTC", (RateRow("49", "DE", 60_000, 20_000, 30, 6),)))
    core = await _core(redis_client, key_prefix, src, [("EUR", "USD", T0 - timedelta(days=1), "1.0832751"),
                                                       ("EUR", "USD", T0 + timedelta(hours=1), "2")])
    await _usd(redis_client, core, "u", 10_000_000)
    assert (await core.initiate(_req("u", 0, cap=300))).reserved == 346_648  # 0.32 EUR at 1.0832751
    # the session keeps its start's rate, even when reported after the next rate starts
    later = T0 + timedelta(hours=2)
    await core.update(_req("u", 1, 61, 300, at=later))
    await core.terminate(_req("u", 2, 5, at=later))
    assert await account_state(redis_client, core.keys, "u") == (10_000_000 - 93_162, 0)
    f = await redis_client.hmget(core.keys.session("u", "s", 0), "fxcur", "fx")
    assert f == [b"EUR", b"1.0832751"]
    # price enquiry and a direct debit convert once; a call starting after the new rate uses it
    price = await core.event(_req("u", 0, cap=61, at=later), EventAction.PRICE_ENQUIRY)
    assert price.price == 172_000  # 0.086 EUR * 2
    ev = ChargeRequest(subscriber="u", session="e", request_number=0, destination="4930", event_time=T0,
                       requested_units=61)
    assert (await core.event(ev, EventAction.DIRECT_DEBITING)).status is Status.GRANTED
    assert (await account_state(redis_client, core.keys, "u"))[0] == 10_000_000 - 2 * 93_162
    # no rate for the pair: not rated, nothing held
    await provision(redis_client, core.keys, "g", 10_000_000)
    await redis_client.hset(core.keys.account("g"), "cur", "GBP")
    out = await core.initiate(_req("g", 0, cap=300))
    assert out.status is Status.NOT_RATED and out.reason == "no FX rate EUR->GBP"
    assert (await core.authorize(_req("g", 0, cap=300))).status is Status.NOT_RATED
    assert await account_state(redis_client, core.keys, "g") == (10_000_000, 0)
    # an orphan (usage of a session never opened) is converted at the rate of its start
    out = await core.update(_req("u", 1, 61, at=T0 + timedelta(seconds=61), sid="orphan"))
    assert out.status is Status.UNKNOWN_SESSION
    assert (await account_state(redis_client, core.keys, "u"))[0] == 10_000_000 - 3 * 93_162
    assert format_rate(Fraction("1.0832751")) == "1.0832751"
    await core.close()


async def test_lua_exact_at_the_edge_of_2_53(redis_client: aioredis.Redis, key_prefix: str) -> None:
    """A fold capped just below 2^53 (1 s blocks, a 7-decimal rate): the script's hold is still the exact
    converted price, and the next grant continues where the capped one ended."""
    src = MemoryTariffSource()
    t = Tariff("t", 1, "EUR", "UTC", (RateRow("49", "DE", 400_001, 0, 1, 1),))  # no factor shared with 60 * 10^7
    src.add(t)
    core = await _core(redis_client, key_prefix, src, [("EUR", "USD", T0 - timedelta(days=1), "0.9174311")])
    compiled, rate = CompiledTariff(t), Fraction("0.9174311")
    sel = compiled.select("4930", T0)
    assert sel is not None
    plan = fold_plan(compiled.grant_plan(sel, 0, 3600), rate)
    assert plan is not None and 1 < plan.max_blocks < 3600  # capped by exactness, not by the request
    assert plan.base_num + sum(u * r * c for u, r, c in plan.segments) > 2**52
    await _usd(redis_client, core, "edge", 10**12)
    out = await core.initiate(_req("edge", 0, cap=3600))
    assert out.granted_units == plan.max_blocks
    assert out.reserved == converted_charge(compiled.rate(sel, plan.max_blocks), rate)
    out = await core.update(_req("edge", 1, out.granted_units, 3600))
    assert out.status is Status.GRANTED and out.granted_units > 0
    await core.terminate(_req("edge", 2, 0))
    used = plan.max_blocks
    assert (await account_state(redis_client, core.keys, "edge"))[0] == 10**12 - converted_charge(
        compiled.rate(sel, used), rate)
    await core.close()
