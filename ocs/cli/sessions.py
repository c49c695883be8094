"""``ocsctl session list [--account ID] [--json]``: the open sessions (docs/provisioning.md)."""

from __future__ import annotations

import argparse
from typing import Any

from ocs import money
from ocs.cli.context import Context, add_json, emit
from ocs.store import live_sessions


def register(sub: Any) -> None:
    s = sub.add_parser("session", help="open charging sessions")
    ssub = s.add_subparsers(dest="session_verb", required=True, parser_class=type(s))
    p = ssub.add_parser("list", help="open sessions: id, account, protocol, peer or NAS, started, granted, used, held")
    p.add_argument("--account", help="only this account's sessions")
    add_json(p)
    p.set_defaults(func=list_cmd)


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    rows = await live_sessions.list_open(await ctx.redis(), ctx.keys, args.account)
    for r in rows:
        r["held"], r["charged"] = money.format(r["held"]), money.format(r["charged"])
    doc = {"sessions": rows, "count": len(rows)}
    lines = [f"{r['session_id']}  rg {r['rating_group']}  {r['account']}  {r['protocol']}  {r['peer'] or '-'}"
             f"  started {r['started']}  granted {r['granted']}  used {r['used']}  held {r['held']} {r['currency']}"
             for r in rows]
    emit(ctx, doc, "\n".join([*lines, f"{len(rows)} open session(s)"]))
    return doc
