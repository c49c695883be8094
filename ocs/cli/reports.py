"""``ocsctl report usage`` and ``ocsctl report chart`` (docs/reports.md).

Thin: arguments -> :mod:`ocs.reports.usage_report` (the numbers) -> a table, CSV, JSON or XLSX
(:mod:`ocs.reports.report_files`) or a chart (:mod:`ocs.reports.charts`).  The REST API serves the
same lines as JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ocs.cli.context import Context, Usage, add_json, emit, instant
from ocs.reports import report_files
from ocs.reports.usage_report import BY, SERVICES, Query, ReportError, documents, usage


def register(sub: Any) -> None:
    rep = sub.add_parser("report", help="usage reports and charts")
    rsub = rep.add_subparsers(dest="report_verb", required=True, parser_class=type(rep))
    p = rsub.add_parser("usage", help="attempts, answered, minutes, ASR, ACD, revenue, cost, profit per group")
    _period(p)
    p.add_argument("--by", required=True, choices=BY)
    p.add_argument("--account", help="only this account's usage")
    p.add_argument("--service", choices=SERVICES, default="voice", help="voice (default), data, sms or all")
    p.add_argument("--format", choices=report_files.FORMATS, default="table")
    p.add_argument("-o", "--output", help="write to this file (required for xlsx)")
    add_json(p)
    p.set_defaults(func=usage_cmd)
    p = rsub.add_parser("chart", help="a chart of the usage report as PNG or SVG")
    _period(p)
    p.add_argument("--kind", required=True, choices=("revenue-by-day", "top-destinations", "profit-by-provider"))
    p.add_argument("--service", choices=SERVICES, default="voice")
    p.add_argument("-o", "--output", required=True, help="FILE.png or FILE.svg")
    add_json(p)
    p.set_defaults(func=chart_cmd)


def _period(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", required=True, help="first day (or ISO time, UTC), inclusive")
    p.add_argument("--to", dest="end", required=True, help="end day (or ISO time, UTC), exclusive")


def _query(args: argparse.Namespace, by: str) -> Query:
    q = Query(instant(args.start, "--from"), instant(args.end, "--to"), by, getattr(args, "account", None),
              args.service)
    try:
        q.check()
    except ReportError as exc:
        raise Usage(str(exc)) from None
    return q


async def usage_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    q = _query(args, args.by)
    fmt = "json" if ctx.json else args.format
    if fmt == "xlsx" and not args.output:
        raise Usage("--format xlsx writes a workbook: give -o FILE.xlsx")
    docs = documents(await usage(await ctx.pg(), q))
    meta = {"from": q.start.isoformat(), "to": q.end.isoformat(), "service": q.service,
            **({"account": q.account} if q.account else {})}
    if fmt == "xlsx":
        title = f"Usage by {q.by}, {q.start:%Y-%m-%d %H:%M} to {q.end:%Y-%m-%d %H:%M} UTC ({q.service})"
        report_files.write_xlsx(args.output, q.by, docs, title)
        print(f"wrote {args.output}: {len(docs)} lines", file=sys.stderr)
    else:
        text = {"table": lambda: report_files.as_table(q.by, docs), "csv": lambda: report_files.as_csv(q.by, docs),
                "json": lambda: report_files.as_json(q.by, docs, meta)}[fmt]()
        _write(args.output, text)
    return {**meta, "by": q.by, "lines": docs}


def _write(path: str | None, text: str) -> None:
    if path:
        Path(path).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    else:
        print(text.rstrip("\n"))


async def chart_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    from ocs.reports import charts  # matplotlib loads in ~0.5 s: only for this verb

    if not args.output.lower().endswith((".png", ".svg")):
        raise Usage(f"-o must name a .png or .svg file, not {args.output!r}")
    q = _query(args, charts.KINDS[args.kind])
    lines = await usage(await ctx.pg(), q)
    charts.save(args.kind, lines, q.start, q.end, args.output)
    doc = {"kind": args.kind, "file": args.output, "groups": sum(1 for ln in lines if ln.group != "TOTAL")}
    emit(ctx, doc, f"wrote {args.output}")
    return doc
