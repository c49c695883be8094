"""bench.radius's load generator against a tiny in-process RADIUS responder (no ocsd needed)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

import pytest
from pyrad import packet as rp

import bench.radius as br
from tests.support.radius_client import DICT, SECRET, exchange


class Responder(asyncio.DatagramProtocol):
    """Answers Accounting-Requests with a valid Response Authenticator, misbehaving on purpose.

    Requests whose authenticator starts with a byte divisible by 5 lose their first transmission,
    by 47 are never answered, by 9 are answered twice.
    """

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        a = data[4]
        first = data not in self.seen
        self.seen.add(data)
        if a % 47 == 0 or (a % 5 == 0 and first):
            return
        head = bytes([rp.AccountingResponse, data[1], 0, 20])
        reply = head + hashlib.md5(head + data[4:20] + SECRET).digest()
        assert self.transport is not None
        for _ in range(2 if a % 9 == 0 else 1):
            self.transport.sendto(reply, addr)


async def _responder() -> tuple[asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    tr, _ = await loop.create_datagram_endpoint(Responder, local_addr=("127.0.0.1", 0))
    return tr, tr.get_extra_info("sockname")[1]


def test_plan_uses_the_slot_as_identifier() -> None:
    plan = br.make_plan(20, br._acct_packets, sockets=2, window=4)
    assert len(plan) == 2 and all(len(queues) == 4 for queues in plan)
    assert sum(len(q) for queues in plan for q in queues) == 20 * (br.INTERIMS + 2)
    for queues in plan:
        for slot, q in enumerate(queues):
            assert q and all(raw[1] == slot for raw in q)
    # a call's packets stay together and in order: Start, Interim..., Stop
    first_call = plan[0][0][: br.INTERIMS + 2]
    status = [rp.AcctPacket(packet=raw, secret=SECRET, dict=DICT)["Acct-Status-Type"][0] for raw in first_call]
    assert status == ["Start"] + ["Interim-Update"] * br.INTERIMS + ["Stop"]


async def test_blast_resends_gives_up_and_ignores_strays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(br, "TIMEOUT", 0.05)
    monkeypatch.setattr(br, "TICK", 0.01)
    plan = br.make_plan(60, br._acct_packets, sockets=2, window=8)
    auths = [raw[4] for queues in plan for q in queues for raw in q]
    never = sum(1 for a in auths if a % 47 == 0)
    once = sum(1 for a in auths if a % 5 == 0 and a % 47)
    twice = sum(1 for a in auths if a % 9 == 0 and a % 47)
    tr, port = await _responder()
    try:
        res = await br.blast(port, plan, deadline_s=20)
    finally:
        tr.close()
    assert res.sent == len(auths) == res.answered + res.lost
    assert res.lost == never and res.unsent == 0
    assert res.resent == once + br.RETRIES * never
    assert res.stray == twice
    assert res.codes[rp.AccountingResponse] == res.answered == len(res.latencies)
    assert res.elapsed > 0 and res.gen_cpu >= 0


async def test_blast_deadline_counts_lost_and_unsent() -> None:
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    port = silent.get_extra_info("sockname")[1]
    plan = br.make_plan(10, br._acct_packets, sockets=1, window=4)
    try:
        res = await br.blast(port, plan, deadline_s=0.2)
    finally:
        silent.close()
    assert res.answered == 0 and res.lost == 4 and res.unsent == res.sent - 4


async def test_blast_counts_calls_whose_end_was_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The money check's margin: a call whose Stop was given up may or may not have a CDR."""
    monkeypatch.setattr(br, "TIMEOUT", 0.05)
    monkeypatch.setattr(br, "TICK", 0.01)
    n = br.INTERIMS + 2
    plan = br.make_plan(60, br._acct_packets, sockets=2, window=8)
    stops = [q[k] for queues in plan for q in queues for k in range(n - 1, len(q), n)]
    assert len(stops) == 60 and all(rp.AcctPacket(packet=raw, secret=SECRET, dict=DICT)["Acct-Status-Type"][0]
                                    == "Stop" for raw in stops)
    tr, port = await _responder()
    try:
        res = await br.blast(port, plan, deadline_s=20, call_len=n)
    finally:
        tr.close()
    assert res.lost_ends == sum(1 for raw in stops if raw[4] % 47 == 0)


