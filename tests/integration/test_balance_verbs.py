"""The charging verbs against real Redis: grants, cumulative debits, holds, idempotency (docs/rating.md, docs/diameter.md)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.app import build_core
from ocs.charging import Charging
from ocs.model import ChargeRequest, EventAction, Service, Status
from ocs.store.flush import Flusher
from ocs.store.reaper import Reaper
from tests.support.balance import T0, account_state, provision, voice

pytestmark = pytest.mark.integration


async def test_initiate_reserves_the_price_of_the_grant(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000, alias="4915110000001")
    out = await core.initiate(voice("s1", 0, sub="4915110000001"))
    assert out.status is Status.GRANTED and out.granted_units == 300 and not out.final
    assert out.reserved == 20_000 + 300_000  # connect fee + 300 s at 0.001/s
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000, 320_000)
    assert out.validity_seconds == core.cfg.charging.validity_seconds


async def test_worked_example_cumulative_and_grant_from_position(core: Charging,
                                                                 redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    await core.initiate(voice("s1", 0, req=30))
    out = await core.update(voice("s1", 1, used=61, req=30))
    # 61 s on 30/6: billed 66, charge 0.086 (spec worked example); the next 30 s are blocks 66..96
    assert out.charged == 86_000
    assert out.granted_units == 30 and out.reserved == 30_000
    out = await core.terminate(voice("s1", 2, used=5))  # total 66: still 66 billed, nothing more
    assert out.charged == 0
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000 - 86_000, 0)


async def test_split_updates_equal_one_shot(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "a", 10_000_000)
    await provision(redis_client, core.keys, "b", 10_000_000)
    await core.initiate(voice("x", 0, sub="a"))
    for n, used in enumerate([7, 13, 1, 40], start=1):
        await core.update(voice("x", n, sub="a", used=used))
    await core.terminate(voice("x", 9, sub="a", used=3))
    await core.initiate(voice("y", 0, sub="b"))
    await core.terminate(voice("y", 1, sub="b", used=64))
    assert (await account_state(redis_client, core.keys, "a"))[0] == (
        await account_state(redis_client, core.keys, "b"))[0]


async def test_low_balance_cuts_the_grant_and_marks_it_final(core: Charging,
                                                             redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 80_000)  # 0.08: fee 0.02 + 60 s
    out = await core.initiate(voice("s", 0))
    assert out.status is Status.GRANTED and out.final
    assert out.granted_units == 60 and out.reserved == 80_000


async def test_less_than_one_block_is_out_of_credit(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 49_999)  # first block costs 0.05
    out = await core.initiate(voice("s", 0))
    assert out.status is Status.OUT_OF_CREDIT
    assert await account_state(redis_client, core.keys, "alice") == (49_999, 0)


async def test_usage_beyond_the_hold_is_charged_and_balance_goes_negative(
        core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 80_000)
    await core.initiate(voice("s", 0))
    out = await core.terminate(voice("s", 1, used=120))
    assert out.charged == 20_000 + 120_000
    assert await account_state(redis_client, core.keys, "alice") == (80_000 - 140_000, 0)


async def test_postpaid_grants_down_to_the_credit_limit(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "bob", 0, postpaid=True, credit_limit=320_000)
    out = await core.initiate(voice("s", 0, sub="bob"))
    assert out.status is Status.GRANTED and out.reserved == 320_000 and not out.final


async def test_unknown_blocked_not_rated(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "blk", 1_000_000, status="blocked")
    await provision(redis_client, core.keys, "alice", 1_000_000)
    assert (await core.initiate(voice("s", 0, sub="nobody"))).status is Status.UNKNOWN_SUBSCRIBER
    assert (await core.initiate(voice("s", 0, sub="blk"))).status is Status.BLOCKED
    assert (await core.initiate(voice("s", 0, dest="999"))).status is Status.NOT_RATED


async def test_password_check(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 1_000_000, password="pw")
    bad = dataclasses.replace(voice("s", 0), password_check=lambda secret: secret == "nope")
    assert (await core.initiate(bad)).status is Status.BAD_CREDENTIALS
    good = dataclasses.replace(voice("s", 0), password_check=lambda secret: secret == "pw")
    assert (await core.initiate(good)).status is Status.GRANTED


async def test_retransmissions_are_charged_once(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    first = await core.initiate(voice("s", 0))
    again = await asyncio.gather(*(core.initiate(voice("s", 0)) for _ in range(5)))
    assert all(o.duplicate and o.granted_units == first.granted_units for o in again)
    ups = await asyncio.gather(*(core.update(voice("s", 1, used=61)) for _ in range(5)))
    assert {o.charged for o in ups} == {86_000}
    assert sum(not o.duplicate for o in ups) == 1
    ends = await asyncio.gather(*(core.terminate(voice("s", 2, used=60)) for _ in range(5)))
    assert len({(o.status, o.charged) for o in ends}) == 1
    bal, rsv = await account_state(redis_client, core.keys, "alice")
    assert rsv == 0 and bal == 10_000_000 - (20_000 + 126_000)


async def test_terminate_of_unknown_session_charges_once(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    outs = [await core.terminate(voice("ghost", 3, used=61)) for _ in range(3)]
    assert {o.status for o in outs} == {Status.UNKNOWN_SESSION}
    assert (await account_state(redis_client, core.keys, "alice"))[0] == 10_000_000 - 86_000


async def test_radius_style_totals_charge_cumulatively(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    await core.initiate(voice("r", 0))
    await core.update(voice("r", 31, used=30, total=True))
    await core.update(voice("r", 31, used=30, total=True))  # same interim again
    out = await core.terminate(voice("r", 10**9 + 61, used=61, total=True))
    assert out.status is Status.GRANTED
    assert (await account_state(redis_client, core.keys, "alice")) == (10_000_000 - 86_000, 0)


async def test_bind_rekeys_a_hold(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    await core.initiate(voice("nas|alice|4930", 0))
    assert await core.bind("nas|alice|4930", "acct-1", "alice")
    out = await core.terminate(voice("acct-1", 5, used=61))
    assert out.status is Status.GRANTED and out.charged == 86_000
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000 - 86_000, 0)


async def test_bind_to_the_same_key_extends_the_hold(core: Charging, redis_client: aioredis.Redis) -> None:
    """An Access-Request with Acct-Session-Id holds under the call's key for the start timeout; its
    Start must make that hold last the call (the reaper ended such calls mid-way: found by the fuzz tier)."""
    await provision(redis_client, core.keys, "alice", 10_000_000)
    out = await core.initiate(dataclasses.replace(voice("nas|call-9", 0), hold_seconds=3))
    assert out.status is Status.GRANTED
    key = core.keys.session("alice", "nas|call-9", 0)
    short = int(await redis_client.hget(key, "exp"))
    assert await core.bind("nas|call-9", "nas|call-9", "alice", 3600)
    longer = int(await redis_client.hget(key, "exp"))
    assert longer - short > 3_000_000
    member = "alice\x1fnas|call-9\x1f0"
    assert int(await redis_client.zscore(core.keys.expiry(core.scripts.shard("alice")), member)) == longer
    assert not await core.bind("nas|nothing", "nas|nothing", "alice", 3600)  # no hold: not bound


async def test_a_burst_of_accounting_on_shares_one_settlement(core: Charging, redis_client: aioredis.Redis) -> None:
    """Five Accounting-On of one NAS at once: one run over its sessions, every caller told its result."""
    await provision(redis_client, core.keys, "alice", 10_000_000)
    for sid in ("x1", "x2", "x3"):
        await core.initiate(voice(sid, 0))
    calls = []
    real = core.tariffs.get

    async def counting(name: str, version: int) -> Any:  # once per debit (the settlement itself may be
        calls.append(name)  # compiled by mypyc: its methods cannot be replaced, the tariff cache's can)
        return await real(name, version)

    core.tariffs.get = counting  # type: ignore[method-assign]
    counts = await asyncio.gather(*(core.terminate_origin("nas1", "NAS-Reboot") for _ in range(5)))
    assert counts == [3] * 5 and len(calls) == 3  # one run: each session debited once
    assert (await account_state(redis_client, core.keys, "alice"))[1] == 0


async def test_terminate_origin_settles_the_nas(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    await core.initiate(voice("a", 0))
    await core.initiate(voice("b", 0))
    await core.update(voice("a", 1, used=61))
    assert await core.terminate_origin("nas1", "NAS-Reboot") == 2
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000 - 86_000, 0)


async def test_events(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 1_000_000)
    sms = dataclasses.replace(voice("e1", 0, dest="4930111"), service=Service.SMS, requested_units=2)
    price = await core.event(sms, EventAction.PRICE_ENQUIRY)
    assert price.price == 180_000
    out = await core.event(sms, EventAction.DIRECT_DEBITING)
    assert out.status is Status.GRANTED and out.charged == 180_000
    again = await core.event(sms, EventAction.DIRECT_DEBITING)
    assert again.duplicate
    refund = await core.event(dataclasses.replace(sms, session="e2"), EventAction.REFUND_ACCOUNT)
    assert refund.charged == -180_000
    bal = await core.event(sms, EventAction.CHECK_BALANCE)
    assert bal.balance == 1_000_000
    poor = dataclasses.replace(sms, session="e3", requested_units=100)
    assert (await core.event(poor, EventAction.DIRECT_DEBITING)).status is Status.OUT_OF_CREDIT


async def test_data_session_rates_by_rating_group(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    req = dataclasses.replace(voice("d", 0, dest=""), service=Service.DATA, rating_group=10,
                              requested_units=1_048_576)
    out = await core.initiate(req)
    assert out.status is Status.GRANTED and out.granted_units == 1_048_576 and out.reserved == 1_000_000
    out = await core.terminate(dataclasses.replace(req, request_number=1, used_units=524_288))
    assert out.charged == 500_000


async def test_authorize_moves_no_money(core: Charging, redis_client: aioredis.Redis) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    out = await core.authorize(voice("s", 0, at=T0))
    assert out.status is Status.GRANTED and out.price == 320_000
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000, 0)


async def test_two_nodes_on_one_session_charge_cumulatively(core: Charging, redis_client: aioredis.Redis) -> None:
    """Each node caches the session state it last wrote; a stale cache must re-read, never misprice.

    Updates of one session alternate between two cores on the same Redis (a Diameter client failing
    over between daemons), some concurrently; the total debited equals the one-shot price.
    """
    other = build_core(core.cfg, redis_client, core.metrics, core.tariffs.source)
    await other.start()
    try:
        await provision(redis_client, core.keys, "a", 10_000_000)
        await provision(redis_client, core.keys, "b", 10_000_000)
        assert (await core.initiate(voice("x", 0, sub="a"))).ok
        used = [7, 13, 1, 40, 22, 9, 31, 5]
        for n, u in enumerate(used[:4], start=1):
            node = core if n % 2 else other
            assert (await node.update(voice("x", n, sub="a", used=u))).ok
        # both nodes at once, each a different request number: one wins the CAS, the other retries
        outs = await asyncio.gather(*(node.update(voice("x", n, sub="a", used=u))
                                      for n, (node, u) in enumerate(zip([core, other] * 2, used[4:], strict=True),
                                                                    start=5)))
        assert all(o.ok for o in outs)
        assert (await other.terminate(voice("x", 20, sub="a", used=3))).ok
        assert (await core.terminate(voice("x", 20, sub="a", used=3))).duplicate  # the same stop via the other
        await core.initiate(voice("y", 0, sub="b"))
        await core.terminate(voice("y", 1, sub="b", used=sum(used) + 3))
        bal_a, rsv_a = await account_state(redis_client, core.keys, "a")
        bal_b, _ = await account_state(redis_client, core.keys, "b")
        assert bal_a == bal_b and rsv_a == 0
    finally:
        await other.close()


async def test_separators_from_the_wire_cannot_shift_fields(core: Charging, redis_client: aioredis.Redis,
                                                            reaper: Reaper) -> None:
    """A Session-Id or calling number carrying the context separator (0x1f) is data, never structure:
    the session stays the caller's, the origin index and the reaper still parse it."""
    await provision(redis_client, core.keys, "alice", 10_000_000)
    await provision(redis_client, core.keys, "victim", 10_000_000)
    sid = "evil\x1fvictim\x1f0"
    req = dataclasses.replace(voice(sid, 0), calling="x\x1facct\x1fvictim\x1fcur\x1fXXX")
    assert (await core.initiate(req)).ok
    fields = await redis_client.hgetall(core.keys.session("alice", sid, 0))
    assert fields[b"acct"] == b"alice" and fields[b"cur"] == b"EUR"
    assert await core.states.of_origin("nas1") == [("alice", sid, 0)]
    assert (await core.update(voice(sid, 1, used=61))).charged == 86_000
    later = datetime.now(UTC) + timedelta(hours=2)  # long silent: reaped, whatever its id contains
    assert await reaper.reap_once(later) == 1
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000 - 86_000, 0)
    assert await account_state(redis_client, core.keys, "victim") == (10_000_000, 0)


