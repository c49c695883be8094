"""``ocsctl``: provisioning and operations (spec section 2).

Every verb is ``async def run(ctx, args) -> dict`` returning one JSON-able
document; ``--json`` prints it, otherwise a short human text.  Errors are one
line on stderr: exit 1 for a refused operation (:class:`Refused`), exit 2 for a
usage or config error.  Verb modules register themselves from :data:`MODULES`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ocs import config
from ocs.store.keys import Keys


class Refused(Exception):
    """The operation was refused (exit 1); the message is the one line shown."""


class Usage(Exception):
    """A usage error found after parsing (exit 2)."""


class Context:
    """Lazily opened stores for one ocsctl invocation."""

    def __init__(self, cfg: config.Config, as_json: bool) -> None:
        self.cfg = cfg
        self.json = as_json
        self.keys = Keys(cfg.redis.key_prefix, cfg.charging.shards)
        self._pg: asyncpg.Connection | None = None
        self._redis: Redis | None = None

    async def pg(self) -> asyncpg.Connection:
        if self._pg is None:
            try:
                self._pg = await asyncpg.connect(self.cfg.postgres.dsn, timeout=5)
            except (OSError, asyncpg.PostgresError) as exc:
                raise Refused(f"postgres: cannot connect: {exc}") from None
        return self._pg

    async def redis(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(self.cfg.redis.url, socket_connect_timeout=5)
            try:
                await self._redis.ping()
            except (OSError, RedisError) as exc:
                raise Refused(f"redis: cannot connect: {exc}") from None
        return self._redis

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._redis is not None:
            await self._redis.aclose()


Verb = Callable[[Context, argparse.Namespace], Awaitable[dict[str, Any]]]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    import ocs.cli.accounts
    import ocs.cli.operations
    import ocs.cli.tariffs
    import ocs.cli.usage

    parser = _Parser(prog="ocsctl", description="Provision and operate the online charging system.")
    parser.add_argument("--config", help="config file (default: $OCS_CONFIG, then config/ocs.toml)")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for module in (ocs.cli.operations, ocs.cli.tariffs, ocs.cli.accounts, ocs.cli.usage):  # the verb modules
        module.register(sub)
    return parser


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def emit(ctx: Context, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, indent=2, default=str) if ctx.json else text)


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
