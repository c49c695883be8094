"""``ocsctl alert set|show|clear|outbox|retry``: alerts to people (spec section 14, docs/alerts.md).

Values are checked by argparse before anything is opened, so a malformed one is a usage error
(exit 2, one line naming the option); an unknown account is a refusal (exit 1).  ``off`` unsets
one setting; ``alert clear`` removes them all.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any
from urllib.parse import urlsplit

from ocs import money
from ocs.cli.context import Context, Refused, Usage, add_json, emit
from ocs.store import accounts_db, alerts_db
from ocs.store.alerts_db import Settings

OFF = "off"
MAX_MINUTES = 10 * 24 * 60  # a long-call threshold beyond ten days is a typo
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
SETTINGS = ("low_balance", "long_call", "expensive_call", "email", "webhook")


def _amount(*, positive: bool) -> Any:
    """An AMOUNT option's parser (argparse names the option in its one-line error)."""
    def parse(raw: str) -> int | str:
        if raw == OFF:
            return OFF
        try:
            value = money.parse(raw, allow_negative=False)
        except money.MoneyError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if positive and value == 0:
            raise argparse.ArgumentTypeError(f"must be more than 0: {raw!r}")
        return value
    return parse


def _minutes(raw: str) -> int | str:
    if raw == OFF:
        return OFF
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"whole minutes from 1 to {MAX_MINUTES}: {raw!r}")
    return int(raw)


def _email(raw: str) -> str:
    if raw == OFF:
        return ""
    if len(raw) > 254 or not EMAIL.fullmatch(raw):
        raise argparse.ArgumentTypeError(f"not an e-mail address: {raw!r}")
    return raw


def _webhook(raw: str) -> str:
    if raw == OFF:
        return ""
    try:
        url = urlsplit(raw)
        url.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        url = None
    if (url is None or url.scheme not in ("http", "https") or not url.hostname or len(raw) > 2048
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in raw)):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {raw!r}")
    return raw


def register(sub: Any) -> None:
    a = sub.add_parser("alert", help="alerts to people: thresholds, e-mail, webhook, the outbox")
    asub = a.add_subparsers(dest="alert_verb", required=True, parser_class=type(a))
    p = asub.add_parser("set", help="set an account's alerts (only the options given change; 'off' unsets one)")
    p.add_argument("id")
    p.add_argument("--low-balance", type=_amount(positive=False), metavar="AMOUNT")
    p.add_argument("--long-call", type=_minutes, metavar="MINUTES")
    p.add_argument("--expensive-call", type=_amount(positive=True), metavar="AMOUNT")
    p.add_argument("--email", type=_email, metavar="ADDR")
    p.add_argument("--webhook", type=_webhook, metavar="URL")
    add_json(p)
    p.set_defaults(func=set_cmd)
    for verb, func, what in (("show", show_cmd, "an account's alert settings"),
                             ("clear", clear_cmd, "remove all of an account's alert settings")):
        p = asub.add_parser(verb, help=what)
        p.add_argument("id")
        add_json(p)
        p.set_defaults(func=func)
    p = asub.add_parser("outbox", help="alert deliveries, newest first")
    p.add_argument("--account")
    p.add_argument("--status", choices=alerts_db.STATUSES)
    p.add_argument("--limit", type=int, default=50)
    add_json(p)
    p.set_defaults(func=outbox_cmd)
    p = asub.add_parser("retry", help="requeue deliveries given up after alerts.max_attempts")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("outbox_id", nargs="?", type=int, metavar="OUTBOX_ID")
    target.add_argument("--all-failed", action="store_true")
    add_json(p)
    p.set_defaults(func=retry_cmd)


def _merge(old: Settings, args: argparse.Namespace) -> Settings:
    def pick(given: Any, current: Any, scale: int = 1) -> Any:
        if given is None:
            return current
        return None if given == OFF else given * scale
    return Settings(
        account_id=old.account_id,
        low_balance=pick(args.low_balance, old.low_balance),
        long_call_seconds=pick(args.long_call, old.long_call_seconds, 60),
        expensive_call=pick(args.expensive_call, old.expensive_call),
        email=old.email if args.email is None else args.email,
        webhook=old.webhook if args.webhook is None else args.webhook)


