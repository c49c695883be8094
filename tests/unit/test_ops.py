"""/metrics, /healthz, /readyz; log redaction; sd_notify."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ocs import sdnotify
from ocs.http import HttpServer
from ocs.log import configure
from ocs.metrics import Metrics


async def _get(port: int, raw: bytes) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_http_endpoints() -> None:
    state = {"redis": True}

    async def redis_ok() -> None:
        if not state["redis"]:
            raise ConnectionError("refused")

    async def pg_ok() -> None:
        return None

    m = Metrics()
    m.requests.labels("diameter", "initial", "2001").inc()
    srv = HttpServer("127.0.0.1:0", m, {"redis": redis_ok, "postgres": pg_ok})
    await srv.start()
    port = srv.bound[1]
    try:
        status, body = await _get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        names = {f.name for f in text_string_to_metric_families(body)}
        assert status == 200 and {"ocs_requests", "ocs_request_duration_seconds", "ocs_active_sessions",
                                  "ocs_usage_stream_lag_records", "ocs_usage_flush_errors"} <= names
        assert (await _get(port, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200
        assert (await _get(port, b"GET /readyz HTTP/1.1\r\n\r\n"))[0] == 200
        state["redis"] = False
        status, body = await _get(port, b"GET /readyz HTTP/1.1\r\n\r\n")
        assert status == 503 and body.startswith("redis:") and "postgres" not in body
        assert (await _get(port, b"garbage\r\n\r\n"))[0] == 400
        assert (await _get(port, b"GET /nope HTTP/1.1\r\n\r\n"))[0] == 404
    finally:
        await srv.stop()


def test_secrets_never_logged(capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    configure("info", "json")
    structlog.get_logger("t").info("access", session="s1", account="alice", password="hunter2",
                                   secret="testing123", pw="x", user_password="y")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    doc = json.loads(line)
    assert doc["session"] == "s1" and doc["account"] == "alice"
    assert "hunter2" not in line and "testing123" not in line and doc["pw"] == "***"


def test_sd_notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sdnotify.ready()
        assert s.recv(100) == b"READY=1"
        monkeypatch.setenv("WATCHDOG_USEC", "30000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        assert sdnotify.watchdog_interval() == 30.0
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.ready()
