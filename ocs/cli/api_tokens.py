"""``ocsctl api token create|revoke|list`` and ``ocsctl audit`` (docs/api.md, docs/provisioning.md).

Thin: arguments -> :mod:`ocs.api.tokens` -> one document.  ``create`` prints the token once; only its
SHA-256 is stored.
"""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime, time
from typing import Any

from ocs.api import tokens
from ocs.billing.errors import Refused as BillingRefused
from ocs.cli.billing_accounts import refused
from ocs.cli.context import Context, Usage, add_json, emit


def register(sub: Any) -> None:
    api = sub.add_parser("api", help="REST API tokens")
    asub = api.add_subparsers(dest="api_verb", required=True, parser_class=type(api))
    tok = asub.add_parser("token", help="create, revoke and list bearer tokens")
    tsub = tok.add_subparsers(dest="token_verb", required=True, parser_class=type(tok))
    p = tsub.add_parser("create", help="a new token, printed once")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=tokens.ROLES)
    p.add_argument("--reseller", help="the reseller a reseller token is confined to")
    p.add_argument("--expires", metavar="WHEN", help="ISO 8601 date or instant (UTC unless an offset is given)")
    add_json(p)
    p.set_defaults(func=create_cmd)
    p = tsub.add_parser("revoke", help="revoke a token (the API refuses it within api.token_cache_seconds)")
    p.add_argument("name")
    add_json(p)
    p.set_defaults(func=revoke_cmd)
    p = tsub.add_parser("list", help="every token (never the token itself)")
    add_json(p)
    p.set_defaults(func=list_cmd)
    p = sub.add_parser("audit", help="the API's audit log of writes")
    p.add_argument("--since", metavar="WHEN", help="ISO 8601 date or instant (UTC unless an offset is given)")
    p.add_argument("--limit", type=int, default=1000)
    add_json(p)
    p.set_defaults(func=audit_cmd)


def _when(raw: str | None, option: str) -> datetime | None:
    if raw is None:
        return None
    try:
        ts = datetime.fromisoformat(raw) if len(raw) > 10 else datetime.combine(date.fromisoformat(raw), time())
    except ValueError:
        raise Usage(f"{option}: not an ISO 8601 date or instant: {raw!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


async def create_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    expires = _when(args.expires, "--expires")
    try:
        token = await tokens.create(await ctx.pg(), args.name, args.role, args.reseller, expires)
    except BillingRefused as exc:
        raise refused(exc) from None
    doc = {"name": args.name, "role": args.role, "reseller": args.reseller,
           "expires_at": expires.isoformat() if expires else None, "token": token}
    emit(ctx, doc, f"{token}\n(token {args.name}, role {args.role}: shown once, store it now)")
    return doc


async def revoke_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    try:
        done = await tokens.revoke(await ctx.pg(), args.name)
    except BillingRefused as exc:
        raise refused(exc) from None
    doc = {"name": args.name, "revoked": done}
    emit(ctx, doc, f"token {args.name} revoked" if done else f"token {args.name} was revoked before; nothing done")
    return doc


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    found = await tokens.listing(await ctx.pg())
    doc = {"tokens": found, "count": len(found)}
    lines = [f"{t['name']}\t{t['role']}\t{t['reseller'] or '-'}\t{t['state']}\texpires {t['expires_at'] or 'never'}"
             for t in found]
    emit(ctx, doc, "\n".join([*lines, f"{len(found)} token(s)"]))
    return doc


async def audit_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if args.limit < 1:
        raise Usage("--limit: must be at least 1")
    rows = await tokens.audit_log(await ctx.pg(), _when(args.since, "--since"), args.limit)
    doc = {"audit": rows, "count": len(rows)}
    lines = [f"{r['at']}  {r['token']}({r['role']})  {r['method']} {r['path']}  {r['status']}  {r['body']}"
             for r in rows]
    emit(ctx, doc, "\n".join([*lines, f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}"]))
    return doc
