"""``ocsctl db migrate``, ``cdr export``, ``reconcile``, ``rebuild-balances`` (docs/provisioning.md, docs/rating.md)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from datetime import datetime
from typing import IO, Any

from redis.exceptions import ResponseError

from ocs import money
from ocs.billing import bundles
from ocs.cli import cdr_import
from ocs.cli.context import Context, Refused, Usage, add_json, emit, instant
from ocs.reports import cdr_export
from ocs.store import accounts_db, migrate, placement, provision, records
from ocs.store.keys import USAGE_GROUP
from ocs.store.replies import text


def register(sub: Any) -> None:
    db = sub.add_parser("db", help="database schema")
    dsub = db.add_subparsers(dest="db_verb", required=True, parser_class=type(db))
    p = dsub.add_parser("migrate", help="create or upgrade the schema (idempotent)")
    add_json(p)
    p.set_defaults(func=migrate_cmd)
    cdr = sub.add_parser("cdr", help="usage records")
    csub = cdr.add_subparsers(dest="cdr_verb", required=True, parser_class=type(cdr))
    p = csub.add_parser("export", help="export CDRs (docs/provisioning.md columns)")
    p.add_argument("--from", dest="start", help="start date/time (UTC), inclusive")
    p.add_argument("--to", dest="end", help="end date/time (UTC), exclusive")
    p.add_argument("--account")
    p.add_argument("--format", choices=cdr_export.FORMATS, default="csv")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    add_json(p)
    p.set_defaults(func=export_cmd)
    cdr_import.register(csub)  # cdr import: mediation of switch CDR files (ocs/cli/cdr_import.py)
    p = sub.add_parser("reconcile", help="prove balance = top-ups + adjustments - settled charges")
    add_json(p)
    p.set_defaults(func=reconcile_cmd)
    p = sub.add_parser("rebuild-balances", help="restore Redis balances from PostgreSQL (after a Redis loss)")
    add_json(p)
    p.set_defaults(func=rebuild_cmd)


async def migrate_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    applied = await migrate.migrate(await ctx.pg())
    doc = {"applied": applied, "up_to_date": True}
    emit(ctx, doc, f"applied {', '.join(applied)}" if applied else "schema up to date")
    return doc


async def export_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """Stream the CDRs (ocs.reports.cdr_export) to stdout or ``-o FILE``; XLSX needs a file or a pipe."""
    start = instant(args.start, "--from") if args.start else None
    end = instant(args.end, "--to") if args.end else None
    fmt = "json" if ctx.json and args.format == "csv" else args.format
    conn = await ctx.pg()
    if fmt == "xlsx":
        if not args.output and sys.stdout.isatty():
            raise Usage("--format xlsx writes a workbook: give -o FILE.xlsx (or redirect stdout)")
        return {"records": await _export_xlsx(conn, args.output, start, end, args.account)}
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(_text_file(args.output)) if args.output else sys.stdout
        writers: dict[str, type[cdr_export.CsvWriter | cdr_export.JsonWriter | cdr_export.XmlWriter]] = {
            "csv": cdr_export.CsvWriter, "json": cdr_export.JsonWriter, "xml": cdr_export.XmlWriter}
        n = await cdr_export.export(conn, writers[fmt](out), start, end, args.account)
    return {"records": n}


def _text_file(path: str) -> IO[str]:
    return open(path, "w", encoding="utf-8", newline="")


def _copy_to_stdout(path: str) -> None:
    with open(path, "rb") as f:
        shutil.copyfileobj(f, sys.stdout.buffer)


async def _export_xlsx(conn: Any, path: str | None, start: datetime | None, end: datetime | None,
                       account: str | None) -> int:
    if path:
        return await cdr_export.export(conn, cdr_export.XlsxWriter(path), start, end, account)
    with tempfile.TemporaryDirectory() as tmp:  # stdout is a pipe: write the workbook, then copy it
        tmp_path = os.path.join(tmp, "cdrs.xlsx")
        n = await cdr_export.export(conn, cdr_export.XlsxWriter(tmp_path), start, end, account)
        _copy_to_stdout(tmp_path)
    return n


async def _stream_pending(ctx: Context) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Usage records still in the Redis streams: {account: {record_id: amount}}, and the same for what
    they debited resellers: {reseller: {record_id: reseller_amount}}."""
    redis = await ctx.redis()
    out: dict[str, dict[str, int]] = {}
    resold: dict[str, dict[str, int]] = {}
    for stream in ctx.keys.all_usage_streams():
        for _id, raw in await redis.xrange(stream) or []:
            f = {text(k): text(v) for k, v in (raw or {}).items()}
            if f.get("t") == "u":
                out.setdefault(f["account_id"], {})[f["record_id"]] = int(f["amount"])
                if f.get("reseller"):
                    resold.setdefault(f["reseller"], {})[f["record_id"]] = int(f.get("reseller_amount") or 0)
    return out, resold


