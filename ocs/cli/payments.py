"""``ocsctl payment import FILE.csv`` and ``ocsctl statement ACCOUNT`` (docs/billing.md).

Thin: the file -> :mod:`ocs.billing.payments` (all lines or none), then the money moves to Redis
the way ``ocsctl topup`` moves it (ledger rows written ahead, applied once, sessions cut short
re-authorized), and accounts dunning blocked are unblocked once nothing is overdue.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from ocs.billing import credit, dunning, invoices, payments, statement
from ocs.cli.context import Context, Refused, add_json, emit
from ocs.cli.invoices import billing_verb


def register(sub: Any) -> None:
    pay = sub.add_parser("payment", help="import payments (CSV)")
    psub = pay.add_subparsers(dest="payment_verb", required=True, parser_class=type(pay))
    p = psub.add_parser("import", help="date,amount,currency,reference,account[,invoice]; all lines or none")
    p.add_argument("file")
    add_json(p)
    p.set_defaults(func=billing_verb(import_cmd))
    p = sub.add_parser("statement", help="an account's invoices, payments and amount due")
    p.add_argument("account")
    add_json(p)
    p.set_defaults(func=billing_verb(statement_cmd))


async def _read(path: str) -> str:
    try:
        return await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Refused(f"{path}: {exc}") from None


async def import_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    text = await _read(args.file)
    conn = await ctx.pg()
    done = await payments.import_payments(conn, text, Path(args.file).name)
    redis = await ctx.redis()
    for account in done.ledger_accounts:  # balances: the payments' ledger rows, applied once
        await credit.apply_credit(conn, redis, ctx.keys, account, 1)  # credits only: re-authorize cut-short sessions
    unblocked = await dunning.unblock_paid(conn, redis, ctx.keys, done.ledger_accounts, invoices.today(),
                                           days=ctx.cfg.billing.block_overdue_days)
    doc = {"read": done.read, "applied": done.applied, "skipped": done.skipped, "allocations": done.allocations,
           "unblocked": unblocked}
    lines = [f"{a['reference']} -> {a['invoice']}: {a['amount']}" for a in done.allocations]
    lines += [f"account {a} unblocked (nothing overdue)" for a in unblocked]
    lines.append(f"{done.read} payments read, {len(done.applied)} applied, {len(done.skipped)} imported before")
    emit(ctx, doc, "\n".join(lines))
    return doc


async def statement_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    doc = await statement.statement(await ctx.pg(), args.account)
    emit(ctx, doc, statement.text(doc))
    return doc
