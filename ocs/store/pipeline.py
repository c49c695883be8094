"""Auto-pipelining: every Redis command issued in one event-loop tick goes out as one pipeline.

Why: redis-py costs ~85 µs of client CPU per awaited call but ~25 µs per call
inside a pipeline (design.md, "Library facts").  Concurrent requests each
``await pipe.call(...)``; the first call of a tick schedules a flush with
``call_soon``, so everything issued before the loop gets back to I/O shares one
round trip.  Errors are per command; a connection failure fails the whole batch
with :class:`ocs.model.StoreUnavailable`.  NOSCRIPT (a restarted or failed-over
Redis forgot the scripts) reloads every registered script and retries once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ocs.model import StoreUnavailable
from ocs.store.scripts import Script

MAX_BATCH = 512


class AutoPipeline:
    """Batches commands issued in the same loop tick into one pipeline round trip."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._scripts: dict[str, Script] = {}

    def register(self, *scripts: Script) -> None:
        for s in scripts:
            self._scripts[s.sha] = s

    async def load_scripts(self) -> None:
        try:
            for s in self._scripts.values():
                await self.redis.script_load(s.source)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def call(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((args, fut))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    async def script(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.ensure_future(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
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
        except BaseException as exc:  # pragma: no cover - defensive: never leave a waiter hanging
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            raise
        for (args, fut), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, NoScriptError):
                await self._retry_noscript(args, fut)
            elif isinstance(res, (RedisConnectionError, RedisTimeoutError)):
                fut.set_exception(StoreUnavailable(f"redis: {res}"))
            elif isinstance(res, (RedisError, Exception)):
                fut.set_exception(res)
            else:
                fut.set_result(res)

    async def _retry_noscript(self, args: tuple[Any, ...], fut: asyncio.Future[Any]) -> None:
        try:
            await self.load_scripts()
            fut.set_result(await self.redis.execute_command(*args))  # type: ignore[no-untyped-call]
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            fut.set_exception(StoreUnavailable(f"redis: {exc}"))
        except Exception as exc:
            fut.set_exception(exc)

    async def drain(self) -> None:
        """Wait for batches in flight (shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
