"""HTTP on ``http.listen``: ``/metrics`` (Prometheus text), ``/healthz``, ``/readyz`` (docs/observability.md).

A deliberately tiny HTTP/1.1 server on asyncio streams (no web framework in the
daemon): GET/HEAD only, one request per connection, bounded header size and
read timeout, 400 for anything malformed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ocs.config import split_hostport
from ocs.metrics import Metrics

Check = Callable[[], Awaitable[None]]
Exposition = Callable[[], Awaitable[bytes]]
READ_TIMEOUT = 5.0
CHECK_TIMEOUT = 1.0


class HttpServer:
    def __init__(self, listen: str, metrics: Metrics, checks: dict[str, Check],
                 exposition: Exposition | None = None) -> None:
        self.host, self.port = split_hostport(listen)
        self.metrics = metrics
        self.checks = checks
        # what /metrics serves when not this process's registry alone: a supervisor's merge of its workers'
        self.exposition = exposition
        self.server: asyncio.Server | None = None

    @property
    def bound(self) -> tuple[str, int]:
        if self.server is None or not self.server.sockets:
            return self.host, self.port
        host, port = self.server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def readiness(self) -> list[str]:
        """Failing dependencies, as ``name: error`` lines (empty when ready)."""
        async def run(name: str, check: Check) -> str | None:
            try:
                await asyncio.wait_for(check(), CHECK_TIMEOUT)
            except Exception as exc:
                self.metrics.dependency_up.labels(name).set(0)
                return f"{name}: {type(exc).__name__} {exc}".strip()
            self.metrics.dependency_up.labels(name).set(1)
            return None

        results = await asyncio.gather(*(run(n, c) for n, c in self.checks.items()))
        return [r for r in results if r]

    async def _route(self, path: str) -> tuple[int, str, bytes]:
        if path == "/metrics":
            if self.exposition is not None:
                return 200, CONTENT_TYPE_LATEST, await self.exposition()
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            failing = await self.readiness()
            if failing:
                return 503, "text/plain", ("\n".join(failing) + "\n").encode()
            return 200, "text/plain", b"ready\n"
        return 404, "text/plain", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or parts[0] not in ("GET", "HEAD") or not parts[2].startswith("HTTP/1."):
                status, ctype, body = 400, "text/plain", b"bad request\n"
            else:
                status, ctype, body = await self._route(parts[1].split("?", 1)[0])
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            if parts and parts[0] != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
