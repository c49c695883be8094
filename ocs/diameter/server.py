"""The Diameter listener(s) of ocsd: one :class:`Peer` protocol per TCP connection.

Also the sender of server-initiated requests (docs/control.md): :meth:`DiameterServer.abort_session`
(ASR) and :meth:`DiameterServer.reauth_session` (RAR), on an OPEN connection of the session's peer,
as :class:`ocs.control.node.DiameterControl` asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import socket
from collections.abc import Sequence

import structlog

from ocs.config import Config, split_hostport
from ocs.control.model import Ack, ControlResult
from ocs.diameter import constants as c
from ocs.diameter import server_requests
from ocs.diameter.codec import Message
from ocs.diameter.peer import BadAnswer, Peer, PeerClosed
from ocs.diameter.state import PeerHandle, ServerState
from ocs.metrics import Metrics
from ocs.model import ChargingCore

log = structlog.get_logger("ocs.diameter")

ANSWER_TIMEOUT = 5.0  # seconds per attempt of an ASR/RAR (docs/diameter.md); one retry after it


class DiameterServer:
    def __init__(self, cfg: Config, core: ChargingCore, metrics: Metrics,
                 sockets: Sequence[socket.socket] = ()) -> None:
        self.cfg = cfg
        self.state = ServerState(cfg, core, metrics)
        self.servers: list[asyncio.Server] = []
        self.sockets = sockets  # listeners bound by a supervisor (ocsd --workers N); else bound from the config
        self.answer_timeout = ANSWER_TIMEOUT  # per attempt; tests shorten it

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
        for sock in self.sockets:  # shared with the other workers: the kernel hands each connection to one
            srv = await loop.create_server(lambda: Peer(self.state), sock=sock, backlog=1024)
            for s in srv.sockets:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.servers.append(srv)
        for addr in () if self.sockets else self.cfg.diameter.listen:
            host, port = split_hostport(addr)
            srv = await loop.create_server(lambda: Peer(self.state), host, port, reuse_address=True, backlog=1024,
                                           reuse_port=self.cfg.node.reuse_port or None)
            for s in srv.sockets:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.servers.append(srv)

    # -- server-initiated requests (RFC 6733 sections 8.3, 8.5; RFC 4006 section 5.5) ------------

    def open_peer_hosts(self) -> set[str]:
        """Origin-Host of every peer with an OPEN connection to this node (the registry's entries)."""
        return {p.peer_host for p in self.peers if p.is_open}

    async def abort_session(self, peer_host: str, session_id: str) -> ControlResult:
        """ASR for ``session_id`` to the peer ``peer_host`` (RFC 6733 section 8.5; RFC 4006 section 5.6)."""
        return await self._control(c.ASR, peer_host, session_id)

    async def reauth_session(self, peer_host: str, session_id: str) -> ControlResult:
        """RAR AUTHORIZE_ONLY for ``session_id`` to ``peer_host`` (RFC 6733 section 8.3; RFC 4006 section 5.5)."""
        return await self._control(c.RAR, peer_host, session_id)

    def _pick(self, peer_host: str, avoid: PeerHandle | None = None) -> PeerHandle | None:
        """An OPEN connection of the peer: another than ``avoid`` when there is one, else the liveliest."""
        found = self.state.open_peers(peer_host)
        others = [p for p in found if p is not avoid] or found
        return max(others, key=lambda p: p.last_rx, default=None)

    async def _control(self, code: int, peer_host: str, session_id: str) -> ControlResult:
        """Send one ASR/RAR, count and log how it ended (``ocs_control_requests_total``, ``diameter_control``)."""
        kind = server_requests.KINDS[code]
        peer = self._pick(peer_host)
        attempts = 0
        if peer is None:
            result = ControlResult(Ack.PEER_GONE, detail=f"no open connection to {peer_host} on this node")
        else:
            result, attempts = await self._exchange(code, peer, session_id)
        m = self.state.metrics
        m.child(m.control_requests, "diameter", kind, result.ack.value).inc()
        event = log.info if result.ack in (Ack.ACKED, Ack.UNKNOWN_SESSION) else log.warning
        event("diameter_control", kind=kind, session=session_id, peer=peer_host, result=result.ack.value,
              code=result.code, attempts=attempts, detail=result.detail)
        return result

    async def _exchange(self, code: int, peer: PeerHandle, session_id: str) -> tuple[ControlResult, int]:
        """Send, wait ``answer_timeout``, send once more (same End-to-End Identifier, T bit), wait again.

        The answer to either attempt counts (a slow peer's first answer is not thrown away). A
        connection lost meanwhile moves the retry to another OPEN connection of the peer at once;
        with none left the peer is gone. Returns the result and the number of attempts sent.
        """
        d = self.cfg.diameter
        host, end_to_end = peer.peer_host, random.getrandbits(32)
        waiting: set[asyncio.Future[Message]] = set()
        try:
            for attempt in (1, 2):
                if attempt == 2:
                    picked = self._pick(host, avoid=peer)
                    if picked is None:
                        return ControlResult(Ack.PEER_GONE, detail=f"connection to {host} lost before the answer"), 1
                    peer = picked
                    m = self.state.metrics
                    m.child(m.control_retries, "diameter", server_requests.KINDS[code]).inc()
                    log.info("diameter_control_retry", kind=server_requests.KINDS[code], session=session_id,
                             peer=host, after="no_answer" if waiting else "connection_lost")
                request = server_requests.build(code, session_id, origin_host=d.origin_host,
                                                origin_realm=d.origin_realm, destination_host=peer.peer_host,
                                                destination_realm=peer.peer_realm)
                waiting.add(peer.send_request(functools.partial(request.encode, end_to_end=end_to_end,
                                                                retransmit=attempt > 1)))
                answer = await _first_answer(waiting, self.answer_timeout)
                if isinstance(answer, BadAnswer):
                    return ControlResult(Ack.BAD_ANSWER, detail=str(answer)), attempt
                if answer is not None:
                    return server_requests.outcome(request, answer), attempt
            if not waiting:  # the last attempt's connection went away too
                return ControlResult(Ack.PEER_GONE, detail=f"connection to {host} lost before the answer"), 2
            return ControlResult(Ack.NO_ANSWER, detail=f"no answer from {host} within 2 x {self.answer_timeout:g} s"), 2
        finally:
            for fut in waiting:
                if fut.done() and not fut.cancelled():
                    fut.exception()  # retrieved: no "exception was never retrieved" at collection
                fut.cancel()  # forgets the request: a later answer counts as unknown

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, DPR every open peer (waiting for DPA and in-flight CCRs), close."""
        for srv in self.servers:
            srv.close()
        if self.peers:
            await asyncio.gather(*(p.disconnect(timeout) for p in list(self.peers)), return_exceptions=True)
        for srv in self.servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(srv.wait_closed(), 1.0)


async def _first_answer(waiting: set[asyncio.Future[Message]], timeout: float) -> Message | BadAnswer | None:
    """The first answer to any of ``waiting`` within ``timeout`` s, or None (timed out, or every one lost).

    Futures that failed (their connection was lost) leave ``waiting``; those still pending stay.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while waiting:
        left = deadline - loop.time()
        if left <= 0:
            return None
        done, _ = await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for fut in done:
            waiting.discard(fut)
            exc = fut.exception()
            if exc is None:
                return fut.result()
            if isinstance(exc, BadAnswer):
                return exc
            if not isinstance(exc, PeerClosed):
                raise exc
    return None
