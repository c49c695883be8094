"""``ocsctl rerate`` (docs/wholesale.md, "Re-rating"): thin, the work is :mod:`ocs.billing.rerate`.

After the records and the ledger rows are committed, the adjustments are applied to the Redis balances
(once, by ledger id); adjustments a crashed run left unapplied are applied first.
"""

from __future__ import annotations

import argparse
from typing import Any

import asyncpg

from ocs import money
from ocs.billing import rerate
from ocs.billing.errors import Invalid
from ocs.billing.errors import Refused as BillingRefused
from ocs.cli.context import Bar, Context, Refused, Usage, add_json, emit, instant
from ocs.store import accounts_db, provision

SHOWN = 20  # accounts listed in the text summary (--json lists all)


def register(sub: Any) -> None:
    p = sub.add_parser("rerate", help="price a period's CDRs again with the current rates; one adjustment per account")
    p.add_argument("--from", dest="start", required=True, metavar="DATE", help="UTC date/time, inclusive")
    p.add_argument("--to", dest="end", required=True, metavar="DATE", help="UTC date/time, exclusive")
    p.add_argument("--account", metavar="ID")
    p.add_argument("--tariff", metavar="NAME", help="only records rated by (or accounts on) this tariff")
    p.add_argument("--dry-run", action="store_true", help="report what would change; change nothing")
    add_json(p)
    p.set_defaults(func=rerate_cmd)


async def apply_pending(ctx: Context) -> int:
    """Apply every re-rating adjustment not yet in Redis (idempotent by ledger id, docs/architecture.md)."""
    conn, redis = await ctx.pg(), await ctx.redis()
    rows = await rerate.pending(conn)
    if not rows:
        return 0
    accounts = sorted({r["account_id"] for r in rows})
    pipe = redis.pipeline(transaction=False)
    for a in accounts:
        pipe.exists(ctx.keys.account(a))
    for a, present in zip(accounts, await pipe.execute(), strict=True):
        if not present:  # e.g. after a Redis loss: the hash comes back from PostgreSQL, as `account show` does
            row = await accounts_db.get(conn, a)
            if row is not None:
                await provision.sync_account(redis, ctx.keys, row, await accounts_db.aliases(conn, a))
    await provision.apply_entries(conn, redis, ctx.keys, rows)
    return len(rows)


def _document(req: rerate.Request, res: rerate.Result, applied: int) -> dict[str, Any]:
    return {
        "from": req.start.isoformat(), "to": req.end.isoformat(), "account": req.account, "tariff": req.tariff,
        "dry_run": req.dry_run, "run": res.run_id, "examined": res.examined, "changed": res.changed,
        "unrated": sum(res.unrated.values()), "unrated_reasons": res.unrated,
        "accounts_adjusted": len(res.adjusted), "applied": applied,
        "total_difference": {c: money.format(v, places=6) for c, v in res.totals().items()},
        "adjustments": [{"account": a.account, "currency": a.currency, "records": a.records,
                         "difference": money.format(a.difference, places=6),
                         "adjustment": money.format(a.adjustment, places=6),
                         "reference": None if res.run_id is None else f"rerate:{res.run_id}:{a.account}",
                         "ledger_id": a.ledger_id} for a in res.adjusted],
    }


def _text(doc: dict[str, Any]) -> str:
    head = "dry run, nothing changed: " if doc["dry_run"] else ""
    lines = [f"{head}{doc['examined']} records examined, {doc['changed']} changed,"
             f" {doc['accounts_adjusted']} accounts {'to adjust' if doc['dry_run'] else 'adjusted'}"]
    for a in doc["adjustments"][:SHOWN]:
        lines.append(f"  {a['account']:<20} {a['records']:>8} records"
                     f"  difference {a['difference']:>14} {a['currency']}")
    if len(doc["adjustments"]) > SHOWN:
        lines.append(f"  ... and {len(doc['adjustments']) - SHOWN} more (--json lists all)")
    for cur, total in doc["total_difference"].items():
        lines.append(f"total difference {total} {cur}")
    for reason, n in sorted(doc["unrated_reasons"].items()):
        lines.append(f"left as they were: {n} ({reason})")
    return "\n".join(lines)


async def _second_connection(ctx: Context) -> asyncpg.Connection | None:
    """A connection to read and price on while the first one writes (None: go on with one)."""
    try:
        return await asyncpg.connect(ctx.cfg.postgres.dsn, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None


async def rerate_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    req = rerate.Request(instant(args.start, "--from"), instant(args.end, "--to"), args.account,
                         args.tariff, args.dry_run)
    if req.start >= req.end:
        raise Usage("--to: must be after --from (the period is [--from, --to))")
    conn = await ctx.pg()
    # a crashed run's adjustments first (and Redis is known reachable before anything is written)
    earlier = 0 if req.dry_run else await apply_pending(ctx)
    reader = None if req.dry_run else await _second_connection(ctx)
    try:
        bar = Bar("re-rating", "records")
        res = await rerate.run(conn, req, bar if bar.tty else None, reader)  # no terminal: not even the count
    except Invalid as exc:
        raise Usage(f"--{exc.field}: {exc.message}") from None
    except BillingRefused as exc:
        raise Refused(str(exc)) from None
    finally:
        if reader is not None:
            await reader.close()
    applied = earlier + (0 if req.dry_run else await apply_pending(ctx))
    doc = _document(req, res, applied)
    emit(ctx, doc, _text(doc))
    return doc