async def test_terminate_session_ends_every_rating_group(core: Charging, redis_client: aioredis.Redis) -> None:
    """A Diameter CCR-T without MSCC after MSCC rating groups: every group closed, holds released, once."""
    await provision(redis_client, core.keys, "alice", 10_000_000)
    for rg in (1, 2):
        assert (await core.initiate(dataclasses.replace(voice("ms", 0), rating_group=rg))).ok
    assert (await core.update(dataclasses.replace(voice("ms", 1, used=61), rating_group=1))).charged == 86_000
    assert (await account_state(redis_client, core.keys, "alice"))[1] > 0  # both holds open
    end = dataclasses.replace(voice("ms", 2, used=5), rating_group=0)  # command-level usage: to group 1
    out = await core.terminate_session(end)
    assert out.ok and out.charged == 0  # 66 s billed already covers 61 + 5
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000 - 86_000, 0)
    again = await core.terminate_session(end)  # the retransmitted CCR-T
    assert again.ok and again.duplicate and again.charged == 0
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000 - 86_000, 0)
    # the single-service form is plain terminate
    assert (await core.initiate(voice("ss", 0))).ok
    assert (await core.terminate_session(voice("ss", 1, used=30))).charged == 50_000


async def test_same_session_id_on_two_accounts_stays_apart(core: Charging, redis_client: aioredis.Redis) -> None:
    """Acct-Session-Id is unique per NAS only (RFC 2866 5.5): two gateways' counters may collide.

    Each request carries its subscriber; the session found must be that subscriber's, never the
    other account's session of the same id, also when the node's caches know the other one.
    """
    await provision(redis_client, core.keys, "alice", 10_000_000)
    await provision(redis_client, core.keys, "bob", 10_000_000)
    assert (await core.initiate(voice("00000001", 0, sub="alice"))).ok
    assert (await core.initiate(voice("00000001", 0, sub="bob"))).ok  # another NAS, the same counter value
    assert (await core.update(voice("00000001", 61, sub="alice", used=61, total=True))).charged == 86_000
    assert (await core.update(voice("00000001", 31, sub="bob", used=31, total=True))).charged == 56_000
    assert (await core.terminate(voice("00000001", 10**9, sub="bob", used=31, total=True))).ok
    assert (await core.terminate(voice("00000001", 10**9, sub="alice", used=61, total=True))).ok
    assert await account_state(redis_client, core.keys, "alice") == (10_000_000 - 86_000, 0)
    assert await account_state(redis_client, core.keys, "bob") == (10_000_000 - 56_000, 0)


