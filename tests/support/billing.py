"""Billing test data written straight into PostgreSQL: tariffs, accounts, usage records, CDRs, ledger rows.

The invoice run reads only PostgreSQL, so its tests write the rows the flusher and ``ocsctl`` would
have written, with exactly the amounts a test needs (odd micro-units included).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

import asyncpg
import pytest

_ids = itertools.count(1)


@pytest.fixture
async def billing_db(pg: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """``pg`` plus the billing tables the conftest truncation does not reach (numbering counters)."""
    yield pg
    await pg.execute("TRUNCATE billing_sequences, payments, payment_allocations, invoices, invoice_lines,"
                     " credit_notes, dunning_blocks, alert_outbox CASCADE")


async def tariff(pg: asyncpg.Connection, name: str = "t", *, currency: str = "EUR", timezone: str = "UTC") -> None:
    await pg.execute("INSERT INTO tariffs (name, currency, timezone, current_version) VALUES ($1, $2, $3, 1)",
                     name, currency, timezone)


async def account(pg: asyncpg.Connection, account_id: str, *, tariff_name: str = "t", currency: str = "EUR",
                  postpaid: bool = True, tax_rate: str = "0", terms: int = 14, name: str = "",
                  email: str = "", address: str = "", credit_limit: int = 0) -> None:
    await pg.execute(
        "INSERT INTO accounts (id, type, currency, tariff, credit_limit, name, email, address, tax_rate,"
        " payment_terms_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        account_id, "postpaid" if postpaid else "prepaid", currency, tariff_name, credit_limit, name, email, address,
        Decimal(tax_rate), terms)


async def usage(pg: asyncpg.Connection, account_id: str, session: str, amount: int, at: datetime, *,
                units: int = 60, rg: int = 0, service: str = "voice") -> None:
    n = next(_ids)
    await pg.execute(
        "INSERT INTO usage (record_id, account_id, session_id, rating_group, request_number, kind, service, units,"
        " amount, currency, event_time) VALUES ($1, $2, $3, $4, $5, 'update', $6, $7, $8, 'EUR', $9)",
        f"r{n}", account_id, session, rg, n, service, units, amount, at)


async def cdr(pg: asyncpg.Connection, account_id: str, session: str, destination: str, start: datetime, *,
              rg: int = 0, called: str = "4930123456", duration: int = 60, charge: int = 0) -> None:
    await pg.execute(
        "INSERT INTO cdrs (record_id, session_id, rating_group, account, called, destination, prefix, start_time,"
        " duration, billed_seconds, charge, currency) VALUES ($1, $2, $3, $4, $5, $6, '49', $7, $8, $8, $9, 'EUR')",
        f"cdr:{session}:{rg}", session, rg, account_id, called, destination, start, duration, charge)


async def ledger(pg: asyncpg.Connection, account_id: str, kind: str, amount: int, at: datetime, *,
                 reason: str = "", applied: bool = True) -> int:
    return int(await pg.fetchval(
        "INSERT INTO ledger (account_id, kind, amount, reference, reason, created_at, applied_at)"
        " VALUES ($1, $2, $3, $4, $5, $6::timestamptz, CASE WHEN $7 THEN $6::timestamptz END) RETURNING id",
        account_id, kind, amount, f"test-{next(_ids)}", reason, at, applied))
