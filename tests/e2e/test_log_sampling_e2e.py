"""Per-request log lines under a small budget (log.request_lines_per_second): sampled, drops counted, SIGHUP to 0 off."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyrad import packet as rp

from tests.support.daemon import Daemon, running
from tests.support.radius_client import access, send

pytestmark = pytest.mark.e2e

SENT = 20


@pytest.fixture
def sampled_daemon(tmp_path: Path) -> Iterator[Daemon]:
    with running(tmp_path, request_lines_per_second=2) as d:
        yield d


def _access_lines(d: Daemon) -> tuple[list[dict[str, Any]], int]:
    """The ``access`` lines written and the ``access`` lines reported dropped so far."""
    logs = d.logs()
    written = [e for e in logs if e.get("event") == "access"]
    dropped = sum(int(e["dropped"].get("access", 0)) for e in logs if e.get("event") == "request_lines_sampled")
    return written, dropped


def _until_accounted(d: Daemon, expected: int) -> tuple[list[dict[str, Any]], int]:
    """Wait for the drop report of the last second (a timer writes it when the second ends)."""
    deadline = time.monotonic() + 10
    while True:
        written, dropped = _access_lines(d)
        if len(written) + dropped >= expected or time.monotonic() > deadline:
            return written, dropped
        time.sleep(0.1)


def test_per_request_lines_sampled_then_all_after_sighup_to_zero(sampled_daemon: Daemon) -> None:
    d = sampled_daemon
    for _ in range(SENT):  # unknown subscriber: rejected at once, one "access" line each
        assert send(d.ports["auth"], access("nobody", password="x")).code == rp.AccessReject
    written, dropped = _until_accounted(d, SENT)
    assert len(written) + dropped == SENT  # every request is a line or counted in a request_lines_sampled line
    assert dropped > 0 and len(written) >= 2
    report = next(e for e in d.logs() if e.get("event") == "request_lines_sampled")
    assert report["level"] == "info" and report["per_second"] == 2 and report["total"] >= 1

    d.request_lines_per_second = 0  # the operator's switch: no limit, applied by a reload
    d.write_config()
    assert d.proc is not None
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not any(e.get("event") == "reloaded" for e in d.logs()):
        assert time.monotonic() < deadline, "no 'reloaded' line after SIGHUP"
        time.sleep(0.1)
    for _ in range(SENT):
        assert send(d.ports["auth"], access("nobody", password="x")).code == rp.AccessReject
    deadline = time.monotonic() + 10
    while len(_access_lines(d)[0]) < len(written) + SENT:
        assert time.monotonic() < deadline, "not every access line written after sampling was turned off"
        time.sleep(0.1)
    assert _access_lines(d)[1] == dropped  # nothing dropped since