async def test_blast_deadline_counts_every_unended_call() -> None:
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    port = silent.get_extra_info("sockname")[1]
    try:
        res = await br.blast(port, br.make_plan(10, br._acct_packets, sockets=1, window=4), deadline_s=0.2,
                             call_len=br.INTERIMS + 2)
    finally:
        silent.close()
    assert res.lost_ends == 10


def test_plan_from_a_first_call_and_the_phases_of_a_call() -> None:
    plan = br.make_plan(4, br._interim_packets, sockets=1, window=2, first=100)
    sids = [rp.AcctPacket(packet=raw, secret=SECRET, dict=DICT)["Acct-Session-Id"][0] for raw in plan[0][0]]
    assert sids == ["bench-call-100"] * br.INTERIMS + ["bench-call-102"] * br.INTERIMS
    whole = [rp.AcctPacket(packet=raw, secret=SECRET, dict=DICT)["Acct-Status-Type"][0]
             for raw in br._start_packets(5, 1) + br._interim_packets(5, 1) + br._stop_packets(5, 1)]
    assert whole == [rp.AcctPacket(packet=raw, secret=SECRET, dict=DICT)["Acct-Status-Type"][0]
                     for raw in br._acct_packets(5, 1)]


async def test_paced_sends_on_the_clock_without_resending() -> None:
    packets = [br._stop_packets(k, (k // 2) % 256)[0] for k in range(200)]
    auths = [raw[4] for raw in packets]
    unanswered = sum(1 for a in auths if a % 47 == 0 or a % 5 == 0)  # no resend: a first loss is final
    twice = sum(1 for a in auths if a % 9 == 0 and a % 47 and a % 5)
    tr, port = await _responder()
    try:
        t0 = asyncio.get_running_loop().time()
        res = await br.paced(port, packets, 2, rate=1000.0, grace=0.3)
        took = asyncio.get_running_loop().time() - t0
    finally:
        tr.close()
    assert res.sent == 200 and res.answered == 200 - unanswered == len(res.latencies)
    assert res.lost == unanswered and res.stray == twice and res.resent == 0
    assert took >= 0.199  # 200 packets at 1,000/s: the last one leaves at 0.199 s
    assert res.send_lag < 0.1


def test_row_names_are_stable() -> None:
    assert br.NAMES["ocsd"] == ("radius Access-Request", "radius Accounting-Request (Start/Interim/Stop)")
    assert br.NAMES["freeradius"] == ("freeradius reference Access-Request",
                                      "freeradius reference Accounting-Request")


def test_reference_without_freeradius_is_a_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(br, "freeradius_binary", lambda: None)
    rows = br.run_freeradius(quick=True)
    assert rows == [{"name": "freeradius reference", "status": "not installed (apt-get install freeradius)"}]


def test_generated_freeradius_config_answers() -> None:
    if br.freeradius_binary() is None:  # scripts/test.sh installs it; CI must not pass without it
        if os.environ.get("CI") == "true":
            pytest.fail("FreeRADIUS not installed")
        pytest.skip("FreeRADIUS not installed")
    with tempfile.TemporaryDirectory() as tmp, br.freeradius(Path(tmp)) as (_proc, auth, acct_port):
        ok = exchange(auth, br._access_packets(1, 7)[0])
        assert ok is not None and ok[0] == rp.AccessAccept and ok[1] == 7
        assert b"\x1b\x06\x00\x00\x0e\x10" in ok  # Session-Timeout = 3600
        for raw in br._acct_packets(1, 9):
            reply = exchange(acct_port, raw)
            assert reply is not None and reply[0] == rp.AccountingResponse