def _doc(s: Settings, currency: str) -> dict[str, Any]:
    def amount(v: int | None) -> str | None:
        return None if v is None else money.format(v)
    return {"account": s.account_id, "currency": currency, "low_balance": amount(s.low_balance),
            "long_call_minutes": None if s.long_call_seconds is None else s.long_call_seconds // 60,
            "expensive_call": amount(s.expensive_call), "email": s.email or None, "webhook": s.webhook or None}


def _print(ctx: Context, s: Settings, currency: str, headline: str) -> dict[str, Any]:
    doc = _doc(s, currency)
    lines = [headline] * bool(headline)
    lines += [f"{k}: {OFF if v is None else v}" for k, v in doc.items()]
    emit(ctx, doc, "\n".join(lines))
    return doc


async def _currency(ctx: Context, account_id: str) -> str:
    row = await accounts_db.get(await ctx.pg(), account_id)
    if row is None:
        raise Refused(f"unknown account {account_id!r}")
    return str(row["currency"]).strip()


def _warn(ctx: Context, s: Settings) -> None:
    """Say why a setting that looks complete will not reach anyone (stderr; the settings are stored)."""
    if s.webhook and not ctx.cfg.alerts.webhook_secret:
        print("ocsctl: warning: alerts.webhook_secret is empty: webhook alerts wait in the outbox until it is set",
              file=sys.stderr)
    if not (s.email or s.webhook) and (s.low_balance, s.long_call_seconds, s.expensive_call) != (None, None, None):
        print("ocsctl: warning: no --email and no --webhook: these alerts have nowhere to go", file=sys.stderr)


async def set_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if all(getattr(args, k) is None for k in SETTINGS):
        raise Usage("alert set: give at least one of --low-balance, --long-call, --expensive-call, --email, --webhook")
    currency = await _currency(ctx, args.id)
    conn = await ctx.pg()
    async with conn.transaction():
        old = await alerts_db.get_settings(conn, args.id) or Settings(args.id)
        new = _merge(old, args)
        await alerts_db.put_settings(conn, new)
    _warn(ctx, new)
    return _print(ctx, new, currency, f"alerts of account {args.id} set")


async def show_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    currency = await _currency(ctx, args.id)
    s = await alerts_db.get_settings(await ctx.pg(), args.id) or Settings(args.id)
    return _print(ctx, s, currency, "")


async def clear_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    currency = await _currency(ctx, args.id)
    removed = await alerts_db.delete_settings(await ctx.pg(), args.id)
    return _print(ctx, Settings(args.id), currency,
                  f"alerts of account {args.id} cleared" if removed else f"account {args.id} had no alerts")


def _status(r: Any) -> str:
    return "delivered" if r["delivered_at"] else "failed" if r["failed_at"] else "pending"


async def outbox_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if args.limit < 1:
        raise Usage("--limit: must be at least 1")
    rows = await alerts_db.outbox(await ctx.pg(), args.account, args.status, args.limit)
    out = [{"id": r["id"], "event": r["event"], "account": r["account_id"], "subject": r["subject"],
            "channel": r["channel"], "target": r["target"], "status": _status(r), "attempts": r["attempts"],
            "created_at": r["created_at"].isoformat(), "next_attempt_at": r["next_attempt_at"].isoformat(),
            "delivered_at": r["delivered_at"].isoformat() if r["delivered_at"] else None,
            "last_error": r["last_error"]} for r in rows]
    doc = {"deliveries": out, "count": len(out)}
    lines = [f"{d['id']}  {d['created_at']}  {d['event']}  {d['account']}  {d['channel']} {d['target']}"
             f"  {d['status']}  attempts {d['attempts']}"
             + (f"  last error: {d['last_error']}" if d["last_error"] else "") for d in out]
    emit(ctx, doc, "\n".join([*lines, f"{len(out)} deliveries"]))
    return doc


async def retry_cmd(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    n = await alerts_db.requeue(await ctx.pg(), None if args.all_failed else args.outbox_id)
    if n == 0 and not args.all_failed:
        raise Refused(f"outbox row {args.outbox_id}: no such failed delivery")
    doc = {"requeued": n}
    emit(ctx, doc, f"{n} deliveries requeued")
    return doc
