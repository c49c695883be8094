"""ocs.http.HttpServer on a real socket: /metrics parses, /healthz, /readyz 200/503, robustness."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

import ocs.http
from ocs.http import HttpServer
from ocs.metrics import Metrics


class Flag:
    """A readiness check whose outcome the test flips."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    async def __call__(self) -> None:
        if self.error is not None:
            raise self.error


async def hang() -> None:
    await asyncio.sleep(30)


async def request(server: HttpServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = server.bound
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


@pytest.fixture
def redis_check() -> Flag:
    return Flag()


@pytest.fixture
async def server(redis_check: Flag) -> AsyncIterator[HttpServer]:
    metrics = Metrics()
    metrics.requests.labels("diameter", "initial", "success").inc(3)
    srv = HttpServer("127.0.0.1:0", metrics, {"redis": redis_check, "postgres": Flag()})
    await srv.start()
    assert srv.bound[1] != 0
    yield srv
    await srv.stop()


async def test_metrics_parse(server: HttpServer) -> None:
    status, headers, body = await request(server, get("/metrics"))
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE_LATEST
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert "ocs_requests" in fams and "ocs_dependency_up" in fams
    sample = next(s for s in fams["ocs_requests"].samples if s.name == "ocs_requests_total")
    assert sample.value == 3 and sample.labels["result"] == "success"


async def test_healthz(server: HttpServer) -> None:
    status, _, body = await request(server, get("/healthz"))
    assert (status, body.strip()) == (200, b"ok")


async def test_readyz_ok_then_failing_dependency_named(server: HttpServer, redis_check: Flag) -> None:
    status, _, _ = await request(server, get("/readyz"))
    assert status == 200
    assert server.metrics.dependency_up.labels("redis")._value.get() == 1
    redis_check.error = ConnectionError("Connection refused 127.0.0.1:6379")
    status, _, body = await request(server, get("/readyz"))
    assert status == 503
    assert body.decode().startswith("redis: ConnectionError")
    assert "postgres" not in body.decode()
    assert server.metrics.dependency_up.labels("redis")._value.get() == 0
    assert server.metrics.dependency_up.labels("postgres")._value.get() == 1


async def test_readyz_check_timeout_is_failure(server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocs.http, "CHECK_TIMEOUT", 0.1)
    server.checks["slow"] = hang
    status, _, body = await request(server, get("/readyz"))
    assert status == 503 and b"slow: TimeoutError" in body


async def test_head_has_no_body(server: HttpServer) -> None:
    status, headers, body = await request(server, get("/metrics", "HEAD"))
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


@pytest.mark.parametrize(
    "raw",
    [b"\x16\x03\x01garbage\r\n\r\n", b"POST /metrics HTTP/1.1\r\n\r\n", b"GET /metrics\r\n\r\n"],
)
async def test_garbage_is_400(server: HttpServer, raw: bytes) -> None:
    status, _, _ = await request(server, raw)
    assert status == 400


async def test_unknown_path_404(server: HttpServer) -> None:
    status, _, _ = await request(server, get("/nope"))
    assert status == 404


async def test_slow_client_is_disconnected(server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocs.http, "READ_TIMEOUT", 0.2)
    host, port = server.bound
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /metrics HT")  # never finishes its header
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()
    await writer.wait_closed()
    status, _, _ = await request(server, get("/healthz"))  # server still serves
    assert status == 200


async def test_metrics_from_an_exposition_of_its_own() -> None:
    """A supervisor (ocsd --workers N) serves its merge of the workers' metrics instead of its registry."""
    async def merged() -> bytes:
        return b"# HELP ocs_workers w\n# TYPE ocs_workers gauge\nocs_workers 2.0\n"

    srv = HttpServer("127.0.0.1:0", Metrics(), {}, exposition=merged)
    await srv.start()
    try:
        status, headers, body = await request(srv, get("/metrics"))
    finally:
        await srv.stop()
    assert (status, headers["content-type"]) == (200, CONTENT_TYPE_LATEST)
    assert body == await merged()
