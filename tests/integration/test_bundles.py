"""Bundles of included seconds on the real scripts (docs/wholesale.md, "Bundles").

The core on real Redis with the demo tariff (UTC): a grant holds included seconds first and money
for the rest of the cap in one script step; usage consumes the included hold first; the money part
is rated as one call of the seconds not included; retransmissions, the reaper, a prefix-only
bundle and the month's end (lapse) behave as the docs say.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date, datetime, timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.charging import Charging
from ocs.model import Status
from ocs.rating import bundles as rb
from ocs.rating.engine import affordable
from ocs.store.flush import Flusher
from ocs.store.reaper import Reaper
from tests.support.balance import T0, account_state, provision, voice

pytestmark = pytest.mark.integration
NOV = date(2026, 11, 1)


async def give(r: aioredis.Redis, core: Charging, account: str, balance: int, *bundles: rb.Bundle) -> None:
    await provision(r, core.keys, account, balance, alias=account)
    await r.hset(core.keys.account(account), "bun", rb.encode(list(bundles)))


async def counters(r: aioredis.Redis, core: Charging, account: str, pk: str) -> tuple[int, int, int]:
    q, u, h = await r.hmget(core.keys.bundles(account), f"q:{pk}", f"u:{pk}", f"h:{pk}")
    return int(q or 0), int(u or 0), int(h or 0)


async def money_of(core: Charging, dest: str, used: int) -> int:
    tariff = await core.tariffs.current("t")
    sel = tariff.select(dest, T0)
    assert sel is not None
    return tariff.rate(sel, used).charge


async def test_grant_mixes_included_seconds_and_money_and_usage_uses_them_first(
        core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 10_000_000, rb.Bundle("Flat", "", 100, NOV, None))
    out = await core.initiate(voice("s1", 0, req=300))
    tariff = await core.tariffs.current("t")
    sel = tariff.select("4930123456", T0)
    assert sel is not None
    plan = tariff.grant_plan(sel, 0, 300)  # the money part: at most 200 s of whole blocks (30 + 6 x 28 = 198)
    _k, units, hold = affordable(dataclasses.replace(plan, max_blocks=1 + (200 - 30) // 6), 10_000_000)
    assert (out.status, out.granted_units, out.reserved) == (Status.GRANTED, 100 + units, hold)
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (100, 0, 100)

    out = await core.update(voice("s1", 1, used=150, req=300))  # 100 included + 50 charged as a 50 s call
    assert out.charged == await money_of(core, "4930123456", 50)
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (100, 100, 0)
    out = await core.terminate(voice("s1", 2, used=40))  # 90 s charged in all, cumulatively
    assert out.charged == await money_of(core, "4930123456", 90) - await money_of(core, "4930123456", 50)
    bal, rsv = await account_state(redis_client, core.keys, "alice")
    assert (bal, rsv) == (10_000_000 - await money_of(core, "4930123456", 90), 0)


async def test_a_call_the_bundle_covers_whole_is_free_no_connect_fee(
        core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 0, rb.Bundle("Flat", "", 600, NOV, None))
    out = await core.initiate(voice("s1", 0, req=120))  # no money at all: the grant is included seconds only
    assert (out.status, out.granted_units, out.reserved, out.final) == (Status.GRANTED, 120, 0, False)
    out = await core.terminate(voice("s1", 1, used=75))
    assert out.charged == 0
    assert await account_state(redis_client, core.keys, "alice") == (0, 0)
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (600, 75, 0)


async def test_used_up_bundle_then_no_money_is_refused(core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 0, rb.Bundle("Flat", "", 60, NOV, None))
    assert (await core.initiate(voice("s1", 0, req=60))).granted_units == 60
    assert (await core.terminate(voice("s1", 1, used=60))).charged == 0
    out = await core.initiate(voice("s2", 0, req=60))
    assert out.status is Status.OUT_OF_CREDIT
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (60, 60, 0)


async def test_retransmissions_count_included_seconds_once(core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 5_000_000, rb.Bundle("Flat", "", 100, NOV, None))
    first = await core.initiate(voice("s1", 0, req=60))
    assert (await core.initiate(voice("s1", 0, req=60))).duplicate
    a = await core.update(voice("s1", 1, used=60, req=60))
    b = await core.update(voice("s1", 1, used=60, req=60))
    # 40 included seconds left; the 20 s rest of the cap buys no 30 s block: the grant is 40 s
    assert b.duplicate and (a.charged, a.granted_units) == (b.charged, b.granted_units) == (0, 40)
    assert first.granted_units == 60
    t1 = await core.terminate(voice("s1", 2, used=60))
    t2 = await core.terminate(voice("s1", 2, used=60))
    assert t2.duplicate and t1.charged == t2.charged == await money_of(core, "4930123456", 20)
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (100, 100, 0)


async def test_prefix_only_bundle_is_not_used_for_other_destinations(
        core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 5_000_000, rb.Bundle("UK", "44", 300, NOV, None),
               rb.Bundle("Mobile", "4915", 100, NOV, None))
    out = await core.initiate(voice("s1", 0, req=60, dest="4930123456"))  # Germany fixed: money only
    assert out.reserved > 0
    assert await core.terminate(voice("s1", 1, used=60, dest="4930123456"))
    assert (await core.initiate(voice("s2", 0, req=60, dest="441234"))).reserved == 0  # UK: included
    assert (await core.terminate(voice("s2", 1, used=60, dest="441234"))).charged == 0
    assert (await core.initiate(voice("s3", 0, req=60, dest="4915112345"))).reserved == 0  # the longest prefix
    assert (await core.terminate(voice("s3", 1, used=60, dest="4915112345"))).charged == 0
    assert await counters(redis_client, core, "alice", "2026-11:UK") == (300, 60, 0)
    assert await counters(redis_client, core, "alice", "2026-11:Mobile") == (100, 60, 0)


async def test_unused_seconds_lapse_at_the_month_end(core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 0, rb.Bundle("Flat", "", 100, NOV, None))
    await core.initiate(voice("s1", 0, req=60))
    await core.terminate(voice("s1", 1, used=30))
    dec = datetime(2026, 12, 1, 0, 0, 5, tzinfo=T0.tzinfo)  # the first seconds of December (UTC tariff)
    out = await core.initiate(voice("s2", 0, req=200, at=dec))
    assert out.granted_units == 100  # a full new quota, not 70 + 100
    assert await counters(redis_client, core, "alice", "2026-12:Flat") == (100, 0, 100)
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (0, 0, 0)  # lapsed, fields gone
    ttl = await redis_client.ttl(core.keys.bundles("alice"))
    assert 0 < ttl <= 40 * 86400


async def test_partial_first_month_is_prorated_and_an_ended_bundle_is_not_used(
        core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 0, rb.Bundle("Half", "", 3000, date(2026, 11, 16), None),
               rb.Bundle("Old", "", 3000, date(2026, 10, 1), date(2026, 11, 1)))
    out = await core.initiate(voice("s1", 0, req=3600))
    assert out.granted_units == 1500  # 15 of 30 days: half; the ended bundle gives nothing


async def test_reaper_releases_the_included_hold(core: Charging, redis_client: aioredis.Redis,
                                                 reaper: Reaper) -> None:
    await give(redis_client, core, "alice", 1_000_000, rb.Bundle("Flat", "", 100, NOV, None))
    await core.initiate(voice("s1", 0, req=60))
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (100, 0, 60)
    assert await reaper.reap_once(datetime.now(T0.tzinfo) + timedelta(hours=2)) == 1
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (100, 0, 0)
    assert await account_state(redis_client, core.keys, "alice") == (1_000_000, 0)


async def test_concurrent_sessions_never_hold_more_than_the_quota(
        core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 0, rb.Bundle("Flat", "", 1000, NOV, None))
    outs = await asyncio.gather(*(core.initiate(voice(f"s{i}", 0, req=90)) for i in range(20)))
    granted = [o.granted_units for o in outs if o.status is Status.GRANTED]
    assert sum(granted) == 1000 and len(granted) == 12  # 11 x 90 + one of 10
    ends = await asyncio.gather(*(core.terminate(voice(f"s{i}", 1, used=o.granted_units))
                                  for i, o in enumerate(outs) if o.status is Status.GRANTED))
    assert all(e.charged == 0 for e in ends)
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (1000, 1000, 0)


async def test_records_show_included_seconds(core: Charging, redis_client: aioredis.Redis, flusher: Flusher,
                                             pg: asyncpg.Connection) -> None:
    await give(redis_client, core, "alice", 5_000_000, rb.Bundle("Flat", "", 100, NOV, None))
    await core.initiate(voice("s1", 0, req=300))
    await core.update(voice("s1", 1, used=80, req=300))
    await core.terminate(voice("s1", 2, used=70))
    while await flusher.flush_once():
        pass
    rows = await pg.fetch("SELECT request_number, units, included_units, amount FROM usage"
                          " WHERE session_id = 's1' ORDER BY request_number")
    assert [(r["units"], r["included_units"]) for r in rows] == [(80, 80), (70, 20)]
    assert rows[0]["amount"] == 0 and rows[1]["amount"] == await money_of(core, "4930123456", 50)
    cdr = await pg.fetchrow("SELECT duration, included_seconds, charge FROM cdrs WHERE session_id = 's1'")
    assert (cdr["duration"], cdr["included_seconds"], cdr["charge"]) == (
        150, 100, await money_of(core, "4930123456", 50))


async def test_accounting_off_releases_the_included_hold(core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 1_000_000, rb.Bundle("Flat", "", 100, NOV, None))
    await core.initiate(voice("s1", 0, req=60))  # origin nas1
    await core.update(voice("s1", 1, used=30, req=60))
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (100, 30, 60)
    assert await core.terminate_origin("nas1", "NAS_REBOOT") == 1
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (100, 30, 0)
    assert await account_state(redis_client, core.keys, "alice") == (1_000_000, 0)


async def test_late_usage_of_a_closed_session_is_money_and_what_was_covered_stays_covered(
        core: Charging, redis_client: aioredis.Redis) -> None:
    await give(redis_client, core, "alice", 1_000_000, rb.Bundle("Flat", "", 100, NOV, None))
    await core.initiate(voice("s1", 0, req=60))
    await core.terminate(voice("s1", 1, used=60))  # all included
    late = await core.update(voice("s1", 2, used=40, req=60))  # the session is closed: an orphan
    assert late.status is Status.UNKNOWN_SESSION
    assert late.charged == await money_of(core, "4930123456", 40)  # 100 s used, 60 included: a 40 s call
    assert await counters(redis_client, core, "alice", "2026-11:Flat") == (100, 60, 0)
