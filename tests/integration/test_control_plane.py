"""Server-initiated control on real Redis and the real core (docs/control.md), senders recorded.

What the wire senders do is tested where they live (Diameter ASR/RAR, RADIUS Disconnect/CoA); here:
the account's live-session set the scripts keep, the ``ctl`` cause on records however the session
ends, routing to the node holding a peer, commands and replies across nodes, the bounded wait on a
node that is down, the credit-limit detection, and the RADIUS re-authorization a CoA carries.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from ocs.charging import Charging
from ocs.control.dispatch import Dispatcher
from ocs.control.model import ADMINISTRATIVE, CREDIT_LIMIT, Ack, ControlResult
from ocs.control.node import ControlNode
from ocs.store.charging_scripts import member
from ocs.store.control_bus import ControlBus
from ocs.store.reaper import Reaper
from tests.support.balance import T0, account_state, provision, voice

pytestmark = pytest.mark.integration
LATER = datetime.now(UTC) + timedelta(days=1)  # every hold has expired by then


class Recorder:
    """Stands in for both front ends: records what it was asked, answers ``answer``."""

    call_hold = 3660

    def __init__(self, peers: set[str] | None = None) -> None:
        self.peers = peers or set()
        self.answer = ControlResult(Ack.ACKED)
        self.calls: list[tuple[Any, ...]] = []

    def reachable(self, reach: str) -> bool:
        return True

    def open_peer_hosts(self) -> set[str]:
        return set(self.peers)

    async def abort_session(self, peer_host: str, session_id: str) -> ControlResult:
        self.calls.append(("asr", peer_host, session_id))
        return self.answer

    async def reauth_session(self, peer_host: str, session_id: str) -> ControlResult:
        self.calls.append(("rar", peer_host, session_id))
        return self.answer

    async def disconnect(self, session_id: str, reach: str) -> ControlResult:
        self.calls.append(("dm", session_id, reach))
        return self.answer

    async def change_authorization(self, session_id: str, reach: str, session_timeout: int) -> ControlResult:
        self.calls.append(("coa", session_id, reach, session_timeout))
        return self.answer


@pytest.fixture
def bus(redis_client: aioredis.Redis, core: Charging) -> ControlBus:
    return ControlBus(redis_client, core.keys)


@pytest.fixture
async def nodes(bus: ControlBus, core: Charging) -> AsyncIterator[dict[str, tuple[ControlNode, Recorder]]]:
    """Two running nodes sharing Redis: A holds Diameter peer pcef1, B holds none."""
    out, tasks = {}, []
    for name, peers in (("A", {"pcef1"}), ("B", set())):
        rec = Recorder(peers)
        node = ControlNode(name, bus, core, rec, rec, core.metrics)
        await bus.heartbeat(name, peers)
        tasks.append(asyncio.ensure_future(node.run()))
        out[name] = (node, rec)
    yield out
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def diameter(session: str, n: int, **kw: Any) -> Any:
    return dataclasses.replace(voice(session, n, **kw), protocol="diameter", origin="pcef1")


async def test_live_set_follows_open_bind_terminate_and_reap(core: Charging, redis_client: aioredis.Redis,
                                                             reaper: Reaper) -> None:
    keys = core.keys
    await provision(redis_client, keys, "alice", 10_000_000)
    assert (await core.initiate(voice("s1", 1))).ok
    assert (await core.initiate(voice("hold", 1))).ok
    live = keys.live("alice")
    assert await redis_client.smembers(live) == {member("alice", "s1", 0).encode(), member("alice", "hold", 0).encode()}
    assert await core.bind("hold", "s2", "alice", 600, "nas1")
    assert await redis_client.smembers(live) == {member("alice", "s1", 0).encode(), member("alice", "s2", 0).encode()}
    assert (await core.terminate(voice("s1", 2, used=30))).ok
    assert await redis_client.smembers(live) == {member("alice", "s2", 0).encode()}
    await reaper.reap_once(LATER)
    assert await redis_client.smembers(live) == set()


async def _cdr_cause(redis_client: aioredis.Redis, core: Charging, sid: str) -> str:
    for stream in core.keys.all_usage_streams():
        for _id, f in await redis_client.xrange(stream):
            if f.get(b"t") == b"c" and f[b"session_id"].decode() == sid:
                cause = f[b"termination_cause"].decode()
    return cause


async def test_marked_session_keeps_cause_on_ccr_t_and_on_reap(core: Charging, redis_client: aioredis.Redis,
                                                               bus: ControlBus, reaper: Reaper) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    for sid in ("a", "b"):
        assert (await core.initiate(diameter(sid, 1))).ok
    sessions = {s.sid: s for s in await bus.open_sessions("alice")}
    assert await bus.mark(sessions["a"], ADMINISTRATIVE)
    assert await bus.mark(sessions["a"], CREDIT_LIMIT)  # the first cause stays
    assert await bus.mark(sessions["b"], CREDIT_LIMIT)
    assert (await core.terminate(dataclasses.replace(diameter("a", 2, used=60),
                                                     termination_cause="DIAMETER_LOGOUT"))).ok
    assert await _cdr_cause(redis_client, core, "a") == ADMINISTRATIVE
    await reaper.reap_once(LATER)  # the client never sent CCR-T after the ASR
    assert await _cdr_cause(redis_client, core, "b") == CREDIT_LIMIT
    closed = sessions["a"]
    assert not await bus.mark(closed, ADMINISTRATIVE)  # closed: nothing to mark


async def test_block_routes_asr_to_the_node_holding_the_peer(core: Charging, redis_client: aioredis.Redis,
                                                             bus: ControlBus, nodes: dict[str, Any]) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    for i in range(3):
        assert (await core.initiate(diameter(f"d{i}", 1))).ok
    radius = dataclasses.replace(voice("nas1|r1", 1), protocol="radius", origin="nas1",
                                 reach="127.0.0.1,10.0.0.9,alice")
    assert (await core.initiate(radius)).ok
    await redis_client.hset(core.keys.session("alice", "nas1|r1", 0), "node", "B")
    done = await Dispatcher(bus).abort_account("alice")  # as `ocsctl account block` does
    assert done.sent == 4 and not done.unroutable
    a, b = nodes["A"][1], nodes["B"][1]
    for _ in range(100):
        if len(a.calls) == 3 and len(b.calls) == 1:
            break
        await asyncio.sleep(0.05)
    assert sorted(a.calls) == [("asr", "pcef1", f"d{i}") for i in range(3)]
    assert b.calls == [("dm", "nas1|r1", "127.0.0.1,10.0.0.9,alice")]
    # ABORT marked every session: however they end now, the records say ADMINISTRATIVE
    for sid in ("d0", "d1", "d2", "nas1|r1"):
        assert await redis_client.hget(core.keys.session("alice", sid, 0), "ctl") == b"ADMINISTRATIVE"


async def test_disconnect_from_another_node_waits_for_the_answer(core: Charging, redis_client: aioredis.Redis,
                                                                 bus: ControlBus, nodes: dict[str, Any]) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    assert (await core.initiate(diameter("x1", 1))).ok
    result, node = await Dispatcher(bus, node="B").disconnect("x1", 5.0)  # asked on B, peer held by A
    assert result.ok and node == "A"
    assert nodes["A"][1].calls == [("asr", "pcef1", "x1")] and not nodes["B"][1].calls
    nodes["A"][1].answer = ControlResult(Ack.UNKNOWN_SESSION, 5002)
    result, _ = await Dispatcher(bus).disconnect("x1", 5.0)
    assert result.ack is Ack.UNKNOWN_SESSION and result.code == 5002
    result, node = await Dispatcher(bus).disconnect("nope", 5.0)
    assert result.ack is Ack.UNKNOWN_SESSION and node == ""


async def test_a_node_that_is_down_does_not_make_disconnect_hang(core: Charging, redis_client: aioredis.Redis,
                                                                  bus: ControlBus) -> None:
    await provision(redis_client, core.keys, "alice", 10_000_000)
    assert (await core.initiate(diameter("x2", 1))).ok
    result, _ = await Dispatcher(bus).disconnect("x2", 2.0)
    assert result.ack is Ack.PEER_GONE  # nobody holds pcef1
    await bus.heartbeat("Z", {"pcef1"})  # Z claims the peer, then dies without reading its stream
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    result, node = await Dispatcher(bus).disconnect("x2", 1.5)
    assert result.ack is Ack.NO_ANSWER and node == "Z" and "Z" in result.detail
    assert loop.time() - t0 < 4


async def test_topup_reauthorizes_only_sessions_cut_short(core: Charging, redis_client: aioredis.Redis,
                                                          bus: ControlBus, nodes: dict[str, Any]) -> None:
    keys = core.keys
    await provision(redis_client, keys, "bob", 100_000)  # 0.10: 30 s block costs 0.05 at 0.06/min + 0.02
    radius = dataclasses.replace(voice("nas1|r2", 1, sub="bob", req=3600), protocol="radius", origin="nas1",
                                 reach="127.0.0.1,,bob")
    first = await core.initiate(radius)
    assert first.ok and first.final
    await redis_client.hset(keys.session("bob", "nas1|r2", 0), "node", "B")
    await redis_client.hincrby(keys.account("bob"), "bal", 10_000_000)  # the top-up landed
    done = await Dispatcher(bus).reauth_account("bob")
    assert done.sent == 1
    rec = nodes["B"][1]
    for _ in range(100):
        if rec.calls:
            break
        await asyncio.sleep(0.05)
    (kind, sid, reach, timeout), = rec.calls
    assert (kind, sid, reach) == ("coa", "nas1|r2", "127.0.0.1,,bob")
    assert timeout > first.granted_units
    bal, rsv = await account_state(redis_client, keys, "bob")
    assert bal == 10_100_000 and 0 < rsv <= bal  # nothing charged, the larger grant held
    # a session whose grant was not cut short is left alone
    assert (await Dispatcher(bus).reauth_account("bob")).sent == 0


async def test_postpaid_credit_limit_crossing_is_seen_once(core: Charging, redis_client: aioredis.Redis) -> None:
    seen: list[str] = []
    core.settlement.on_credit_limit = seen.append
    await provision(redis_client, core.keys, "carol", 0, postpaid=True, credit_limit=100_000)
    first = await core.initiate(voice("c1", 1, sub="carol", at=T0))
    assert first.ok
    used = first.granted_units + 60  # a client reporting beyond its grant (within the overuse cap)
    out = await core.update(voice("c1", 2, sub="carol", used=used))
    assert out.balance is not None and out.balance <= -100_000
    assert seen == ["carol"]
    again = await core.update(voice("c1", 2, sub="carol", used=used))  # retransmission
    assert again.duplicate and seen == ["carol"]
    assert (await core.terminate(voice("c1", 3, sub="carol", used=10))).ok
    assert seen == ["carol"]  # already below: no new crossing
