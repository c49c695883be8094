"""ocs.log: JSON lines on stderr with UTC ISO timestamps and level; secrets never appear."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog

from ocs.log import configure

SECRETS = {
    "password": "hunter2-pw-value",
    "pw": "alice-secret-pw",
    "User-Password": "user-password-value",
    "chap_password": "chap-value-123",
    "CHAP-Challenge": "chap-challenge-value",
    "secret": "testing123-shared",
    "radius_secret": "shared-secret-value",
    "client_secret": "client-secret-value",
    "db_password": "db-password-value",
}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_json_line_shape(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    structlog.get_logger("ocs.test").info("ready", listeners=3)
    (rec,) = lines(capsys.readouterr().err)
    assert rec["event"] == "ready" and rec["level"] == "info" and rec["listeners"] == 3
    ts = str(rec["timestamp"])
    assert ts.startswith("20") and ts.endswith("Z") and "T" in ts


def test_level_filter(capsys: pytest.CaptureFixture[str]) -> None:
    configure("warning", "json")
    log = structlog.get_logger()
    log.info("hidden")
    log.warning("shown")
    assert [r["event"] for r in lines(capsys.readouterr().err)] == ["shown"]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_secrets_never_in_output(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    configure("debug", fmt)
    log = structlog.get_logger("ocs.radius")
    log.info("access-request", account="alice", peer="127.0.0.1", **SECRETS)
    structlog.contextvars.bind_contextvars(password="bound-password-value")
    log.error("charging", session_id="s1", outcome="success")
    err = capsys.readouterr().err
    for value in [*SECRETS.values(), "bound-password-value"]:
        assert value not in err, f"secret {value!r} leaked"
    assert "alice" in err and "s1" in err
    if fmt == "json":
        first = lines(err)[0]
        assert all(first[k] == "***" for k in SECRETS)


def test_ocsctl_logs_on_stderr_so_json_on_stdout_stays_clean() -> None:
    """A warning inside an ocsctl verb (e.g. control could not route a command) must not corrupt --json."""
    code = ("import structlog; from ocs import log; log.configure_cli();"
            " structlog.get_logger('ocs.control').warning('control_unroutable', session='s1');"
            " structlog.get_logger('ocs').info('chatty'); print('{}')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert res.stdout == "{}\n"
    assert "control_unroutable" in res.stderr and "chatty" not in res.stderr
