"""``ocsctl pin generate|redeem|list``: vouchers and calling cards (docs/billing.md).

Thin: arguments in, :mod:`ocs.billing.pin_lots` / :mod:`ocs.billing.vouchers` called, their
refusals turned into exit 1 (:class:`PinRefused`) and exit 2 (:class:`PinUsage`).  Cleartext
PINs go only to the ``-o`` file, never to stdout or the logs.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from ocs import money
from ocs.billing import pin_lots, pins, vouchers
from ocs.billing.pins import KINDS, LotSpec, PinRefused, PinUsage
from ocs.cli import accounts
from ocs.cli.context import Context, Refused, Usage, add_json, emit


def register(sub: Any) -> None:
    p = sub.add_parser("pin", help="voucher and calling-card PINs: generate, redeem, list")
    psub = p.add_subparsers(dest="pin_verb", required=True, parser_class=type(p))
    g = psub.add_parser("generate", help="a new lot of PINs, written once to a 0600 CSV file")
    g.add_argument("--count", type=int, required=True)
    g.add_argument("--value", required=True, help="credit per PIN, e.g. 10.00")
    g.add_argument("--currency", required=True)
    g.add_argument("--lot", required=True, help="name of the new lot")
    g.add_argument("--expires", help="vouchers: ISO date (valid through that day, UTC) or date-time")
    g.add_argument("--kind", choices=KINDS, default="voucher")
    g.add_argument("--tariff", help="cards: the card accounts' tariff (required for --kind card)")
    g.add_argument("--length", type=int, default=12, help="digits per PIN (default 12)")
    g.add_argument("-o", "--output", required=True, metavar="FILE.csv", help="new file for the cleartext PINs")
    add_json(g)
    g.set_defaults(func=generate_cmd)
    r = psub.add_parser("redeem", help="credit an account with a voucher, once")
    r.add_argument("pin", metavar="PIN")
    r.add_argument("account", metavar="ACCOUNT")
    add_json(r)
    r.set_defaults(func=redeem_cmd)
    ls = psub.add_parser("list", help="a lot's used, unused and expired PINs (never the PINs)")
    ls.add_argument("--lot", required=True)
    add_json(ls)
    ls.set_defaults(func=list_cmd)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except PinRefused as exc:
        raise Refused(str(exc)) from None
    except PinUsage as exc:
        raise Usage(str(exc)) from None


def expires_at(raw: str | None) -> datetime | None:
    """``--expires``: a date means valid through that day (UTC), a date-time without offset is UTC."""
    if not raw:
        return None
    try:
        return datetime.combine(date.fromisoformat(raw) + timedelta(days=1), time(), UTC)
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        raise Usage(f"--expires: not an ISO 8601 date or date-time: {raw!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _spec(args: argparse.Namespace) -> LotSpec:
    try:
        value = money.parse(args.value, allow_negative=False)
    except money.MoneyError as exc:
        raise Refused(f"--value: {exc}") from None
    if value == 0:
        raise Refused("--value: must be positive")
    return LotSpec(args.lot, args.kind, args.count, value, args.currency.upper(), args.length, args.tariff,
                   expires_at(args.expires))


async def generate_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    spec, out = _spec(args), Path(args.output)
    with _translated():
        spec.check(datetime.now(UTC))  # a bad request is told before the pepper or the stores are needed
        pepper = pins.load_pepper(ctx.cfg.billing.pin_pepper_file)
        issued = await pin_lots.generate_to_file(await ctx.pg(), await ctx.redis(), ctx.keys, pepper, spec, out)
    doc = {"lot": spec.name, "kind": spec.kind, "count": len(issued), "value": money.format(spec.value),
           "currency": spec.currency, "tariff": spec.tariff, "length": spec.length,
           "expires": pins.iso(spec.expires), "file": str(out),
           "accounts": [issued[0].account, issued[-1].account] if spec.kind == "card" else None}
    what = f"calling cards (accounts card-{spec.name}-1..{len(issued)})" if spec.kind == "card" else "vouchers"
    emit(ctx, doc, f"lot {spec.name}: {len(issued)} {what} of {doc['value']} {spec.currency}"
                   f" written to {out} (mode 0600; the only copy of the PINs)")
    return doc


async def redeem_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    with _translated():
        pepper = pins.load_pepper(ctx.cfg.billing.pin_pepper_file)
        done = await vouchers.redeem(await ctx.pg(), await ctx.redis(), ctx.keys, pepper, args.pin, args.account)
    extra: dict[str, Any] = {"applied": True, "reference": done.reference,
                             "voucher": {"lot": done.lot, "serial": done.serial, "value": money.format(done.amount)}}
    if done.control is not None:
        extra["control"] = accounts._dispatched(done.control, "re-authorize")
    headline = (f"voucher {done.lot} #{done.serial} redeemed: {money.format(done.amount)} {done.currency}"
                f" credited (reference {done.reference})")
    return await accounts._show(ctx, done.account, headline, extra)


async def list_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    pepper = None
    with contextlib.suppress(PinUsage):  # listing needs no pepper; with one, it says whether it is the lot's
        pepper = pins.load_pepper(ctx.cfg.billing.pin_pepper_file)
    with _translated():
        doc = await vouchers.lot_report(await ctx.pg(), args.lot, pepper)
    head = (f"lot {doc['lot']}: {doc['count']} {doc['kind']}s of {doc['value']} {doc['currency']}"
            + (f", tariff {doc['tariff']}" if doc["tariff"] else "")
            + (f", expires {doc['expires']}" if doc["expires"] else "")
            + ("; hashed with another pepper than billing.pin_pepper_file's" if doc["pepper_current"] is False else ""))
    lines = [f"{r['serial']}  {r['state']}  {r['redeemed_by'] or '-'}  {r['redeemed_at'] or '-'}"
             + (f"  {r['account']}" if r["account"] else "") for r in doc["pins"]]
    emit(ctx, doc, "\n".join([head, f"used {doc['used']}, unused {doc['unused']}, expired {doc['expired']}",
                              *lines]))
    return doc
