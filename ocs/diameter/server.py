"""The Diameter listener(s) of ocsd: one :class:`Peer` protocol per TCP connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from ocs.config import Config, split_hostport
from ocs.diameter.peer import Peer
from ocs.diameter.state import PeerHandle, ServerState
from ocs.metrics import Metrics
from ocs.model import ChargingCore


class DiameterServer:
    def __init__(self, cfg: Config, core: ChargingCore, metrics: Metrics) -> None:
        self.cfg = cfg
        self.state = ServerState(cfg, core, metrics)
        self.servers: list[asyncio.Server] = []

    @property
    def peers(self) -> set[PeerHandle]:
        return self.state.peers

    @property
    def bound(self) -> list[tuple[str, int]]:
        out = []
        for srv in self.servers:
            for s in srv.sockets:
                host, port = s.getsockname()[:2]
                out.append((str(host), int(port)))
        return out

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for addr in self.cfg.diameter.listen:
            host, port = split_hostport(addr)
            srv = await loop.create_server(lambda: Peer(self.state), host, port, reuse_address=True, backlog=1024,
                                           reuse_port=self.cfg.node.reuse_port or None)
            for s in srv.sockets:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.servers.append(srv)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, DPR every open peer (waiting for DPA and in-flight CCRs), close."""
        for srv in self.servers:
            srv.close()
        if self.peers:
            await asyncio.gather(*(p.disconnect(timeout) for p in list(self.peers)), return_exceptions=True)
        for srv in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(srv.wait_closed(), 1.0)
