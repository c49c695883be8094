"""``ocsctl product``, ``subscribe``, ``unsubscribe``, ``subscription list``, ``fees run|list`` (docs/billing.md).

Thin: arguments -> :mod:`ocs.billing.products` / :mod:`ocs.billing.fees` -> one document.
"""

from __future__ import annotations

import argparse
from datetime import date, datetime
from typing import Any

from ocs import money
from ocs.billing import bundles, fees, products
from ocs.billing.errors import Refused as BillingRefused
from ocs.billing.proration import PERIODS
from ocs.cli.billing_accounts import refused
from ocs.cli.context import Context, Usage, add_json, emit


def register(sub: Any) -> None:
    pr = sub.add_parser("product", help="products with a recurring or one-time fee")
    psub = pr.add_subparsers(dest="product_verb", required=True, parser_class=type(pr))
    p = psub.add_parser("create", help="a new product (its price never changes: create another)")
    p.add_argument("name")
    p.add_argument("--amount", required=True, help="per month (monthly) or once, e.g. 9.99")
    p.add_argument("--currency", required=True)
    p.add_argument("--period", required=True, choices=PERIODS)
    p.add_argument("--description", default="")
    p.add_argument("--includes", metavar="SECONDS[:PREFIX]",
                   help="voice seconds included per month (x quantity); only to numbers starting with PREFIX")
    add_json(p)
    p.set_defaults(func=product_create_cmd)
    p = psub.add_parser("list", help="every product")
    add_json(p)
    p.set_defaults(func=product_list_cmd)
    p = sub.add_parser("subscribe", help="subscribe an account to a product")
    p.add_argument("account")
    p.add_argument("product")
    p.add_argument("--from", dest="start", help="first day charged, YYYY-MM-DD (default: today)")
    p.add_argument("--quantity", type=int, default=1)
    add_json(p)
    p.set_defaults(func=subscribe_cmd)
    p = sub.add_parser("unsubscribe", help="end an account's subscription to a product")
    p.add_argument("account")
    p.add_argument("product")
    p.add_argument("--at", help="first day no longer charged, YYYY-MM-DD (default: tomorrow)")
    add_json(p)
    p.set_defaults(func=unsubscribe_cmd)
    _register_lists(sub)


def _register_lists(sub: Any) -> None:
    s = sub.add_parser("subscription", help="subscriptions")
    ssub = s.add_subparsers(dest="subscription_verb", required=True, parser_class=type(s))
    p = ssub.add_parser("list", help="subscriptions, ended ones too")
    p.add_argument("--account")
    add_json(p)
    p.set_defaults(func=subscription_list_cmd)
    f = sub.add_parser("fees", help="recurring and one-time fees")
    fsub = f.add_subparsers(dest="fees_verb", required=True, parser_class=type(f))
    p = fsub.add_parser("run", help="post every fee due up to --at, exactly once (the daemon does it daily)")
    p.add_argument("--at", help="YYYY-MM-DD or ISO 8601 instant (default: now), in each account's timezone")
    p.add_argument("--account")
    add_json(p)
    p.set_defaults(func=fees_run_cmd)
    p = fsub.add_parser("list", help="fees posted")
    p.add_argument("--account")
    add_json(p)
    p.set_defaults(func=fees_list_cmd)


def _day(raw: str | None, option: str) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise Usage(f"{option}: not a date YYYY-MM-DD: {raw!r}") from None


def _instant(raw: str | None) -> date | datetime | None:
    """``--at`` of ``fees run``: a date, or an instant with an offset (a local time without one: its date)."""
    if raw is None or len(raw) == 10:
        return _day(raw, "--at")
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise Usage(f"--at: not ISO 8601: {raw!r}") from None
    return at if at.tzinfo else at.date()


