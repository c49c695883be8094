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


async def test_reseller_and_subscriber_share_a_slot(cluster_core: tuple[Charging, RedisCluster]) -> None:
    """A reseller's subscriber lives on its reseller's shard: one slot, one script call debits both."""
    from ocs.store import placement
    from ocs.store.keys import shard_of
    from tests.integration.test_resellers import wholesale

    core, r = cluster_core
    core.tariffs.source.add(wholesale())  # type: ignore[attr-defined]  # MemoryTariffSource
    keys = core.keys
    assert shard_of("alice", keys.shards) != shard_of("R", keys.shards)
    await r.hset(keys.account("R"), mapping={"bal": 1_000_000, "rsv": 0, "cl": 0, "type": "prepaid", "st": "active",
                                             "cur": "EUR", "tariff": "w"})
    await placement.place(r.execute_command, keys, "alice", keys.shard_for("R"))
    await r.hset(keys.account("alice"), mapping={"bal": 1_000_000, "rsv": 0, "cl": 0, "type": "prepaid",
                                                 "st": "active", "cur": "EUR", "tariff": "t", "rs": "R"})
    slot = r.keyslot(keys.account("R"))
    assert r.keyslot(keys.account("alice")) == slot == r.keyslot(keys.session("alice", "s-r", 0))
    out = await core.initiate(voice("s-r", 0, sub="alice"))
    assert out.status is Status.GRANTED and out.granted_units == 300
    await core.update(voice("s-r", 1, sub="alice", used=61))
    assert (await core.terminate(voice("s-r", 2, sub="alice"))).status is Status.GRANTED
    assert [int(v) for v in await r.hmget(keys.account("alice"), "bal", "rsv")] == [1_000_000 - 86_000, 0]
    assert [int(v) for v in await r.hmget(keys.account("R"), "bal", "rsv")] == [1_000_000 - 60_000, 0]
    await r.hset(keys.account("R"), "st", "blocked")
    assert (await core.initiate(voice("s-r2", 0, sub="alice"))).status is Status.BLOCKED
    await r.hset(keys.account("R"), "st", "active")
    assert (await core.initiate(voice("s-r3", 0, sub="alice"))).status is Status.GRANTED
    assert int(await r.hget(keys.account("R"), "rsv")) == 150_000
    from datetime import timedelta

    from ocs.store.reaper import Reaper
    from tests.support.balance import T0

    reaper = Reaper(core.cfg, r, core.metrics, keys=keys)  # type: ignore[arg-type]
    assert await reaper.reap_once(T0.now() + timedelta(hours=2)) == 1  # reap.lua reaches R's hash in the same slot
    assert [int(v) for v in await r.hmget(keys.account("R"), "bal", "rsv")] == [1_000_000 - 60_000, 0]
