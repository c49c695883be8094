"""``ocsctl tariff import|show|rate`` (docs/provisioning.md, docs/rating.md); ``diff`` is in tariff_diff."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ocs.cli import rate_upload, tariff_diff
from ocs.cli.context import Context, Refused, Usage, add_json, emit
from ocs.rating import documents
from ocs.rating.engine import CompiledTariff
from ocs.store import tariffs


def register(sub: Any) -> None:
    t = sub.add_parser("tariff", help="import, show and try tariffs")
    tsub = t.add_subparsers(dest="tariff_verb", required=True, parser_class=type(t))
    p = tsub.add_parser("import", help="import RATES.csv|.xlsx (and BANDS) as a new version")
    p.add_argument("name")
    p.add_argument("rates")
    p.add_argument("--bands")
    p.add_argument("--currency")
    p.add_argument("--timezone")
    add_json(p)
    p.set_defaults(func=import_cmd)
    p = tsub.add_parser("show", help="show a tariff's current version")
    p.add_argument("name")
    add_json(p)
    p.set_defaults(func=show_cmd)
    p = tsub.add_parser("rate", help="price a call")
    p.add_argument("name")
    p.add_argument("number")
    p.add_argument("--at", help="ISO 8601 start (no offset: tariff timezone; default now)")
    p.add_argument("--seconds", type=int, default=60)
    add_json(p)
    p.set_defaults(func=rate_cmd)
    tariff_diff.register(tsub)


class _Progress:
    """A progress bar on stderr, only when stdout is a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.on = sys.stdout.isatty() and total > 0

    def __call__(self, done: int) -> None:
        if self.on:
            width = 40
            fill = width * done // self.total
            print(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{self.total}", end="", file=sys.stderr)
            if done >= self.total:
                print(file=sys.stderr)


async def import_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    conn = await ctx.pg()
    existing = await tariffs.info(conn, args.name)
    currency = (args.currency or (existing["currency"].strip() if existing else "EUR")).upper()
    tz = args.timezone or (existing["timezone"] if existing else "UTC")
    if len(currency) != 3 or not currency.isalpha():
        raise Refused(f"--currency: not an ISO 4217 code: {currency!r}")
    parsed, bands = rate_upload.read_rate_sheet(args.rates, args.bands, rate_upload.timezone(tz))
    version = await tariffs.import_version(conn, args.name, currency, tz, parsed.rows, bands,
                                           source=Path(args.rates).name, progress=_Progress(len(parsed.rows)))
    await (await ctx.redis()).incr(ctx.keys.tariffs_gen())
    doc = {"tariff": args.name, "version": version, "rows_read": parsed.read, "rows_rejected": 0,
           "bands": len(bands), "currency": currency, "timezone": tz}
    emit(ctx, doc, f"tariff {args.name} version {version}: {parsed.read} rows read, 0 rejected")
    return doc


async def _load(ctx: Context, name: str) -> CompiledTariff:
    tariff = await tariffs.load_tariff(await ctx.pg(), name)
    if tariff is None:
        raise Refused(f"unknown tariff {name!r}")
    return CompiledTariff(tariff)


async def show_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    t = (await _load(ctx, args.name)).tariff
    doc = documents.tariff_document(t)
    rows = doc["rows"]
    lines = [f"tariff {t.name} v{t.version} ({t.currency}, {t.timezone}), {len(rows)} rows"]
    lines += [f"  {r['prefix']:<12} {r['destination']:<28} {r['rate']:>10} {r['band']}" for r in rows[:50]]
    if len(rows) > 50:
        lines.append(f"  ... {len(rows) - 50} more (use --json)")
    emit(ctx, doc, "\n".join(lines))
    return doc


def _at(raw: str | None, tz: str) -> datetime:
    if not raw:
        return datetime.now(UTC)
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise Usage(f"--at: not ISO 8601: {raw!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=ZoneInfo(tz))


async def rate_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if args.seconds < 0:
        raise Usage("--seconds must not be negative")
    compiled = await _load(ctx, args.name)
    at = _at(args.at, compiled.tariff.timezone)
    doc = documents.quote(compiled, args.number, at, args.seconds)
    if doc is None:
        raise Refused(f"{args.number}: destination not rated by tariff {args.name}")
    emit(ctx, doc, f"{doc['prefix']} {doc['destination']}: {args.seconds} s -> billed {doc['billed_seconds']} s,"
                   f" {doc['charge']} {doc['currency']}")
    return doc
