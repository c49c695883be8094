"""Server-initiated ASR and RAR (RFC 6733 sections 8.3 and 8.5, RFC 4006 section 5.5).

First the messages themselves (command codes 274 and 258, never the CCR's 272; header bits;
AVPs in the grammar's order with their M bits; python-diameter as an independent decoder),
then what an answer means, then the exchange over a :class:`Peer` on a fake transport: hop-by-hop
matching, the one retry, the outcomes, a lost connection, and the peer listeners.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from diameter.message import Message as LibMessage
from structlog.testing import capture_logs

from ocs import config
from ocs.control.model import Ack
from ocs.diameter import codec, server_requests
from ocs.diameter import constants as c
from ocs.diameter.peer import Peer, State
from ocs.diameter.server import DiameterServer
from ocs.metrics import Metrics
from tests.support.fake_core import FakeCore
from tests.unit.test_diameter_peer import FakeTransport

IDENTITY = {"origin_host": "ocs.example.net", "origin_realm": "example.net", "destination_host": "pgw1",
            "destination_realm": "operator.net"}
SID = "pgw1;1;\\x00odd"  # wire text of b"pgw1;1;\x00odd": the octets go back on the wire


# -- the messages ------------------------------------------------------------------------------

def test_asr_is_command_274_with_the_grammar_avps() -> None:
    raw = server_requests.abort_session(SID, **IDENTITY).encode(0x11, 0x22)
    msg = codec.decode(raw)
    assert msg.code == c.ASR == 274 != c.CCR  # the CGRateS bug sent ASR with 272
    assert msg.flags == codec.FLAG_R | codec.FLAG_P  # REQ, PXY; neither E nor T
    assert (msg.app_id, msg.hop_by_hop, msg.end_to_end) == (4, 0x11, 0x22)
    assert [(a.code, a.data) for a in msg.avps] == [
        (c.SESSION_ID, b"pgw1;1;\x00odd"), (c.ORIGIN_HOST, b"ocs.example.net"), (c.ORIGIN_REALM, b"example.net"),
        (c.DESTINATION_REALM, b"operator.net"), (c.DESTINATION_HOST, b"pgw1"),
        (c.AUTH_APPLICATION_ID, (4).to_bytes(4, "big"))]
    assert all(a.flags == codec.AVP_M for a in msg.avps)  # M set, V and P clear (RFC 6733 section 4.5)


def test_rar_is_command_258_authorize_only() -> None:
    msg = codec.decode(server_requests.reauth(SID, **IDENTITY).encode(1, 2))
    assert msg.code == c.RAR == 258
    assert msg.flags == codec.FLAG_R | codec.FLAG_P and msg.app_id == 4
    assert [a.code for a in msg.avps] == [c.SESSION_ID, c.ORIGIN_HOST, c.ORIGIN_REALM, c.DESTINATION_REALM,
                                          c.DESTINATION_HOST, c.AUTH_APPLICATION_ID, c.RE_AUTH_REQUEST_TYPE]
    rtype = msg.first(c.RE_AUTH_REQUEST_TYPE)
    assert rtype is not None and rtype.u32() == c.AUTHORIZE_ONLY == 0 and rtype.flags == codec.AVP_M
    assert all(a.flags == codec.AVP_M for a in msg.avps)


def test_a_retransmission_sets_t_and_keeps_the_end_to_end_id() -> None:
    req = server_requests.abort_session("s", **IDENTITY)
    first, again = codec.decode(req.encode(7, 99)), codec.decode(req.encode(8, 99, retransmit=True))
    assert first.flags & codec.FLAG_T == 0 and again.flags == codec.FLAG_R | codec.FLAG_P | codec.FLAG_T
    assert again.end_to_end == first.end_to_end and again.avps == first.avps


def test_python_diameter_reads_them_as_asr_and_rar() -> None:
    """An independent decoder (python-diameter's base dictionary) names the commands and values."""
    asr = LibMessage.from_bytes(server_requests.abort_session("pgw1;1;2", **IDENTITY).encode(1, 2))
    rar = LibMessage.from_bytes(server_requests.reauth("pgw1;1;2", **IDENTITY).encode(3, 4))
    assert type(asr).__name__ == "AbortSessionRequest" and type(rar).__name__ == "ReAuthRequest"
    for m in (asr, rar):
        assert m.header.is_request and m.header.is_proxyable and m.header.application_id == 4
        assert (m.session_id, m.origin_host, m.origin_realm) == ("pgw1;1;2", b"ocs.example.net", b"example.net")
        assert (m.destination_host, m.destination_realm, m.auth_application_id) == (b"pgw1", b"operator.net", 4)
    assert rar.re_auth_request_type == 0


# -- what the answer means ---------------------------------------------------------------------

def _answer_to(req: bytes, *avps: bytes, flags: int = 0, code: int | None = None) -> codec.Message:
    r = codec.decode(req)
    return codec.decode(codec.message(r.code if code is None else code, flags | codec.FLAG_P, 4, r.hop_by_hop,
                                      r.end_to_end, *avps))


@pytest.mark.parametrize(("avps", "ack", "code"), [
    ((codec.u32(c.RESULT_CODE, 2001),), Ack.ACKED, 2001),
    ((codec.u32(c.RESULT_CODE, 2002),), Ack.ACKED, 2002),
    ((codec.u32(c.RESULT_CODE, 5002),), Ack.UNKNOWN_SESSION, 5002),
    ((codec.u32(c.RESULT_CODE, 5012), codec.utf8(c.ERROR_MESSAGE, "busy")), Ack.REFUSED, 5012),
    ((codec.u32(c.RESULT_CODE, 3002),), Ack.REFUSED, 3002),
    ((codec.grouped(c.EXPERIMENTAL_RESULT, codec.u32(c.VENDOR_ID, 10415),
                    codec.u32(c.EXPERIMENTAL_RESULT_CODE, 5030)),), Ack.REFUSED, 5030),
    ((), Ack.BAD_ANSWER, 0),
    ((codec.avp(c.RESULT_CODE, b"\x00\x07\xd1"),), Ack.BAD_ANSWER, 0),  # 3 octets
])
def test_outcome_of_an_answer(avps: tuple[bytes, ...], ack: Ack, code: int) -> None:
    req = server_requests.abort_session("s", **IDENTITY)
    got = server_requests.outcome(req, _answer_to(req.encode(1, 1), *avps))
    assert (got.ack, got.code) == (ack, code)
    if code == 5012:
        assert got.detail == "busy"


def test_an_answer_with_another_command_code_is_bad() -> None:
    req = server_requests.reauth("s", **IDENTITY)
    got = server_requests.outcome(req, _answer_to(req.encode(1, 1), codec.u32(c.RESULT_CODE, 2001), code=c.CCR))
    assert got.ack is Ack.BAD_ANSWER


# -- the exchange over a peer ------------------------------------------------------------------

CER = codec.message(c.CER, codec.FLAG_R, 0, 1, 1, codec.utf8(c.ORIGIN_HOST, "pgw1"),
                    codec.utf8(c.ORIGIN_REALM, "operator.net"), codec.address(c.HOST_IP_ADDRESS, "127.0.0.1"),
                    codec.u32(c.VENDOR_ID, 0), codec.utf8(c.PRODUCT_NAME, "t"), codec.u32(c.AUTH_APPLICATION_ID, 4))


def _server(**diameter: object) -> DiameterServer:
    cfg = config.from_mapping({}, env={})
    cfg = dataclasses.replace(cfg, diameter=dataclasses.replace(cfg.diameter, **diameter))  # type: ignore[arg-type]
    server = DiameterServer(cfg, FakeCore(), Metrics())  # type: ignore[arg-type]
    server.answer_timeout = 0.1
    return server


def _connect(server: DiameterServer, cer: bytes = CER) -> tuple[Peer, FakeTransport]:
    peer = Peer(server.state)
    t = FakeTransport()
    peer.connection_made(t)  # type: ignore[arg-type]
    peer.data_received(cer)
    peer.flush()
    t.out.clear()  # the CEA
    return peer, t


async def _sent(t: FakeTransport, n: int = 1) -> list[codec.Message]:
    """The next ``n`` messages the peer wrote (they leave at the end of the loop tick)."""
    for _ in range(200):
        if len(t.messages()) >= n:
            break
        await asyncio.sleep(0.005)
    msgs = t.messages()
    t.out.clear()
    assert len(msgs) == n, msgs
    return msgs


def _answer(req: codec.Message, result: int, *, flags: int = 0) -> bytes:
    sid = req.first(c.SESSION_ID)
    assert sid is not None
    return codec.message(req.code, flags | (req.flags & codec.FLAG_P), req.app_id, req.hop_by_hop, req.end_to_end,
                         codec.avp(c.SESSION_ID, sid.data), codec.u32(c.RESULT_CODE, result),
                         codec.utf8(c.ORIGIN_HOST, "pgw1"), codec.utf8(c.ORIGIN_REALM, "operator.net"))


def _count(server: DiameterServer, kind: str, ack: Ack) -> float:
    return float(server.state.metrics.control_requests.labels("diameter", kind, ack.value)._value.get())


def _retries(server: DiameterServer, kind: str) -> float:
    return float(server.state.metrics.control_retries.labels("diameter", kind)._value.get())


@pytest.mark.parametrize(("result", "flags", "ack"), [
    (2001, 0, Ack.ACKED), (5002, 0, Ack.UNKNOWN_SESSION), (5012, 0, Ack.REFUSED),
    (3002, codec.FLAG_E, Ack.REFUSED),
])
@pytest.mark.parametrize("kind", ["asr", "rar"])
async def test_the_answer_decides_the_result(kind: str, result: int, flags: int, ack: Ack) -> None:
    server = _server(origin_host="ocs.example.net", origin_realm="example.net")
    peer, t = _connect(server)
    send = server.abort_session if kind == "asr" else server.reauth_session
    with capture_logs() as logs:
        task = asyncio.ensure_future(send("pgw1", SID))
        (req,) = await _sent(t)
        assert req.code == (274 if kind == "asr" else 258) and req.is_request
        assert req.first(c.SESSION_ID).data == b"pgw1;1;\x00odd"  # type: ignore[union-attr]
        assert req.first(c.DESTINATION_HOST).data == b"pgw1"  # type: ignore[union-attr]
        assert req.first(c.DESTINATION_REALM).data == b"operator.net"  # type: ignore[union-attr]
        assert req.first(c.ORIGIN_HOST).data == b"ocs.example.net"  # type: ignore[union-attr]
        peer.data_received(_answer(req, result, flags=flags))
        got = await task
    assert (got.ack, got.code) == (ack, result)
    assert _count(server, kind, ack) == 1 and _retries(server, kind) == 0
    (line,) = [e for e in logs if e["event"] == "diameter_control"]
    assert (line["kind"], line["session"], line["peer"], line["result"], line["code"]) == (kind, SID, "pgw1",
                                                                                           ack.value, result)
    assert not peer.pending and peer.state is State.OPEN and not t.closed


async def test_no_answer_is_retried_once_then_no_answer() -> None:
    server = _server()
    _peer, t = _connect(server)
    task = asyncio.ensure_future(server.abort_session("pgw1", "s;1"))
    (first,) = await _sent(t)
    (again,) = await _sent(t)  # after answer_timeout
    assert again.code == c.ASR and again.flags & codec.FLAG_T and not first.flags & codec.FLAG_T
    assert again.end_to_end == first.end_to_end and again.hop_by_hop != first.hop_by_hop
    got = await task
    assert got.ack is Ack.NO_ANSWER and "no answer from pgw1" in got.detail
    assert _retries(server, "asr") == 1 and _count(server, "asr", Ack.NO_ANSWER) == 1
    assert t.messages() == []  # no third attempt


async def test_a_late_answer_to_the_first_attempt_counts() -> None:
    server = _server()
    peer, t = _connect(server)
    task = asyncio.ensure_future(server.reauth_session("pgw1", "s;1"))
    (first,) = await _sent(t)
    await _sent(t)  # the retry went out
    peer.data_received(_answer(first, 2001))
    assert (await task).ack is Ack.ACKED
    assert _retries(server, "rar") == 1 and not peer.pending


async def test_answers_nobody_waits_for_are_dropped_and_counted() -> None:
    server = _server()
    peer, t = _connect(server)
    task = asyncio.ensure_future(server.abort_session("pgw1", "s;1"))
    (req,) = await _sent(t)
    stray = dataclasses.replace(req, hop_by_hop=req.hop_by_hop ^ 0xFFFF)
    peer.data_received(_answer(stray, 2001))  # an unknown hop-by-hop id
    peer.data_received(codec.message(c.DWR, 0, 0, 12345, 1, codec.u32(c.RESULT_CODE, 2001)))  # a DWA: known kind
    assert server.state.metrics.dropped.labels("diameter", "unknown_answer")._value.get() == 1
    assert peer.state is State.OPEN and not task.done()
    peer.data_received(_answer(req, 2001))
    assert (await task).ack is Ack.ACKED
    peer.data_received(_answer(req, 2001))  # the same answer again: nobody waits any more
    assert server.state.metrics.dropped.labels("diameter", "unknown_answer")._value.get() == 2


async def test_an_undecodable_answer_is_a_bad_answer_and_the_peer_stays() -> None:
    server = _server()
    peer, t = _connect(server)
    task = asyncio.ensure_future(server.abort_session("pgw1", "s;1"))
    (req,) = await _sent(t)
    # framed correctly, but the AVP inside claims 200 octets
    garbage = codec.message(c.ASR, codec.FLAG_P, 4, req.hop_by_hop, req.end_to_end,
                            b"\x00\x00\x01\x0c\x40\x00\x00\xc8" + b"\x00" * 8)
    peer.data_received(garbage)
    got = await task
    assert got.ack is Ack.BAD_ANSWER and _count(server, "asr", Ack.BAD_ANSWER) == 1
    assert peer.state is State.OPEN and not t.closed and not peer.pending
    peer.data_received(garbage)  # again, for nobody: counted, still no close
    assert server.state.metrics.dropped.labels("diameter", "unknown_answer")._value.get() == 1
    assert not t.closed
    # the connection still carries the next request
    task = asyncio.ensure_future(server.reauth_session("pgw1", "s;2"))
    (req,) = await _sent(t)
    peer.data_received(_answer(req, 2001))
    assert (await task).ack is Ack.ACKED


async def test_connection_lost_while_pending() -> None:
    server = _server()
    server.answer_timeout = 5.0  # the loss, not the timeout, must end it
    peer, t = _connect(server)
    task = asyncio.ensure_future(server.abort_session("pgw1", "s;1"))
    await _sent(t)
    peer.connection_lost(None)
    got = await asyncio.wait_for(task, 1.0)
    assert got.ack is Ack.PEER_GONE and "lost" in got.detail
    assert _count(server, "asr", Ack.PEER_GONE) == 1 and not peer.pending


async def test_a_lost_connection_moves_the_retry_to_another_open_one() -> None:
    server = _server()
    server.answer_timeout = 5.0
    a, ta = _connect(server)
    b, tb = _connect(server)
    task = asyncio.ensure_future(server.reauth_session("pgw1", "s;1"))
    await asyncio.sleep(0.02)
    first, other = (a, ta), (b, tb)
    if not ta.messages():
        first, other = other, first
    (req1,) = await _sent(first[1])
    first[0].connection_lost(None)
    (req2,) = await _sent(other[1])
    assert req2.flags & codec.FLAG_T and req2.end_to_end == req1.end_to_end
    other[0].data_received(_answer(req2, 2001))
    assert (await asyncio.wait_for(task, 1.0)).ack is Ack.ACKED
    assert _retries(server, "rar") == 1


async def test_no_open_connection_is_peer_gone_at_once() -> None:
    server = _server()
    assert server.open_peer_hosts() == set()
    got = await server.abort_session("pgw1", "s;1")
    assert got.ack is Ack.PEER_GONE and _count(server, "asr", Ack.PEER_GONE) == 1
    peer, t = _connect(server)
    waiting = Peer(server.state)  # connected, no CER yet: not OPEN
    waiting.connection_made(FakeTransport())  # type: ignore[arg-type]
    assert server.open_peer_hosts() == {"pgw1"}
    assert (await server.abort_session("other-host", "s;1")).ack is Ack.PEER_GONE
    peer.close("test")
    assert server.open_peer_hosts() == set()
    assert (await server.abort_session("pgw1", "s;1")).ack is Ack.PEER_GONE
    assert t.messages() == []


async def test_send_request_on_a_peer_that_is_not_open_fails_at_once() -> None:
    server = _server()
    peer = Peer(server.state)
    peer.connection_made(FakeTransport())  # type: ignore[arg-type]
    fut = peer.send_request(lambda hbh: b"")
    with pytest.raises(ConnectionError):
        await fut
    peer.data_received(CER)
    with pytest.raises(TimeoutError):
        await peer.request(lambda hbh: server_requests.reauth("s", **IDENTITY).encode(hbh, 1), 0.01)
    assert not peer.pending  # the timed-out request is forgotten


async def test_peer_listeners_hear_open_and_last_close() -> None:
    server = _server(allowed_peers=(config.PeerRule(origin_host="pgw1"),))
    heard: list[tuple[str, bool]] = []
    server.state.peer_listeners.append(lambda host, up: heard.append((host, up)))

    def broken(host: str, up: bool) -> None:
        raise RuntimeError("listener bug")

    server.state.peer_listeners.append(broken)
    with capture_logs() as logs:
        a, _ = _connect(server)
        b, _ = _connect(server)  # the same peer twice (a reconnect overlapping the old connection)
    assert heard == [("pgw1", True), ("pgw1", True)]
    assert a.state is State.OPEN and b.state is State.OPEN  # the raising listener broke nothing
    assert [e["event"] for e in logs].count("peer_listener_failed") == 2
    a.connection_lost(None)
    assert heard[-1] == ("pgw1", True)  # b is still open: the peer is not gone from this node
    b.connection_lost(None)
    assert heard[-1] == ("pgw1", False)
    refused = codec.message(c.CER, codec.FLAG_R, 0, 1, 1, codec.utf8(c.ORIGIN_HOST, "stranger"),
                            codec.utf8(c.ORIGIN_REALM, "x"), codec.u32(c.AUTH_APPLICATION_ID, 4))
    p, _t = _connect(server, refused)
    p.connection_lost(None)  # never OPEN: no news for the listeners
    assert heard == [("pgw1", True), ("pgw1", True), ("pgw1", False)]