async def test_account_cache_never_refuses_on_stale_data(core: Charging, redis_client: aioredis.Redis) -> None:
    """The one-second account view cache: block counts at once (the script checks), and so do unblock
    and a new password (a refusal is re-checked on a fresh read)."""
    key = core.keys.account("alice")
    await provision(redis_client, core.keys, "alice", 10_000_000, password="old-pw")

    def with_pw(sid: str, pw: str) -> ChargeRequest:
        return dataclasses.replace(voice(sid, 0), password_check=lambda stored: stored == pw)

    assert (await core.initiate(with_pw("c1", "old-pw"))).ok  # cached now
    await redis_client.hset(key, "st", "blocked")
    assert (await core.initiate(with_pw("c2", "old-pw"))).status is Status.BLOCKED
    assert (await core.authorize(with_pw("c2", "old-pw"))).status is Status.BLOCKED  # fresh: cached blocked now
    await redis_client.hset(key, "st", "active")
    assert (await core.initiate(with_pw("c3", "old-pw"))).ok
    await redis_client.hset(key, "pw", "new-pw")
    assert (await core.initiate(with_pw("c4", "new-pw"))).ok
    assert (await core.initiate(with_pw("c5", "old-pw"))).status is Status.BAD_CREDENTIALS


async def test_balances_beyond_1e14_micro_units_stay_integers(core: Charging, redis_client: aioredis.Redis,
                                                              flusher: Flusher, pg: asyncpg.Connection) -> None:
    """Lua's tostring writes 1.00000001e+14 from 1e14 micro-units (100 million) on: outcomes and records
    must still carry integers (found by the fuzz tier: every request of such an account failed)."""
    big = 100_000_001_000_000
    await provision(redis_client, core.keys, "alice", big)
    out = await core.initiate(voice("big1", 0))
    assert out.status is Status.GRANTED and out.balance == big
    out = await core.terminate(voice("big1", 1, used=61))
    assert out.balance == big - out.charged
    await flusher.flush_all()
    assert await pg.fetchval("SELECT balance_after FROM usage WHERE session_id = 'big1'") == big - out.charged
    dup = await core.terminate(voice("big1", 1, used=61))
    assert dup.duplicate and dup.balance == out.balance
