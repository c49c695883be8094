"""One Diameter peer connection: framing, CER/CEA, DWR/DWA, DPR/DPA, CCR dispatch (RFC 6733).

State machine (section 5.6, responder side): WAIT_CER -> OPEN -> CLOSING.
Framing rejects version != 1, length < 20, length not a multiple of 4 and
lengths above ``diameter.max_message_bytes`` by closing this connection only.
In-flight requests per connection are bounded with ``pause_reading`` (TCP back
pressure); beyond the daemon-wide bound a CCR is answered 3004 TOO_BUSY.

Requests of our own (ASR, RAR: :mod:`ocs.diameter.server_requests`) go out with
:meth:`Peer.send_request`: each gets the next Hop-by-Hop Identifier and a future
that the answer with that identifier resolves (RFC 6733 section 3: an answer is
matched to its request by Hop-by-Hop Identifier only). An answer nobody waits for
is dropped and counted; an answer whose AVPs do not decode fails its request and
leaves the connection up (its header framed it; nothing is out of step).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import time
from collections.abc import Callable
from typing import cast

import structlog
from mypy_extensions import mypyc_attr

from ocs.diameter import codec, gy
from ocs.diameter import constants as c
from ocs.diameter.codec import CodecError, Message
from ocs.diameter.state import ServerState
from ocs.log_sampling import request_lines
from ocs.model import StoreUnavailable

log = structlog.get_logger("ocs.diameter")


_COMMAND_NAMES = {c.CER: "cer", c.DWR: "dwr", c.DPR: "dpr", c.CCR: "ccr"}
_REQUEST_TYPES = {1: "initial", 2: "update", 3: "termination", 4: "event"}  # metric label of a CC-Request-Type


@mypyc_attr(native_class=False)  # mypyc: a native class cannot derive from ConnectionError
class PeerClosed(ConnectionError):
    """The connection went away (or was never OPEN) before the answer to our request came."""


class BadAnswer(ValueError):
    """The answer to our request came but its AVPs do not decode (RFC 6733 section 4)."""


class State(enum.Enum):
    WAIT_CER = "wait_cer"
    OPEN = "open"
    CLOSING = "closing"


class Peer(asyncio.Protocol):
    def __init__(self, server: ServerState) -> None:
        self.server = server
        self.cfg = server.cfg.diameter
        self.state = State.WAIT_CER
        self.buf = bytearray()
        self._out: list[bytes] = []  # messages queued for this loop tick (see send)
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by connection_made: a task per CCR without a lookup
        self.peer_host = ""  # Origin-Host of the CER, wire text (as the sessions' origin is stored)
        self.peer_realm = ""  # Origin-Realm of the CER, wire text: the Destination-Realm of our requests
        self.opened = False  # reached OPEN once (the listeners were told)
        self.address = ""
        self.inflight = 0
        self.paused = False
        self.tasks: set[asyncio.Task[None]] = set()
        self.last_rx = time.monotonic()
        self.dwr_outstanding = False
        self.hbh = random.getrandbits(32)
        self.dpa_waiter: asyncio.Future[None] | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.pending: dict[int, asyncio.Future[Message]] = {}  # our requests by Hop-by-Hop Identifier

    @property
    def is_open(self) -> bool:
        return self.state is State.OPEN

    # -- transport -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else ""
        self.server.peers.add(self)
        self._arm_watchdog()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = State.CLOSING
        self.server.peers.discard(self)
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.dpa_waiter is not None and not self.dpa_waiter.done():
            self.dpa_waiter.set_result(None)
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(PeerClosed(f"connection to {self.peer_host or self.address} lost"))
        log.info("peer_closed", peer=self.peer_host or self.address)
        if self.opened and not self.server.open_peers(self.peer_host):  # its last OPEN connection here
            self.server.peer_changed(self.peer_host, False)

    def close(self, reason: str) -> None:
        self.flush()  # answers already queued (an error answer before the close) still go out
        if self.transport is not None and not self.transport.is_closing():
            log.info("peer_close", peer=self.peer_host or self.address, reason=reason)
            self.server.metrics.child(self.server.metrics.dropped, "diameter", reason).inc()
            self.transport.close()
        self.state = State.CLOSING

    def send(self, data: bytes) -> None:
        """Queue a message; the messages of one loop tick leave in one write (a syscall per CCA was ~10 %)."""
        if self.transport is None or self.transport.is_closing():
            return
        if not self._out:
            (self._loop or asyncio.get_running_loop()).call_soon(self.flush)
        self._out.append(data)

    def flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.last_rx = time.monotonic()
        self.dwr_outstanding = False
        while len(self.buf) >= 20:
            version, length = codec.decode_header(self.buf)
            if version != 1 or length < 20 or length % 4 or length > self.cfg.max_message_bytes:
                self.close("bad_framing")
                return
            if len(self.buf) < length:
                return
            raw = bytes(self.buf[:length])
            del self.buf[:length]
            self._dispatch(raw)
            if self.state is State.CLOSING:
                return

    # -- dispatch ------------------------------------------------------------------------------

    def _dispatch(self, raw: bytes) -> None:
        try:
            msg = codec.decode(raw)
        except CodecError as exc:
            if self.state is State.OPEN and not raw[4] & codec.FLAG_R:
                self._on_bad_answer(raw, exc)  # an answer: nothing to answer, the framing held
                return
            self.close("malformed")  # cannot even find the header fields to answer: close (RFC 6733 3)
            return
        if self.state is State.WAIT_CER:
            if msg.code == c.CER and msg.is_request:
                self._on_cer(msg)
            else:
                self.close("no_cer")
            return
        if not msg.is_request:
            self._on_answer(msg)
        elif msg.code == c.DWR:
            self.send(self._base_answer(msg, c.SUCCESS))
        elif msg.code == c.DPR:
            self.send(self._base_answer(msg, c.SUCCESS))
            self.state = State.CLOSING
            self.flush()  # the DPA goes out before the close (RFC 6733 section 5.4)
            if self.transport is not None:
                self.transport.close()
        elif msg.code == c.CER:
            self.send(self._base_answer(msg, c.SUCCESS))
        elif msg.app_id != c.APP_CC:
            self._error(msg, c.APPLICATION_UNSUPPORTED)
        elif msg.code != c.CCR:
            self._error(msg, c.COMMAND_UNSUPPORTED)
        else:
            self._start_ccr(msg)

    def _error(self, msg: Message, result: int, failed: bytes = b"", text: str = "") -> None:
        # labelled by a fixed name: the command code comes from the wire (any of 2^24 values)
        kind = _COMMAND_NAMES.get(msg.code, "other")
        self.server.metrics.child(self.server.metrics.requests, "diameter", kind, str(result)).inc()
        self.send(gy.error_answer(msg, result, self.cfg.origin_host, self.cfg.origin_realm, failed=failed,
                                  text=text))

    def _on_answer(self, msg: Message) -> None:
        fut = self.pending.pop(msg.hop_by_hop, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(msg)
        elif msg.code == c.DPR:
            if self.dpa_waiter is not None and not self.dpa_waiter.done():
                self.dpa_waiter.set_result(None)
        elif msg.code != c.DWR:  # a DWA only shows the peer is alive (data_received noted it)
            self._unknown_answer(msg.code, msg.hop_by_hop)

    def _on_bad_answer(self, raw: bytes, exc: CodecError) -> None:
        code, hbh = int.from_bytes(raw[5:8], "big"), int.from_bytes(raw[12:16], "big")
        log.warning("answer_undecodable", peer=self.peer_host, command=code, hop_by_hop=hbh, error=str(exc))
        fut = self.pending.pop(hbh, None)
        if fut is None:
            self._unknown_answer(code, hbh)
        elif not fut.done():
            fut.set_exception(BadAnswer(f"answer does not decode: {exc}"))

    def _unknown_answer(self, code: int, hop_by_hop: int) -> None:
        """RFC 6733 section 6.2: an answer matching no pending request is discarded."""
        log.info("answer_unknown", peer=self.peer_host, command=code, hop_by_hop=hop_by_hop)
        self.server.metrics.child(self.server.metrics.dropped, "diameter", "unknown_answer").inc()

    # -- requests of our own (ASR, RAR) ----------------------------------------------------------

    def _next_hbh(self) -> int:
        """The next Hop-by-Hop Identifier (RFC 6733 section 3: unique on this connection at any time)."""
        self.hbh = (self.hbh + 1) & 0xFFFFFFFF
        while self.hbh in self.pending:  # 2^32 requests still waiting: never in practice
            self.hbh = (self.hbh + 1) & 0xFFFFFFFF
        return self.hbh

    def send_request(self, build: Callable[[int], bytes]) -> asyncio.Future[Message]:
        """Send ``build(hop_by_hop)`` and return a future for its answer.

        The future fails with :class:`PeerClosed` when the peer is not OPEN or the connection is
        lost before the answer, and with :class:`BadAnswer` when the answer does not decode.
        Cancelling it (a timeout) forgets the request: a later answer counts as unknown.
        """
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        if self.state is not State.OPEN or self.transport is None or self.transport.is_closing():
            fut.set_exception(PeerClosed(f"connection to {self.peer_host or self.address} is not open"))
            return fut
        hbh = self._next_hbh()
        self.pending[hbh] = fut
        fut.add_done_callback(lambda f: self._forget(hbh, f))
        self.send(build(hbh))
        return fut

    def _forget(self, hbh: int, fut: asyncio.Future[Message]) -> None:
        if self.pending.get(hbh) is fut:
            del self.pending[hbh]

    async def request(self, build: Callable[[int], bytes], timeout: float) -> Message:
        """:meth:`send_request` and wait for the answer at most ``timeout`` s (TimeoutError)."""
        return await asyncio.wait_for(self.send_request(build), timeout)

    # -- capabilities exchange (RFC 6733 section 5.3) --------------------------------------------

    def _identity(self) -> list[bytes]:
        return [codec.utf8(c.ORIGIN_HOST, self.cfg.origin_host), codec.utf8(c.ORIGIN_REALM, self.cfg.origin_realm)]

    def _base_answer(self, msg: Message, result: int) -> bytes:
        body = [codec.u32(c.RESULT_CODE, result), *self._identity()]
        if msg.code == c.CER:
            body += self.server.capabilities()
        flags = codec.FLAG_E if 3000 <= result < 4000 else 0
        return codec.message(msg.code, flags, 0, msg.hop_by_hop, msg.end_to_end, *body)

    def _apps(self, msg: Message) -> set[int]:
        apps = {a.u32() for a in msg.all(c.AUTH_APPLICATION_ID)}
        for vsa in msg.all(c.VENDOR_SPECIFIC_APPLICATION_ID):
            apps |= {a.u32() for a in vsa.group() if a.code == c.AUTH_APPLICATION_ID}
        return apps

    def _on_cer(self, msg: Message) -> None:
        try:
            host = msg.first(c.ORIGIN_HOST)
            realm = msg.first(c.ORIGIN_REALM)
            self.peer_host = host.wire() if host else ""
            self.peer_realm = peer_realm = realm.wire() if realm else ""
            apps = self._apps(msg)
        except CodecError:
            self.send(self._base_answer(msg, c.INVALID_AVP_LENGTH))
            self.close("bad_cer")
            return
        if not self.peer_host or not peer_realm:
            self.send(self._base_answer(msg, c.MISSING_AVP))
            self.close("bad_cer")
        elif not self.server.allowed(self.peer_host, peer_realm, self.address):
            self.send(self._base_answer(msg, c.UNKNOWN_PEER))
            self.close("unknown_peer")
        elif not apps & {c.APP_CC, c.APP_RELAY}:
            self.send(self._base_answer(msg, c.NO_COMMON_APPLICATION))
            self.close("no_common_application")
        else:
            self.send(self._base_answer(msg, c.SUCCESS))
            self.state = State.OPEN
            self.opened = True
            log.info("peer_open", peer=self.peer_host, realm=peer_realm, address=self.address)
            self.server.peer_changed(self.peer_host, True)

    # -- watchdog (RFC 3539 section 3.4) -------------------------------------------------------

    def _arm_watchdog(self) -> None:
        tw = max(6.0, float(self.cfg.watchdog_seconds)) + random.uniform(-2.0, 2.0)
        self.watchdog = asyncio.get_running_loop().call_later(tw, self._on_watchdog)

    def _on_watchdog(self) -> None:
        if self.state is State.CLOSING:
            return
        if self.state is State.WAIT_CER:
            # No CER within a watchdog period (nothing, or a frame never completed): without this an
            # idle or half-open connection held a descriptor for ever (RFC 6733 section 5.6: the
            # responder waits for the CER, and a peer that never sends one is no peer).
            self.close("cer_timeout")
            return
        if time.monotonic() - self.last_rx >= self.cfg.watchdog_seconds - 2.5:
            if self.dwr_outstanding:
                self.close("watchdog_expired")
                return
            if self.state is State.OPEN:
                self.dwr_outstanding = True
                self.send(self._request(c.DWR, []))
        self._arm_watchdog()

    def _request(self, code: int, extra: list[bytes]) -> bytes:
        return codec.message(code, codec.FLAG_R, 0, self._next_hbh(), random.getrandbits(32), *self._identity(),
                             *extra)

    async def disconnect(self, timeout: float) -> None:
        """Send DPR (Disconnect-Cause REBOOTING) and wait for the DPA, bounded (RFC 6733 section 5.4)."""
        if self.state is not State.OPEN:
            self.close("shutdown")
            return
        self.dpa_waiter = asyncio.get_running_loop().create_future()
        self.send(self._request(c.DPR, [codec.u32(c.DISCONNECT_CAUSE, 0)]))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.dpa_waiter, timeout)
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout)
        self.close("shutdown")

    # -- CCR -----------------------------------------------------------------------------------

    def _start_ccr(self, msg: Message) -> None:
        if self.server.inflight >= self.cfg.max_inflight:
            self._error(msg, c.TOO_BUSY)
            return
        self.inflight += 1
        self.server.inflight += 1
        if self.inflight >= self.cfg.max_inflight_per_peer and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        task = (self._loop or asyncio.get_running_loop()).create_task(self._ccr(msg))
        self.tasks.add(task)
        task.add_done_callback(self._ccr_done)

    def _ccr_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.inflight -= 1
        self.server.inflight -= 1
        if self.paused and self.inflight < self.cfg.max_inflight_per_peer // 2 + 1 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    async def _ccr(self, msg: Message) -> None:
        t0 = time.perf_counter()
        rtype = "unknown"
        try:
            ccr = gy.parse_ccr(msg)
            rtype = _REQUEST_TYPES[ccr.request_type]
            outcomes = await gy.handle_ccr(self.server.core, ccr)
            answer = gy.encode_cca(ccr, outcomes, self.cfg.origin_host, self.cfg.origin_realm, msg.hop_by_hop,
                                   msg.end_to_end, msg.flags)
            result = gy.command_result(outcomes)
            if any(o.duplicate for o in outcomes):
                self.server.metrics.child(self.server.metrics.duplicates, "diameter").inc()
            for req, out in zip(ccr.requests, outcomes, strict=True):
                if request_lines.allow("ccr"):  # sampled under load (ocs.log_sampling); check before the call
                    log.info("ccr", session=req.session, account=out.account, peer=self.peer_host, type=rtype,
                             rating_group=req.rating_group, outcome=out.status.value, granted=out.granted_units,
                             charged=out.charged, duplicate=out.duplicate)
        except gy.GyError as exc:
            self._error(msg, exc.result, exc.failed, str(exc))
            return
        except CodecError as bad:  # a name per type: mypyc gives a name the type of its first except
            self._error(msg, c.INVALID_AVP_LENGTH, text=str(bad))
            return
        except StoreUnavailable as down:
            log.warning("ccr_store_unavailable", error=str(down), peer=self.peer_host)
            self._error(msg, c.TOO_BUSY)
            return
        except Exception as failure:
            log.error("ccr_failed", error=repr(failure), peer=self.peer_host)
            self._error(msg, c.UNABLE_TO_COMPLY)
            return
        self.send(answer)
        m = self.server.metrics
        m.child(m.requests, "diameter", rtype, str(result)).inc()
        m.child(m.latency, "diameter", rtype).observe(time.perf_counter() - t0)
