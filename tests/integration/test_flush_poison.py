"""One record PostgreSQL refuses must not hold back the others (issue: a NUL stopped all flushing).

Poison records are appended to the real usage stream the way a charging script would, next to
good ones; the flusher must commit every good record, move each refused one whole to
``usage_dead_letters`` (counted, acknowledged, nothing lost), and keep the lag gauges truthful.
"""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.charging import Charging
from ocs.cli.main import main as ocsctl
from ocs.store import dead_letters
from ocs.store.flush import Flusher
from ocs.store.keys import USAGE_GROUP
from tests.support.balance import provision, voice

pytestmark = pytest.mark.integration


def _usage(record_id: str, session: str = "s1", **extra: str) -> dict[str, str]:
    fields = {"t": "u", "record_id": record_id, "account_id": "a1", "session_id": session, "rating_group": "0",
              "request_number": "1", "kind": "update", "protocol": "test", "service": "voice", "units": "10",
              "used_total": "10", "amount": "100", "charged_total": "100", "balance_after": "900",
              "currency": "EUR", "event_time": "2026-11-23T10:00:00+00:00", "node": "n1"}
    fields.update(extra)
    return fields


async def _append(r: aioredis.Redis, stream: str, records: list[dict[str, str]]) -> None:
    for f in records:
        await r.xadd(stream, f)  # type: ignore[arg-type]


async def test_poison_records_go_to_dead_letters_and_the_rest_is_written(
        flusher: Flusher, redis_client: aioredis.Redis, pg: asyncpg.Connection) -> None:
    stream = flusher.keys.usage(3)
    good = [_usage(f"s03:{i}") for i in range(40)]
    poison = [_usage("s03:p1", session="nas\x00id"),                    # NUL: PostgreSQL text refuses it
              _usage("s03:p2", request_number=str(2**63)),              # beyond bigint
              _usage("s03:p3", amount="12abc")]                         # not a number at all
    await _append(redis_client, stream, good[:10] + poison[:1] + good[10:25] + poison[1:] + good[25:])
    before = flusher.metrics.dead_letters._value.get()

    await flusher.flush_all()

    assert await pg.fetchval("SELECT count(*) FROM usage") == 40
    rows = await pg.fetch("SELECT * FROM usage_dead_letters ORDER BY record_id")
    assert [r["record_id"] for r in rows] == ["s03:p1", "s03:p2", "s03:p3"]
    kept = json.loads(rows[0]["fields"])
    assert kept["session_id"] == "nas\x00id" and kept == poison[0]  # whole and lossless
    assert "CharacterNotInRepertoire" in rows[0]["error"] or "0x00" in rows[0]["error"]
    assert flusher.metrics.dead_letters._value.get() - before == 3
    assert await redis_client.xlen(stream) == 0  # acknowledged and deleted: the flush goes on
    await flusher.update_lag()
    assert flusher.metrics.stream_lag._value.get() == 0


async def test_a_flush_after_poison_keeps_flushing(flusher: Flusher, redis_client: aioredis.Redis,
                                                   pg: asyncpg.Connection) -> None:
    stream = flusher.keys.usage(0)
    await _append(redis_client, stream, [_usage("s00:bad", session="x\x00")])
    await flusher.flush_all()
    await _append(redis_client, stream, [_usage(f"s00:{i}") for i in range(5)])
    await flusher.flush_all()
    assert await pg.fetchval("SELECT count(*) FROM usage") == 5
    assert await pg.fetchval("SELECT count(*) FROM usage_dead_letters") == 1


async def test_lag_gauges_count_pending_entries_while_postgres_refuses(
        flusher: Flusher, redis_client: aioredis.Redis) -> None:
    """Read by a consumer but not acknowledged (PostgreSQL down mid-batch): still lag, and pending."""
    await flusher._ensure_groups()
    stream = flusher.keys.usage(5)
    await _append(redis_client, stream, [_usage(f"s05:{i}") for i in range(7)])
    await redis_client.xreadgroup(USAGE_GROUP, "someone", {stream: ">"}, count=4)
    await flusher.update_lag()
    assert flusher.metrics.stream_lag._value.get() == 7
    assert flusher.metrics.stream_pending._value.get() == 4
    assert flusher.metrics.stream_lag_seconds._value.get() >= 0


async def test_entries_of_a_dead_consumer_are_claimed(flusher: Flusher, redis_client: aioredis.Redis,
                                                      pg: asyncpg.Connection) -> None:
    """XAUTOCLAIM with JUSTID: redis-py's reply parsing of the raw command failed whenever it claimed."""
    await flusher._ensure_groups()
    stream = flusher.keys.usage(7)
    await _append(redis_client, stream, [_usage(f"s07:{i}") for i in range(6)])
    await redis_client.xreadgroup(USAGE_GROUP, "dead-node", {stream: ">"}, count=6)
    flusher._recover = False
    import ocs.store.flush as flush_mod
    old = flush_mod.CLAIM_IDLE_MS
    flush_mod.CLAIM_IDLE_MS = 0  # everything idle long enough
    try:
        await asyncio.sleep(0.01)
        flusher._last_claim = time.monotonic() - 3600
        await flusher.flush_all()
    finally:
        flush_mod.CLAIM_IDLE_MS = old
    assert await pg.fetchval("SELECT count(*) FROM usage WHERE record_id LIKE 's07:%'") == 6
    assert await redis_client.xlen(stream) == 0


