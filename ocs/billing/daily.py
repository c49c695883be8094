"""The daemon's daily billing run (docs/billing.md, "Daily run"): the fee run, then the steps after it.

Every node runs :meth:`DailyRun.run`; each step is done at most once per UTC calendar day across
all of them:

- a node checks every ``check_seconds`` (5 minutes) and takes a PostgreSQL advisory lock with
  ``pg_try_advisory_lock``: while one node runs the steps, the others skip that check (the lock
  belongs to the node's connection, so a node that dies releases it);
- a step done for the day has a finished row in ``billing_daily_runs`` (day, step): the node that
  gets the lock next skips it.  A step that failed has no finished row and is tried again at the
  next check, by whichever node; the steps are idempotent (fees are posted once by their own
  key), so a retry after a crash mid-step finishes the work without repeating it.

The steps are a list of ``(name, step)``: a step is ``async def step(day: Day) -> str`` (the
result line kept on the row).  The dunning step (block overdue postpaid accounts) goes after
``fees`` in :data:`STEPS`.  Offline work only: nothing here runs inside a charging request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg
import structlog
from redis.asyncio import Redis

from ocs import config
from ocs.billing import dunning, fees
from ocs.store.keys import Keys
from ocs.store.provision import Conn

log = structlog.get_logger("ocs.billing.daily")
LOCK_KEY = 0x0C5D_B111  # pg advisory lock of the daily run (migrations use 0x0C5DB001)
CHECK_SECONDS = 300.0


@dataclass(frozen=True)
class Day:
    """What a step gets: the stores, the config, and the run's UTC day and instant."""

    cfg: config.Config
    conn: Conn
    redis: Redis
    keys: Keys
    day: date
    now: datetime


Step = Callable[[Day], Awaitable[str]]


async def fees_step(day: Day) -> str:
    """Post every fee due today in each account's timezone (``ocsctl fees run``)."""
    done = await fees.run(day.conn, day.redis, day.keys, day.now)
    unapplied = f"; not in Redis, left in the ledger: {', '.join(done.unapplied)}" if done.unapplied else ""
    return f"{len(done.posted)} fees posted{unapplied}"


async def dunning_step(day: Day) -> str:
    """Block postpaid accounts with an invoice unpaid ``billing.block_overdue_days`` past due (0 = off)."""
    days = day.cfg.billing.block_overdue_days
    if days <= 0:
        return "off (billing.block_overdue_days = 0)"
    blocked = await dunning.block_overdue(day.conn, day.redis, day.keys, day.day, days=days)
    return f"{len(blocked)} accounts blocked" + (f": {', '.join(blocked[:20])}" if blocked else "")


STEPS: list[tuple[str, Step]] = [
    ("fees", fees_step),
    ("dunning", dunning_step),  # after the fees: a day's work is posted before anyone is blocked
]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DailyRun:
    """Runs :data:`STEPS` (or ``steps``) once per UTC day across all nodes; see the module docstring."""

    def __init__(self, cfg: config.Config, pool: asyncpg.Pool, redis: Redis, keys: Keys, *,
                 steps: list[tuple[str, Step]] | None = None, clock: Callable[[], datetime] = _utc_now,
                 check_seconds: float = CHECK_SECONDS) -> None:
        self.cfg = cfg
        self.pool = pool
        self.redis = redis
        self.keys = keys
        self.steps = list(STEPS if steps is None else steps)
        self.clock = clock
        self.check_seconds = check_seconds

    async def run(self) -> None:
        """Forever: check, then wait ``check_seconds``.  PostgreSQL away: try again at the next check."""
        while True:
            try:
                await self.once()
            except Exception as exc:  # an outage or a bug: logged, tried again at the next check
                log.warning("daily_run_failed", error=repr(exc))
            await asyncio.sleep(self.check_seconds)

    async def once(self) -> list[str]:
        """Run today's steps not yet done, if no other node is running them; returns the names run here."""
        now = self.clock().astimezone(UTC)
        async with self.pool.acquire(timeout=5) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                return []  # another node is at it
            try:
                return await self._steps(conn, Day(self.cfg, conn, self.redis, self.keys, now.date(), now))
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)

    async def _steps(self, conn: Conn, day: Day) -> list[str]:
        done = {r["step"] for r in await conn.fetch(
            "SELECT step FROM billing_daily_runs WHERE day = $1 AND finished_at IS NOT NULL", day.day)}
        ran = []
        for name, step in self.steps:
            if name not in done:
                await self._step(conn, name, step, day)
                ran.append(name)
        return ran

    async def _step(self, conn: Conn, name: str, step: Step, day: Day) -> None:
        """One step, recorded; its failure is logged and leaves the day's row unfinished (retried)."""
        await conn.execute(
            "INSERT INTO billing_daily_runs(day, step, node) VALUES ($1, $2, $3) ON CONFLICT (day, step)"
            " DO UPDATE SET node = EXCLUDED.node, started_at = now(), result = ''", day.day, name, self.cfg.node.name)
        try:
            result = await step(day)
        except Exception as exc:  # the next steps are independent of this one: they still run
            log.error("daily_step_failed", step=name, day=day.day.isoformat(), error=repr(exc), exc_info=True)
            await conn.execute("UPDATE billing_daily_runs SET result = $3 WHERE day = $1 AND step = $2",
                               day.day, name, f"failed: {exc!r}"[:1000])
            return
        await conn.execute("UPDATE billing_daily_runs SET finished_at = now(), result = $3"
                           " WHERE day = $1 AND step = $2", day.day, name, result)
        log.info("daily_step_done", step=name, day=day.day.isoformat(), result=result)
