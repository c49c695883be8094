"""Two ocsd instances on one host share the Diameter and RADIUS ports (node.reuse_port) and one Redis.

What docs/scaling.md promises: the kernel spreads connections and datagrams over the instances; a
session may move between them (a Diameter client failing over) and is still charged cumulatively
once; each instance answers /metrics on its own port with its own node name.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs.diameter import constants as c
from tests.support.daemon import Daemon, provision_demo, require_services
from tests.support.diameter_client import GyClient, ccr, result
from tests.support.radius_client import acct, send

pytestmark = pytest.mark.e2e


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    require_services()
    (tmp_path / "a").mkdir()
    a = Daemon(tmp_path / "a", reuse_port=True)
    a.write_config()
    a.create_database()
    provision_demo(a)
    b = a.sibling(tmp_path / "b", "b")
    try:
        a.start()
        b.start()
        yield a, b
        assert a.stop() == 0 and b.stop() == 0
    finally:
        b.kill()
        a.cleanup()


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def test_two_instances_share_ports_and_sessions(pair: tuple[Daemon, Daemon]) -> None:
    a, b = pair
    ready = [line for d in (a, b) for line in d.logs() if line.get("event") == "ready"]
    assert {r["node"] for r in ready} == {a.name, f"{a.name}-b"}
    # many connections: the kernel gives each instance some; every one is served
    clients = [GyClient(a.ports["diameter"]) for _ in range(8)]
    try:
        for cl in clients:
            assert result(cl.cer()) == 2001
        first, *rest = clients
        # one session over several connections (and so, with 8 of them, over both instances)
        assert result(first.request(c.CCR, 4, *ccr("sc;1", c.INITIAL, 0, called="4930123456", rg=1))) == 2001
        used = [10, 20, 31]
        for n, (cl, u) in enumerate(zip(rest, used, strict=False), start=1):
            assert result(cl.request(c.CCR, 4, *ccr("sc;1", c.UPDATE, n, rg=1, used=u))) == 2001
        assert result(rest[-1].request(c.CCR, 4, *ccr("sc;1", c.TERMINATION, 9, rg=1, used=0))) == 2001
    finally:
        for cl in clients:
            cl.close()
    # 61 s on 30/6: 0.086 (spec worked example), charged once whichever instance answered
    assert a.ocsctl("account", "show", "alice", json_out=True)["balance"] == "9.914"
    # RADIUS: datagrams from many source ports reach both instances; all answered
    for i in range(40):
        reply = send(a.ports["acct"], acct(3, f"r-{i}", time=0))
        assert reply is not None and reply.code == 5
    counts = []
    for d in (a, b):
        text = _metrics(f"http://127.0.0.1:{d.http_port}/metrics")
        counts.append(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                          if line.startswith('ocs_requests_total{protocol="radius"')))
    assert sum(counts) == 40
    assert all(n > 0 for n in counts), counts  # SO_REUSEPORT spread them (40 source ports, 2 sockets)
