"""``ocsctl session list [--account ID] [--json]`` and ``session disconnect SESSION_ID`` (spec section 9).

``disconnect`` asks the network to end one session (Diameter ASR, RADIUS Disconnect-Request) through
the node that can reach its client (docs/control.md) and waits, bounded, for the answer: exit 0
once the peer acknowledged, 1 otherwise (unknown session, no node holds the peer, a NAK, no answer).
"""

from __future__ import annotations

import argparse
from typing import Any

from ocs.cli.context import Context, Refused, Usage, add_json, emit
from ocs.control.dispatch import Dispatcher
from ocs.store import live_sessions
from ocs.store.control_bus import ControlBus

DISCONNECT_TIMEOUT = 15.0  # an ASR waits 5 s, is retried once (RFC 6733 8.5 has no timer; spec 9): 10 s + slack


def register(sub: Any) -> None:
    s = sub.add_parser("session", help="open charging sessions")
    ssub = s.add_subparsers(dest="session_verb", required=True, parser_class=type(s))
    p = ssub.add_parser("list", help="open sessions: id, account, protocol, peer or NAS, started, granted, used, held")
    p.add_argument("--account", help="only this account's sessions")
    add_json(p)
    p.set_defaults(func=list_cmd)
    p = ssub.add_parser("disconnect", help="ask the network to end a session (ASR / Disconnect-Request)")
    p.add_argument("session_id", metavar="SESSION_ID", help="as `session list` shows it")
    p.add_argument("--timeout", type=float, default=DISCONNECT_TIMEOUT,
                   help=f"seconds to wait for the peer's answer (default {DISCONNECT_TIMEOUT:g})")
    add_json(p)
    p.set_defaults(func=disconnect_cmd)


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    rows = await live_sessions.listing(await ctx.redis(), ctx.keys, args.account)
    doc = {"sessions": rows, "count": len(rows)}
    lines = [f"{r['session_id']}  rg {r['rating_group']}  {r['account']}  {r['protocol']}  {r['peer'] or '-'}"
             f"  started {r['started']}  granted {r['granted']}  used {r['used']}  held {r['held']} {r['currency']}"
             for r in rows]
    emit(ctx, doc, "\n".join([*lines, f"{len(rows)} open session(s)"]))
    return doc


async def disconnect_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if not args.timeout > 0:
        raise Usage("--timeout: must be a positive number of seconds")
    dispatcher = Dispatcher(ControlBus(await ctx.redis(), ctx.keys))
    result, node = await dispatcher.disconnect(args.session_id, args.timeout)
    doc = {"session_id": args.session_id, **result.to_dict(), "node": node}
    if not result.ok:
        if ctx.json:
            emit(ctx, doc, "")
        code = f" (code {result.code})" if result.code else ""
        raise Refused(f"session {args.session_id}: not disconnected: {result.ack.value}{code}"
                      + (f": {result.detail}" if result.detail else ""))
    emit(ctx, doc, f"session {args.session_id} disconnected (acknowledged, via node {node})")
    return doc
