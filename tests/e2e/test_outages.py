"""Store outages at run time degrade as documented and recover by themselves (issue 6, docs/runbook.md)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs.diameter import codec
from ocs.diameter import constants as c
from tests.support.daemon import Daemon, provision_demo, require_services
from tests.support.diameter_client import GyClient, ccr, result
from tests.support.proxy import TcpProxy
from tests.support.radius_client import acct, send

pytestmark = pytest.mark.e2e


def _proxied(tmp_path: Path, store_port: int) -> Iterator[tuple[Daemon, TcpProxy]]:
    """A provisioned, running ocsd reaching one store (Redis 6379 or PostgreSQL 5432) through a proxy."""
    require_services()
    proxy = TcpProxy("127.0.0.1", store_port)
    d = Daemon(tmp_path)
    if store_port == 6379:
        d.redis_url = f"redis://127.0.0.1:{proxy.port}/0"
    else:
        d.extra_env = {"OCS_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:{proxy.port}/{d.name}"}
    d.write_config()
    d.create_database()
    provision_demo(d)
    try:
        d.start()
        yield d, proxy
        assert d.stop() == 0
    finally:
        proxy.close()
        d.redis_url = "redis://127.0.0.1:6379/0"
        d.cleanup()


@pytest.fixture
def via_proxy(tmp_path: Path) -> Iterator[tuple[Daemon, TcpProxy]]:
    yield from _proxied(tmp_path, 6379)


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _granted_again(cl: GyClient, sid: str, within: float = 20.0) -> int:
    """CCR-I until Redis is back (ocsd reconnects by itself); the last Result-Code."""
    deadline = time.monotonic() + within
    code = 0
    while code != 2001 and time.monotonic() < deadline:
        code = result(cl.request(c.CCR, 4, *ccr(sid, c.INITIAL, 0, called="4930", rg=1)))
        if code != 2001:
            time.sleep(0.2)
    return code


def test_redis_outage_answers_3004_and_recovers(via_proxy: tuple[Daemon, TcpProxy]) -> None:
    d, proxy = via_proxy
    cl = GyClient(d.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("o;1", c.INITIAL, 0, called="4930", rg=1))) == 2001
        proxy.cut()
        ans = cl.request(c.CCR, 4, *ccr("o;2", c.INITIAL, 0, called="4930", rg=1))
        assert result(ans) == 3004 and ans.flags & codec.FLAG_E
        status, body = _readyz(d.ports["http"])
        assert status == 503 and "redis" in body
        proxy.restore()
        assert _granted_again(cl, "o;3") == 2001
        assert _readyz(d.ports["http"])[0] == 200
    finally:
        cl.close()


def test_redis_outage_drops_radius_and_recovers(via_proxy: tuple[Daemon, TcpProxy]) -> None:
    """RADIUS has no "busy" answer: while Redis is away the request is dropped so the NAS retransmits."""
    d, proxy = via_proxy
    assert send(d.ports["acct"], acct(3, "ro-1", time=30)) is not None
    proxy.cut()
    assert send(d.ports["acct"], acct(3, "ro-2", time=30)) is None
    proxy.restore()
    deadline = time.monotonic() + 20
    reply = None
    while reply is None and time.monotonic() < deadline:
        reply = send(d.ports["acct"], acct(3, "ro-2", time=30))  # the NAS's retransmission, answered now
    assert reply is not None and reply.code == 5
    assert 'reason="store_unavailable"' in _metrics(d.ports["http"])


def test_hung_redis_answers_3004_within_the_timeout(via_proxy: tuple[Daemon, TcpProxy]) -> None:
    """A Redis that keeps the connection open but never answers is noticed by our own timeout (5 s)."""
    d, proxy = via_proxy
    cl = GyClient(d.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("h;1", c.INITIAL, 0, called="4930", rg=1))) == 2001
        proxy.freeze()
        t0 = time.monotonic()
        ans = cl.request(c.CCR, 4, *ccr("h;2", c.INITIAL, 0, called="4930", rg=1))
        assert result(ans) == 3004 and time.monotonic() - t0 < 8
        proxy.thaw()
        assert _granted_again(cl, "h;3") == 2001
    finally:
        cl.close()


@pytest.fixture
def pg_via_proxy(tmp_path: Path) -> Iterator[tuple[Daemon, TcpProxy]]:
    yield from _proxied(tmp_path, 5432)


def test_postgres_outage_keeps_charging_and_loses_nothing(pg_via_proxy: tuple[Daemon, TcpProxy]) -> None:
    d, proxy = pg_via_proxy
    proxy.cut()
    status, body = 0, ""
    for _ in range(50):  # /readyz notices at its next check
        status, body = _readyz(d.ports["http"])
        if status == 503:
            break
        time.sleep(0.1)
    assert status == 503 and "postgres" in body
    cl = GyClient(d.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("pg;1", c.INITIAL, 0, called="4930123456", rg=1))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("pg;1", c.UPDATE, 1, rg=1, used=61))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("pg;1", c.TERMINATION, 2, rg=1, used=5))) == 2001
    finally:
        cl.close()
    r = d.redis()
    try:  # the usage is buffered in the streams meanwhile
        assert sum(r.xlen(f"{d.prefix}{{s{s:02d}}}:usage") for s in range(16)) >= 3
    finally:
        r.close()
    proxy.restore()
    out: list[str] = []
    for _ in range(100):
        out = d.ocsctl("cdr", "export", check=False).stdout.splitlines()
        if len(out) == 2:
            break
        time.sleep(0.2)
    assert len(out) == 2 and out[1].startswith("pg;1,alice,diameter,voice,")
    assert d.ocsctl("account", "show", "alice", json_out=True)["balance"] == "9.914"
    rec = d.ocsctl("reconcile", json_out=True)  # balance = top-ups - settled charges, from PostgreSQL
    assert rec["differences"] == 0 and rec["accounts"] == 1


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_restart_during_postgres_outage_charges_from_the_snapshot(pg_via_proxy: tuple[Daemon, TcpProxy]) -> None:
    """A kill during a PostgreSQL cut: ocsd starts again at once (degraded), charges, and catches up."""
    d, proxy = pg_via_proxy
    proxy.cut()
    d.kill()
    t0 = time.monotonic()
    d.start()  # ready without PostgreSQL: tariffs come from the Redis snapshot written at the last start
    assert time.monotonic() - t0 < 10
    status, body = _readyz(d.ports["http"])
    assert status == 503 and "postgres_down" in body and "snapshot" in body
    assert 'ocs_degraded{reason="postgres_down"} 1.0' in _metrics(d.ports["http"])
    cl = GyClient(d.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("rs;1", c.INITIAL, 0, called="4930123456", rg=1))) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("rs;1", c.TERMINATION, 1, rg=1, used=61))) == 2001
    finally:
        cl.close()
    assert send(d.ports["acct"], acct(1, "rs-r1")) is not None  # RADIUS too
    assert send(d.ports["acct"], acct(2, "rs-r1", time=30)) is not None
    proxy.restore()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _readyz(d.ports["http"])[0] != 200:
        time.sleep(0.2)
    assert _readyz(d.ports["http"])[0] == 200
    assert 'ocs_degraded{reason="postgres_down"} 0.0' in _metrics(d.ports["http"])
    out: list[str] = []
    while time.monotonic() < deadline:
        out = d.ocsctl("cdr", "export", check=False).stdout.splitlines()
        if len(out) == 3:
            break
        time.sleep(0.2)
    assert sorted(line.split(",")[0] for line in out[1:]) == ["127.0.0.1|rs-r1", "rs;1"]
    rec = d.ocsctl("reconcile", json_out=True)
    assert rec["differences"] == 0


def test_start_without_postgres_or_snapshot_is_refused_in_one_line(pg_via_proxy: tuple[Daemon, TcpProxy]) -> None:
    d, proxy = pg_via_proxy
    proxy.cut()
    d.kill()
    r = d.redis()
    try:
        r.delete(f"{d.prefix}tariffs:snap")
    finally:
        r.close()
    with pytest.raises(AssertionError, match="exited 1"):
        d.start()
    assert "no tariff snapshot in Redis" in d.log_path.read_text()
    proxy.restore()
    d.start()  # PostgreSQL back: starts normally (and writes the snapshot again)
