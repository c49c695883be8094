"""Owned background tasks: restarted with back-off, or fatal with a non-zero exit.

A charging daemon woken at 3 a.m. must not stop charging because a background
loop hit a bug, and must never *look* healthy to systemd while it is not.  So
every long-lived task is spawned here, one of two ways:

- ``restart=True`` (flusher, reaper, sweeps): an unexpected exception is logged
  at error level with the reason, counted in ``ocs_task_restarts_total``, and
  the loop is started again after a back-off (1 s doubling to 60 s, back to 1 s
  after a minute of health);
- ``restart=False``: the failure is fatal; ``on_fatal`` stops the daemon, which
  then exits 1 (never 0: ``Restart=on-failure`` must restart it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from ocs.metrics import Metrics

log = structlog.get_logger("ocs.tasks")
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 60.0
HEALTHY_SECONDS = 60.0


class Supervisor:
    def __init__(self, metrics: Metrics, on_fatal: Callable[[str], None]) -> None:
        self.metrics = metrics
        self.on_fatal = on_fatal
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, factory: Callable[[], Awaitable[Any]], name: str, *, restart: bool = True) -> None:
        """Run ``factory()`` as an owned task named ``name`` (a factory: a restart needs a new coroutine)."""
        coro = self._supervise(factory, name) if restart else factory()
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    async def _supervise(self, factory: Callable[[], Awaitable[Any]], name: str) -> None:
        backoff = FIRST_BACKOFF
        while True:
            started = time.monotonic()
            try:
                await factory()
                reason = "returned"  # a loop task never returns: treat it as a failure too
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started > HEALTHY_SECONDS:
                backoff = FIRST_BACKOFF
            self.metrics.child(self.metrics.task_restarts, name).inc()
            log.error("task_failed_restarting", task=name, error=reason, restart_in=backoff, exc_info=True)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return  # cancelled at shutdown, or a task that had finished its job
        exc = task.exception()
        reason = f"{type(exc).__name__}: {exc}"
        log.error("task_failed_fatal", task=task.get_name(), error=reason)
        self.on_fatal(f"task {task.get_name()} failed: {reason}")

    async def cancel_all(self, timeout: float = 2.0) -> None:
        """Cancel every task and wait for them, bounded: a task that does not end is named in the log."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _done, stuck = await asyncio.wait(tasks, timeout=timeout)
        if stuck:
            log.error("tasks_not_cancelled", tasks=sorted(t.get_name() for t in stuck), timeout=timeout)
