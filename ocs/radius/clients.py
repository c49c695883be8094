"""RADIUS clients by source address or CIDR (docs/radius.md), and a per-client reply rate limit."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field

from ocs.config import RadiusClient


@dataclass
class Client:
    name: str
    secret: bytes
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    rate: float
    tokens: float = 0.0
    vendor: str = ""
    coa: bool = False  # takes Disconnect-Request / CoA-Request from us (RFC 5176)
    coa_port: int = 3799
    stamp: float = field(default_factory=time.monotonic)

    def allow_reply(self) -> bool:
        """Token bucket: at most ``rate`` replies per second (burst of one second's worth)."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ClientTable:
    """Most specific network wins; exact host entries are a dict lookup."""

    def __init__(self, clients: tuple[RadiusClient, ...], rate: int) -> None:
        self.exact: dict[str, Client] = {}
        self.nets: list[Client] = []
        for c in clients:
            net = ipaddress.ip_network(c.address, strict=False)
            client = Client(c.name, c.secret.encode(), net, float(rate), float(rate), vendor=c.vendor,
                            coa=c.coa, coa_port=c.coa_port)
            if net.num_addresses == 1:
                self.exact[str(net.network_address)] = client
            else:
                self.nets.append(client)
        self.nets.sort(key=lambda cl: cl.network.prefixlen, reverse=True)

    def lookup(self, address: str) -> Client | None:
        found = self.exact.get(address)
        if found is not None:
            return found
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        for client in self.nets:
            if ip in client.network:
                return client
        return None
