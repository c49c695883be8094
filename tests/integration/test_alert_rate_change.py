"""Rate-change alerts: a tariff import that changes prices queues one alert per account on it (docs/alerts.md)."""

from __future__ import annotations

import json

import asyncpg
import pytest

from ocs.rating.tariff import BandInterval, RateRow
from ocs.store import alerts_db, tariffs
from ocs.store.alerts_db import Settings

pytestmark = pytest.mark.integration

V1 = [RateRow("49", "Germany", 60_000, 20_000, 30, 6, line=2), RateRow("44", "United Kingdom", 30_000, line=3),
      RateRow("33", "France", 50_000, line=4)]


async def _import(pg: asyncpg.Connection, rows: list[RateRow], name: str = "t") -> int:
    return await tariffs.import_version(pg, name, "EUR", "UTC", rows, [])


async def _accounts(pg: asyncpg.Connection) -> None:
    await _import(pg, V1)
    await _import(pg, V1, "other")
    for acct, tariff in (("a1", "t"), ("a2", "t"), ("a3", "t"), ("b1", "other")):
        await pg.execute("INSERT INTO accounts (id, type, currency, tariff) VALUES ($1, 'prepaid', 'EUR', $2)",
                         acct, tariff)
    await alerts_db.put_settings(pg, Settings("a1", email="a1@example.com"))
    await alerts_db.put_settings(pg, Settings("a2", webhook="http://127.0.0.1:9/h"))
    await alerts_db.put_settings(pg, Settings("b1", email="b1@example.com"))


async def test_import_that_changes_prices_alerts_each_account_on_the_tariff_once(pg: asyncpg.Connection) -> None:
    await _accounts(pg)
    assert await _import(pg, V1) == 2  # the same prices again
    renamed = [RateRow("49", "Deutschland", 60_000, 20_000, 30, 6, line=2), *V1[1:]]
    assert await _import(pg, renamed) == 3  # a destination name is not a price
    assert await pg.fetchval("SELECT count(*) FROM alert_outbox") == 0
    assert await pg.fetchval("SELECT count(*) FROM tariff_changes") == 0

    # the account's own e-mail (customer data) is used when it has no alert address
    await pg.execute("UPDATE accounts SET email = 'a1-own@example.com' WHERE id = 'a1'")
    await pg.execute("INSERT INTO accounts (id, type, currency, tariff, email) VALUES"
                     " ('a4', 'prepaid', 'EUR', 't', 'a4-own@example.com')")
    v4 = [RateRow("49", "Germany", 70_000, 20_000, 30, 6, line=2), RateRow("33", "France", 50_000, line=3),
          RateRow("1", "USA", 10_000, line=4)]
    assert await _import(pg, v4) == 4
    rows = await pg.fetch("SELECT event, account_id, subject, channel, target, payload FROM alert_outbox"
                          " ORDER BY account_id")
    assert [(r["event"], r["account_id"], r["subject"], r["channel"], r["target"]) for r in rows] == [
        ("rate_change", "a1", "t:4", "email", "a1@example.com"),  # the alert address wins
        ("rate_change", "a2", "t:4", "webhook", "http://127.0.0.1:9/h"),
        ("rate_change", "a4", "t:4", "email", "a4-own@example.com")]  # a3: no address; b1: other tariff
    assert json.loads(rows[0]["payload"]) == {"tariff": "t", "version": 4, "previous_version": 3, "currency": "EUR"}
    change = await pg.fetchrow("SELECT total, changes, notes FROM tariff_changes WHERE tariff = 't' AND version = 4")
    listed = json.loads(change["changes"])
    assert change["total"] == 3 and json.loads(change["notes"]) == []
    assert [(c["prefix"], c["old"] and c["old"]["rate"], c["new"] and c["new"]["rate"]) for c in listed] == [
        ("1", None, 10_000), ("44", 30_000, None), ("49", 60_000, 70_000)]

    assert await _import(pg, v4) == 5  # imported twice: the second changes nothing
    assert await pg.fetchval("SELECT count(*) FROM alert_outbox") == 3


async def test_increments_and_bands_count_as_price_changes(pg: asyncpg.Connection) -> None:
    await _accounts(pg)
    await _import(pg, [RateRow("49", "Germany", 60_000, 20_000, 60, 60, line=2), *V1[1:]])  # 30/6 -> 60/60
    assert await pg.fetchval("SELECT count(*) FROM alert_outbox") == 2
    await tariffs.import_version(pg, "t", "USD", "UTC", V1, [])  # back to 30/6, and a new currency
    notes = json.loads(await pg.fetchval("SELECT notes FROM tariff_changes WHERE version = 3 AND tariff = 't'"))
    assert notes == ["currency EUR -> USD"]
    assert await pg.fetchval("SELECT count(*) FROM alert_outbox") == 4
    peak = [BandInterval("peak", frozenset(range(5)), 480, 1080)]
    await tariffs.import_version(pg, "t", "USD", "UTC", V1, peak)
    notes = json.loads(await pg.fetchval("SELECT notes FROM tariff_changes WHERE version = 4 AND tariff = 't'"))
    assert notes == ["time bands changed"]
    assert await pg.fetchval("SELECT count(*) FROM alert_outbox") == 6