async def product_create_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    try:
        seconds, prefix = bundles.parse_includes(args.includes) if args.includes is not None else (0, "")
    except BillingRefused as exc:
        raise Usage(str(refused(exc))) from None
    try:
        product = products.Product(args.name, products.parse_amount(args.amount), args.currency, args.period,
                                   args.description, seconds, prefix)
        doc = (await products.create(await ctx.pg(), product)).document()
    except BillingRefused as exc:
        raise refused(exc) from None
    inc = f", includes {bundles.format_includes(seconds, prefix)} s" if seconds else ""
    emit(ctx, doc, f"product {doc['name']}: {doc['amount']} {doc['currency']} {doc['period']}{inc}")
    return doc


async def product_list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    found = [p.document() for p in await products.listing(await ctx.pg())]
    emit(ctx, {"products": found}, "\n".join(
        [f"{p['name']}\t{p['amount']} {p['currency']}\t{p['period']}\t{p['description']}" for p in found]
        + [f"{len(found)} product(s)"]))
    return {"products": found}


def _subscription_text(doc: dict[str, Any]) -> str:
    until = f" until {doc['last_day']}" if doc["last_day"] else " (ended before its start)" * bool(doc["until"])
    return f"{doc['account']}: {doc['product']} x{doc['quantity']} from {doc['from']}{until}"


async def subscribe_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    start = _day(args.start, "--from")
    try:
        conn = await ctx.pg()
        doc = (await products.subscribe(conn, args.account, args.product, start, args.quantity)).document()
        await bundles.sync(conn, await ctx.redis(), ctx.keys, args.account)
    except BillingRefused as exc:
        raise refused(exc) from None
    emit(ctx, doc, f"subscribed {_subscription_text(doc)}; fees are posted by `ocsctl fees run` and the daily run")
    return doc


async def unsubscribe_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    at = _day(args.at, "--at")
    try:
        conn = await ctx.pg()
        doc = (await products.unsubscribe(conn, args.account, args.product, at)).document()
        await bundles.sync(conn, await ctx.redis(), ctx.keys, args.account)
    except BillingRefused as exc:
        raise refused(exc) from None
    emit(ctx, doc, f"unsubscribed {_subscription_text(doc)}")
    return doc


async def subscription_list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    found = [s.document() for s in await products.subscriptions(await ctx.pg(), args.account)]
    emit(ctx, {"subscriptions": found}, "\n".join([_subscription_text(s) for s in found]
                                                  + [f"{len(found)} subscription(s)"]))
    return {"subscriptions": found}


async def fees_run_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    at = _instant(args.at)
    redis = await ctx.redis()  # first: refuse before posting anything if Redis is away
    done = await fees.run(await ctx.pg(), redis, ctx.keys, at, args.account)
    doc = {"at": at.isoformat() if at else None, "posted": [p.document() for p in done.posted],
           "count": len(done.posted), "unapplied_accounts": done.unapplied}
    lines = [f"{p.account}: {p.product} {p.period.isoformat()} {p.kind} {money.format(p.amount)} {p.currency}"
             for p in done.posted]
    lines += [f"{a}: not in Redis; its fees wait in the ledger (ocsctl reconcile)" for a in done.unapplied]
    emit(ctx, doc, "\n".join([*lines, f"{len(done.posted)} fee(s) posted"]))
    return doc


async def fees_list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    rows = await fees.listing(await ctx.pg(), args.account)
    found = [{"account": r["account_id"], "product": r["product"], "subscription": r["subscription_id"],
              "period": r["period"].isoformat(), "kind": r["kind"], "due": r["due_date"].isoformat(),
              "days": r["days"], "period_days": r["period_days"], "quantity": r["quantity"],
              "amount": money.format(r["amount"]), "currency": r["currency"].strip(), "ledger_id": r["ledger_id"]}
             for r in rows]
    emit(ctx, {"fees": found}, "\n".join(
        [f"{f['account']}: {f['product']} {f['period']} {f['kind']} {f['amount']} {f['currency']}" for f in found]
        + [f"{len(found)} fee(s)"]))
    return {"fees": found}
