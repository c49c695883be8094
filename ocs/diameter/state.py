"""What every Diameter peer connection shares: config, the core, metrics, the open peers.

Its own object (not the :class:`~ocs.diameter.server.DiameterServer`) so a
:class:`~ocs.diameter.peer.Peer` depends on this state and the server on both,
with no import cycle between peer and server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ocs import __version__
from ocs.config import Config, split_hostport
from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.metrics import Metrics
from ocs.model import ChargingCore


class PeerHandle(Protocol):
    """What the server needs of an open peer connection (:class:`ocs.diameter.peer.Peer`)."""

    async def disconnect(self, timeout: float) -> None: ...


@dataclass
class ServerState:
    cfg: Config
    core: ChargingCore
    metrics: Metrics
    peers: set[PeerHandle] = field(default_factory=set)
    inflight: int = 0  # CCRs being handled over all peers (diameter.max_inflight)

    def allowed(self, host: str, realm: str, address: str) -> bool:
        """The optional allow-list of ``diameter.allowed_peers`` (empty: every peer)."""
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
