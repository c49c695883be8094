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
from tests.e2e.daemon import Daemon, provision_demo, require_services
from tests.e2e.diameter_client import GyClient, ccr, result
from tests.e2e.proxy import TcpProxy

pytestmark = pytest.mark.e2e


@pytest.fixture
def via_proxy(tmp_path: Path) -> Iterator[tuple[Daemon, TcpProxy]]:
    require_services()
    proxy = TcpProxy("127.0.0.1", 6379)
    d = Daemon(tmp_path, redis_url=f"redis://127.0.0.1:{proxy.port}/0")
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


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


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
        deadline = time.monotonic() + 20
        code = 0
        while time.monotonic() < deadline:
            code = result(cl.request(c.CCR, 4, *ccr("o;3", c.INITIAL, 0, called="4930", rg=1)))
            if code == 2001:
                break
            time.sleep(0.5)
        assert code == 2001
        assert _readyz(d.ports["http"])[0] == 200
    finally:
        cl.close()
