"""Auto-pipelining: every Redis command issued in one event-loop tick goes out as one pipeline.

Why: per-command client overhead, not Redis, limits a Python OCS (design.md,
"Library facts").  Concurrent requests each ``await pipe.call(...)``; the first
call of a tick schedules a flush with ``call_soon``, so everything issued
before the loop gets back to I/O shares one round trip.  Errors are per
command; a connection failure fails the whole batch with
:class:`ocs.model.StoreUnavailable`.  NOSCRIPT (a restarted or failed-over
Redis forgot the scripts) reloads every registered script and retries once.

Two ways to the server, chosen once from the client handed in:

- raw (:mod:`ocs.store.resp`): our own pipelined RESP connection, a few µs per
  command; replies are raw (``HGETALL`` a flat list).  The charging core uses
  it for a plain TCP or Unix-socket Redis.
- redis-py's pipeline (~25 µs per command, with redis-py's reply parsing): for
  Redis Cluster, TLS, and the background jobs (flusher, reaper) that want
  redis-py's parsed stream replies and are not on the request path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ocs.model import StoreUnavailable
from ocs.store.resp import RespConnection, endpoint_of
from ocs.store.scripts import Script

MAX_BATCH = 512
Batch = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]


class AutoPipeline:
    """Batches commands issued in the same loop tick into one pipeline round trip."""

    def __init__(self, redis: Redis, *, raw: bool = False) -> None:
        self.redis = redis
        endpoint = endpoint_of(redis) if raw else None
        self._conn = RespConnection(endpoint, self._settle_one) if endpoint is not None else None
        self._pending: Batch = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._scripts: dict[str, Script] = {}
        self._reload: asyncio.Task[None] | None = None  # one SCRIPT LOAD round for every NOSCRIPT at once
        self._resubmitted: set[asyncio.Future[Any]] = set()  # commands already retried after NOSCRIPT

    @property
    def is_raw(self) -> bool:
        """Replies come unparsed (flat ``HGETALL``, list ``SMEMBERS``)."""
        return self._conn is not None

    def register(self, *scripts: Script) -> None:
        for s in scripts:
            self._scripts[s.sha] = s

    async def load_scripts(self) -> None:
        try:
            for s in self._scripts.values():
                await self.redis.script_load(s.source)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def submit(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command for this tick's pipeline; the future holds its reply.

        A future, not a coroutine: gathering several of them creates no tasks.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((args, fut))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            fut.get_loop().call_soon(self._flush)
        return fut

    async def call(self, *args: Any) -> Any:
        return await self.submit(*args)

    def script(self, script: Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        return self.submit("EVALSHA", script.sha, len(keys), *keys, *args)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        if self._conn is not None and self._conn.connected:
            self._conn.send(batch)  # the common case: no task, replies settle the callers' futures
            return
        run = self._connect_and_send if self._conn is not None else self._run_redispy
        task = asyncio.ensure_future(run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_and_send(self, batch: Batch) -> None:
        assert self._conn is not None
        try:
            await self._conn.connect()
            self._conn.send(batch)
        except StoreUnavailable as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)

    async def _run_redispy(self, batch: Batch) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for args, _ in batch:
                pipe.execute_command(*args)
            results = await pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(StoreUnavailable(f"redis: {exc}"))
            return
        except BaseException as other:  # pragma: no cover - defensive: never leave a waiter hanging
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(other)
            raise
        self._settle(batch, results)

    def _settle(self, batch: Batch, results: list[Any]) -> None:
        for (args, fut), res in zip(batch, results, strict=True):
            self._settle_one(args, fut, res)

    def _settle_one(self, args: tuple[Any, ...], fut: asyncio.Future[Any], res: Any) -> None:
        if fut.done():
            return
        if isinstance(res, NoScriptError) and fut not in self._resubmitted:
            task = asyncio.ensure_future(self._retry_noscript(args, fut))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._resubmitted.discard(fut)
        if isinstance(res, NoScriptError):
            fut.set_exception(res)
        elif isinstance(res, (RedisConnectionError, RedisTimeoutError)):
            fut.set_exception(StoreUnavailable(f"redis: {res}"))
        elif isinstance(res, BaseException):
            fut.set_exception(res)
        else:
            fut.set_result(res)

    async def _retry_noscript(self, args: tuple[Any, ...], fut: asyncio.Future[Any]) -> None:
        """Redis forgot the scripts (restart, failover, SCRIPT FLUSH): load them once, resend once.

        Every command that met NOSCRIPT waits for the same reload and goes out again through this
        pipeline (the same connection, batched), and is not retried a second time.  Resending each
        over its own redis-py connection opened one connection per in-flight command and filled the
        client pool ("Too many connections") under load; found by the fuzz tier.
        """
        try:
            if self._reload is None or self._reload.done():
                self._reload = asyncio.ensure_future(self.load_scripts())
            await asyncio.shield(self._reload)
            again = self.submit(*args)
            self._resubmitted.add(again)
            fut.set_result(await again)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)

    async def drain(self) -> None:
        """Wait for batches in flight (shutdown), then close our own connection."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
