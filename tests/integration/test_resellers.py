"""Resellers on the real charging core and Redis (docs/wholesale.md "Resellers").

Subscriber ``alice`` (tariff ``t``: 0.06/min, connect 0.02, 30/6 increments) belongs to reseller
``R`` (wholesale tariff ``w``: 0.03/min, 60/60).  Every charge debits both in one script call;
a blocked reseller or one without credit refuses; the reseller's money bounds the grant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from ocs.app import build_core
from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, EventAction, Service, Status
from ocs.rating.tariff import RateRow, Tariff
from ocs.store import placement
from ocs.store.keys import Keys, shard_of
from ocs.store.reaper import Reaper
from ocs.store.replies import text
from ocs.store.tariff_cache import MemoryTariffSource
from tests.support.balance import T0, account_state, demo_tariff, make_cfg, provision, voice

pytestmark = pytest.mark.integration


def wholesale() -> Tariff:
    return Tariff(name="w", version=1, currency="EUR", timezone="UTC",
                  rows=(RateRow("49", "Germany wholesale", 30_000, 0, 60, 60, line=2),))


@pytest.fixture
async def rcore(redis_client: aioredis.Redis, key_prefix: str) -> AsyncIterator[Charging]:
    src = MemoryTariffSource()
    src.add(demo_tariff())
    src.add(wholesale())
    c = build_core(make_cfg(key_prefix), redis_client, Metrics(), src)
    await c.start()
    yield c
    await c.close()


async def setup(r: aioredis.Redis, keys: Keys, *, rbal: int = 1_000_000, status: str = "active",
                credit_limit: int = 0) -> None:
    """Reseller R and its subscriber alice (placed on R's shard, as ocsctl account create --reseller does)."""
    await r.hset(keys.account("R"), mapping={"bal": rbal, "rsv": 0, "cl": credit_limit, "st": status, "cur": "EUR",
                                             "tariff": "w", "type": "postpaid" if credit_limit else "prepaid"})
    await placement.place(r.execute_command, keys, "alice", keys.shard_for("R"))
    await provision(r, keys, "alice", 1_000_000)
    await r.hset(keys.account("alice"), "rs", "R")


async def records(r: aioredis.Redis, keys: Keys) -> list[dict[str, str]]:
    raw = await r.xrange(keys.usage(keys.shard_for("R")))
    return [{text(k): text(v) for k, v in f.items()} for _id, f in raw]


async def test_subscriber_lives_on_its_resellers_shard(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys)
    assert shard_of("alice", keys.shards) != shard_of("R", keys.shards)  # the placement is what puts them together
    assert keys.tag_of("alice") == keys.tag_of("R")
    fresh = Keys(keys.prefix, keys.shards)  # another process: loads the placement, or refreshes on a miss
    assert fresh.tag_of("alice") != keys.tag_of("R")
    assert await placement.load(redis_client.execute_command, fresh) == 1 and fresh.tag_of("alice") == keys.tag_of("R")


async def test_session_debits_both_atomically(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys)
    out = await rcore.initiate(voice("s1", 0))
    assert out.status is Status.GRANTED and out.granted_units == 300 and not out.final
    assert await account_state(redis_client, keys, "R") == (1_000_000, 150_000)  # 300 s wholesale held
    await rcore.update(voice("s1", 1, used=61))
    out = await rcore.terminate(voice("s1", 2, used=0))
    assert out.status is Status.GRANTED
    assert await account_state(redis_client, keys, "alice") == (1_000_000 - 86_000, 0)
    assert await account_state(redis_client, keys, "R") == (1_000_000 - 60_000, 0)  # 61 s -> 120 s at 0.03
    recs = await records(redis_client, keys)
    usage = [f for f in recs if f["t"] == "u"]
    assert [(f["reseller"], f["reseller_amount"]) for f in usage] == [("R", "60000"), ("R", "0")]
    cdr = next(f for f in recs if f["t"] == "c")
    assert (cdr["account"], cdr["charge"], cdr["reseller"], cdr["reseller_charge"]) == ("alice", "86000", "R", "60000")
    assert await redis_client.hget(keys.totals(keys.shard_for("R")), "rsv") in (b"0", None)


async def test_retransmission_charges_both_once(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys)
    await rcore.initiate(voice("s1", 0))
    first = await rcore.update(voice("s1", 1, used=61))
    again = await rcore.update(voice("s1", 1, used=61))
    assert again.duplicate and again.charged == first.charged
    await rcore.terminate(voice("s1", 2))
    assert await account_state(redis_client, keys, "R") == (1_000_000 - 60_000, 0)


@pytest.mark.parametrize(("kwargs", "status"), [
    ({"status": "blocked"}, Status.BLOCKED),
    ({"rbal": 0}, Status.OUT_OF_CREDIT),
    ({"rbal": 29_999}, Status.OUT_OF_CREDIT),  # less than one 60 s wholesale block
])
async def test_reseller_refuses_its_subscribers(rcore: Charging, redis_client: aioredis.Redis,
                                                 kwargs: dict[str, int | str], status: Status) -> None:
    keys = rcore.keys
    await setup(redis_client, keys, **kwargs)  # type: ignore[arg-type]
    out = await rcore.initiate(voice("s1", 0))
    assert out.status is status and out.granted_units == 0
    assert (await account_state(redis_client, keys, "alice"))[1] == 0
    assert (await account_state(redis_client, keys, "R"))[1] == 0
    again = await rcore.initiate(voice("s1", 0))  # a retransmission is refused identically
    assert again.status is status


async def test_resellers_credit_bounds_the_grant(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys, rbal=30_000)  # one 60 s wholesale block
    out = await rcore.initiate(voice("s1", 0))
    assert out.status is Status.GRANTED and out.granted_units == 60 and out.final  # 30 + 5 x 6: within 60 s
    assert await account_state(redis_client, keys, "R") == (30_000, 30_000)
    assert await account_state(redis_client, keys, "alice") == (1_000_000, 80_000)
    out = await rcore.update(voice("s1", 1, used=60))  # the reseller paid for 60 s: nothing more to grant
    assert out.status is Status.OUT_OF_CREDIT and out.granted_units == 0
    assert await account_state(redis_client, keys, "R") == (0, 0)


async def test_postpaid_reseller_uses_its_credit_limit(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys, rbal=0, credit_limit=60_000)
    out = await rcore.initiate(voice("s1", 0))
    assert out.granted_units == 120 and out.final
    await rcore.terminate(voice("s1", 1, used=100))
    assert await account_state(redis_client, keys, "R") == (-60_000, 0)


async def test_reseller_block_stops_the_next_grant(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys)
    await rcore.initiate(voice("s1", 0))
    await redis_client.hset(keys.account("R"), "st", "blocked")
    out = await rcore.update(voice("s1", 1, used=30))
    assert out.status is Status.OUT_OF_CREDIT and out.granted_units == 0  # charged, no new grant
    assert await account_state(redis_client, keys, "R") == (1_000_000 - 30_000, 0)


async def test_reaper_releases_both_holds(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys)
    await rcore.initiate(voice("s1", 0))
    await rcore.update(voice("s1", 1, used=61))
    reaper = Reaper(rcore.cfg, redis_client, rcore.metrics)  # its own Keys: finds the placement on a miss
    assert await reaper.reap_once(T0.now() + timedelta(hours=2)) == 1
    assert await account_state(redis_client, keys, "R") == (1_000_000 - 60_000, 0)
    assert await account_state(redis_client, keys, "alice") == (1_000_000 - 86_000, 0)
    cdr = [f for f in await records(redis_client, keys) if f["t"] == "c"][-1]
    assert (cdr["termination_cause"], cdr["reseller"], cdr["reseller_charge"]) == ("expired", "R", "60000")


async def test_orphan_usage_charges_both(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys)
    out = await rcore.terminate(voice("never-opened", 3, used=61))
    assert out.status is Status.UNKNOWN_SESSION
    assert await account_state(redis_client, keys, "alice") == (1_000_000 - 86_000, 0)
    assert await account_state(redis_client, keys, "R") == (1_000_000 - 60_000, 0)
    again = await rcore.terminate(voice("never-opened", 3, used=61))
    assert again.duplicate
    assert await account_state(redis_client, keys, "R") == (1_000_000 - 60_000, 0)


async def test_event_and_refund_move_both(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await setup(redis_client, keys)

    def ev(sid: str) -> ChargeRequest:
        return ChargeRequest(subscriber="alice", session=sid, request_number=0, service=Service.VOICE,
                             destination="4930123", event_time=T0, requested_units=60, protocol="test")

    assert (await rcore.event(ev("e1"), EventAction.DIRECT_DEBITING)).status is Status.GRANTED
    assert await account_state(redis_client, keys, "R") == (1_000_000 - 30_000, 0)
    assert (await account_state(redis_client, keys, "alice"))[0] == 1_000_000 - 80_000
    assert (await rcore.event(ev("e2"), EventAction.REFUND_ACCOUNT)).status is Status.GRANTED
    assert await account_state(redis_client, keys, "R") == (1_000_000, 0)
    await redis_client.hset(keys.account("R"), "st", "blocked")
    assert (await rcore.event(ev("e3"), EventAction.DIRECT_DEBITING)).status is Status.BLOCKED


async def test_plain_account_has_no_reseller_fields(rcore: Charging, redis_client: aioredis.Redis) -> None:
    keys = rcore.keys
    await provision(redis_client, keys, "bob", 1_000_000)
    await rcore.initiate(voice("s1", 0, sub="bob"))
    await rcore.terminate(voice("s1", 1, sub="bob", used=61))
    raw = await redis_client.xrange(keys.usage(keys.shard_for("bob")))
    assert all(b"reseller" not in f for _id, f in raw)


async def test_wholesale_tariff_in_another_currency_is_converted(redis_client: aioredis.Redis,
                                                                 key_prefix: str) -> None:
    """A EUR reseller on a USD wholesale tariff pays the exact USD price converted at the call's start."""
    from ocs.rating.fx import FxTable
    from ocs.store.fx import StaticFxSource

    src = MemoryTariffSource()
    src.add(demo_tariff())
    src.add(Tariff(name="w", version=1, currency="USD", timezone="UTC",
                   rows=(RateRow("49", "Germany wholesale", 30_000, 0, 60, 60, line=2),)))
    rates = FxTable.from_rows([("USD", "EUR", T0 - timedelta(days=1), "0.5")])
    core = build_core(make_cfg(key_prefix), redis_client, Metrics(), src, fx=StaticFxSource(rates))
    await core.start()
    try:
        await setup(redis_client, core.keys)
        assert (await core.initiate(voice("s1", 0))).status is Status.GRANTED
        assert await account_state(redis_client, core.keys, "R") == (1_000_000, 75_000)  # 0.15 USD at 0.5
        await core.terminate(voice("s1", 1, used=61))
        assert await account_state(redis_client, core.keys, "R") == (1_000_000 - 30_000, 0)  # 0.06 USD = 0.03 EUR
        sess = await redis_client.hget(core.keys.session("alice", "s1", 0), "rfx")
        assert sess == b"0.5"
        core.fx.source = StaticFxSource(FxTable())  # no rate any more: the reseller's leg is not rated
        core.fx.stale()
        out = await core.initiate(voice("s2", 0))
        assert out.status is Status.NOT_RATED and "FX" in out.reason
    finally:
        await core.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_interleaved_sessions_keep_both_proofs(rcore: Charging, redis_client: aioredis.Redis,
                                                     seed: int) -> None:
    """Two subscribers of one reseller, sessions interleaved with retransmissions and a tight reseller:
    at the end no hold is left, and each balance is its start minus the cumulative rating of each call."""
    import random

    keys = rcore.keys
    rnd = random.Random(seed)
    await setup(redis_client, keys, rbal=400_000)
    await placement.place(redis_client.execute_command, keys, "carol", keys.shard_for("R"))
    await provision(redis_client, keys, "carol", 2_000_000)
    await redis_client.hset(keys.account("carol"), "rs", "R")
    calls: dict[tuple[str, str], int] = {}  # (subscriber, session) -> total used
    steps: dict[tuple[str, str], int] = {}
    for n in range(8):
        sub = rnd.choice(["alice", "carol"])
        out = await rcore.initiate(voice(f"s{n}", 0, sub=sub))
        if out.status is Status.GRANTED:
            calls[(sub, f"s{n}")], steps[(sub, f"s{n}")] = 0, 1
    for _ in range(30):
        if not calls:
            break
        sub, sid = rnd.choice(sorted(calls))
        used = rnd.choice([0, 1, 29, 30, 31, 59, 61, 120])
        req = voice(sid, steps[(sub, sid)], sub=sub, used=used)
        await rcore.update(req)
        if rnd.random() < 0.3:
            await rcore.update(req)  # a retransmission: charged once
        calls[(sub, sid)] += used
        steps[(sub, sid)] += 1
    for (sub, sid), n in steps.items():
        await rcore.terminate(voice(sid, n, sub=sub))
    t, w = demo_tariff(), wholesale()
    from ocs.rating.engine import CompiledTariff

    ct, cw = CompiledTariff(t), CompiledTariff(w)

    def price(tariff: CompiledTariff, used: int) -> int:
        sel = tariff.select("4930123456", T0, Service.VOICE)
        assert sel is not None
        return tariff.rate(sel, used).charge

    recs = [f for f in await records(redis_client, keys) if f["t"] == "u"]
    for sub, start in (("alice", 1_000_000), ("carol", 2_000_000)):
        bal, rsv = await account_state(redis_client, keys, sub)
        assert rsv == 0
        assert bal == start - sum(int(f["amount"]) for f in recs if f["account_id"] == sub)
    rbal, rrsv = await account_state(redis_client, keys, "R")
    assert rrsv == 0
    assert rbal == 400_000 - sum(int(f.get("reseller_amount") or 0) for f in recs)
    cdrs = {f["session_id"]: f for f in await records(redis_client, keys) if f["t"] == "c"}
    for (_sub, sid), used in calls.items():
        cdr = cdrs[sid]
        charged = int(cdr["duration"])  # what was charged (a report beyond the grant + cap is not)
        assert charged <= used
        assert int(cdr["charge"]) == price(ct, charged)
        assert int(cdr["reseller_charge"]) == price(cw, charged)
    assert await redis_client.hget(keys.totals(keys.shard_for("R")), "rsv") in (b"0", None)
