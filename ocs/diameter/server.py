"""The Diameter listener(s) of ocsd: one :class:`Peer` protocol per TCP connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from ocs import __version__
from ocs.config import Config, split_hostport
from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.diameter.peer import Peer
from ocs.metrics import Metrics
from ocs.model import ChargingCore


class DiameterServer:
    def __init__(self, cfg: Config, core: ChargingCore, metrics: Metrics) -> None:
        self.cfg = cfg
        self.core = core
        self.metrics = metrics
        self.peers: set[Peer] = set()
        self.inflight = 0
        self.servers: list[asyncio.Server] = []

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
            srv = await loop.create_server(lambda: Peer(self), host, port, reuse_address=True, backlog=1024,
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

    def allowed(self, host: str, realm: str, address: str) -> bool:
        rules = self.cfg.diameter.allowed_peers
        if not rules:
            return True
        return any((not r.origin_host or r.origin_host == host) and (not r.origin_realm or r.origin_realm == realm)
                   and (not r.address or r.address == address) for r in rules)

    def capabilities(self) -> list[bytes]:
        """CEA AVPs after Origin-Host/Realm (RFC 6733 section 5.3.2; RFC 4006 section 1.2)."""
        d = self.cfg.diameter
        addrs = []
        for addr in d.listen:
            host, _ = split_hostport(addr)
            ip = host if host not in ("", "0.0.0.0", "::") else "127.0.0.1"
            addrs.append(codec.address(c.HOST_IP_ADDRESS, ip))
        return [*addrs, codec.u32(c.VENDOR_ID, d.vendor_id),
                codec.utf8(c.PRODUCT_NAME, d.product_name, mandatory=False),
                codec.u32(c.SUPPORTED_VENDOR_ID, c.VENDOR_3GPP), codec.u32(c.AUTH_APPLICATION_ID, c.APP_CC),
                codec.u32(c.FIRMWARE_REVISION, int(__version__.replace(".", "")), mandatory=False)]
