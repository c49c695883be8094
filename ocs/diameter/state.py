"""What every Diameter peer connection shares: config, the core, metrics, the open peers.

Its own object (not the :class:`~ocs.diameter.server.DiameterServer`) so a
:class:`~ocs.diameter.peer.Peer` depends on this state and the server on both,
with no import cycle between peer and server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from ocs import __version__
from ocs.config import Config, split_hostport
from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.diameter.codec import Message
from ocs.metrics import Metrics
from ocs.model import ChargingCore

log = structlog.get_logger("ocs.diameter")

PeerListener = Callable[[str, bool], None]


class PeerHandle(Protocol):
    """What the server needs of a peer connection (:class:`ocs.diameter.peer.Peer`)."""

    peer_host: str  # the peer's Origin-Host from its CER (wire text), "" before
    peer_realm: str  # its Origin-Realm (wire text)
    last_rx: float  # time.monotonic() of the last bytes read

    @property
    def is_open(self) -> bool: ...

    async def disconnect(self, timeout: float) -> None: ...

    def send_request(self, build: Callable[[int], bytes]) -> asyncio.Future[Message]: ...


@dataclass
class ServerState:
    cfg: Config
    core: ChargingCore
    metrics: Metrics
    peers: set[PeerHandle] = field(default_factory=set)
    inflight: int = 0  # CCRs being handled over all peers (diameter.max_inflight)
    # called with (Origin-Host, True) when a peer reaches OPEN and (Origin-Host, False) when the last
    # OPEN connection of that Origin-Host is lost; must not block (docs/control.md, "Registry")
    peer_listeners: list[PeerListener] = field(default_factory=list)

    def peer_changed(self, host: str, up: bool) -> None:
        """Tell every listener; one that raises is logged and never breaks the peer."""
        for listener in list(self.peer_listeners):
            try:
                listener(host, up)
            except Exception as exc:
                log.error("peer_listener_failed", peer=host, up=up, error=repr(exc))

    def open_peers(self, host: str) -> list[PeerHandle]:
        """This node's OPEN connections to the peer whose Origin-Host is ``host``."""
        return [p for p in self.peers if p.is_open and p.peer_host == host]

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
