"""The listening sockets of ``ocsd --workers N``: bound once by the supervisor, inherited by every worker.

Why the supervisor binds instead of each worker binding with SO_REUSEPORT: one socket shared by
all workers is read by whichever worker is free, per connection (TCP) and per datagram (UDP), so a
single NAS socket's packets spread over every worker (SO_REUSEPORT hashes a source address and
port to one socket, so one NAS would load one worker); a port taken is found once, before any
worker starts; and a restarted worker serves the very same sockets at once.

The file descriptors travel on the worker's command line (``--inherit``) with their numbers kept
by ``subprocess``'s ``pass_fds``.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from ocs.config import Config, split_hostport

BACKLOG = 1024  # as DiameterServer's own listeners


class ListenError(Exception):
    """A listener could not be bound: one start-up line (``radius: cannot listen: ...``), exit 1."""

    def __init__(self, front: str, error: OSError) -> None:
        super().__init__(f"{front}: cannot listen: {error}")


def _bind_error(exc: OSError, address: Any) -> OSError:
    """The message asyncio's listeners give, so the one start-up line reads the same with workers or without."""
    return OSError(exc.errno, f"error while attempting to bind on address {address!r}: {(exc.strerror or '').lower()}")


def bind_tcp(addr: str, reuse_port: bool) -> list[socket.socket]:
    """Listening sockets for ``HOST:PORT`` (one per address family the host name resolves to), as asyncio would."""
    host, port = split_hostport(addr)
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise _bind_error(exc, address) from None
            sock.listen(BACKLOG)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def bind_udp(addr: str, reuse_port: bool) -> socket.socket:
    """The datagram socket for ``HOST:PORT``: the first address that binds, as asyncio's local_addr does."""
    host, port = split_hostport(addr)
    error: OSError = OSError(f"no address for {addr!r}")
    for family, kind, proto, _name, address in socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM):
        sock = socket.socket(family, kind, proto)
        try:
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            error = _bind_error(exc, address)
            continue
        return sock
    raise error


@dataclass(frozen=True)
class Inherited:
    """The descriptor numbers a worker is given (``--inherit diameter=5,6;auth=7;acct=8;channel=9``)."""

    diameter: tuple[int, ...]
    auth: int
    acct: int
    channel: int  # the worker's end of its socket pair with the supervisor (ocs.workers.link)

    def encode(self) -> str:
        return f"diameter={','.join(map(str, self.diameter))};auth={self.auth};acct={self.acct};channel={self.channel}"

    @classmethod
    def decode(cls, text: str) -> Inherited:
        try:
            fields = dict(part.split("=", 1) for part in text.split(";"))
            return cls(tuple(int(fd) for fd in fields["diameter"].split(",") if fd), int(fields["auth"]),
                       int(fields["acct"]), int(fields["channel"]))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"bad --inherit {text!r}: {exc}") from None

    def fds(self) -> tuple[int, ...]:
        return (*self.diameter, self.auth, self.acct, self.channel)


class Listeners:
    """The supervisor's listening sockets, kept open for the life of ocsd (a restarted worker inherits them)."""

    def __init__(self, diameter: list[socket.socket], auth: socket.socket, acct: socket.socket) -> None:
        self.diameter = diameter
        self.auth = auth
        self.acct = acct

    @classmethod
    def bind(cls, cfg: Config) -> Listeners:
        """Bind every listener of the config, or none (a ListenError names the front end)."""
        reuse = cfg.node.reuse_port
        bound: list[socket.socket] = []
        front = "diameter"
        try:
            diameter = [s for addr in cfg.diameter.listen for s in bind_tcp(addr, reuse)]
            bound += diameter
            front = "radius"
            auth = bind_udp(cfg.radius.auth_listen, reuse)
            bound.append(auth)
            acct = bind_udp(cfg.radius.acct_listen, reuse)
        except OSError as exc:
            for sock in bound:
                sock.close()
            raise ListenError(front, exc) from None
        return cls(diameter, auth, acct)

    def inherited(self, channel: int) -> Inherited:
        return Inherited(tuple(s.fileno() for s in self.diameter), self.auth.fileno(), self.acct.fileno(), channel)

    def bound(self) -> dict[str, Any]:
        """Addresses for the ``ready`` log line, shaped as a single process's (``diameter``, ``radius``)."""
        return {"diameter": [s.getsockname()[:2] for s in self.diameter if s.fileno() >= 0],
                "radius": {k: s.getsockname()[:2] for k, s in (("auth", self.auth), ("acct", self.acct))
                           if s.fileno() >= 0}}

    def close(self) -> None:
        """The supervisor's copies: once the workers closed theirs too, new connections are refused again."""
        for sock in (*self.diameter, self.auth, self.acct):
            sock.close()


def adopt(inherited: Inherited) -> tuple[list[socket.socket], dict[str, socket.socket]]:
    """A worker's socket objects for the inherited listeners: (Diameter listeners, RADIUS by kind)."""
    return ([socket.socket(fileno=fd) for fd in inherited.diameter],
            {"auth": socket.socket(fileno=inherited.auth), "acct": socket.socket(fileno=inherited.acct)})
