"""Sampling of the per-request info lines (``ccr``, ``access``, ``accounting``) under load.

One info line per request costs a few per cent of ocsd's CPU under load (a profile put the
structlog call plus the line write at ~5 % per request), and at thousands of requests a second
the lines say little an operator reads one by one. So those lines, and only those, pass freely
up to ``log.request_lines_per_second`` a second per process; beyond it they are dropped, and once
a second in which lines were dropped one info line ``request_lines_sampled`` says how many, per
event name, so a quiet log under load is never mistaken for no traffic. ``0`` is no limit: every
line is written (the operator's switch to turn sampling off). Warnings and errors never come
here: a caller asks :meth:`RequestLines.allow` only before a per-request ``log.info``.

The check is first, then the call, so a dropped line does not even build its keyword dict::

    if request_lines.allow("ccr"):
        log.info("ccr", session=..., ...)

While the budget lasts the check is one attribute test and one decrement (no clock read); the
clock is read only once the budget of the current second is spent. The budget is one fixed
window of one second starting at the first line after the previous window ended: at most
``per_second`` lines in any such window, so at most that many a second on average.
"""

from __future__ import annotations

import asyncio
from time import monotonic

import structlog

_UNLIMITED_REFILL = 1 << 62  # with no limit a refill lasts for ever in practice; no clock read per line


class RequestLines:
    """A per-second budget of per-request info lines, with a count of the lines dropped."""

    __slots__ = ("_dropped", "_left", "_report_pending", "_timer_handle", "_until", "per_second")

    def __init__(self, per_second: int = 0) -> None:
        self.per_second = 0
        self._left = 0
        self._until = 0.0
        self._dropped: dict[str, int] = {}
        self._report_pending = False
        self._timer_handle: asyncio.TimerHandle | None = None
        self.configure(per_second)

    def configure(self, per_second: int) -> None:
        """Set the budget (0: no limit). Takes effect at once; drops counted so far are reported.

        Also forgets a report timer of a loop that may be gone (a test's loop), so a new window starts.
        """
        if per_second < 0:
            raise ValueError(f"per_second must not be negative, got {per_second}")
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        self._timer_handle, self._report_pending = None, False
        self.report()
        self.per_second = per_second
        self._left = per_second or _UNLIMITED_REFILL
        self._until = monotonic() + 1.0

    def allow(self, event: str) -> bool:
        """May a per-request info line ``event`` be written now? Counts it as dropped if not."""
        if self._left:
            self._left -= 1
            return True
        return self._spent(event)

    def _spent(self, event: str) -> bool:
        """The budget is spent: a new window if the current one is over, else one more drop."""
        dropped = self._dropped
        if self._report_pending:  # the window is not over before its timer fires: no clock read per drop
            dropped[event] = dropped.get(event, 0) + 1
            return False
        now = monotonic()
        if now >= self._until or not self.per_second:
            self.report()  # outside a loop no timer reported the last window's drops
            self._until = now + 1.0
            self._left = (self.per_second or _UNLIMITED_REFILL) - 1
            return True
        dropped[event] = dropped.get(event, 0) + 1
        self._schedule(self._until - now)
        return False

    def _schedule(self, delay: float) -> None:
        """Report this window's drops when it ends (in a running loop; else at the next window or exit)."""
        loop = asyncio._get_running_loop()  # None outside a loop, without the cost of raising per drop
        if loop is None:
            return
        self._report_pending = True
        self._timer_handle = loop.call_later(delay, self._timer)

    def _timer(self) -> None:
        self._timer_handle, self._report_pending = None, False
        self.report()

    def report(self) -> None:
        """Write one ``request_lines_sampled`` line with the drops counted since the last one, if any."""
        if not self._dropped:
            return
        dropped, self._dropped = self._dropped, {}
        # looked up per report (once a second at most), so a re-configured structlog is followed
        structlog.get_logger("ocs.log").info("request_lines_sampled", dropped=dropped, total=sum(dropped.values()),
                                             per_second=self.per_second)

    def dropped(self) -> dict[str, int]:
        """Drops counted and not yet reported, per event name (tests, diagnostics)."""
        return dict(self._dropped)


request_lines = RequestLines()
"""The process's sampler: no limit until :func:`ocs.log.configure` sets ``log.request_lines_per_second``."""
