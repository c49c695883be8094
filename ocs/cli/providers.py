"""``ocsctl provider create|rates|list|show`` and ``ocsctl route set|list|delete|rate`` (docs/wholesale.md).

Thin: the services are :mod:`ocs.wholesale.providers`, :mod:`ocs.wholesale.routes` and
:mod:`ocs.wholesale.cost_cache`.  Every change bumps ``P providers:gen`` so the flushers reload
their cost book within seconds.
"""

from __future__ import annotations

import argparse
import functools
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ocs import money
from ocs.billing.errors import Invalid
from ocs.billing.errors import Refused as ServiceRefused
from ocs.cli.context import Context, Refused, Usage, Verb, add_json, emit
from ocs.rating.engine import normalize_number
from ocs.wholesale import cost_cache, providers, routes


def _verb(verb: Verb) -> Verb:
    """The services' refusals as ocsctl's: a bad value is a usage error (2), a refusal exits 1."""

    @functools.wraps(verb)
    async def wrapped(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
        try:
            return await verb(ctx, args)
        except Invalid as exc:
            raise Usage(f"{exc.field}: {exc.message}") from None
        except providers.RatesRejected as exc:
            for e in exc.errors[1:]:
                print(f"ocsctl: {e}", file=sys.stderr)
            raise Refused(str(exc)) from None
        except ServiceRefused as exc:
            raise Refused(str(exc)) from None

    return wrapped


def _add(sub: Any, name: str, help_text: str, func: Verb, *args: tuple[str, dict[str, Any]]) -> None:
    p = sub.add_parser(name, help=help_text)
    for flag, kw in args:
        p.add_argument(flag, **kw)
    add_json(p)
    p.set_defaults(func=_verb(func))


def register(sub: Any) -> None:
    p = sub.add_parser("provider", help="termination providers and their rate sheets")
    ps = p.add_subparsers(dest="provider_verb", required=True, parser_class=type(p))
    _add(ps, "create", "create a provider", create_cmd, ("name", {}),
         ("--currency", {"required": True}), ("--timezone", {"default": "UTC", "help": "of the sheet's bands"}))
    _add(ps, "rates", "import the provider's RATES.csv (and BANDS.csv) as a new version", rates_cmd,
         ("name", {}), ("rates", {}), ("--bands", {}))
    _add(ps, "list", "list providers", list_cmd)
    _add(ps, "show", "show a provider's sheet and routes", show_cmd, ("name", {}))
    r = sub.add_parser("route", help="route prefixes to providers (cost and margin of every CDR)")
    rs = r.add_subparsers(dest="route_verb", required=True, parser_class=type(r))
    _add(rs, "set", "route a prefix to providers, in order (or the cheapest with --lcr)", route_set_cmd,
         ("prefix", {}), ("providers", {"nargs": "+", "metavar": "PROVIDER"}),
         ("--lcr", {"action": "store_true", "help": "least cost: the cheapest provider for each call"}))
    _add(rs, "list", "list routes", route_list_cmd)
    _add(rs, "delete", "delete a prefix's route", route_delete_cmd, ("prefix", {}))
    _add(rs, "rate", "which provider terminates a call and its cost", route_rate_cmd, ("number", {}),
         ("--at", {"help": "ISO 8601 start (no offset: UTC; default now)"}),
         ("--seconds", {"type": int, "default": 60}))


def _at(raw: str | None) -> datetime:
    if not raw:
        return datetime.now(UTC)
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise Usage(f"--at: not ISO 8601: {raw!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


async def _bump(ctx: Context) -> None:
    await cost_cache.signal_change(await ctx.redis(), ctx.keys)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise Refused(f"{path}: {exc.strerror}") from None


async def create_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    await ctx.redis()  # refuse before changing anything when the generation cannot be bumped
    doc = await providers.create(await ctx.pg(), args.name, args.currency.upper(), args.timezone)
    await _bump(ctx)
    emit(ctx, doc, f"provider {args.name} ({doc['currency']}, {doc['timezone']}) created")
    return doc


async def rates_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    rates = _read(args.rates)
    bands = _read(args.bands) if args.bands else None
    await ctx.redis()
    doc = await providers.import_rates(await ctx.pg(), args.name, rates, Path(args.rates).name, bands,
                                       Path(args.bands).name if args.bands else "BANDS.csv")
    await _bump(ctx)
    emit(ctx, doc, f"provider {args.name} rates version {doc['version']}: {doc['rows_read']} rows read, 0 rejected")
    return doc


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    rows = await providers.list_all(await ctx.pg())
    lines = [f"{r['provider']:<20} {r['currency']} v{r['version'] or '-'} {r['rates']:>7} rates"
             f" {r['routes']:>5} routes" for r in rows]
    emit(ctx, {"providers": rows}, "\n".join(lines) or "no providers")
    return {"providers": rows}


async def show_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    doc = await providers.show(await ctx.pg(), args.name)
    lines = [f"provider {doc['provider']} ({doc['currency']}, {doc['timezone']}), sheet {doc['tariff']}"
             f" v{doc['version'] or '-'}, {len(doc['rows'])} rates, routes: {' '.join(doc['routes']) or '-'}"]
    lines += [f"  {r['prefix']:<12} {r['destination']:<28} {money.format(r['rate']):>10} {r['band']}"
              for r in doc["rows"][:50]]
    for r in doc["rows"]:
        r["rate"], r["connect_fee"] = money.format(r["rate"]), money.format(r["connect_fee"])
    emit(ctx, doc, "\n".join(lines))
    return doc


async def route_set_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    await ctx.redis()
    doc = await routes.set_route(await ctx.pg(), args.prefix, args.providers, args.lcr)
    await _bump(ctx)
    emit(ctx, doc, f"route {args.prefix} -> {' '.join(args.providers)}{' (lcr)' if args.lcr else ''}")
    return doc


async def route_list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    rows = await routes.list_all(await ctx.pg())
    lines = [f"{r['prefix']:<16} {' '.join(r['providers'])}{'  (lcr)' if r['lcr'] else ''}" for r in rows]
    emit(ctx, {"routes": rows}, "\n".join(lines) or "no routes")
    return {"routes": rows}


async def route_delete_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    await ctx.redis()
    doc = await routes.delete_route(await ctx.pg(), args.prefix)
    await _bump(ctx)
    emit(ctx, doc, f"route {args.prefix} deleted")
    return doc


async def route_rate_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if args.seconds < 0:
        raise Usage("--seconds must not be negative")
    at = _at(args.at)
    book = await cost_cache.load_book(await ctx.pg())
    digits = normalize_number(args.number)
    route = book.route_for(digits)
    found = book.cost_of(args.number, at, args.seconds)
    if found is None:
        why = "no route" if route is None else f"no provider of route {route.prefix} has a rate"
        raise Refused(f"{args.number}: {why}")
    assert route is not None
    doc = {"number": digits, "route": route.prefix, "lcr": route.lcr, "provider": found.provider,
           "cost": money.format(found.cost, places=6), "cost_currency": found.currency,
           "seconds": args.seconds, "start": at.isoformat()}
    emit(ctx, doc, f"{digits} via {route.prefix}: {found.provider} {doc['cost']} {found.currency}")
    return doc
