"""The invoice run on real PostgreSQL (docs/billing.md, "Invoices"): lines add up to the records to the
micro-unit, tax rounded once on the total, gapless numbers under concurrency and rollback, idempotent
re-runs, period boundaries in the tariff's timezone, void -> credit note with its own numbers."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import asyncpg
import pytest

from ocs.billing import invoice_docs, invoice_sql, invoices
from ocs.billing.errors import Refused
from ocs.config import BillingConfig
from tests.support.billing import account, billing_db, cdr, ledger, tariff, usage

pytestmark = pytest.mark.integration
__all__ = ["billing_db"]
MAY = date(2026, 5, 1)
BILLING = BillingConfig(company="Example Telecom GmbH", address="Hauptstr. 1\n10115 Berlin", tax_id="DE123456789",
                        bank="IBAN DE02 1203 0000 0000 2020 51")
ISSUE = date(2026, 6, 2)


def at(day: int, hour: int = 12, month: int = 5) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def _numbers(pg: asyncpg.Connection) -> list[str]:
    return [r["number"] for r in await pg.fetch("SELECT number FROM invoices ORDER BY number")]


async def test_usage_lines_add_up_to_the_records_to_the_micro_unit(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    await tariff(pg, "berlin", timezone="Europe/Berlin")
    await account(pg, "c1", tariff_name="berlin", tax_rate="19")
    odd = [1_234_567, 7, 999_999, 33_333, 1, 500_001, -12_345]  # a refund too
    for i, amount in enumerate(odd):
        await usage(pg, "c1", f"s{i % 3}", amount, at(3 + i), units=61 + i)
    await cdr(pg, "c1", "s0", "Germany mobile", at(3))
    await cdr(pg, "c1", "s1", "Zürich, Switzerland (a rather long destination name)", at(4))
    # s2 has no CDR yet (still open when the run reads it)
    await usage(pg, "c1", "edge-in", 3, datetime(2026, 4, 30, 22, 30, tzinfo=UTC))  # 00:30 on 1 May in Berlin
    await usage(pg, "c1", "edge-out", 5, datetime(2026, 5, 31, 22, 30, tzinfo=UTC))  # 00:30 on 1 June in Berlin
    res = await invoices.run(pg, BILLING, MAY, issue_date=ISSUE)
    assert res.created == ["INV-2026-000001"]
    inv = await pg.fetchrow("SELECT * FROM invoices WHERE number = $1", res.created[0])
    records = await pg.fetchval(
        "SELECT sum(amount) FROM usage WHERE event_time >= '2026-05-01 00:00 Europe/Berlin'"
        " AND event_time < '2026-06-01 00:00 Europe/Berlin'")
    lines = await pg.fetch("SELECT * FROM invoice_lines WHERE invoice_id = $1 AND kind = 'usage'", inv["id"])
    assert sum(r["amount"] for r in lines) == records == sum(odd) + 3 == inv["lines_total"]
    assert {r["description"] for r in lines} == {"Germany mobile", "Zürich, Switzerland (a rather long destination"
                                                 " name)", "Sessions not yet closed"}
    assert sum(r["calls"] for r in lines) == 4  # s0, s1, s2, edge-in
    assert inv["net"] == invoices.amounts.round_minor(sum(odd) + 3, "EUR")
    assert inv["timezone"] == "Europe/Berlin" and inv["due_date"] == date(2026, 6, 16) and inv["status"] == "open"


async def test_tax_is_rounded_once_on_the_total(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    await tariff(pg)
    await account(pg, "c1", tax_rate="19")
    for i, dest in enumerate(("A", "B", "C")):  # 0.013333 each: 19 % of each is 0.0025, rounding to 0.00 per line
        await usage(pg, "c1", f"s{i}", 13_333, at(2))
        await cdr(pg, "c1", f"s{i}", dest, at(2))
    await invoices.run(pg, BILLING, MAY, issue_date=ISSUE)
    doc = await invoice_docs.show(pg, "INV-2026-000001")
    assert [ln["amount"] for ln in doc["lines"]] == ["0.013333"] * 3
    assert (doc["lines_total"], doc["net"], doc["tax"], doc["gross"]) == ("0.039999", "0.04", "0.01", "0.05")


async def test_fee_and_adjustment_lines_and_prepaid_tax_included(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    await tariff(pg)
    await account(pg, "post", tax_rate="19")
    await account(pg, "pre", postpaid=False, tax_rate="19")
    await ledger(pg, "post", "fee", -10_000_000, at(1, 0), reason="Line rental")
    await ledger(pg, "post", "adjustment", 2_500_000, at(9), reason="goodwill")
    await ledger(pg, "post", "topup", 50_000_000, at(9))  # not a charge: no line
    await ledger(pg, "post", "fee", -4_000_000, at(1, 0, month=6))  # next month's fee
    await usage(pg, "pre", "p1", 11_900_000, at(5))
    await invoices.run(pg, BILLING, MAY, issue_date=ISSUE)
    post = await invoice_docs.show(pg, "INV-2026-000001")
    assert [(ln["kind"], ln["description"], ln["amount"]) for ln in post["lines"]] == [
        ("fee", "Line rental", "10.00"), ("adjustment", "Adjustment: goodwill", "-2.50")]
    assert (post["net"], post["tax"], post["gross"], post["status"]) == ("7.50", "1.43", "8.93", "open")
    pre = await invoice_docs.show(pg, "INV-2026-000002")
    assert pre["tax_included"] and pre["status"] == "paid" and pre["due"] == "0.00"
    assert (pre["gross"], pre["tax"], pre["net"]) == ("11.90", "1.90", "10.00")


async def test_rerun_creates_nothing_and_numbers_continue(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    await tariff(pg)
    for a in ("a", "b", "c", "quiet"):
        await account(pg, a)
    for a in ("b", "a", "c"):
        await usage(pg, a, f"s-{a}", 1_000_000, at(10))
    first = await invoices.run(pg, BILLING, MAY, issue_date=ISSUE)
    assert first.created == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]  # by account id
    assert [d["account"] for d in first.invoices] == ["a", "b", "c"]  # no charges, no invoice
    again = await invoices.run(pg, BILLING, MAY, issue_date=ISSUE)
    assert again.created == [] and again.existing == first.created and again.invoices == first.invoices
    await usage(pg, "a", "june", 1_000_000, at(3, month=6))
    june = await invoices.run(pg, BILLING, date(2026, 6, 1), account="a", issue_date=date(2026, 7, 1))
    assert june.created == ["INV-2026-000004"]
    await usage(pg, "b", "dec", 1_000_000, at(3, month=12))
    dec = await invoices.run(pg, BILLING, date(2026, 12, 1), issue_date=date(2027, 1, 2))
    assert dec.created == ["INV-2027-000001"]  # a new year starts at 1
    with pytest.raises(Refused, match="unknown account"):
        await invoices.run(pg, BILLING, MAY, account="nobody")


async def test_failed_run_rolls_back_without_a_gap(billing_db: asyncpg.Connection,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pg = billing_db
    await tariff(pg)
    await account(pg, "a")
    await usage(pg, "a", "s", 1_000_000, at(10))
    monkeypatch.setattr(invoice_sql, "INSERT_LINES", "SELECT 1/0 WHERE $1::date IS NOT NULL")
    with pytest.raises(asyncpg.DivisionByZeroError):
        await invoices.run(pg, BILLING, MAY, issue_date=ISSUE)
    assert await _numbers(pg) == []
    monkeypatch.undo()
    assert (await invoices.run(pg, BILLING, MAY, issue_date=ISSUE)).created == ["INV-2026-000001"]


async def test_concurrent_runs_take_consecutive_numbers(billing_db: asyncpg.Connection, pg_dsn: str) -> None:
    pg = billing_db
    await tariff(pg)
    accounts = [f"acct{i:02d}" for i in range(12)]
    for a in accounts:
        await account(pg, a)
        await usage(pg, a, f"s-{a}", 1_000_000, at(10))
        await usage(pg, a, f"j-{a}", 1_000_000, at(10, month=6))
    conns = [await asyncpg.connect(pg_dsn) for _ in range(7)]

    async def worker(i: int) -> None:  # one connection each, its runs one after the other
        for period in (MAY, date(2026, 6, 1)):
            for a in accounts[i::6]:
                await invoices.run(conns[i], BILLING, period, account=a, issue_date=ISSUE)

    try:  # six workers by account, and the whole month on a seventh connection at the same time
        await asyncio.gather(*(worker(i) for i in range(6)), invoices.run(conns[6], BILLING, MAY, issue_date=ISSUE))
    finally:
        for c in conns:
            await c.close()
    assert await _numbers(pg) == [f"INV-2026-{n:06d}" for n in range(1, 25)]
    assert await pg.fetchval("SELECT count(DISTINCT (account_id, period)) FROM invoices") == 24


async def test_void_issues_a_credit_note_with_its_own_numbers(billing_db: asyncpg.Connection) -> None:
    pg = billing_db
    await tariff(pg)
    for a in ("a", "b"):
        await account(pg, a, tax_rate="10")
        await usage(pg, a, f"s-{a}", 20_000_001, at(10))
    await invoices.run(pg, BILLING, MAY, issue_date=ISSUE)
    cn = await invoices.void(pg, "INV-2026-000002", "wrong tariff", issue_date=date(2026, 6, 20))
    assert cn["credit_note"] == "CN-2026-000001" and cn["gross"] == "-22.00" and cn["tax"] == "-2.00"
    assert (await invoices.void(pg, "INV-2026-000001", "duplicate"))["credit_note"].endswith("-000002")
    doc = await invoice_docs.show(pg, "INV-2026-000002")
    assert doc["status"] == "void" and doc["credit_note"]["number"] == "CN-2026-000001"
    with pytest.raises(Refused, match="already void"):
        await invoices.void(pg, "INV-2026-000002", "again")
    with pytest.raises(Refused, match="unknown invoice"):
        await invoices.void(pg, "INV-2026-999999", "nope")
    # the voided charges go back to the balance, written ahead for provision.apply_pending
    back = await pg.fetchrow("SELECT kind, amount, applied_at FROM ledger WHERE reference = 'void:CN-2026-000001'")
    assert (back["kind"], back["amount"], back["applied_at"]) == ("credit_note", 20_000_001, None)
    assert [d["number"] for d in await invoice_docs.listing(pg, status="void")] == ["INV-2026-000001",
                                                                                  "INV-2026-000002"]
    assert (await invoices.run(pg, BILLING, MAY)).created == []  # a voided month is not invoiced again
