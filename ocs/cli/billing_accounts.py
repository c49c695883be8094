"""``ocsctl account set|list|import|export`` and the customer options of ``account create`` (docs/billing.md).

Thin: arguments -> :mod:`ocs.billing.customers` -> one document.  Registered under ``account`` by
:mod:`ocs.cli.accounts`, which imports this module (never the other way round).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ocs.billing import customers, customers_csv
from ocs.billing.errors import Invalid
from ocs.billing.errors import Refused as BillingRefused
from ocs.cli.context import Context, Refused, Usage, add_json, emit

# (option, metavar, help); --credit-limit, --tariff and --password exist on `create` already
PROFILE_OPTIONS = (("--name", "TEXT", "customer name"), ("--email", "ADDR", "invoice e-mail address"),
                   ("--address", "TEXT", "postal address (new lines allowed)"),
                   ("--tax-rate", "PERCENT", "tax rate in percent, e.g. 19"),
                   ("--payment-terms", "DAYS", f"invoice due after DAYS (default {customers.DEFAULT_PAYMENT_TERMS})"))
SET_ONLY = (("--credit-limit", "AMOUNT", "postpaid credit limit"), ("--tariff", "NAME", "tariff (same currency)"),
            ("--password", "SECRET", "RADIUS password ('' removes it)"))


def add_profile_options(p: argparse.ArgumentParser, *, create: bool) -> None:
    for opt, metavar, text in PROFILE_OPTIONS + (() if create else SET_ONLY):
        p.add_argument(opt, metavar=metavar, help=text)


def profile_of(args: argparse.Namespace) -> customers.Profile:
    """The customer options given on the command line (absent ones stay unchanged)."""
    names = ("name", "email", "address", "tax-rate", "payment-terms", "credit-limit", "tariff", "password")
    return customers.parse_profile({n: getattr(args, n.replace("-", "_"), None) for n in names})


def refused(exc: BillingRefused) -> Refused:
    """A service refusal as ocsctl says it: the field as its option (``--tax-rate: ...``)."""
    if isinstance(exc, Invalid):
        return Refused(f"account id {exc.message}" if exc.field == "id" else f"--{exc.field}: {exc.message}")
    return Refused(str(exc))


def register(asub: Any) -> None:
    p = asub.add_parser("set", help="change customer data, credit limit, tariff or password")
    p.add_argument("id")
    add_profile_options(p, create=False)
    add_json(p)
    p.set_defaults(func=set_cmd)
    p = asub.add_parser("list", help="list accounts")
    p.add_argument("--status", choices=customers.STATUSES)
    p.add_argument("--reseller")
    add_json(p)
    p.set_defaults(func=list_cmd)
    p = asub.add_parser("import", help="create or update accounts from a CSV file (all lines or none)")
    p.add_argument("file")
    add_json(p)
    p.set_defaults(func=import_cmd)
    p = asub.add_parser("export", help="every account as CSV (the columns of account import)")
    p.add_argument("-o", "--output", help="write to this file (default: stdout)")
    add_json(p)
    p.set_defaults(func=export_cmd)


async def show(ctx: Context, account_id: str, headline: str = "", extra: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Print ``account show``'s document (spec keys first, customer data after, then ``extra``)."""
    try:
        doc = await customers.document(await ctx.pg(), await ctx.redis(), ctx.keys, account_id)
    except BillingRefused as exc:
        raise refused(exc) from None
    doc.update(extra or {})
    emit(ctx, doc, "\n".join([headline] * bool(headline) + [
        f"{k}: {_bundles_text(v) if k == 'bundles' else ('-' if v is None else v)}" for k, v in doc.items()]))
    return doc


def _bundles_text(found: list[dict[str, Any]]) -> str:
    """``bundles: 1200 of 3600 s left (Flat100, to 49, until 2026-11-30); ...`` or ``none``."""
    return "; ".join(
        f"{b['left']} of {b['included']} s left ({b['product']}{', to ' + b['prefix'] if b['prefix'] else ''},"
        f" {b['held']} s held, until {b['until']})" for b in found) or "none"


async def set_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    try:
        profile = profile_of(args)
        if not profile.given():
            raise Usage("nothing to change: give at least one option (ocsctl account set --help)")
        conn, redis = await ctx.pg(), await ctx.redis()
        await customers.update(conn, args.id, profile)
        await customers.sync(conn, redis, ctx.keys, args.id)
    except BillingRefused as exc:
        raise refused(exc) from None
    changed = sorted(customers.option(k) for k in profile.given())
    return await show(ctx, args.id, f"account {args.id}: {', '.join(changed)} changed", {"changed": changed})


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    accounts = await customers.listing(await ctx.pg(), args.status, args.reseller)
    doc = {"accounts": accounts, "count": len(accounts)}
    lines = [f"{a['id']}\t{a['type']}\t{a['currency']}\t{a['tariff']}\t{a['status']}\t{a['name']}" for a in accounts]
    emit(ctx, doc, "\n".join([*lines, f"{len(accounts)} account(s)"]))
    return doc


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror}") from None


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror}") from None


async def import_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    data = _read(args.file)
    conn, redis = await ctx.pg(), await ctx.redis()  # Redis first: refuse before writing if it is away
    try:
        lines = customers_csv.parse(data)
        created, updated = await customers_csv.import_lines(conn, lines)
    except customers_csv.ImportRefused as exc:
        for e in exc.errors[1:customers_csv.MAX_ERRORS_SHOWN]:
            print(f"ocsctl: {args.file}: {e}", file=sys.stderr)
        raise Refused(f"{args.file}: {exc}") from None
    except BillingRefused as exc:
        raise Refused(f"{args.file}: {exc}") from None
    for account_id in created + updated:  # PostgreSQL committed: copy to Redis (an import run again repeats it)
        await customers.sync(conn, redis, ctx.keys, account_id)
    doc = {"file": args.file, "lines": len(lines), "created": created, "updated": updated}
    emit(ctx, doc, f"{args.file}: {len(lines)} lines, {len(created)} accounts created, {len(updated)} updated")
    return doc


async def export_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    rows = await customers_csv.export_rows(await ctx.pg())
    doc: dict[str, Any] = {"columns": list(customers_csv.EXPORTED), "count": len(rows)}
    if args.output:
        _write(args.output, customers_csv.to_csv(rows))
        doc["file"] = args.output
        emit(ctx, doc, f"{len(rows)} accounts written to {args.output}")
    elif ctx.json:
        print(json.dumps({**doc, "accounts": rows}, indent=2))
    else:
        sys.stdout.write(customers_csv.to_csv(rows))
    return doc
