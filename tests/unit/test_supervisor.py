"""A background task that fails is restarted with back-off, or stops the daemon with exit 1 (never 0)."""

from __future__ import annotations

import asyncio

import pytest

from ocs import tasks
from ocs.metrics import Metrics
from ocs.tasks import Supervisor


async def test_restartable_task_is_started_again_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "FIRST_BACKOFF", 0.01)
    fatal: list[str] = []
    metrics = Metrics()
    sup = Supervisor(metrics, fatal.append)
    runs = 0
    done = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise OverflowError("value out of int32 range")
        done.set()
        await asyncio.sleep(3600)

    sup.spawn(flaky, "flusher")
    await asyncio.wait_for(done.wait(), 5)
    assert runs == 3 and not fatal
    assert metrics.task_restarts.labels("flusher")._value.get() == 2
    await sup.cancel_all()
    assert not sup.tasks


async def test_fatal_task_failure_reports_the_reason() -> None:
    fatal: list[str] = []
    sup = Supervisor(Metrics(), fatal.append)

    async def broken() -> None:
        raise RuntimeError("boom")

    sup.spawn(broken, "watchdog", restart=False)
    for _ in range(50):
        if fatal:
            break
        await asyncio.sleep(0.01)
    assert fatal == ["task watchdog failed: RuntimeError: boom"]


async def test_daemon_exit_code_is_non_zero_after_a_fatal_failure() -> None:
    from ocs import config
    from ocs.app import Daemon

    d = Daemon(config.from_mapping({}, env={}))
    assert d.exit_code == 0
    d._fatal("task x failed: boom")
    assert d.exit_code == 1 and d.stop_event.is_set()


async def test_cancel_all_is_bounded_even_when_a_task_ignores_cancellation() -> None:
    """SIGTERM must end ocsd within 10 s: a task that swallows its cancellation cannot hold the drain."""
    import time

    sup = Supervisor(Metrics(), lambda _r: None)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # the bug this guards against: a loop that eats CancelledError

    sup.spawn(stubborn, "stubborn", restart=False)
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await sup.cancel_all(timeout=0.2)
    assert time.monotonic() - t0 < 1.0
    release.set()
    for task in list(sup.tasks):
        task.cancel()
        await asyncio.wait({task}, timeout=1)
