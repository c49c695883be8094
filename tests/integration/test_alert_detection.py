"""Alert events found by the usage flush, once each (docs/alerts.md): real core, Redis, flusher, PostgreSQL."""

from __future__ import annotations

import json

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import Status
from ocs.store.flush import Flusher
from tests.support.alerts import pg_account
from tests.support.balance import provision, voice

pytestmark = pytest.mark.integration

MAIL = "ops@example.com"
HOOK = "http://127.0.0.1:9/hook"


async def outbox(pg: asyncpg.Connection) -> list[tuple[str, str, str, str]]:
    rows = await pg.fetch("SELECT event, account_id, subject, channel FROM alert_outbox ORDER BY id")
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_low_balance_once_per_crossing_despite_replay_and_retransmission(
        core: Charging, redis_client: aioredis.Redis, flusher: Flusher, pg: asyncpg.Connection) -> None:
    await provision(redis_client, core.keys, "alice", 1_000_000)
    await pg_account(pg, "alice", low_balance=900_000, email=MAIL)
    await core.initiate(voice("s1", 0))
    await core.update(voice("s1", 1, used=60))  # 0.08: balance 0.92
    assert (await core.update(voice("s1", 2, used=60))).status is Status.GRANTED  # 0.06: 0.86, crossed
    again = await core.update(voice("s1", 2, used=60))  # retransmitted: answered again, no second record
    assert again.status is Status.GRANTED
    await core.update(voice("s1", 3, used=60))  # 0.80: still below, no new crossing

    def crash(_entries: object) -> None:
        raise KeyboardInterrupt("killed after COMMIT, before XACK")

    flusher.after_commit = crash
    with pytest.raises(KeyboardInterrupt):
        await flusher.flush_once()
    flusher.after_commit = None
    assert await flusher.flush_all() == 3  # the same three records, replayed from the pending list
    rows = await pg.fetch("SELECT subject, payload FROM alert_outbox")
    assert [(r["subject"], json.loads(r["payload"])["balance"]) for r in rows] == [(rows[0]["subject"], 860_000)]
    payload = json.loads(rows[0]["payload"])
    assert (payload["threshold"], payload["amount"], payload["session"]) == (900_000, 60_000, "s1")

    # the same record once more on the stream (an entry adopted twice): nothing new
    usage = await pg.fetchrow("SELECT * FROM usage WHERE record_id = $1", payload["record"])
    await redis_client.xadd(core.keys.usage(0), {
        "t": "u", "record_id": usage["record_id"], "account_id": "alice", "session_id": "s1",
        "rating_group": 0, "request_number": 2, "kind": "update", "protocol": "test", "service": "voice",
        "units": 60, "used_total": 120, "amount": 60_000, "charged_total": 140_000, "balance_after": 860_000,
        "currency": "EUR", "event_time": usage["event_time"].isoformat(), "node": "x"})
    await flusher.flush_all()
    assert len(await outbox(pg)) == 1

    # a top-up lifts the balance above the threshold: the next crossing is a new alert
    await redis_client.hincrby(core.keys.account("alice"), "bal", 150_000)  # 0.80 -> 0.95
    await core.update(voice("s1", 4, used=60))  # 0.06: 0.89, crossed again
    await core.update(voice("s1", 5, used=60))  # 0.83
    await flusher.flush_all()
    assert [r[0] for r in await outbox(pg)] == ["low_balance", "low_balance"]


async def test_per_session_alerts_once_per_session_in_one_batch(
        core: Charging, redis_client: aioredis.Redis, flusher: Flusher, pg: asyncpg.Connection) -> None:
    await provision(redis_client, core.keys, "alice", 50_000_000)
    await pg_account(pg, "alice", long_call_seconds=90, expensive_call=100_000, email=MAIL, webhook=HOOK)
    for sid in ("s1", "s2"):
        await core.initiate(voice(sid, 0))
    for n in range(1, 5):  # the two sessions interleaved, all in one flush batch
        for sid in ("s1", "s2"):
            await core.update(voice(sid, n, used=60))
    await core.initiate(voice("short", 0))
    await core.terminate(voice("short", 1, used=30))  # 0.05, 30 s: neither
    await flusher.flush_all()
    rows = await pg.fetch("SELECT event, subject, channel, payload FROM alert_outbox ORDER BY event, subject, channel")
    got = [(r["event"], r["subject"], r["channel"]) for r in rows]
    assert got == [(e, s, c) for e in ("expensive_call", "long_call") for s in ("s1", "s2")
                   for c in ("email", "webhook")]
    by = {(r["event"], r["subject"], r["channel"]): json.loads(r["payload"]) for r in rows}
    assert by[("long_call", "s1", "email")]["used_seconds"] == 120  # the record that reached 90 s
    assert by[("expensive_call", "s2", "webhook")]["charged"] == 140_000  # the first at or above 0.10
    assert core.metrics.child(core.metrics.alerts, "long_call", "email", "queued")._value.get() == 2


async def test_credit_limit_reached_once(core: Charging, redis_client: aioredis.Redis, flusher: Flusher,
                                         pg: asyncpg.Connection) -> None:
    await provision(redis_client, core.keys, "bob", 0, postpaid=True, credit_limit=100_000, alias="bob")
    await pg_account(pg, "bob", postpaid=True, credit_limit=100_000, webhook=HOOK)
    await core.initiate(voice("p1", 0, sub="bob"))
    await core.update(voice("p1", 1, sub="bob", used=60))  # -0.08
    await core.update(voice("p1", 2, sub="bob", used=60))  # -0.14: past -0.10
    await core.terminate(voice("p1", 3, sub="bob", used=60))  # -0.20: still past, no second alert
    await flusher.flush_all()
    assert [(e, a, c) for e, a, _s, c in await outbox(pg)] == [("credit_limit", "bob", "webhook")]
    payload = json.loads(await pg.fetchval("SELECT payload FROM alert_outbox"))
    assert (payload["balance"], payload["threshold"]) == (-140_000, 100_000)


async def test_accounts_without_settings_or_channel_raise_nothing(
        core: Charging, redis_client: aioredis.Redis, flusher: Flusher, pg: asyncpg.Connection) -> None:
    await provision(redis_client, core.keys, "alice", 100_000)
    await provision(redis_client, core.keys, "carol", 100_000, alias="carol")
    await pg_account(pg, "alice")
    await pg_account(pg, "carol", low_balance=90_000, long_call_seconds=60)  # thresholds but nowhere to send
    for sub in ("alice", "carol"):
        await core.initiate(voice(f"{sub}-1", 0, sub=sub))
        await core.terminate(voice(f"{sub}-1", 1, sub=sub, used=120))
    assert await Flusher(core.cfg, redis_client, flusher.pool, Metrics()).flush_all() == 4  # 2 records, 2 CDRs
    assert await outbox(pg) == []
    assert await pg.fetchval("SELECT count(*) FROM usage") == 2