async def test_dead_letter_retry_after_the_cause_is_fixed(flusher: Flusher, redis_client: aioredis.Redis,
                                                          pg: asyncpg.Connection, pg_dsn: str,
                                                          key_prefix: str, tmp_path: object,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A record refused by a constraint the operator then relaxes: ``ocsctl usage retry`` writes it once."""
    await pg.execute("ALTER TABLE usage ADD CONSTRAINT test_small CHECK (amount < 1000000)")
    try:
        await _append(redis_client, flusher.keys.usage(1), [_usage("s01:big", amount="5000000"), _usage("s01:ok")])
        await flusher.flush_all()
        dead_id = await pg.fetchval("SELECT id FROM usage_dead_letters WHERE record_id = 's01:big'")
        assert dead_id is not None
        cfg = _config(tmp_path, pg_dsn, key_prefix)
        capsys.readouterr()  # the flusher's log lines
        assert await asyncio.to_thread(ocsctl, ["--config", cfg, "usage", "dead-letters", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [d["record_id"] for d in listed["dead_letters"]] == ["s01:big"]
        assert await asyncio.to_thread(ocsctl, ["--config", cfg, "usage", "retry", str(dead_id)]) == 1  # still refused: exit 1, one line
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"ocsctl: dead letter {dead_id} refused again") and "\n" not in err
    finally:
        await pg.execute("ALTER TABLE usage DROP CONSTRAINT test_small")
    assert await asyncio.to_thread(ocsctl, ["--config", cfg, "usage", "retry", str(dead_id)]) == 0
    assert await pg.fetchval("SELECT amount FROM usage WHERE record_id = 's01:big'") == 5_000_000
    assert await asyncio.to_thread(ocsctl, ["--config", cfg, "usage", "retry", str(dead_id)]) == 1  # already written
    assert await asyncio.to_thread(ocsctl, ["--config", cfg, "usage", "retry", "999999"]) == 1
    assert (await dead_letters.list_open(pg)) == []


def _config(tmp_path: object, dsn: str, prefix: str) -> str:
    from pathlib import Path

    path = Path(str(tmp_path)) / "ocs.toml"
    path.write_text(f'[postgres]\ndsn = "{dsn}"\n[redis]\nkey_prefix = "{prefix}"\n')
    return str(path)


async def test_excess_usage_reaches_postgres_on_the_record(core: Charging, flusher: Flusher,
                                                           redis_client: aioredis.Redis,
                                                           pg: asyncpg.Connection) -> None:
    """An absurd Interim (2^32 - 1 s) is charged up to grant + max_overuse_seconds; the rest is recorded."""
    await provision(redis_client, core.keys, "alice", 1_000_000_000)
    out = await core.initiate(voice("ov1", 0, req=300))
    assert out.granted_units == 300
    await core.update(voice("ov1", 1, used=2**32 - 1, total=True))
    await core.terminate(voice("ov1", 2, used=2**32 - 1 + 30, total=True))
    await flusher.flush_all()
    rows = await pg.fetch("SELECT request_number, used_total, excess_units FROM usage WHERE session_id = 'ov1'"
                          " ORDER BY request_number")
    assert [(r["used_total"], r["excess_units"]) for r in rows] == [(900, 2**32 - 1 - 900), (930, 0)]
    cdr = await pg.fetchrow("SELECT duration, excess_units FROM cdrs WHERE session_id = 'ov1'")
    assert (cdr["duration"], cdr["excess_units"]) == (930, 2**32 - 1 - 900)
    assert core.metrics.overuse_units.labels("test")._value.get() == 2**32 - 1 - 900


async def test_a_batch_of_many_slices_is_written_once(pg: asyncpg.Connection) -> None:
    """write_batch converts and COPYs a slice at a time (the event loop runs in between): every record
    of a batch several slices long lands once, and a replay of the batch adds nothing."""
    from ocs.store.usage_rows import SLICE, write_batch

    entries = [("s", f"1-{i}", _usage(f"big:{i}", session=f"s{i}")) for i in range(3 * SLICE + 7)]
    await write_batch(pg, entries)
    await write_batch(pg, entries)
    assert await pg.fetchval("SELECT count(*) FROM usage WHERE record_id LIKE 'big:%'") == 3 * SLICE + 7
    assert await pg.fetchval("SELECT count(DISTINCT record_id) FROM usage") == 3 * SLICE + 7
