"""ocsd as an operator runs it: start-up, readiness, signals, config errors (docs/configuration.md, issue 6)."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.daemon import BIN, ROOT, Daemon, require_services

pytestmark = pytest.mark.e2e


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ready_health_and_metrics(daemon: Daemon) -> None:
    assert _get(daemon.ports["http"], "/healthz")[0] == 200
    status, body = _get(daemon.ports["http"], "/readyz")
    assert status == 200, body
    status, body = _get(daemon.ports["http"], "/metrics")
    assert status == 200
    assert "ocs_requests_total" in body
    ready = [e for e in daemon.logs() if e.get("event") == "ready"]
    assert ready and ready[0]["node"] == daemon.name


def test_sigterm_exits_zero_within_ten_seconds(daemon: Daemon) -> None:
    assert daemon.proc is not None
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=15) == 0
    assert time.monotonic() - t0 < 10
    events = [e.get("event") for e in daemon.logs()]
    assert "stopping" in events and "stopped" in events


def test_sighup_reloads_without_dropping(daemon: Daemon) -> None:
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(e.get("event") == "reloaded" for e in daemon.logs()):
            break
        time.sleep(0.1)
    else:
        pytest.fail("no 'reloaded' log line after SIGHUP")
    assert daemon.proc.poll() is None
    assert _get(daemon.ports["http"], "/readyz")[0] == 200


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[charging]\ngrant_seconds = \"lots\"\n", "charging.grant_seconds"),
        ("[radius]\nbogus = 1\n", "radius.bogus"),
        ("[[radius.clients]]\naddress = \"nope\"\nsecret = \"x\"\n", "radius.clients[0].address"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path: Path, toml: str, key: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    res = subprocess.run([str(BIN / "ocsd"), "--config", str(cfg)], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0]


def test_unmigrated_database_refuses_to_start(tmp_path: Path) -> None:
    require_services()
    d = Daemon(tmp_path)
    d.write_config()
    from tests.support.daemon import PG_ADMIN_DSN, _pg

    _pg(PG_ADMIN_DSN, f'CREATE DATABASE "{d.name}"')
    try:
        res = subprocess.run([str(BIN / "ocsd"), "--config", str(d.config_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30, env=d.env())
        assert res.returncode == 1
        assert "ocsctl db migrate" in res.stderr
    finally:
        d.cleanup()


def test_a_taken_port_is_one_line_exit_1(tmp_path: Path) -> None:
    """A listener that cannot bind (another process has the port) is a start-up error, not a traceback."""
    import socket

    require_services()
    d = Daemon(tmp_path)
    d.write_config()
    d.create_database()
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", d.ports["acct"]))
    try:
        res = subprocess.run([str(BIN / "ocsd"), "--config", str(d.config_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30, env=d.env())
        assert res.returncode == 1
        assert res.stderr.strip().splitlines()[-1].startswith("ocsd: radius: cannot listen:")  # after the JSON log
        assert "Traceback" not in res.stderr
    finally:
        taken.close()
        d.cleanup()