async def _expected(ctx: Context) -> list[dict[str, Any]]:
    conn = await ctx.pg()
    rows = await records.ledger_totals(conn)
    pending, resold = await _stream_pending(ctx)
    flushed = await records.flushed(conn, [rid for recs in pending.values() for rid in recs])
    out = []
    for r in rows:
        in_stream = sum(a for rid, a in pending.get(r["id"], {}).items() if rid not in flushed)
        # a reseller's balance also pays its subscribers' wholesale charges
        sold = int(r["resold"]) + sum(a for rid, a in resold.get(r["id"], {}).items() if rid not in flushed)
        out.append({"id": r["id"], "credited": int(r["credited"]), "unapplied": int(r["unapplied"]),
                    "settled": int(r["settled"]) + in_stream + sold, "resold": sold})
    return out


async def reconcile_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    redis = await ctx.redis()
    report, bad = [], 0
    for e in await _expected(ctx):
        bal, rsv = (int(v or 0) for v in await redis.hmget(ctx.keys.account(e["id"]), "bal", "rsv"))
        expected = e["credited"] - e["settled"]
        diff = bal - expected
        bad += diff != 0
        report.append({"account": e["id"], "balance": money.format(bal), "expected": money.format(expected),
                       "difference": money.format(diff), "reserved": money.format(rsv),
                       "topups_and_adjustments": money.format(e["credited"]),
                       "settled_charges": money.format(e["settled"]),
                       **({"reseller_charges": money.format(e["resold"])} if e["resold"] else {}),
                       "unapplied_ledger": money.format(e["unapplied"])})
    doc = {"accounts": len(report), "differences": bad, "report": report}
    lines = [f"{r['account']}: balance {r['balance']} expected {r['expected']} difference {r['difference']}"
             for r in report]
    emit(ctx, doc, "\n".join([*lines, f"{len(report)} accounts, {bad} with a difference"]))
    if bad:
        raise Refused(f"{bad} account(s) differ from the ledger")
    return doc


async def rebuild_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    """Recompute every balance from PostgreSQL; drop open holds and report them.

    Run with every ocsd stopped: a debit landing meanwhile would be overwritten.
    """
    redis, conn = await ctx.redis(), await ctx.pg()
    dropped = []
    async for key in redis.scan_iter(match=ctx.keys.all_sessions_pattern(), count=1000):
        f = {text(k): text(v) for k, v in (await redis.hgetall(key)).items()}
        if f.get("closed") != "1" and int(f.get("hold") or 0) > 0:
            dropped.append({"account": f.get("acct"), "session": f.get("sid"), "hold": money.format(int(f["hold"]))})
        await redis.delete(key)
    for shard in range(ctx.keys.shards):
        await redis.delete(ctx.keys.expiry(shard), ctx.keys.totals(shard))  # no hold survives
    expected = {e["id"]: e for e in await _expected(ctx)}
    await placement.restore(conn, redis, ctx.keys)  # resellers' subscribers back on their resellers' shards
    for e in expected.values():
        row = await accounts_db.get(conn, e["id"])
        assert row is not None
        await provision.sync_account(redis, ctx.keys, row, await accounts_db.aliases(conn, e["id"]))
        await bundles.sync(conn, redis, ctx.keys, e["id"])
        await bundles.drop_holds(redis, ctx.keys, e["id"])  # bundles: the sessions holding seconds are gone
        ids = await accounts_db.ledger_ids(conn, e["id"])
        total = e["credited"] + e["unapplied"] - e["settled"]
        pipe = redis.pipeline(transaction=True)
        pipe.hset(ctx.keys.account(e["id"]), mapping={"bal": total, "rsv": 0})
        pipe.delete(ctx.keys.applied(e["id"]))
        if ids:
            pipe.sadd(ctx.keys.applied(e["id"]), *ids)
        await pipe.execute()
        await accounts_db.mark_ledger_applied(conn, e["id"])
    for stream in ctx.keys.all_usage_streams():  # the group must exist for the flusher
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await redis.xgroup_create(stream, USAGE_GROUP, id="0", mkstream=True)
    doc = {"accounts": len(expected), "dropped_holds": dropped}
    emit(ctx, doc, f"rebuilt {len(expected)} balances; dropped {len(dropped)} open holds"
         + "".join(f"\n  {d['account']} {d['session']} {d['hold']}" for d in dropped))
    return doc
