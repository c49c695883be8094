"""``ocsctl fx set|list``: exchange rates for accounts charged on a tariff in another currency.

docs/wholesale.md ("Currencies and FX").  A rate is effective-dated: ``--from`` (default now)
starts it, and it holds until the pair's next row.  The rate is stored exactly as typed (up to
12 decimals; more are refused, never rounded).  Setting a rate bumps ``tariffs:gen`` so every
daemon re-reads the table within seconds (the tariff reload signal, :mod:`ocs.store.fx`).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from ocs.cli.context import Context, Refused, Usage, add_json, emit
from ocs.rating.fx import FxError, check_currency, format_rate, parse_rate
from ocs.store import fx


def register(sub: Any) -> None:
    f = sub.add_parser("fx", help="exchange rates (1 BASE = RATE QUOTE, effective-dated)")
    fsub = f.add_subparsers(dest="fx_verb", required=True, parser_class=type(f))
    p = fsub.add_parser("set", help="set the rate of a currency pair from a date on")
    p.add_argument("base", help="ISO 4217 code, e.g. EUR")
    p.add_argument("quote", help="ISO 4217 code, e.g. USD")
    p.add_argument("rate", help="how many QUOTE one BASE is worth, up to 12 decimals")
    p.add_argument("--from", dest="valid_from",
                   help="ISO 8601 date or datetime the rate starts (no offset: UTC; default now)")
    add_json(p)
    p.set_defaults(func=set_cmd)
    p = fsub.add_parser("list", help="every rate, by pair and start")
    add_json(p)
    p.set_defaults(func=list_cmd)


def _valid_from(raw: str | None) -> datetime:
    if not raw:
        return datetime.now(UTC)
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise Usage(f"--from: not an ISO 8601 date or datetime: {raw!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


async def set_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    try:
        base, quote = check_currency(args.base), check_currency(args.quote)
        rate = parse_rate(args.rate)
    except FxError as exc:
        raise Refused(str(exc)) from None
    if base == quote:
        raise Refused(f"{base} -> {quote}: a currency has no rate to itself")
    valid_from = _valid_from(args.valid_from)
    replaced = await fx.set_rate(await ctx.pg(), base, quote, rate, valid_from)
    await (await ctx.redis()).incr(ctx.keys.tariffs_gen())  # daemons re-read tariffs and rates
    doc = {"base": base, "quote": quote, "rate": format_rate(rate), "valid_from": valid_from.isoformat(),
           "replaced": replaced}
    emit(ctx, doc, f"1 {base} = {doc['rate']} {quote} from {doc['valid_from']}" + (" (replaced)" if replaced else ""))
    return doc


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    table = await fx.load_fx_table(await ctx.pg())
    rates = [{"base": r.base, "quote": r.quote, "valid_from": r.valid_from.isoformat(), "rate": format_rate(r.rate)}
             for r in table.rows()]
    doc = {"rates": rates}
    lines = [f"{r['base']} {r['quote']} {r['rate']:>20} from {r['valid_from']}" for r in rates]
    emit(ctx, doc, "\n".join(lines) if lines else "no rates")
    return doc
