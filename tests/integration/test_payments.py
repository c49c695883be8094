"""Payments, statement and dunning on real PostgreSQL and Redis (docs/billing.md): all lines or none,
each reference once, oldest invoice first, partial payments and credit, the balance given back
exactly, prepaid top-ups, void releasing allocations, blocking overdue accounts (their sessions cut)
and unblocking them once paid."""

from __future__ import annotations

from datetime import UTC, date, datetime

import asyncpg
import pytest
import redis.asyncio as aioredis

from ocs.billing import dunning, invoice_docs, invoices, payments, statement
from ocs.billing.errors import Refused
from ocs.charging import Charging
from ocs.config import BillingConfig
from ocs.store import accounts_db, provision
from ocs.store.control_bus import ControlBus
from ocs.store.keys import Keys
from tests.support.balance import voice
from tests.support.billing import account, billing_db, tariff, usage

pytestmark = pytest.mark.integration
__all__ = ["billing_db"]
B = BillingConfig()
HEAD = "date,amount,currency,reference,account,invoice\n"


def keys_of(prefix: str) -> Keys:
    return Keys(prefix, 16)


async def _sync(pg: asyncpg.Connection, r: aioredis.Redis, keys: Keys, *ids: str) -> None:
    for a in ids:
        row = await accounts_db.get(pg, a)
        assert row is not None
        await provision.sync_account(r, keys, row, [])


async def _three_invoices(pg: asyncpg.Connection) -> list[str]:
    """p1 (postpaid, 10 % tax): March 10.000001, April 20.00, May 30.00 -> gross 11.00, 22.00, 33.00."""
    await tariff(pg)
    await account(pg, "p1", tax_rate="10", terms=10)
    out = []
    for month, amount in ((3, 10_000_001), (4, 20_000_000), (5, 30_000_000)):
        await usage(pg, "p1", f"s{month}", amount, datetime(2026, month, 5, tzinfo=UTC))
        res = await invoices.run(pg, B, date(2026, month, 1), issue_date=date(2026, month + 1, 1))
        out += res.created
    return out


async def _bal(r: aioredis.Redis, keys: Keys, a: str) -> int:
    return int(await r.hget(keys.account(a), "bal") or 0)


async def test_oldest_first_partial_named_and_credit(billing_db: asyncpg.Connection, redis_client: aioredis.Redis,
                                                     key_prefix: str) -> None:
    pg, keys = billing_db, keys_of(key_prefix)
    mar, apr, may = await _three_invoices(pg)
    await _sync(pg, redis_client, keys, "p1")
    csv = HEAD + (f"2026-06-01,15.00,EUR,bank-1,p1,\n"  # March in full (11.00), 4.00 of April
                  f"2026-06-02,33.00,eur,bank-2,p1,{may}\n"  # names May: settles it
                  f"2026-06-03,30.00,EUR,bank-3,p1,\n")  # the rest of April (18.00), 12.00 credit
    done = await payments.import_payments(pg, csv, "june.csv")
    assert done.applied == ["bank-1", "bank-2", "bank-3"] and done.ledger_accounts == ["p1"]
    assert [(a["reference"], a["invoice"], a["amount"]) for a in done.allocations] == [
        ("bank-1", mar, "11.00"), ("bank-1", apr, "4.00"), ("bank-2", may, "33.00"), ("bank-3", apr, "18.00")]
    assert [d["status"] for d in await invoice_docs.listing(pg, account="p1")] == ["paid"] * 3
    # the balance gets back exactly what the invoices' lines took from it (tax was never debited)
    back = await pg.fetchval("SELECT sum(amount) FROM ledger WHERE kind = 'payment' AND account_id = 'p1'")
    assert back == 10_000_001 + 20_000_000 + 30_000_000
    await provision.apply_pending(pg, redis_client, keys, "p1")
    assert await _bal(redis_client, keys, "p1") == back
    doc = await statement.statement(pg, "p1")
    assert (doc["open"], doc["credit"], doc["amount_due"]) == ("0.00", "12.00", "-12.00")
    assert [p["unallocated"] for p in doc["payments"]] == ["0.00", "0.00", "12.00"]
    # the credit settles the next invoice when it is issued
    await usage(pg, "p1", "s6", 5_000_000, datetime(2026, 6, 5, tzinfo=UTC))
    june = await invoices.run(pg, B, date(2026, 6, 1), issue_date=date(2026, 7, 1))
    assert june.credited_accounts == ["p1"]
    assert (await invoice_docs.show(pg, june.created[0]))["status"] == "paid"  # 5.50 of the 12.00
    assert (await statement.statement(pg, "p1"))["credit"] == "6.50"


