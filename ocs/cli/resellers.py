"""``ocsctl reseller create|list|show|block|unblock|topup`` (docs/wholesale.md "Resellers", docs/provisioning.md).

A reseller is an account of its own, so ``ocsctl topup``, ``adjust`` and ``account show`` work on
it by id as well; these verbs add what is reseller-specific (creating one, its subscribers, a
block that reaches them).  Subscribers are created with ``ocsctl account create ... --reseller R``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ocs.billing import customers, resellers
from ocs.billing.errors import Refused as BillingRefused
from ocs.cli import accounts, billing_accounts
from ocs.cli.context import Context, Refused, add_json, emit


def register(sub: Any) -> None:
    r = sub.add_parser("reseller", help="resellers: accounts billed at a wholesale tariff for their subscribers")
    rsub = r.add_subparsers(dest="reseller_verb", required=True, parser_class=type(r))
    p = rsub.add_parser("create", help="create a reseller (an account of its own)")
    p.add_argument("id")
    p.add_argument("--currency", required=True)
    p.add_argument("--tariff", required=True, help="its wholesale tariff")
    p.add_argument("--credit-limit", help="how far its balance may go below zero (default: prepaid)")
    add_json(p)
    p.set_defaults(func=create_cmd)
    p = rsub.add_parser("list", help="every reseller with its balance and number of subscribers")
    add_json(p)
    p.set_defaults(func=list_cmd)
    for verb, func, text in (("show", show_cmd, "the reseller's account and subscribers"),
                             ("block", block_cmd, "refuse the reseller's subscribers; end their open sessions"),
                             ("unblock", unblock_cmd, "serve the reseller's subscribers again")):
        p = rsub.add_parser(verb, help=text)
        p.add_argument("id")
        add_json(p)
        p.set_defaults(func=func)
    p = rsub.add_parser("topup", help="credit the reseller (as ocsctl topup; idempotent by --reference)")
    p.add_argument("id")
    p.add_argument("amount")
    p.add_argument("--reference")
    add_json(p)
    p.set_defaults(func=topup_cmd)


async def create_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    try:
        limit = customers.parse_credit_limit(args.credit_limit) if args.credit_limit is not None else 0
        await resellers.create(await ctx.pg(), await ctx.redis(), ctx.keys, args.id, args.currency, args.tariff, limit)
    except BillingRefused as exc:
        raise billing_accounts.refused(exc) from None
    return await _show(ctx, args.id, f"reseller {args.id} created")


async def _show(ctx: Context, reseller_id: str, headline: str = "", extra: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    try:
        doc = await resellers.document(await ctx.pg(), await ctx.redis(), ctx.keys, reseller_id)
    except BillingRefused as exc:
        raise billing_accounts.refused(exc) from None
    doc.update(extra or {})
    emit(ctx, doc, "\n".join([headline] * bool(headline) + [f"{k}: {v}" for k, v in doc.items()
                                                            if k != "subscriber_ids"]))
    return doc


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    found = await resellers.listing(await ctx.pg(), await ctx.redis(), ctx.keys)
    doc = {"resellers": found, "count": len(found)}
    lines = [f"{r['id']}\t{r['currency']}\t{r['tariff']}\t{r['status']}\tbalance {r['balance']}"
             f"\t{r['subscribers']} subscriber(s)" for r in found]
    emit(ctx, doc, "\n".join([*lines, f"{len(found)} reseller(s)"]))
    return doc


async def show_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    return await _show(ctx, args.id)


async def block_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    try:
        done = await resellers.block(await ctx.pg(), await ctx.redis(), ctx.keys, args.id)
    except BillingRefused as exc:
        raise billing_accounts.refused(exc) from None
    control = accounts._dispatched(done, "end")
    return await _show(ctx, args.id, f"reseller {args.id} blocked", {"control": control})


async def unblock_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    try:
        await resellers.unblock(await ctx.pg(), await ctx.redis(), ctx.keys, args.id)
    except BillingRefused as exc:
        raise billing_accounts.refused(exc) from None
    return await _show(ctx, args.id, f"reseller {args.id} active")


async def topup_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if not await resellers.is_reseller(await ctx.pg(), args.id):
        raise Refused(f"unknown reseller {args.id!r}")
    return await accounts.topup_cmd(ctx, args)
