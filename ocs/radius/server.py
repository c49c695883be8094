"""The RADIUS front end: UDP auth and accounting sockets on pyrad's packet codec.

Why not pyrad's ``ServerAsync`` loop itself: its handlers are synchronous and
it has no RFC 5080 duplicate cache, no per-client rate limit and no bound on
concurrent work (design.md).  We keep pyrad for what it does well (packet
decoding, authenticators, Message-Authenticator, PAP/CHAP) and own the asyncio
datagram protocol: every request becomes an owned task calling the core, and
the reply is sent only once the core has answered (durably recorded in Redis).
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import struct
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from pyrad import packet as rp
from pyrad.dictionary import Dictionary

from ocs.config import Config, RadiusClient, split_hostport
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, ChargingCore, Outcome, Service, Status, StoreUnavailable
from ocs.radius import mapping as m
from ocs.radius.clients import Client, ClientTable
from ocs.radius.dedup import DuplicateCache

log = structlog.get_logger("ocs.radius")
MAX_PACKET = 4096


def load_dictionary(cfg: Config) -> Any:
    return Dictionary(cfg.radius.dictionary, *cfg.radius.extra_dictionaries)


def _raw(pkt: Any, code: int) -> bytes | None:
    vals = pkt.get(code)
    return bytes(vals[0]) if vals else None


def _str(pkt: Any, code: int) -> str:
    v = _raw(pkt, code)
    return v.decode("utf-8", "replace") if v is not None else ""


def _int(pkt: Any, code: int) -> int | None:
    v = _raw(pkt, code)
    return int.from_bytes(v, "big") if v is not None and len(v) == 4 else None


def attributes_ok(data: bytes) -> bool:
    """Every attribute length inside the packet (pyrad silently truncates an overrun)."""
    pos = 20
    while pos < len(data):
        if pos + 2 > len(data):
            return False
        length = data[pos + 1]
        if length < 2 or pos + length > len(data):
            return False
        pos += length
    return True


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, server: RadiusServer, kind: str) -> None:
        self.server = server
        self.kind = kind
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.server.cfg.radius.socket_buffer_bytes)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server.received(self, data, addr)


class RadiusServer:
    def __init__(self, cfg: Config, core: ChargingCore, metrics: Metrics) -> None:
        self.cfg = cfg
        self.core = core
        self.metrics = metrics
        self.dict = load_dictionary(cfg)
        self.clients = ClientTable(cfg.radius.clients, cfg.radius.replies_per_second_per_client)
        self.cache = DuplicateCache(cfg.radius.duplicate_cache_seconds)
        self.tasks: set[asyncio.Task[None]] = set()
        self.endpoints: dict[str, _Endpoint] = {}
        self.accepting = False
        c = cfg.charging
        self.call_hold = max(c.validity_seconds, c.max_grant_seconds) + c.grace_seconds

    @property
    def bound(self) -> dict[str, tuple[str, int]]:
        out = {}
        for kind, ep in self.endpoints.items():
            if ep.transport is not None:
                host, port = ep.transport.get_extra_info("sockname")[:2]
                out[kind] = (str(host), int(port))
        return out

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for kind, addr in (("auth", self.cfg.radius.auth_listen), ("acct", self.cfg.radius.acct_listen)):
            host, port = split_hostport(addr)
            _t, ep = await loop.create_datagram_endpoint(lambda k=kind: _Endpoint(self, k),  # type: ignore[misc]
                                                         local_addr=(host, port))
            self.endpoints[kind] = ep
        self.accepting = True

    async def stop(self, timeout: float = 5.0) -> None:
        self.accepting = False
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout)
        for ep in self.endpoints.values():
            if ep.transport is not None:
                ep.transport.close()

    def reload_clients(self, clients: tuple[RadiusClient, ...]) -> None:
        self.clients = ClientTable(clients, self.cfg.radius.replies_per_second_per_client)

    def _drop(self, reason: str) -> None:
        self.metrics.dropped.labels("radius", reason).inc()

    # -- receive -------------------------------------------------------------------------------

    def received(self, ep: _Endpoint, data: bytes, addr: tuple[str, int]) -> None:
        if not self.accepting:
            return
        client = self.clients.lookup(addr[0])
        if client is None:
            self._drop("unknown_client")
            return
        if len(data) < 20 or len(data) > MAX_PACKET:
            self._drop("bad_length")
            return
        length = struct.unpack_from("!H", data, 2)[0]
        if length < 20 or length > len(data):
            self._drop("bad_length")
            return
        data = data[:length]  # RFC 2865 section 3: octets beyond Length are padding
        if not attributes_ok(data):
            self._drop("bad_attribute")
            return
        key = (addr[0], addr[1], data[0], data[1], data[4:20])
        cached = self.cache.get(key)
        if cached is not None:
            self.metrics.duplicates.labels("radius").inc()
            if cached and ep.transport is not None:  # IN_PROGRESS (b"") means: drop, it is being handled
                ep.transport.sendto(cached, addr)
            return
        if len(self.tasks) >= self.cfg.radius.max_inflight:
            self._drop("overload")  # silence: the NAS retransmits (design.md convention 5)
            return
        self.cache.begin(key)
        task = asyncio.ensure_future(self._handle(ep, client, data, addr, key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, ep: _Endpoint, client: Client, data: bytes, addr: tuple[str, int],
                      key: tuple[str, int, int, int, bytes]) -> None:
        reply: bytes | None = None
        t0 = time.perf_counter()
        kind = "unknown"
        try:
            if data[0] == rp.AccessRequest and ep.kind == "auth":
                kind = "access"
                reply = await self._access(client, data, addr)
            elif data[0] == rp.AccountingRequest and ep.kind == "acct":
                kind = "accounting"
                reply = await self._accounting(client, data, addr)
            else:
                self._drop("unexpected_code")
        except rp.PacketError:
            self._drop("malformed")
        except StoreUnavailable as exc:
            log.warning("radius_store_unavailable", error=str(exc))
            self._drop("store_unavailable")
        except Exception as exc:
            log.error("radius_handler_failed", error=repr(exc))
            self._drop("error")
        finally:
            self.cache.finish(key, reply)
        if reply is not None and ep.transport is not None:
            if client.allow_reply():
                ep.transport.sendto(reply, addr)
            else:
                self._drop("rate_limited")
            self.metrics.latency.labels("radius", kind).observe(time.perf_counter() - t0)

    # -- Access-Request (RFC 2865) -------------------------------------------------------------

    def _password_check(self, pkt: Any) -> Any:
        pap = _raw(pkt, 2)
        if pap is not None:
            try:
                given = pkt.PwDecrypt(pap).encode()
            except (UnicodeDecodeError, ValueError):
                return lambda _secret: False
            return lambda secret: hmac.compare_digest(given, secret.encode())
        if _raw(pkt, 3) is not None:
            return lambda secret: bool(pkt.VerifyChapPasswd(secret))
        return lambda _secret: False

    async def _access(self, client: Client, data: bytes, addr: tuple[str, int]) -> bytes | None:
        pkt = rp.AuthPacket(packet=data, secret=client.secret, dict=self.dict)
        if pkt.message_authenticator:
            if not pkt.verify_message_authenticator():
                self._drop("bad_message_authenticator")
                return None
        elif self.cfg.radius.require_message_authenticator:
            self._drop("missing_message_authenticator")
            return None
        user, calling, called = _str(pkt, 1), _str(pkt, 31), _str(pkt, 30)
        nas = _str(pkt, 32) or (str(pkt["NAS-IP-Address"][0]) if pkt.get(4) else addr[0])
        session = _str(pkt, 44) or f"{nas}|{user}|{called}"
        req = ChargeRequest(
            subscriber=user or calling, session=session, request_number=m.auth_request_number(pkt.authenticator),
            service=Service.VOICE, destination=called, event_time=datetime.now(UTC),
            requested_units=self.cfg.charging.max_grant_seconds, protocol="radius", origin=nas, calling=calling,
            password_check=self._password_check(pkt), hold_seconds=self.cfg.radius.start_timeout_seconds)
        out = await self.core.initiate(req)
        reply = pkt.CreateReply()
        if out.status is Status.GRANTED:
            reply.code = rp.AccessAccept
            reply.AddAttribute("Session-Timeout", out.granted_units)
            if self.cfg.radius.acct_interim_interval:
                reply.AddAttribute("Acct-Interim-Interval", self.cfg.radius.acct_interim_interval)
        else:
            reply.code = rp.AccessReject
            reply.AddAttribute("Reply-Message", m.REJECT_REASON.get(out.status, out.reason or "rejected"))
        reply.add_message_authenticator()
        self._count("access", out)
        log.info("access", session=session, account=out.account, peer=client.name, outcome=out.status.value,
                 granted=out.granted_units, duplicate=out.duplicate)
        return bytes(reply.ReplyPacket())

    def _count(self, kind: str, out: Outcome) -> None:
        self.metrics.requests.labels("radius", kind, out.status.value).inc()

    # -- Accounting-Request (RFC 2866) ---------------------------------------------------------

    async def _accounting(self, client: Client, data: bytes, addr: tuple[str, int]) -> bytes | None:
        pkt = rp.AcctPacket(packet=data, secret=client.secret, dict=self.dict)
        if not pkt.VerifyAcctRequest():
            self._drop("bad_authenticator")
            return None
        status_raw = _int(pkt, 40)
        try:
            status = m.AcctStatus(status_raw or 0)
        except ValueError:
            self._drop("unknown_status")
            return None
        nas = _str(pkt, 32) or (str(pkt["NAS-IP-Address"][0]) if pkt.get(4) else addr[0])
        delay = _int(pkt, 41) or 0
        when = datetime.now(UTC) - timedelta(seconds=delay)
        if status in (m.AcctStatus.ACCOUNTING_ON, m.AcctStatus.ACCOUNTING_OFF):
            n = await self.core.terminate_origin(nas, "NAS-Reboot" if status is m.AcctStatus.ACCOUNTING_ON
                                                 else "NAS-Request")
            log.info("accounting_on_off", nas=nas, status=status.name, settled=n)
        else:
            await self._session_accounting(pkt, status, nas, when)
        reply = pkt.CreateReply()
        reply.code = rp.AccountingResponse
        return bytes(reply.ReplyPacket())

    async def _session_accounting(self, pkt: Any, status: m.AcctStatus, nas: str, when: datetime) -> None:
        user, calling, called = _str(pkt, 1), _str(pkt, 31), _str(pkt, 30)
        sid = _str(pkt, 44) or f"{nas}|{user}|{called}"
        t = _int(pkt, 46) or 0
        cause = m.TERMINATE_CAUSES.get(_int(pkt, 49) or 0, "")
        req = ChargeRequest(
            subscriber=user or calling, session=sid, request_number=m.request_number(status, t),
            service=Service.VOICE, destination=called, event_time=when, used_units=t, used_is_total=True,
            requested_units=self.cfg.charging.max_grant_seconds, protocol="radius", origin=nas, calling=calling,
            termination_cause=cause, hold_seconds=self.call_hold)
        if status is m.AcctStatus.START:
            bound = await self.core.bind(f"{nas}|{user}|{called}", sid, user or calling, self.call_hold)
            out = None
            if not bound:
                out = await self.core.initiate(req)  # the Access-Request was not ours (or already bound)
        elif status is m.AcctStatus.INTERIM:
            out = await self.core.update(req)
        else:
            out = await self.core.terminate(req)
        if out is not None:
            self._count(status.name.lower(), out)
        log.info("accounting", session=sid, status=status.name, session_time=t,
                 outcome=out.status.value if out else "bound", account=out.account if out else "")
