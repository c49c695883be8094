"""Refused attempts are records (duration 0, the refusal as cause), once per attempt (docs/reports.md)."""

from __future__ import annotations

import dataclasses

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.charging import Charging
from ocs.model import Status
from ocs.reports.usage_report import TOTAL, Query, usage
from ocs.store.flush import Flusher
from tests.support.balance import T0, provision, voice

pytestmark = pytest.mark.integration


async def test_each_refusal_is_one_zero_duration_record(core: Charging, redis_client: aioredis.Redis,
                                                        flusher: Flusher, pg: asyncpg.Connection) -> None:
    await provision(redis_client, core.keys, "rich", 10_000_000)
    await provision(redis_client, core.keys, "poor", 0)
    await provision(redis_client, core.keys, "barred", 10_000_000, status="blocked")
    cases = {"u1": ("nobody", "4930123456", Status.UNKNOWN_SUBSCRIBER),
             "u2": ("poor", "4930123456", Status.OUT_OF_CREDIT),
             "u3": ("barred", "4930123456", Status.BLOCKED),
             "u4": ("rich", "999", Status.NOT_RATED)}
    for sid, (sub, dest, status) in cases.items():
        for _ in range(2):  # the client retransmits its refused request
            out = await core.initiate(voice(sid, 0, sub=sub, dest=dest))
            assert out.status is status, sid
    ok = await core.initiate(voice("ok", 0, sub="rich"))
    assert ok.ok
    await core.terminate(voice("ok", 1, sub="rich", used=61))
    await flusher.flush_all()
    rows = {r["session_id"]: r for r in await pg.fetch("SELECT * FROM cdrs")}
    assert set(rows) == {"u1", "u2", "u3", "u4", "ok"}  # one record per refused attempt, retransmissions too
    for sid, (sub, _dest, status) in cases.items():
        r = rows[sid]
        assert (r["duration"], r["charge"], r["termination_cause"]) == (0, 0, status.value), sid
        assert r["account"] == ("" if sub == "nobody" else sub)
    assert rows["u2"]["destination"] == "Germany fixed" and rows["u2"]["prefix"] == "49"
    assert rows["u4"]["called"] == "999" and rows["u4"]["destination"] == ""
    day = T0.replace(hour=0)
    lines = {ln.currency: ln for ln in await usage(pg, Query(day, day.replace(day=day.day + 1), "day"))
             if ln.group != TOTAL}
    eur = lines["EUR"].document()
    assert (eur["attempts"], eur["answered"], eur["asr"]) == (4, 1, "25.00")  # ASR is real
    assert lines[""].attempts == 1 and lines[""].answered == 0  # an unknown subscriber has no currency


async def test_a_refused_subscriber_with_a_nul_is_still_a_record(core: Charging, flusher: Flusher,
                                                                  pg: asyncpg.Connection) -> None:
    """An unknown subscriber is the refusal's calling number as it came (a fuzzed Subscription-Id may hold a
    NUL, which PostgreSQL text refuses): it is stored escaped, never dead-lettered."""
    req = dataclasses.replace(voice("n1", 0, sub="ab\x00c"), calling="ab\x00c")
    assert (await core.initiate(req)).status is Status.UNKNOWN_SUBSCRIBER
    await flusher.flush_all()
    assert await pg.fetchval("SELECT calling FROM cdrs WHERE session_id = 'n1'") == "ab\\x00c"
    assert await pg.fetchval("SELECT count(*) FROM usage_dead_letters") == 0
