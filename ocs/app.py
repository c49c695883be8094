"""Composition root and lifecycle of ``ocsd``.

Start-up order (issue 6): config -> logging -> stores (Redis, PostgreSQL,
migrations check) -> charging core -> flusher and reaper -> Diameter -> RADIUS
-> HTTP -> READY.  Shutdown is the reverse, bounded to the 10 s of spec
section 1: stop accepting (RADIUS sockets closed, Diameter DPR to every peer),
finish in-flight requests, flush the usage stream, close the stores.

Nothing happens at import time; every long-lived task is owned by an
:class:`contextlib.AsyncExitStack` or a task set, and signal handlers only set
events (design.md, conventions 3-5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog
from redis.asyncio import Redis

from ocs import __version__, compiled, config, sdnotify, stale
from ocs.charging import Charging
from ocs.log import configure as configure_logging
from ocs.log import flush as flush_logs
from ocs.log_sampling import request_lines
from ocs.metrics import Metrics
from ocs.store import POSTGRES_DOWN, migrate
from ocs.store.accounts_view import AccountView
from ocs.store.charging_scripts import ChargingScripts
from ocs.store.fx import FxCache, FxSource, PgFxSource, StaticFxSource
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.session_state import SessionStates
from ocs.store.tariff_cache import PgTariffSource, TariffCache, TariffSource
from ocs.store.tariff_snapshot import SnapshotTariffSource
from ocs.tasks import Supervisor

if TYPE_CHECKING:
    from ocs.workers.link import WorkerLink
    from ocs.workers.pool import WorkerPool

# How long reserve.lua remembers a refusal (no credit, blocked) as the request number's outcome: a
# gateway's retransmission within this gets the same refusal even if credit arrived meanwhile.
REFUSAL_TTL = 120

DRAIN_SECONDS = 8.0
WORKERS_STOP_SECONDS = 5.0  # a supervisor's workers drain their fronts within this, then SIGKILL; then the flush
log = structlog.get_logger("ocsd")


def _tune_gc() -> None:
    """Fewer, not longer, collector pauses on the request path.

    Every request allocates thousands of short-lived objects, and the node-local
    caches (duplicate cache, session states) hold hundreds of thousands of live
    ones; with CPython's default thresholds full collections walked all of them
    every few seconds (40-85 ms pauses seen under RADIUS load).  What start-up
    built (modules, tariffs, dictionaries) is frozen out of collection, and the
    young-generation threshold is raised so survivors are promoted less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def build_core(cfg: config.Config, redis: Redis, metrics: Metrics, source: TariffSource | None = None,
               pool: asyncpg.Pool | None = None, *, keys: Keys | None = None, fx: FxSource | None = None) -> Charging:
    """The charging core and everything it stands on, each built once and injected.

    Tariffs come from ``source`` (tests, benchmarks) or from PostgreSQL through ``pool``,
    remembered in Redis so a daemon (re)started during a PostgreSQL outage rates from there.
    """
    keys = keys or Keys(cfg.redis.key_prefix, cfg.charging.shards)
    rp = AutoPipeline(redis, raw=True)  # the hot path's own pipelined RESP connection
    if source is None:
        if pool is None:
            raise ValueError("a PostgreSQL pool or a tariff source is needed")
        source = SnapshotTariffSource(PgTariffSource(pool), rp, keys)
    if fx is None:  # FX rates: PostgreSQL (and its Redis copy) in the daemon, none unless given in tests
        fx = PgFxSource(pool, rp, keys) if pool is not None else StaticFxSource()
    tariffs = TariffCache(source, rp, keys, cfg.cache.tariff_versions)
    rates = FxCache(fx)
    tariffs.on_change.append(rates.stale)  # one reload signal for tariffs and rates (tariffs:gen, SIGHUP)
    c = cfg.charging
    return Charging(
        cfg, metrics, rp=rp,
        accounts=AccountView(rp, keys, cfg.cache.accounts),
        tariffs=tariffs, fx=rates,
        states=SessionStates(rp, keys, cfg.cache.sessions),
        scripts=ChargingScripts(rp, keys, validity=c.validity_seconds,
                                ttl=c.tombstone_seconds, refusal_ttl=REFUSAL_TTL),
    )


