"""Server-initiated control at scale: block an account with 1,000 open sessions (target: all done < 5 s).

Diameter: 1,000 open Gy sessions of one account on a peer connected to an in-process
DiameterServer; ``Dispatcher.abort_account`` (what ``ocsctl account block`` does) puts 1,000
commands on the node's stream, the ControlNode sends 1,000 ASRs on the connection, the bench peer
answers every one with ASA 2001.  RADIUS: the same with 1,000 sessions whose NAS is a UDP stub
answering Disconnect-ACK.  Measured: from the dispatch to the last acknowledged request, with the
latency of each request (command issued -> its answer seen by the node).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import socket
import struct
import time
import uuid
from typing import Any

from bench.common import cpu_seconds, format_table, row
from bench.redis_scripts import T0, cleanup, make_core
from ocs import config
from ocs.charging import Charging
from ocs.control.dispatch import Dispatcher
from ocs.control.node import ControlNode
from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.diameter.server import DiameterServer
from ocs.model import ChargeRequest
from ocs.radius.server import RadiusServer
from ocs.store.control_bus import ControlBus

SECRET = b"bench-secret"
ACCOUNT = {"diameter": "a0", "radius": "a1"}  # one account per phase: each block reaches only its sessions


class _AnsweringPeer(asyncio.Protocol):
    """A Gy client that answers every ASR/RAR with 2001 (our codec; what a PCEF does)."""

    def __init__(self) -> None:
        self.buf = b""
        self.answered = 0
        self.transport: asyncio.Transport | None = None
        self.opened = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(codec.message(  # type: ignore[union-attr]
            c.CER, codec.FLAG_R, 0, 1, 1, codec.utf8(c.ORIGIN_HOST, "bench-pcef"),
            codec.utf8(c.ORIGIN_REALM, "bench"), codec.address(c.HOST_IP_ADDRESS, "127.0.0.1"),
            codec.u32(c.VENDOR_ID, 0), codec.utf8(c.PRODUCT_NAME, "bench", mandatory=False),
            codec.u32(c.AUTH_APPLICATION_ID, c.APP_CC)))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while len(self.buf) >= 20:
            _v, length = codec.decode_header(self.buf)
            if len(self.buf) < length:
                break
            msg, self.buf = codec.decode(self.buf[:length]), self.buf[length:]
            if msg.code == c.CER:
                self.opened.set_result(None)
            elif msg.is_request:
                sid = msg.first(c.SESSION_ID)
                out.append(codec.message(msg.code, 0, msg.app_id, msg.hop_by_hop, msg.end_to_end,
                                         codec.utf8(c.SESSION_ID, sid.text() if sid else ""),
                                         codec.u32(c.RESULT_CODE, 2001), codec.utf8(c.ORIGIN_HOST, "bench-pcef"),
                                         codec.utf8(c.ORIGIN_REALM, "bench")))
                self.answered += msg.code == 274
        if out and self.transport is not None:
            self.transport.write(b"".join(out))


class _AckingNas(asyncio.DatagramProtocol):
    """Answers every Disconnect-Request with a Disconnect-ACK (Response Authenticator, RFC 5176 2.3)."""

    def __init__(self) -> None:
        self.answered = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        head = struct.pack("!BBH", data[0] + 1, data[1], 20)
        auth = hashlib.md5(head + data[4:20] + SECRET).digest()
        assert self.transport is not None
        self.transport.sendto(head + auth, addr)
        self.answered += 1


async def _wait(pred: Any, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not pred() and time.perf_counter() < deadline:  # noqa: ASYNC110 - polling counters of two peers
        await asyncio.sleep(0.005)


def _cfg(prefix: str, nas_port: int) -> config.Config:
    return config.from_mapping({
        "redis": {"key_prefix": prefix},
        "diameter": {"listen": ["127.0.0.1:0"]},
        "radius": {"auth_listen": "127.0.0.1:0", "acct_listen": "127.0.0.1:0", "clients": [
            {"address": "127.0.0.1/32", "secret": SECRET.decode(), "coa": True, "coa_port": nas_port}]},
    }, env={})


async def _open(core: Charging, n: int, proto: str) -> None:
    for i in range(0, n, 200):
        await asyncio.gather(*(core.initiate(ChargeRequest(
            subscriber=ACCOUNT[proto], session=f"{proto}-{j}", request_number=1, destination="4930123456", event_time=T0,
            requested_units=300, protocol=proto, origin="bench-pcef" if proto == "diameter" else "nas",
            reach=f"127.0.0.1,127.0.0.1,user{j}")) for j in range(i, min(n, i + 200))))


async def _one(core: Charging, node: ControlNode, proto: str, n: int, answered: Any) -> dict[str, Any]:
    await _open(core, n, proto)
    c0, t0 = cpu_seconds(), time.perf_counter()
    done = await Dispatcher(node.bus, node=node.node).abort_account(ACCOUNT[proto])
    await _wait(lambda: answered() >= n and not node._tasks, 30)
    seconds = time.perf_counter() - t0
    kind = "asr" if proto == "diameter" else "disconnect"
    acked = node.metrics.child(node.metrics.control_requests, proto, kind, "acked")._value.get()
    return row(f"control: block with {n} open {proto} sessions ({kind})", int(acked), seconds,
               cpu_s=cpu_seconds() - c0, dispatched=done.sent, answered=answered(), target="< 5 s")


async def _run(n: int) -> list[dict[str, Any]]:
    prefix = f"ocsbench:{uuid.uuid4().hex[:6]}:"
    loop = asyncio.get_running_loop()
    nas_transport, nas = await loop.create_datagram_endpoint(_AckingNas, local_addr=("127.0.0.1", 0))
    nas_port = nas_transport.get_extra_info("socket").getsockname()[1]
    core, r = await make_core(prefix, 2)
    core.cfg = cfg = dataclasses.replace(_cfg(prefix, nas_port), charging=core.cfg.charging)
    diameter, radius = DiameterServer(cfg, core, core.metrics), RadiusServer(cfg, core, core.metrics)
    await diameter.start()
    await radius.start()
    bus = ControlBus(r, core.keys)
    node = ControlNode("bench", bus, core, diameter, radius, core.metrics)
    diameter.state.peer_listeners.append(node.peer_changed)
    runner = asyncio.ensure_future(node.run())
    beats = asyncio.ensure_future(node.heartbeats())
    port = diameter.bound[0][1]
    _t, peer = await loop.create_connection(_AnsweringPeer, "127.0.0.1", port,
                                            family=socket.AF_INET)
    try:
        await asyncio.wait_for(peer.opened, 5)
        await bus.heartbeat("bench", diameter.open_peer_hosts())
        out = [await _one(core, node, "diameter", n, lambda: peer.answered),
               await _one(core, node, "radius", n, lambda: nas.answered)]
    finally:
        runner.cancel()
        beats.cancel()
        _t.close()
        nas_transport.close()
        await radius.stop(1)
        await diameter.stop(1)
        await core.close()
        await cleanup(r, prefix)
    return out


def run(quick: bool = False) -> list[dict[str, Any]]:
    import uvloop  # as in ocsd

    from ocs.log import configure

    configure("warning", "json")  # 3 info lines per request would measure the console
    return uvloop.run(_run(1000))


if __name__ == "__main__":
    print(format_table(run()))
