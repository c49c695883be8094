"""Shared fixtures: a private PostgreSQL database and Redis key prefix per test run.

Tests talk to the real services on 127.0.0.1 (no fakes).  Each pytest session
creates its own database ``ocs_test_<random>`` (dropped at the end) and each
test gets its own Redis key prefix (deleted after the test).  Under ``CI=true``
a missing service fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import redis.asyncio as aioredis
import structlog

from ocs.store.migrate import migrate

PG_ADMIN_DSN = os.environ.get("OCS_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("OCS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(autouse=True)
def _structlog_as_it_was() -> Iterator[None]:
    """Put structlog back after each test: ocsctl's main() run in-process configures it for the CLI
    (warnings only, on stderr: ocs.log.configure_cli), which hid info events from a later test's
    ``capture_logs`` (tests/unit/test_diameter_server_requests.py after test_alert_cli_args.py)."""
    was, saved = structlog.is_configured(), structlog.get_config()
    yield
    if was:
        structlog.configure(**saved)
    else:
        structlog.reset_defaults()


def _dsn_for(db: str) -> str:
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    return f"{base}/{db}"


def _unavailable(what: str, exc: BaseException) -> None:
    msg = f"{what} not reachable: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """DSN of a freshly created and migrated database, dropped after the run."""
    name = f"ocs_test_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(_dsn_for(name))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable("PostgreSQL", exc)
    yield _dsn_for(name)
    asyncio.run(drop())


@pytest.fixture
async def pg(pg_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database; tables are emptied after each test."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        yield conn
    finally:
        await conn.execute(
            "TRUNCATE cdrs, usage, usage_dead_letters, ledger, aliases, accounts, bands, rate_rows,"
            " tariff_versions, tariffs, alert_outbox, fx_rates, rerate_runs CASCADE"
        )
        await conn.execute("TRUNCATE api_tokens, api_audit")  # 014_api.sql
        await conn.execute("TRUNCATE providers, routes")  # 009_providers.sql
        await conn.execute("TRUNCATE cdr_imports, cdr_import_keys")  # 013_cdr_imports.sql
        await conn.execute("TRUNCATE report_rollup")  # 015_report_rollups.sql (TRUNCATE cdrs fires no trigger)
        await conn.close()


@pytest.fixture
def key_prefix() -> str:
    return f"ocstest:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
async def redis_client(key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client to the real Redis; every key under this test's prefix is deleted afterwards."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=False)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        _unavailable("Redis", exc)
    try:
        yield client
    finally:
        async for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
            await client.delete(key)
        await client.aclose()
