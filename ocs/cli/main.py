"""``ocsctl``: provisioning and operations (docs/provisioning.md).

Every verb is ``async def run(ctx, args) -> dict`` returning one JSON-able
document; ``--json`` prints it, otherwise a short human text.  Errors are one
line on stderr: exit 1 for a refused operation (:class:`Refused`), exit 2 for a
usage or config error.  Each verb module has ``register(subparsers)``; what they share
(:class:`~ocs.cli.context.Context`, the errors, ``emit``) is in :mod:`ocs.cli.context`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, NoReturn

import asyncpg
from redis.exceptions import RedisError

from ocs import config, log
from ocs.cli import accounts, alerts, billing_fees, invoices, operations, payments, pins, sessions, tariffs, usage
from ocs.cli import api_tokens as api_verbs
from ocs.cli import fx as fx_verbs
from ocs.cli import providers as provider_verbs
from ocs.cli import reports as report_verbs
from ocs.cli import rerate as rerate_verbs
from ocs.cli import resellers as reseller_verbs
from ocs.cli.context import Context, Refused, Usage, Verb


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ocsctl", description="Provision and operate the online charging system.")
    parser.add_argument("--config", help="config file (default: $OCS_CONFIG, then config/ocs.toml)")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    verb_modules = (operations, tariffs, accounts, billing_fees, invoices, payments, sessions, usage, pins, alerts)
    for module in (*verb_modules, api_verbs, fx_verbs, rerate_verbs):
        module.register(sub)
    provider_verbs.register(sub)  # provider, route (docs/wholesale.md)
    report_verbs.register(sub)  # report usage|chart (docs/reports.md)
    reseller_verbs.register(sub)  # reseller create|list|show|block|unblock|topup (docs/wholesale.md)
    return parser


async def _run(verb: Verb, ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    try:
        return await verb(ctx, args)
    finally:
        await ctx.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print(f"ocsctl: config: {exc}", file=sys.stderr)
        return 2
    log.configure_cli()  # stdout is the verb's answer: log lines go to stderr, warnings and up
    ctx = Context(cfg, bool(getattr(args, "json", False)))
    try:
        asyncio.run(_run(args.func, ctx, args))
    except Refused as exc:
        print(f"ocsctl: {exc}", file=sys.stderr)
        return 1
    except Usage as exc:
        print(f"ocsctl: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, RedisError) as exc:
        print(f"ocsctl: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
