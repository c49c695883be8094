"""The API's HTTP server inside ``ocsd``: uvicorn on ``api.listen``, on the daemon's own event loop.

Why embedded and not a second process: the API calls the same services as ``ocsctl`` against the
same Redis and PostgreSQL, and one process per node is what operators run.  The charging path
shares the loop, so the API is kept from crowding it out: every handler is async (I/O on the
asyncpg pool and the shared redis-py pool), requests in flight are capped (``api.max_inflight``)
and the API has its own small PostgreSQL pool (``api.pool_size``), never the usage flusher's.

uvicorn's ``serve()`` installs SIGINT/SIGTERM handlers; :class:`_Server` turns that off so ocsd
keeps its shutdown order (API first, then the protocol fronts, docs/api.md).  The socket is bound
here, before uvicorn runs, so a port in use fails ocsd's start with one line instead of uvicorn's
``sys.exit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import asyncpg
import structlog
import uvicorn
from redis.asyncio import Redis

from ocs import config
from ocs.api.app import guarded
from ocs.api.deps import Services
from ocs.api.tokens import TokenCache
from ocs.metrics import Metrics
from ocs.store.keys import Keys

log = structlog.get_logger("ocs.api")
STOP_SECONDS = 2.0


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """ocsd owns the signals (ocs/app.py): no handler of uvicorn's."""
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ApiServer:
    def __init__(self, cfg: config.Config, redis: Redis, keys: Keys,
                 requests_total: Callable[[], float] | None = None, *, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.requests_total = requests_total
        self.redis = redis
        self.keys = keys
        self.host, self.port = config.split_hostport(cfg.api.listen)
        self.sock: socket.socket | None = None
        self.pool: asyncpg.Pool | None = None
        self.server: _Server | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def bound(self) -> tuple[str, int]:
        if self.sock is None:
            return self.host, self.port
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        """Bind (OSError when the port is taken), open the pool lazily, run uvicorn as an owned task."""
        self.sock = _bind(self.host, self.port)
        self.pool = await asyncpg.create_pool(self.cfg.postgres.dsn, min_size=0, max_size=self.cfg.api.pool_size,
                                              timeout=5, command_timeout=30)
        svc = Services(self.cfg, self.pool, self.redis, self.keys,
                       TokenCache(self.pool, self.cfg.api.token_cache_seconds), self.requests_total, self.metrics)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # ocsd logs its own "ready" line
        uv = uvicorn.Config(guarded(svc), log_config=None, access_log=False, lifespan="off",
                            timeout_graceful_shutdown=int(STOP_SECONDS), server_header=False,
                            timeout_keep_alive=30, limit_concurrency=None)
        self.server = _Server(uv)
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="api")
        while not self.server.started and not self.task.done():  # noqa: ASYNC110 - uvicorn exposes a flag only
            await asyncio.sleep(0.01)
        if self.task.done():
            self.task.result()  # raises what stopped it

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (bounded), close the pool."""
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            done, _ = await asyncio.wait({self.task}, timeout=STOP_SECONDS + 1)
            if not done:
                self.server.force_exit = True
                self.task.cancel()
                await asyncio.wait({self.task}, timeout=1)
                log.warning("api_stop_cut_short")
        if self.sock is not None:
            self.sock.close()
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), STOP_SECONDS)
            except Exception:  # TimeoutError included: connections still busy
                self.pool.terminate()
