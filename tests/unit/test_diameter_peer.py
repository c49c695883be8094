"""The peer layer over a fake transport: framing edge cases, split and coalesced reads, back pressure."""

from __future__ import annotations

import asyncio
import dataclasses

from ocs import config
from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.diameter.peer import Peer, State
from ocs.diameter.server import DiameterServer
from ocs.metrics import Metrics
from tests.support.diameter_client import ccr
from tests.support.fake_core import FakeCore


class FakeTransport:
    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.paused = False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 5000) if name == "peername" else None

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def messages(self) -> list[codec.Message]:
        out, buf = [], bytes(self.out)
        while buf:
            _v, n = codec.decode_header(buf)
            out.append(codec.decode(buf[:n]))
            buf = buf[n:]
        return out


def _peer(core: FakeCore | None = None, **diameter: object) -> tuple[Peer, FakeTransport]:
    cfg = config.from_mapping({}, env={})
    cfg = dataclasses.replace(cfg, diameter=dataclasses.replace(cfg.diameter, **diameter))  # type: ignore[arg-type]
    server = DiameterServer(cfg, core or FakeCore(), Metrics())  # type: ignore[arg-type]
    peer = Peer(server.state)
    t = FakeTransport()
    peer.connection_made(t)  # type: ignore[arg-type]
    return peer, t


CER = codec.message(c.CER, codec.FLAG_R, 0, 1, 1, codec.utf8(c.ORIGIN_HOST, "pgw"), codec.utf8(c.ORIGIN_REALM, "r"),
                    codec.address(c.HOST_IP_ADDRESS, "127.0.0.1"), codec.u32(c.VENDOR_ID, 0),
                    codec.utf8(c.PRODUCT_NAME, "t"), codec.u32(c.AUTH_APPLICATION_ID, 4))


def _ccr(n: int) -> bytes:
    return codec.message(c.CCR, codec.FLAG_R, 4, 100 + n, 100 + n, *ccr(f"s{n}", c.INITIAL, 0, called="49", rg=1))


async def test_split_and_coalesced_reads() -> None:
    peer, t = _peer()
    data = CER + _ccr(1) + _ccr(2)
    for i in range(0, len(data), 7):  # byte dribble
        peer.data_received(data[i:i + 7])
    await asyncio.sleep(0.01)
    msgs = t.messages()
    assert [m.code for m in msgs] == [c.CER, c.CCR, c.CCR]
    assert [m.first(c.RESULT_CODE).u32() for m in msgs] == [2001, 2001, 2001]  # type: ignore[union-attr]
    assert {m.hop_by_hop for m in msgs[1:]} == {101, 102}
    peer, t = _peer()
    peer.data_received(data)  # all at once
    await asyncio.sleep(0.01)
    assert len(t.messages()) == 3


async def test_framing_errors_close_the_connection() -> None:
    for bad in (b"\x01\x00\x00\x00" + b"\0" * 16, b"\x02\x00\x00\x14" + b"\0" * 16, b"\x01\x00\x00\x16" + b"\0" * 18,
                b"\x01\xff\xff\xfc" + b"\0" * 16):
        peer, t = _peer(max_message_bytes=65536)
        peer.data_received(bad)
        assert t.closed and peer.state is State.CLOSING


async def test_non_cer_first_and_garbage_after_cer() -> None:
    peer, t = _peer()
    peer.data_received(_ccr(1))
    assert t.closed
    peer, t = _peer()
    peer.data_received(CER + b"\xde\xad\xbe\xef" * 8)
    assert t.messages()[0].first(c.RESULT_CODE).u32() == 2001  # type: ignore[union-attr]
    assert t.closed


async def test_allow_list_and_no_common_application() -> None:
    peer, t = _peer(allowed_peers=(config.PeerRule(origin_host="other"),))
    peer.data_received(CER)
    assert t.messages()[0].first(c.RESULT_CODE).u32() == c.UNKNOWN_PEER and t.closed  # type: ignore[union-attr]
    cer_acct = codec.message(c.CER, codec.FLAG_R, 0, 1, 1, codec.utf8(c.ORIGIN_HOST, "pgw"),
                             codec.utf8(c.ORIGIN_REALM, "r"), codec.u32(c.AUTH_APPLICATION_ID, 3))
    peer, t = _peer()
    peer.data_received(cer_acct)
    assert t.messages()[0].first(c.RESULT_CODE).u32() == c.NO_COMMON_APPLICATION  # type: ignore[union-attr]


async def test_back_pressure_pauses_reading_and_busy_answers_3004() -> None:
    core = FakeCore(delay=0.05)
    peer, t = _peer(core, max_inflight_per_peer=2, max_inflight=3)
    peer.data_received(CER + b"".join(_ccr(i) for i in range(4)))
    assert t.paused
    await asyncio.sleep(0.2)
    assert not t.paused
    results = [m.first(c.RESULT_CODE).u32() for m in t.messages()[1:]]  # type: ignore[union-attr]
    assert sorted(results) == [2001, 2001, 2001, 3004]


async def test_64k_session_id_is_served() -> None:
    peer, t = _peer()
    big = codec.message(c.CCR, codec.FLAG_R, 4, 5, 5, *ccr("x" * 65536, c.INITIAL, 0, called="49", rg=1))
    peer.data_received(CER + big)
    await asyncio.sleep(0.01)
    assert t.messages()[1].first(c.SESSION_ID).data == b"x" * 65536  # type: ignore[union-attr]


async def test_a_connection_that_never_sends_a_cer_is_closed_by_the_watchdog() -> None:
    """Found by the fuzz tier: the watchdog acted on open peers only, so silent connections stayed."""
    peer, t = _peer()
    peer.data_received(b"\x01\x00\x01")  # half a header, then nothing
    peer._on_watchdog()
    assert t.closed and peer.state is State.CLOSING
    assert peer.server.metrics.dropped.labels("diameter", "cer_timeout")._value.get() == 1
