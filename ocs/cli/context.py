"""What every ``ocsctl`` verb module shares: the store context, the errors, the output helpers.

Its own module so the verb modules and :mod:`ocs.cli.main` (which registers them)
do not import each other.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from typing import Any

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ocs import config
from ocs.store import placement
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
                await placement.load(self._redis.execute_command, self.keys)  # resellers' subscribers' shards
            except (OSError, RedisError) as exc:
                raise Refused(f"redis: cannot connect: {exc}") from None
        return self._redis

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._redis is not None:
            await self._redis.aclose()


Verb = Callable[[Context, argparse.Namespace], Awaitable[dict[str, Any]]]


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def emit(ctx: Context, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, indent=2, default=str) if ctx.json else text)


class Bar:
    """A progress bar on stderr when it is a terminal; nothing otherwise (the summary line says it all)."""

    def __init__(self, doing: str, unit: str) -> None:
        self.doing, self.unit = doing, unit
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.tty:
            return
        filled = 30 * done // max(total, 1)
        print(f"\r{self.doing} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {self.unit}", end="",
              file=sys.stderr, flush=True)
        if done >= total:
            print(file=sys.stderr)


def instant(raw: str, option: str) -> datetime:
    """An ISO 8601 date or date-time given to ``option`` (a period bound): without an offset it is UTC."""
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        try:
            ts = datetime.combine(date.fromisoformat(raw), time())
        except ValueError:
            raise Usage(f"{option}: not an ISO 8601 date: {raw!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
