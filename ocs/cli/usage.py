"""``ocsctl usage dead-letters`` and ``ocsctl usage retry ID``: records PostgreSQL refused.

The flusher never lets one refused record hold back the others: it moves it,
whole, to ``usage_dead_letters`` (docs/runbook.md, "Dead letters").  These
verbs show them and write one again once the cause is fixed.
"""

from __future__ import annotations

import argparse
from typing import Any

import asyncpg

from ocs.cli.context import Context, Refused, add_json, emit
from ocs.store import POSTGRES_REFUSED, dead_letters
from ocs.wholesale import cost_cache


def register(sub: Any) -> None:
    usage = sub.add_parser("usage", help="usage records PostgreSQL refused (dead letters)")
    usub = usage.add_subparsers(dest="usage_verb", required=True, parser_class=type(usage))
    p = usub.add_parser("dead-letters", help="list records PostgreSQL refused (kept whole, nothing lost)")
    p.add_argument("--all", action="store_true", help="include the ones already retried successfully")
    add_json(p)
    p.set_defaults(func=list_cmd)
    p = usub.add_parser("retry", help="write one dead letter to PostgreSQL again (after a fix)")
    p.add_argument("id", type=int)
    add_json(p)
    p.set_defaults(func=retry_cmd)


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    rows = await dead_letters.list_open(await ctx.pg(), include_resolved=args.all)
    doc = {"dead_letters": rows, "count": len(rows)}
    lines = [f"{r['id']:>6}  {r['created_at']}  {r['record_id'] or '-'}  session={r['fields'].get('session_id', '')!r}"
             f"  attempts={r['attempts']}{'  resolved' if r['resolved_at'] else ''}\n        {r['error']}"
             for r in rows]
    emit(ctx, doc, "\n".join(lines) if rows else "no dead letters")
    return doc


async def retry_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    conn = await ctx.pg()
    try:
        await dead_letters.retry(conn, args.id, await cost_cache.load_book_or_none(conn))
    except dead_letters.DeadLetterNotFound:
        raise Refused(f"no dead letter {args.id}") from None
    except dead_letters.AlreadyResolved:
        raise Refused(f"dead letter {args.id} was already written") from None
    except (*POSTGRES_REFUSED, asyncpg.PostgresError) as exc:
        raise Refused(f"dead letter {args.id} refused again: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    doc = {"id": args.id, "written": True}
    emit(ctx, doc, f"dead letter {args.id} written")
    return doc