CLOSE_SECONDS = 2.0


async def _bounded(what: str, closing: Awaitable[Any]) -> None:
    """One step of the shutdown, bounded: SIGTERM must end the process within 10 s whatever hangs."""
    try:
        await asyncio.wait_for(closing, CLOSE_SECONDS)
    except TimeoutError:
        log.error("close_timed_out", what=what, seconds=CLOSE_SECONDS)
    except Exception as exc:
        log.warning("close_failed", what=what, error=repr(exc))


async def _close_pool(pool: asyncpg.Pool) -> None:
    """asyncpg's close() waits for every connection to be released; past the bound, terminate."""
    try:
        await asyncio.wait_for(pool.close(), CLOSE_SECONDS)
    except Exception as exc:  # TimeoutError included
        log.error("postgres_pool_terminated", error=repr(exc))
        pool.terminate()


class StartupError(Exception):
    """A dependency is missing or misconfigured at start-up (exit 1, one line)."""


def _redis_client(cfg: config.Config) -> Redis:
    if cfg.redis.cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(cfg.redis.url)  # type: ignore[return-value]
    return Redis.from_url(cfg.redis.url, health_check_interval=10, socket_timeout=5, socket_connect_timeout=2)


async def _open_pool(cfg: config.Config) -> asyncpg.Pool:
    """The pool opens no connection yet (min_size 0): PostgreSQL may be down at start-up."""
    try:
        return await asyncpg.create_pool(cfg.postgres.dsn, min_size=0, max_size=4, timeout=5)
    except (OSError, asyncpg.PostgresError, ValueError) as exc:
        raise StartupError(f"postgres: bad dsn {cfg.postgres.dsn}: {exc}") from None


async def _schema_ok(pool: asyncpg.Pool) -> None:
    """Raises StartupError on an unmigrated schema, POSTGRES_DOWN when PostgreSQL cannot be asked."""
    async with pool.acquire(timeout=5) as conn:
        todo = await migrate.pending(conn)
    if todo:
        raise StartupError(f"postgres: schema not migrated ({', '.join(todo)}); run `ocsctl db migrate`")


