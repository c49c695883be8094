"""The REST API served by a running ocsd (docs/api.md): its own port, tokens made with ocsctl, a top-up
applied once, the audit log read back with ocsctl, revocation, and a clean SIGTERM with the API busy."""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ocs.diameter import codec
from ocs.diameter import constants as c
from tests.e2e.test_control_e2e import ASR, _answer
from tests.support.daemon import BIN, Daemon, free_port, provision_demo, require_services
from tests.support.diameter_client import GyClient, ccr, result

pytestmark = pytest.mark.e2e


@pytest.fixture
def api_daemon(tmp_path: Path) -> Iterator[Daemon]:
    require_services()
    port = free_port()
    d = Daemon(tmp_path, extra_toml=f'[api]\nlisten = "127.0.0.1:{port}"\ntoken_cache_seconds = 0\n')
    d.ports["api"] = port
    d.write_config()
    d.create_database()
    provision_demo(d)
    try:
        d.start()
        yield d
    finally:
        d.cleanup()


def test_api_in_ocsd(api_daemon: Daemon) -> None:
    d = api_daemon
    base = f"http://127.0.0.1:{d.ports['api']}/api/v1"
    made = d.ocsctl("api", "token", "create", "ops", "--role", "operator", json_out=True)
    token = made["token"]
    assert token.startswith("ocs_") and len(token) > 40
    listed = d.ocsctl("api", "token", "list", json_out=True)["tokens"]
    assert listed[0]["name"] == "ops" and "token" not in listed[0] and listed[0]["state"] == "active"
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=auth, timeout=10) as api:
        assert api.get("/accounts/alice").json()["balance"] == "10.00"
        body = {"amount": "2.50", "reference": "e2e-api-1"}
        assert api.post("/accounts/alice/topups", json=body).status_code == 201
        again = api.post("/accounts/alice/topups", json=body)
        assert again.status_code == 200 and again.json()["applied"] is False
        assert d.ocsctl("account", "show", "alice", json_out=True)["balance"] == "12.50"
        assert httpx.get(f"{base}/accounts", timeout=5).status_code == 401
        assert httpx.get(f"{base}/openapi.json", timeout=5).json()["openapi"].startswith("3.1")
        scraped = httpx.get(f"http://127.0.0.1:{d.http_port}/metrics", timeout=5).text
        assert 'ocs_api_requests_total{method="POST",status="201"} 1.0' in scraped
        assert 'ocs_api_requests_total{method="GET",status="401"} 1.0' in scraped
        assert "ocs_api_request_seconds_count" in scraped
        audit = d.ocsctl("audit", json_out=True)["audit"]
        assert [(a["token"], a["status"]) for a in audit] == [("ops", 201), ("ops", 200)]
        assert d.ocsctl("api", "token", "revoke", "ops", json_out=True)["revoked"] is True
        assert api.get("/accounts/alice").status_code == 401
    assert d.ocsctl("api", "token", "revoke", "nobody", check=False).returncode == 1
    assert d.ocsctl("api", "token", "create", "x", "--role", "reseller", check=False).returncode == 1


def test_sigterm_with_the_api_busy_stops_cleanly(api_daemon: Daemon) -> None:
    d = api_daemon
    token = d.ocsctl("api", "token", "create", "ro", "--role", "readonly", json_out=True)["token"]
    base = f"http://127.0.0.1:{d.ports['api']}/api/v1"
    stop = threading.Event()
    answered: list[int] = []

    def hammer() -> None:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=5) as api:
            while not stop.is_set():
                try:
                    answered.append(api.get("/accounts").status_code)
                except httpx.HTTPError:
                    return

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        while len(answered) < 20:
            threading.Event().wait(0.05)
        assert d.stop() == 0, d.log_path.read_text()[-4000:]
    finally:
        stop.set()
        for w in workers:
            w.join(5)
    assert set(answered) <= {200, 503}


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(api_daemon: Daemon, tmp_path: Path) -> None:
    """Property-based run over the OpenAPI document (every operation, generated valid and invalid input,
    an admin token so every route is reached): no answer is a 5xx."""
    d = api_daemon
    token = d.ocsctl("api", "token", "create", "fuzz", "--role", "admin", json_out=True)["token"]
    base = f"http://127.0.0.1:{d.ports['api']}/api/v1"
    res = subprocess.run(
        [str(BIN / "schemathesis"), "run", f"{base}/openapi.json", "--checks", "not_a_server_error",
         "--header", f"Authorization: Bearer {token}", "--max-examples", "25", "--seed", "7",
         "--phases", "examples,coverage,fuzzing", "--request-timeout", "20", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
    assert " passed" in res.stdout and "Server error" not in res.stdout, res.stdout[-3000:]
    print(res.stdout[-2500:])  # the run's summary, for -s


def test_delete_session_sends_the_asr(api_daemon: Daemon) -> None:
    """DELETE /sessions/{id} is `ocsctl session disconnect`: the ASR leaves on the peer's connection,
    the ASA makes the API answer 200 with the node that sent it; the session is listed before, not after."""
    d = api_daemon
    token = d.ocsctl("api", "token", "create", "noc", "--role", "operator", json_out=True)["token"]
    base = f"http://127.0.0.1:{d.ports['api']}/api/v1"
    cl = GyClient(d.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        sid = "pgw.test;api;1"
        assert result(cl.request(c.CCR, 4, *ccr(sid, c.INITIAL, 0, called="4930123456", requested=300))) == 2001
        time.sleep(0.3)  # the node's registry entry for the peer is written when the peer opens
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            listed = api.get("/sessions", params={"account": "alice"}).json()["sessions"]
            assert [s["session_id"] for s in listed] == [sid]
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                asking = pool.submit(api.delete, f"/sessions/{sid}", params={"timeout": 10})
                asr = cl.recv()
                assert asr.code == ASR and asr.first(c.SESSION_ID).text() == sid  # type: ignore[union-attr]
                _answer(cl, asr, 2001)
                answer = asking.result(timeout=20)
            assert answer.status_code == 200, answer.text
            # the node holding the peer; under ocsd --workers one of its workers, "<name>.w<i>"
            assert answer.json()["result"] == "acked" and re.fullmatch(rf"{re.escape(d.name)}(\.w\d+)?",
                                                                       answer.json()["node"])
            end = cl.request(c.CCR, 4, *ccr(sid, c.TERMINATION, 1, used=42, extra=(codec.u32(c.TERMINATION_CAUSE, 4),)))
            assert result(end) == 2001
            assert api.get("/sessions").json()["sessions"] == []
    finally:
        cl.close()
    assert d.cdr_cause(sid, tries=100) == "ADMINISTRATIVE"
