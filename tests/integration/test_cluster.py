"""The charging scripts are legal on Redis Cluster: every key of a call shares the shard's hash tag.

Starts a 3-master Redis Cluster on free loopback ports, runs a session through the real charging
core on a ``RedisCluster`` client (keys of different shards land on different nodes), and checks
the money.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster

from ocs.app import build_core
from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import Status
from ocs.store.tariff_cache import MemoryTariffSource
from tests.support.balance import demo_tariff, make_cfg, voice

pytestmark = pytest.mark.integration


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(n: int) -> list[int]:
    """Free ports whose cluster bus port (port + 10000) is free and valid too."""
    rnd = random.Random()
    out: list[int] = []
    while len(out) < n:
        port = rnd.randint(20000, 40000)
        if port not in out and _free(port) and _free(port + 10000):
            out.append(port)
    return out


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on {port} did not start")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[int]]:
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    ports = _cluster_ports(3)
    procs = []
    for port in ports:
        d = tmp_path / str(port)
        d.mkdir()
        procs.append(subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file",
             str(d / "nodes.conf"), "--save", "", "--appendonly", "no", "--dir", str(d)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        for port in ports:
            _wait_listening(port)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for _ in range(100):
            out = subprocess.run([cli, "-p", str(ports[0]), "cluster", "info"], capture_output=True, text=True).stdout
            if "cluster_state:ok" in out:
                break
            time.sleep(0.1)
        yield ports
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)


@pytest.fixture
async def cluster_core(cluster: list[int]) -> AsyncIterator[tuple[Charging, RedisCluster]]:
    client = RedisCluster(host="127.0.0.1", port=cluster[0])
    await client.initialize()
    src = MemoryTariffSource()
    src.add(demo_tariff())
    core = build_core(make_cfg("ocs:"), client, Metrics(), src)  # type: ignore[arg-type]
    await core.start()
    yield core, client
    await core.close()
    await client.aclose()


async def test_sessions_on_every_node(cluster_core: tuple[Charging, RedisCluster]) -> None:
    core, r = cluster_core
    accounts = [f"acct{i}" for i in range(8)]  # several shards, hence several nodes
    for a in accounts:
        await r.hset(core.keys.account(a), mapping={"bal": 1_000_000, "rsv": 0, "cl": 0, "type": "prepaid",
                                                    "st": "active", "cur": "EUR", "tariff": "t"})
    nodes = {r.get_node_from_key(core.keys.account(a)).name for a in accounts}
    assert len(nodes) > 1
    for a in accounts:
        out = await core.initiate(voice(f"s-{a}", 0, sub=a))
        assert out.status is Status.GRANTED
        await core.update(voice(f"s-{a}", 1, sub=a, used=61))
        out = await core.terminate(voice(f"s-{a}", 2, sub=a, used=0))
        assert out.status is Status.GRANTED
        bal, rsv = await r.hmget(core.keys.account(a), "bal", "rsv")
        assert (int(bal), int(rsv)) == (1_000_000 - 86_000, 0)
        assert await r.xlen(core.keys.usage(core.scripts.shard(a))) >= 2
