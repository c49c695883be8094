"""``ocsctl invoice run|show|list|void|pdf|send`` (docs/billing.md).

Thin: arguments -> :mod:`ocs.billing` -> one document.  A billing refusal is one line and exit 1,
a bad value names its option.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from pathlib import Path
from typing import Any

from ocs.billing import invoice_docs, invoices, mail, pdf
from ocs.billing.errors import Invalid
from ocs.billing.errors import Refused as BillingRefused
from ocs.cli.context import Bar, Context, Refused, Verb, add_json, emit
from ocs.store import provision


def billing_verb(verb: Verb) -> Verb:
    """Map the service's refusals to ocsctl's (exit 1; a bad value as ``--option: reason``)."""

    @functools.wraps(verb)
    async def wrapped(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
        try:
            return await verb(ctx, args)
        except Invalid as exc:
            raise Refused(f"--{exc.field}: {exc.message}") from None
        except BillingRefused as exc:
            raise Refused(str(exc)) from None

    return wrapped


def register(sub: Any) -> None:
    inv = sub.add_parser("invoice", help="invoice a month, show, list, void, print and send invoices")
    isub = inv.add_subparsers(dest="invoice_verb", required=True, parser_class=type(inv))
    p = isub.add_parser("run", help="invoice a month (idempotent per account and month)")
    p.add_argument("--period", required=True, metavar="YYYY-MM")
    p.add_argument("--account")
    p.add_argument("--issue-date", metavar="DATE", help="YYYY-MM-DD (default: today, UTC)")
    add_json(p)
    p.set_defaults(func=billing_verb(run_cmd))
    p = isub.add_parser("show")
    p.add_argument("number")
    add_json(p)
    p.set_defaults(func=billing_verb(show_cmd))
    p = isub.add_parser("list")
    p.add_argument("--account")
    p.add_argument("--period", metavar="YYYY-MM")
    p.add_argument("--status", choices=invoice_docs.STATUSES)
    add_json(p)
    p.set_defaults(func=billing_verb(list_cmd))
    p = isub.add_parser("void", help="void an invoice with a credit note")
    p.add_argument("number")
    p.add_argument("--reason", required=True)
    add_json(p)
    p.set_defaults(func=billing_verb(void_cmd))
    p = isub.add_parser("pdf", help="write the invoice as PDF")
    p.add_argument("number")
    p.add_argument("-o", "--output", metavar="FILE", help="default: NUMBER.pdf")
    p.add_argument("--with-calls", action="store_true", help="append the calls of the period")
    add_json(p)
    p.set_defaults(func=billing_verb(pdf_cmd))
    p = isub.add_parser("send", help="e-mail the invoice PDF to the customer (once)")
    p.add_argument("number")
    p.add_argument("--with-calls", action="store_true", help="append the calls of the period")
    add_json(p)
    p.set_defaults(func=billing_verb(send_cmd))


async def _apply_ledger(ctx: Context, accounts: list[str]) -> None:
    """Apply ledger rows billing wrote ahead (the daemon's sweep would, later) so balances are current now."""
    for account in accounts:
        await provision.apply_pending(await ctx.pg(), await ctx.redis(), ctx.keys, account)


async def run_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    period = invoices.parse_period(args.period)
    issue = invoices.parse_date(args.issue_date, "issue-date") if args.issue_date else None
    if period > invoices.today():
        raise Invalid("period", f"{args.period} has not begun")
    res = await invoices.run(await ctx.pg(), ctx.cfg.billing, period, account=args.account, issue_date=issue,
                             progress=Bar("invoicing", "accounts"))
    await _apply_ledger(ctx, res.credited_accounts)
    doc = {"period": args.period, "created": res.created, "existing": res.existing, "invoices": res.invoices}
    rows = [f"{d['number']}  {d['account']:<20} {d['gross']:>12} {d['currency']}  due {d['due_date']}  {d['status']}"
            for d in res.invoices]
    emit(ctx, doc, "\n".join([*rows, f"invoice run {args.period}: {len(res.created)} created,"
                              f" {len(res.existing)} already invoiced"]))
    return doc


async def show_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    doc = await invoice_docs.show(await ctx.pg(), args.number)
    emit(ctx, doc, invoice_docs.text(doc))
    return doc


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    period = invoices.parse_period(args.period) if args.period else None
    found = await invoice_docs.listing(await ctx.pg(), account=args.account, period=period, status=args.status)
    doc = {"invoices": found}
    emit(ctx, doc, "\n".join(f"{d['number']}  {d['account']:<20} {d['period']}  {d['gross']:>12} {d['currency']}"
                             f"  due {d['due_date']}  {d['status']}" for d in found) or "no invoices")
    return doc


async def void_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    doc = await invoices.void(await ctx.pg(), args.number, args.reason)
    await _apply_ledger(ctx, [doc["account"]])
    emit(ctx, doc, f"invoice {doc['invoice']} void: credit note {doc['credit_note']}"
                   f" ({doc['gross']} {doc['currency']})")
    return doc


async def pdf_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    data = await pdf.invoice_pdf(await ctx.pg(), args.number, with_calls=args.with_calls)
    out = Path(args.output or f"{args.number}.pdf")
    await asyncio.to_thread(out.write_bytes, data)
    doc = {"number": args.number, "file": str(out), "bytes": len(data)}
    emit(ctx, doc, f"wrote {out} ({len(data)} bytes)")
    return doc


async def send_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    queued = await mail.queue_invoice(await ctx.pg(), args.number, with_calls=args.with_calls)
    doc = {"number": args.number, **queued}
    text = (f"invoice {args.number} queued for {queued['to']} (outbox {queued['outbox_id']}); the daemon delivers it"
            if queued["queued"] else
            f"invoice {args.number} was queued before (outbox {queued['outbox_id']}, {queued['state']}); nothing done")
    emit(ctx, doc, text)
    return doc
