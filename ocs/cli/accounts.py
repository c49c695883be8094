"""``ocsctl account ...``, ``topup`` and ``adjust`` (docs/provisioning.md, docs/rating.md)."""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

import asyncpg

from ocs import money
from ocs.billing import account_status, customers, ledger, resellers
from ocs.billing.errors import Invalid
from ocs.billing.errors import Refused as BillingRefused
from ocs.cli import billing_accounts
from ocs.cli.context import Context, Refused, add_json
from ocs.control.dispatch import Dispatched
from ocs.store import accounts_db, provision

KINDS = ("msisdn", "imsi", "sip", "nai", "pin", "other")


def register(sub: Any) -> None:
    a = sub.add_parser("account", help="create, show, block, unblock accounts and add aliases")
    asub = a.add_subparsers(dest="account_verb", required=True, parser_class=type(a))
    p = asub.add_parser("create")
    p.add_argument("id")
    p.add_argument("--currency", required=True)
    p.add_argument("--tariff", required=True)
    p.add_argument("--postpaid", action="store_true")
    p.add_argument("--credit-limit", default="0")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--password")
    p.add_argument("--reseller", help="the reseller this subscriber belongs to (fixed; docs/wholesale.md)")
    billing_accounts.add_profile_options(p, create=True)
    add_json(p)
    p.set_defaults(func=create_cmd)
    for verb, func in (("show", show_cmd), ("block", block_cmd), ("unblock", unblock_cmd)):
        p = asub.add_parser(verb)
        p.add_argument("id")
        add_json(p)
        p.set_defaults(func=func)
    p = asub.add_parser("alias")
    p.add_argument("id")
    p.add_argument("value")
    p.add_argument("--kind", choices=KINDS)
    add_json(p)
    p.set_defaults(func=alias_cmd)
    billing_accounts.register(asub)  # set, list, import, export (docs/billing.md)
    p = sub.add_parser("topup", help="credit an account (idempotent by --reference)")
    p.add_argument("id")
    p.add_argument("amount")
    p.add_argument("--reference")
    add_json(p)
    p.set_defaults(func=topup_cmd)
    p = sub.add_parser("adjust", help="credit or debit an account with a reason")
    p.add_argument("id")
    p.add_argument("amount")
    p.add_argument("--reason", required=True)
    p.add_argument("--reference")
    add_json(p)
    p.set_defaults(func=adjust_cmd)


async def _row(ctx: Context, account_id: str) -> asyncpg.Record:
    row = await accounts_db.get(await ctx.pg(), account_id)
    if row is None:
        raise Refused(f"unknown account {account_id!r}")
    return row


async def _aliases(ctx: Context, account_id: str) -> list[str]:
    return await accounts_db.aliases(await ctx.pg(), account_id)


async def _sync(ctx: Context, account_id: str) -> asyncpg.Record:
    row = await _row(ctx, account_id)
    redis = await ctx.redis()
    await provision.sync_account(redis, ctx.keys, row, await _aliases(ctx, account_id))
    await provision.apply_pending(await ctx.pg(), redis, ctx.keys, account_id)
    return row


async def _add_alias(conn: asyncpg.Connection, account_id: str, value: str, kind: str | None) -> None:
    try:
        await customers.add_alias(conn, account_id, value, kind)
    except BillingRefused as exc:
        raise Refused(str(exc)) from None


async def create_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """Validation and the insert are the service's (docs/billing.md), shared with ``account import``."""
    try:
        profile = billing_accounts.profile_of(args)
        new = customers.NewAccount(args.id, args.currency, args.tariff, args.postpaid, tuple(args.alias), profile)
        if args.reseller is not None:  # resellers: the subscriber's keys go to its reseller's shard
            await resellers.create_subscriber(await ctx.pg(), new, args.reseller)
        else:
            await customers.create(await ctx.pg(), new)
        # the service's sync: it also places a reseller's subscriber before its hash is written
        await customers.sync(await ctx.pg(), await ctx.redis(), ctx.keys, args.id)
    except BillingRefused as exc:
        raise billing_accounts.refused(exc) from None
    return await _show(ctx, args.id, f"account {args.id} created")


async def _show(ctx: Context, account_id: str, headline: str = "",
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return await billing_accounts.show(ctx, account_id, headline, extra)


async def show_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    await _sync(ctx, args.id)
    return await _show(ctx, args.id)


async def _set_status(ctx: Context, account_id: str, status: str) -> None:
    await _row(ctx, account_id)
    await account_status.set_status(await ctx.pg(), await ctx.redis(), ctx.keys, account_id, status)


def _dispatched(done: Dispatched, what: str) -> dict[str, Any]:
    """What the network was asked (docs/control.md); printed after the account."""
    if done.sent or done.unroutable:
        print(f"asked the network to {what} {done.sent} session(s)"
              + (f"; {len(done.unroutable)} unreachable (no live node holds its peer)" if done.unroutable else ""),
              file=sys.stderr)
    return {"sent": done.sent, "unreachable": [s.sid for s in done.unroutable]}


async def block_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """Block, then end the account's open sessions in the network (ASR / Disconnect-Request, spec 9)."""
    await _row(ctx, args.id)
    done = await account_status.block(await ctx.pg(), await ctx.redis(), ctx.keys, args.id)  # shared with dunning
    control = _dispatched(done, "end")
    return await _show(ctx, args.id, f"account {args.id} blocked", {"control": control})


async def unblock_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    await _set_status(ctx, args.id, "active")
    return await _show(ctx, args.id, f"account {args.id} active")


async def alias_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    await _row(ctx, args.id)
    await _add_alias(await ctx.pg(), args.id, args.value, args.kind)
    await _sync(ctx, args.id)
    return await _show(ctx, args.id, f"alias {args.value} added")


async def _ledger(ctx: Context, account_id: str, kind: str, raw_amount: str, reference: str,
                  reason: str) -> dict[str, Any]:
    """The service posts it (ocs/billing/ledger.py, shared with the API); this says what happened."""
    try:
        amount = ledger.parse_amount(raw_amount, kind)
        await _row(ctx, account_id)
        done = await ledger.post(await ctx.pg(), await ctx.redis(), ctx.keys, account_id, kind, amount, reference,
                                 reason)
    except Invalid as exc:
        raise Refused(f"AMOUNT: {exc.message}" if exc.field == "amount" else f"--{exc.field}: {exc.message}") from None
    except BillingRefused as exc:
        raise Refused(str(exc)) from None
    if not done.applied:
        return await _show(ctx, account_id, f"reference {reference} already applied; nothing done",
                           {"applied": False, "reference": reference})
    extra: dict[str, Any] = {"applied": True, "reference": reference}
    if done.control is not None:  # sessions cut short by the balance get the larger grant (RAR / CoA-Request, spec 9)
        extra["control"] = _dispatched(done.control, "re-authorize")
    return await _show(ctx, account_id, f"{kind} {money.format(amount)} applied (reference {reference})", extra)


async def topup_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    return await _ledger(ctx, args.id, "topup", args.amount, args.reference or f"topup-{uuid.uuid4()}", "")


async def adjust_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    return await _ledger(ctx, args.id, "adjustment", args.amount, args.reference or f"adjust-{uuid.uuid4()}",
                         args.reason)
