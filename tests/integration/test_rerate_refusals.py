"""Re-rating and the records of refused attempts (docs/reports.md "Refused attempts"): a record of
duration 0 and charge 0 costs 0 on any tariff, so re-rating leaves it alone and does not count it
as left unrated (an unknown subscriber's attempt has no account; a not-rated one no destination)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_rerate import V1, V2, Run, account, ctl, rerate_json, tariff
from tests.support.balance import T0

__all__ = ["ctl"]
pytestmark = pytest.mark.integration


async def _refused(pg: asyncpg.Connection, n: int, acct: str, called: str, currency: str, cause: str) -> None:
    await pg.execute(
        "INSERT INTO cdrs (record_id, session_id, account, service, called, start_time, duration, billed_seconds,"
        " charge, currency, termination_cause) VALUES ($1, $2, $3, 'voice', $4, $5, 0, 0, 0, $6, $7)",
        f"ref:r{n}:0:0", f"r{n}", acct, called, T0, currency, cause)


async def test_refused_attempts_are_not_counted_unrated(ctl: Run, tmp_path: Path, pg: asyncpg.Connection) -> None:
    tariff(ctl, tmp_path, "t", V1)
    account(ctl, "a1")
    await _refused(pg, 1, "", "4930111", "", "unknown_subscriber")
    await _refused(pg, 2, "a1", "999123", "EUR", "not_rated")
    await _refused(pg, 3, "a1", "4930111", "EUR", "out_of_credit")
    tariff(ctl, tmp_path, "t", V2)
    doc = rerate_json(ctl)
    assert (doc["examined"], doc["changed"], doc["unrated"], doc["accounts_adjusted"]) == (3, 0, 0, 0), doc
    assert await pg.fetchval("SELECT count(*) FROM cdrs WHERE rerated_from IS NOT NULL") == 0