async def test_partial_payment_gives_back_a_proportional_share(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    mar, _apr, _may = await _three_invoices(pg)
    await payments.import_payments(pg, HEAD + f"2026-04-02,5.50,EUR,half,p1,{mar}\n")
    inv = await invoice_docs.show(pg, mar)
    assert (inv["status"], inv["paid"], inv["due"]) == ("open", "5.50", "5.50")
    assert await pg.fetchval("SELECT sum(amount) FROM ledger WHERE kind = 'payment'") == 5_000_001  # half, rounded
    await payments.import_payments(pg, HEAD + f"2026-04-03,5.50,EUR,rest,p1,{mar}\n")
    assert await pg.fetchval("SELECT sum(amount) FROM ledger WHERE kind = 'payment'") == 10_000_001  # exact in the end


@pytest.mark.parametrize(("line", "error"), [
    ("2026-06-01,1.00,EUR,x1,nobody,", "line 3: unknown account 'nobody'"),
    ("2026-06-01,1.00,USD,x1,p1,", "line 3: currency USD is not the account's (EUR)"),
    ("2026-06-01,-1.00,EUR,x1,p1,", "line 3: amount: negative"),
    ("2026-06-01,0,EUR,x1,p1,", "line 3: amount must be positive"),
    ("01.06.2026,1.00,EUR,x1,p1,", "line 3: date '01.06.2026' is not YYYY-MM-DD"),
    ("2026-06-01,1.00,EUR,ok-1,p1,", "line 3: reference 'ok-1' appears twice"),
    ("2026-06-01,1.00,EUR,x1,p1,INV-2099-000001", "line 3: invoice 'INV-2099-000001' is not an invoice of"),
    ("2026-06-01,1.00,EUR,,p1,", "line 3: reference is empty"),
    ("2026-06-01,1.00,EUR,x1", "line 3: expected 6 fields"),
])
async def test_a_bad_line_refuses_the_whole_file(billing_db: asyncpg.Connection, line: str, error: str) -> None:
    pg = billing_db
    await _three_invoices(pg)
    with pytest.raises(Refused) as exc:
        await payments.import_payments(pg, HEAD + "2026-06-01,1.00,EUR,ok-1,p1,\n" + line + "\n")
    assert error in str(exc.value) and "nothing imported" in str(exc.value)
    assert await pg.fetchval("SELECT count(*) FROM payments") == 0
    assert await pg.fetchval("SELECT count(*) FROM ledger WHERE kind = 'payment'") == 0


async def test_header_and_duplicate_reference(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    await _three_invoices(pg)
    with pytest.raises(Refused, match="line 1: header must be"):
        await payments.import_payments(pg, "when,amount\n2026-06-01,1\n")
    csv = "date,amount,currency,reference,account\n2026-06-01,1.00,EUR,r1,p1\n"
    assert (await payments.import_payments(pg, csv)).applied == ["r1"]
    again = await payments.import_payments(pg, csv)  # the same bank file twice: nothing new
    assert again.applied == [] and again.skipped == ["r1"]
    with pytest.raises(Refused, match="line 2: reference 'r1' was imported before for another payment"):
        await payments.import_payments(pg, "date,amount,currency,reference,account\n2026-06-01,2.00,EUR,r1,p1\n")
    assert await pg.fetchval("SELECT count(*) FROM payments") == 1


async def test_prepaid_payment_is_a_top_up(billing_db: asyncpg.Connection, redis_client: aioredis.Redis,
                                           key_prefix: str) -> None:
    pg, keys = billing_db, keys_of(key_prefix)
    await tariff(pg)
    await account(pg, "q1", postpaid=False)
    await _sync(pg, redis_client, keys, "q1")
    done = await payments.import_payments(pg, HEAD + "2026-06-01,25.00,EUR,pp-1,q1,\n")
    assert done.ledger_accounts == ["q1"] and done.allocations == []
    await provision.apply_pending(pg, redis_client, keys, "q1")
    assert await _bal(redis_client, keys, "q1") == 25_000_000
    assert (await statement.statement(pg, "q1"))["credit"] == "0.00"  # it is on the balance, not owed back


async def test_void_gives_the_payment_back_as_credit(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    mar, apr, _may = await _three_invoices(pg)
    await payments.import_payments(pg, HEAD + f"2026-04-02,11.00,EUR,m,p1,{mar}\n")
    await invoices.void(pg, mar, "billed twice")
    assert (await invoice_docs.show(pg, apr))["paid"] == "11.00"  # the released 11.00 went to April
    assert await pg.fetchval("SELECT count(*) FROM payment_allocations WHERE released_at IS NOT NULL") == 1
    # March's charges are all back on the balance (paid share + the rest at void), April's paid half
    assert await pg.fetchval("SELECT sum(amount) FROM ledger WHERE account_id = 'p1' AND kind IN"
                             " ('payment', 'credit_note') AND reference LIKE '%2026-000001%'") == 10_000_001


async def test_overdue_postpaid_is_blocked_cut_and_unblocked_by_payment(
        billing_db: asyncpg.Connection, redis_client: aioredis.Redis, core: Charging) -> None:
    pg, keys = billing_db, core.keys
    await tariff(pg)
    await account(pg, "alice", credit_limit=50_000_000, terms=14)  # 'alice' is the core's subscriber
    await account(pg, "bob", terms=14)
    for a in ("alice", "bob"):
        await usage(pg, a, f"u-{a}", 9_000_000, datetime(2026, 5, 5, tzinfo=UTC))
    await invoices.run(pg, B, date(2026, 5, 1), issue_date=date(2026, 6, 1))  # due 2026-06-15
    await _sync(pg, redis_client, keys, "alice", "bob")
    bus = ControlBus(redis_client, keys)
    await bus.heartbeat("n1", [])
    assert (await core.initiate(voice("call-1", 0))).ok  # a call in progress
    await pg.execute("UPDATE accounts SET status = 'blocked' WHERE id = 'bob'")  # blocked by an operator

    assert await dunning.block_overdue(pg, redis_client, keys, date(2026, 6, 20), days=0) == []  # off
    assert await dunning.block_overdue(pg, redis_client, keys, date(2026, 6, 19), days=5) == []
    assert await dunning.block_overdue(pg, redis_client, keys, date(2026, 6, 20), days=5) == ["alice"]
    assert await dunning.block_overdue(pg, redis_client, keys, date(2026, 6, 21), days=5) == []  # once
    assert await redis_client.hget(keys.account("alice"), "st") == b"blocked"
    sent = await redis_client.xrange(keys.control("n1"))
    assert [(f[b"op"], f[b"account"], f[b"sid"]) for _id, f in sent] == [(b"abort", b"alice", b"call-1")]

    csv = HEAD + "2026-06-22,9.00,EUR,a-1,alice,\n2026-06-22,9.00,EUR,b-1,bob,\n"
    done = await payments.import_payments(pg, csv)
    assert await dunning.unblock_paid(pg, redis_client, keys, done.ledger_accounts, date(2026, 6, 22),
                                      days=5) == ["alice"]
    assert await redis_client.hget(keys.account("alice"), "st") == b"active"
    assert await pg.fetchval("SELECT status FROM accounts WHERE id = 'bob'") == "blocked"  # not ours to lift
    assert await pg.fetchval("SELECT count(*) FROM dunning_blocks") == 0