class Daemon:
    """Owns every component of one ``ocsd`` process.

    One of three roles (``ocsd --workers N``, :mod:`ocs.workers`): the whole daemon (N = 1, the
    default path: charging, background jobs, API); a supervisor of N >= 2 workers (``workers``:
    listeners, background jobs, API, systemd, the merged /metrics; no charging core); or one of its
    workers (``link``: charging on the inherited listeners, its own control node, nothing else).
    """

    def __init__(self, cfg: config.Config, config_path: str | None = None, *, workers: int = 1,
                 link: WorkerLink | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path  # re-read on SIGHUP (None: $OCS_CONFIG, then config/ocs.toml)
        self.metrics = Metrics()
        self.worker_count = workers  # >= 2: this process supervises that many workers
        self.link = link  # set: this process is a worker of a supervisor
        self.workers: WorkerPool | None = None
        if link is None and workers == 1:
            self.metrics.workers.set(1)  # the one process charges itself
        self.stop_event = asyncio.Event()
        self.reload_event = asyncio.Event()
        self.supervisor = Supervisor(self.metrics, self._fatal)
        self.exit_code = 0
        self.degraded: dict[str, str] = {}  # reason -> what it means for the operator (/readyz, metric)

    def _fatal(self, reason: str) -> None:
        """A failure the daemon cannot carry on with: stop, and exit 1 so systemd restarts it."""
        if self.exit_code == 0:
            log.error("fatal", reason=reason)
        self.exit_code = 1
        self.stop_event.set()

    def _degrade(self, reason: str, meaning: str) -> None:
        if reason not in self.degraded:
            log.warning("degraded", reason=reason, meaning=meaning)
        self.degraded[reason] = meaning
        self.metrics.degraded.labels(reason).set(1)

    def _recover(self, reason: str) -> None:
        if self.degraded.pop(reason, None) is not None:
            log.info("recovered", reason=reason)
        self.metrics.degraded.labels(reason).set(0)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_event.set)
        async with contextlib.AsyncExitStack() as stack:
            await self._start(stack)
            _tune_gc()
            self._announce_ready()
            self.supervisor.spawn(self._watchdog, "sd-watchdog", restart=False)
            while not self.stop_event.is_set():
                waiter = asyncio.ensure_future(self.reload_event.wait())
                stopper = asyncio.ensure_future(self.stop_event.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if self.reload_event.is_set() and not self.stop_event.is_set():
                    self.reload_event.clear()
                    await self._reload()
            sdnotify.stopping()
            log.info("stopping")
            await self._drain()
        log.info("stopped", exit_code=self.exit_code)
        return self.exit_code

    def _announce_ready(self) -> None:
        """READY=1 to systemd and the ``ready`` line; a worker tells its supervisor instead (ocs.workers.link)."""
        if self.link is not None:
            self.link.ready(self.http.bound)
            log.info("worker_ready", node=self.cfg.node.name, worker=self.link.index, **self._addresses())
            return
        sdnotify.ready()  # a supervisor gets here once every worker is ready (_start_workers waited)
        log.info("ready", node=self.cfg.node.name, version=__version__, compiled=compiled(), **self._addresses())

    def _addresses(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.workers is not None:
            out.update(self.listeners.bound(), workers=self.worker_count)
        for name in ("diameter", "radius", "http", "api"):
            comp = getattr(self, name, None)
            if comp is not None:
                out[name] = comp.bound
        return out

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        await self._start_stores(stack)
        if self.worker_count > 1:  # a supervisor: no charging core here, its workers charge
            self.keys = Keys(self.cfg.redis.key_prefix, self.cfg.charging.shards)
            await self._start_workers(stack)
            self._start_tasks()  # once the workers serve: a start that failed has run no job
            await self._start_api()
            return
        await self._start_core(stack)
        if self.link is None:
            self._start_tasks()
        elif self.degraded:  # a worker leaves the background jobs to its supervisor, but mends its own state
            self.supervisor.spawn(self._postgres_watch, "postgres-watch")
        await self._start_fronts()
        self._start_control()
        await self._start_api()  # off in a worker (its config has no api.listen)
        if self.link is not None:
            self.supervisor.spawn(functools.partial(self.link.keep, self.metrics.requests_answered,
                                                    self.stop_event.set), "supervisor-link", restart=False)

    async def _start_stores(self, stack: contextlib.AsyncExitStack) -> None:
        cfg = self.cfg
        self.redis = _redis_client(cfg)
        stack.push_async_callback(_bounded, "redis", self.redis.aclose())
        try:
            await self.redis.ping()
        except Exception as exc:
            raise StartupError(f"redis: cannot connect to {cfg.redis.url}: {exc}") from None
        self.pool = await _open_pool(cfg)
        stack.push_async_callback(_close_pool, self.pool)
        await self._check_schema(starting=True)

    async def _start_core(self, stack: contextlib.AsyncExitStack) -> None:
        from ocs.store.tariff_snapshot import NoSnapshot

        self.keys = Keys(self.cfg.redis.key_prefix, self.cfg.charging.shards)
        self.core = build_core(self.cfg, self.redis, self.metrics, pool=self.pool, keys=self.keys)
        try:
            await self.core.start()
        except (NoSnapshot, *POSTGRES_DOWN) as exc:
            raise StartupError(f"postgres: unreachable and no tariff snapshot in Redis to charge from: {exc}") from None
        stack.push_async_callback(_bounded, "core", self.core.close())

    def _start_tasks(self) -> None:
        from ocs.store.flush import Flusher
        from ocs.store.reaper import Reaper

        jobs = AutoPipeline(self.redis)  # background jobs share one redis-py pipeline (parsed replies)
        self.flusher = Flusher(self.cfg, self.redis, self.pool, self.metrics, keys=self.keys, rp=jobs)
        self.reaper = Reaper(self.cfg, self.redis, self.metrics, keys=self.keys, rp=jobs)
        spawn = self.supervisor.spawn
        spawn(self.flusher.run, "flusher")
        spawn(self.flusher.run_lag, "usage-lag")
        spawn(self.reaper.run, "reaper")
        spawn(self._ledger_sweep, "ledger-sweep")
        self._start_offline(spawn)
        if self.degraded:
            spawn(self._postgres_watch, "postgres-watch")

    def _start_offline(self, spawn: Callable[..., Any]) -> None:
        """Work beside charging, PostgreSQL only: alert and invoice mail delivery (the outbox) and the
        daily billing run (fees, dunning; once a day across all nodes, docs/billing.md)."""
        from ocs.billing import mail as billing_mail
        from ocs.billing.daily import DailyRun
        from ocs.control.alerts_delivery import AlertDelivery

        self.alerts = AlertDelivery(self.cfg, self.pool, self.metrics, mail_renderers=billing_mail.MAIL_RENDERERS)
        self.daily = DailyRun(self.cfg, self.pool, self.redis, self.keys)
        spawn(self.alerts.run, "alerts")
        spawn(self.daily.run, "billing-daily")

    async def _start_fronts(self) -> None:
        from ocs.diameter.server import DiameterServer
        from ocs.http import HttpServer
        from ocs.radius.server import RadiusServer

        if self.link is not None:  # a worker: serve the listeners its supervisor bound
            diameter_socks, radius_socks = self.link.listeners()
            self.diameter = DiameterServer(self.cfg, self.core, self.metrics, diameter_socks)
            self.radius = RadiusServer(self.cfg, self.core, self.metrics, radius_socks)
        else:
            self.diameter = DiameterServer(self.cfg, self.core, self.metrics)
            self.radius = RadiusServer(self.cfg, self.core, self.metrics)
        self.http = HttpServer(self.cfg.http.listen, self.metrics, self._checks())
        for name, front in (("diameter", self.diameter), ("radius", self.radius), ("http", self.http)):
            try:
                await front.start()
            except OSError as exc:  # a port taken, an address not ours: one line, exit 1
                raise StartupError(f"{name}: cannot listen: {exc}") from None

    async def _start_workers(self, stack: contextlib.AsyncExitStack) -> None:
        """A supervisor: bind the listeners once, serve http.listen, start the workers and wait until all are ready."""
        from ocs.http import HttpServer
        from ocs.workers.listeners import ListenError, Listeners
        from ocs.workers.pool import WorkerFailed, WorkerPool

        try:
            self.listeners = Listeners.bind(self.cfg)
        except ListenError as exc:  # a port taken, an address not ours: one line, exit 1
            raise StartupError(str(exc)) from None
        stack.callback(self.listeners.close)
        self.workers = pool = WorkerPool(self.worker_count, self.listeners, self.metrics, self.cfg.node.name,
                                         self.config_path)
        self.http = HttpServer(self.cfg.http.listen, self.metrics, self._checks(),
                               exposition=functools.partial(pool.exposition, self.metrics.registry))
        try:
            await self.http.start()
        except OSError as exc:
            raise StartupError(f"http: cannot listen: {exc}") from None
        stack.push_async_callback(self.http.stop)
        stack.push_async_callback(pool.stop, WORKERS_STOP_SECONDS)  # start-up failed: no worker left behind
        try:
            await pool.start()
        except WorkerFailed as exc:
            raise StartupError(str(exc)) from None

    def _start_control(self) -> None:
        """Server-initiated control (docs/control.md): this node's command stream and registry entry."""
        from ocs.control.node import ControlNode
        from ocs.store.control_bus import ControlBus

        self.control = ControlNode(self.cfg.node.name, ControlBus(self.redis, self.keys), self.core, self.diameter,
                                   self.radius, self.metrics)
        self.core.settlement.on_credit_limit = self.control.credit_limit
        self.diameter.state.peer_listeners.append(self.control.peer_changed)
        self.supervisor.spawn(self.control.run, "control")
        self.supervisor.spawn(self.control.heartbeats, "control-heartbeat")

    async def _start_api(self) -> None:
        """The REST API (docs/api.md) on ``api.listen``, in this loop beside the charging path; off when empty."""
        self.api = None
        if not self.cfg.api.listen:
            return
        from ocs.api.server import ApiServer

        answered = self.workers.answered if self.workers is not None else self.metrics.requests_answered
        self.api = ApiServer(self.cfg, self.redis, self.keys, answered, metrics=self.metrics)
        try:
            await self.api.start()
        except OSError as exc:
            raise StartupError(f"api: cannot listen: {exc}") from None

    async def _check_schema(self, *, starting: bool = False) -> bool:
        """True once PostgreSQL answered with a migrated schema.

        Unreachable at start-up is no reason to refuse: charging needs nothing from PostgreSQL
        on the request path (tariffs come from the Redis snapshot, records wait in the stream),
        so the daemon starts degraded and :meth:`_postgres_watch` checks again.  An unmigrated
        schema at start-up is refused (StartupError), as before.
        """
        try:
            await _schema_ok(self.pool)
        except POSTGRES_DOWN as exc:
            self._degrade("postgres_down", f"PostgreSQL unreachable ({type(exc).__name__}): charging from the"
                          " Redis tariff snapshot, usage records wait in the Redis stream")
            return False
        except StartupError as exc:
            if starting:
                raise
            self._degrade("schema_not_migrated", str(exc))
            return False
        self._recover("postgres_down")
        self._recover("schema_not_migrated")
        return True

    async def _postgres_watch(self) -> None:
        """Until PostgreSQL answers with a migrated schema (started degraded), then done."""
        while not await self._check_schema():  # noqa: ASYNC110 - polling PostgreSQL, there is no event to wait on
            await asyncio.sleep(2)

    def _checks(self) -> dict[str, Callable[[], Awaitable[None]]]:
        async def redis_ok() -> None:
            await self.redis.ping()

        async def pg_ok() -> None:
            async with self.pool.acquire(timeout=1) as conn:
                await conn.fetchval("SELECT 1")

        async def not_degraded() -> None:
            if self.degraded:
                raise RuntimeError("; ".join(f"{k}: {v}" for k, v in sorted(self.degraded.items())))

        checks: dict[str, Callable[[], Awaitable[None]]] = {"redis": redis_ok, "postgres": pg_ok,
                                                            "degraded": not_degraded}
        if self.workers is not None:
            checks["workers"] = self.workers.check  # ready when every worker is
        return checks

    async def _reload(self) -> None:
        """SIGHUP: re-read the config file for RADIUS clients and the log line budget, reload tariffs; sessions stay."""
        try:
            new = config.load(self.config_path)
        except config.ConfigError as exc:
            log.error("reload_failed", error=str(exc))
            return
        if self.workers is not None:  # a supervisor: its workers reload (the config checked once, here)
            log.info("reload_forwarded", workers=self.workers.signal(signal.SIGHUP))
            return
        self.radius.reload_clients(new.radius.clients)
        request_lines.configure(new.log.request_lines_per_second)  # sampling on/off without a restart
        await self.core.reload_tariffs()
        log.info("reloaded", radius_clients=len(new.radius.clients))

    async def _ledger_sweep(self) -> None:
        """Apply ledger rows an interrupted ``ocsctl topup`` left unapplied (docs/architecture.md)."""
        from ocs.store import provision

        keys = self.keys
        while True:
            await asyncio.sleep(30)
            try:
                async with self.pool.acquire(timeout=5) as conn:
                    rows = await provision.apply_pending_rows(conn, self.redis, keys)
                if rows:
                    log.info("ledger_sweep_applied", rows=len(rows))
                for account in {r["account_id"] for r in rows if r["amount"] > 0}:
                    await self._credited(account)  # sessions cut short get the larger grant
            except Exception as exc:  # an outage: try again next round
                log.warning("ledger_sweep_failed", error=repr(exc))

    async def _credited(self, account: str) -> None:
        """Re-authorize the account's sessions: through this node's control, or (a supervisor, no control
        node of its own) dispatched to the workers holding them, as ``ocsctl topup`` does."""
        if self.workers is None:
            self.control.credited(account)
            return
        from ocs.control.dispatch import Dispatcher
        from ocs.store.control_bus import ControlBus

        done = await Dispatcher(ControlBus(self.redis, self.keys)).reauth_account(account)
        log.info("control_dispatched", what="reauth", account=account, sent=done.sent,
                 unroutable=len(done.unroutable))

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if not interval:
            return
        while True:
            await asyncio.sleep(interval / 2)
            if self.workers is None or self.workers.live():  # a supervisor whose workers all died says nothing
                sdnotify.watchdog()

    async def _drain(self) -> None:
        """Bounded shutdown: fronts first (no new work), then flush, then tasks."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS

        def left() -> float:
            return max(0.5, deadline - loop.time())

        if self.api is not None:  # first: no new operator work while the fronts drain
            await self.api.stop()
        if self.workers is not None:  # a supervisor: the workers drain their fronts (as below), then exit
            await self.workers.stop(timeout=min(WORKERS_STOP_SECONDS, left()))
        else:
            await _bounded("control", self.control.leave())  # no command is routed here any more
            await asyncio.gather(
                self.radius.stop(timeout=min(3.0, left())),
                self.diameter.stop(timeout=min(3.0, left())),
                return_exceptions=True,
            )
        if self.link is None:  # a worker's records are flushed by its supervisor, once every worker stopped
            await self._final_flush(left())
        await self.http.stop()
        await self.supervisor.cancel_all()

    async def _final_flush(self, timeout: float) -> None:
        # asyncio.wait, not wait_for: wait_for waits for the cancelled flush to unwind, unbounded
        flush = asyncio.ensure_future(self.flusher.flush_all())
        await asyncio.wait({flush}, timeout=timeout)
        if not flush.done():
            flush.cancel()
            log.warning("final_flush_cut_short", records_left_in="redis stream (flushed at the next start)")
        elif not flush.cancelled() and flush.exception() is not None:
            log.warning("final_flush_failed", error=repr(flush.exception()))


def _count(text: str) -> int:
    n = int(text)
    if not 0 <= n <= config.MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be 0 (one per core) to {config.MAX_WORKERS}")
    return n


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ocsd", description="Online charging daemon (Diameter Gy/Ro, RADIUS).")
    p.add_argument("--config", help="config file (default: $OCS_CONFIG, then config/ocs.toml)")
    p.add_argument("--version", action="version",
                   version=f"ocsd {__version__} ({'compiled' if compiled() else 'pure Python'})")
    p.add_argument("--workers", type=_count, metavar="N",
                   help="charging processes sharing the ports under one supervisor (default: node.workers;"
                        " 0 = one per core; 1 = one process, no supervisor)")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)  # set by the supervisor for its workers
    p.add_argument("--inherit", help=argparse.SUPPRESS)  # the descriptors a worker inherits (ocs.workers.listeners)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print(f"ocsd: config: {exc}", file=sys.stderr)
        return 2
    configure_logging(cfg.log.level, cfg.log.format, cfg.log.request_lines_per_second)
    if stale() and args.worker is None:  # an edited hot module: its binary is not run, nor the others
        log.warning("compiled_modules_stale", reason=stale())
    try:
        import uvloop

        runner: Callable[..., Any] = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a pinned dependency
        runner = asyncio.run
    link = None
    if args.worker is not None:  # one of a supervisor's workers (ocs.workers)
        from ocs.workers.link import WorkerLink

        link = WorkerLink.parse(args.worker, args.inherit)
        cfg = link.config(cfg)
        structlog.contextvars.bind_contextvars(worker=args.worker)  # on every line it logs
        daemon = Daemon(cfg, args.config, link=link)
    else:
        from ocs.workers import resolve

        daemon = Daemon(cfg, args.config, workers=resolve(args.workers, cfg.node.workers))
    try:
        return int(runner(daemon.run()))
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))
        if link is not None:  # the supervisor prints ocsd's one line
            link.failed(str(exc))
            return 1
        print(f"ocsd: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        return 0
    finally:
        flush_logs()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
