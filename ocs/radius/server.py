"""The RADIUS front end: UDP auth and accounting sockets, charging through the core's verbs.

Why not pyrad's ``ServerAsync`` loop itself: its handlers are synchronous and
it has no RFC 5080 duplicate cache, no per-client rate limit and no bound on
concurrent work (design.md).  We own the asyncio datagram protocol: every
request becomes an owned task calling the core, and the reply is sent only
once the core has answered (durably recorded in Redis).  Packets are read and
written by :mod:`ocs.radius.codec` (pyrad's packet classes cost a third of an
authorization); pyrad loads and validates the dictionaries and is the
reference the codec is tested against.
"""

from __future__ import annotations

import asyncio
import hmac
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import structlog
from pyrad.dictionary import Dictionary

from ocs.config import Config, RadiusClient, split_hostport
from ocs.control.model import Ack, ControlResult
from ocs.log_sampling import request_lines
from ocs.metrics import Metrics
from ocs.model import ChargeRequest, ChargingCore, Outcome, Service, Status, StoreUnavailable
from ocs.radius import codec, dynauth
from ocs.radius import mapping as m
from ocs.radius.clients import Client, ClientTable
from ocs.radius.dedup import DuplicateCache

log = structlog.get_logger("ocs.radius")
MAX_PACKET = codec.MAX_LENGTH


def load_dictionary(cfg: Config) -> Any:
    return Dictionary(cfg.radius.dictionary, *cfg.radius.extra_dictionaries)


def _cisco(credit_time: str, return_code: int) -> list[bytes]:
    """h323-credit-time (when given) and h323-return-code for a Cisco voice gateway (docs/radius.md)."""
    out = [codec.vendor_attribute(m.CISCO, m.H323_CREDIT_TIME, credit_time.encode())] if credit_time else []
    return [*out, codec.vendor_attribute(m.CISCO, m.H323_RETURN_CODE, f"h323-return-code={return_code}".encode())]


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
    def __init__(self, cfg: Config, core: ChargingCore, metrics: Metrics,
                 sockets: Mapping[str, socket.socket] | None = None) -> None:
        self.cfg = cfg
        self.core = core
        self.metrics = metrics
        self.sockets = sockets  # "auth"/"acct" bound by a supervisor (ocsd --workers N); else bound from the config
        load_dictionary(cfg)  # validates the configured dictionaries at start-up (a bad file: no start)
        self.clients = ClientTable(cfg.radius.clients, cfg.radius.replies_per_second_per_client)
        self.cache = DuplicateCache(cfg.radius.duplicate_cache_seconds, cfg.cache.radius_duplicates)
        self.tasks: set[asyncio.Task[None]] = set()
        self.endpoints: dict[str, _Endpoint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start: a task per request without a lookup
        self.accepting = False
        c = cfg.charging
        self.call_hold = max(c.validity_seconds, c.max_grant_seconds) + c.grace_seconds
        self.dynauth = dynauth.DynAuthClient(metrics, bind_host=split_hostport(cfg.radius.auth_listen)[0])

    @property
    def bound(self) -> dict[str, tuple[str, int]]:
        out = {}
        for kind, ep in self.endpoints.items():
            if ep.transport is not None:
                host, port = ep.transport.get_extra_info("sockname")[:2]
                out[kind] = (str(host), int(port))
        return out

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        for kind, addr in (("auth", self.cfg.radius.auth_listen), ("acct", self.cfg.radius.acct_listen)):
            if self.sockets is not None:  # shared with the other workers: each datagram is read by one of them
                _t, ep = await loop.create_datagram_endpoint(lambda k=kind: _Endpoint(self, k),  # type: ignore[misc]
                                                             sock=self.sockets[kind])
                self.endpoints[kind] = ep
                continue
            host, port = split_hostport(addr)
            _t, ep = await loop.create_datagram_endpoint(lambda k=kind: _Endpoint(self, k),  # type: ignore[misc]
                                                         local_addr=(host, port),
                                                         reuse_port=self.cfg.node.reuse_port or None)
            self.endpoints[kind] = ep
        self.accepting = True

    async def stop(self, timeout: float = 5.0) -> None:
        self.accepting = False
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout)
        for ep in self.endpoints.values():
            if ep.transport is not None:
                ep.transport.close()
        self.dynauth.close()

    def reload_clients(self, clients: tuple[RadiusClient, ...]) -> None:
        self.clients = ClientTable(clients, self.cfg.radius.replies_per_second_per_client)

    def _drop(self, reason: str) -> None:
        self.metrics.child(self.metrics.dropped, "radius", reason).inc()

    # -- receive -------------------------------------------------------------------------------

    def received(self, ep: _Endpoint, data: bytes, addr: tuple[str, int]) -> None:
        if not self.accepting:
            return
        client = self.clients.lookup(addr[0])
        if client is None:
            self._drop("unknown_client")
            return
        if len(data) > MAX_PACKET:
            self._drop("bad_length")
            return
        try:
            pkt = codec.decode(data)
        except codec.MalformedPacket as exc:
            self._drop(exc.reason)
            return
        key = (addr[0], addr[1], pkt.code, pkt.ident, pkt.authenticator)
        cached = self.cache.get(key)
        if cached is not None:
            self.metrics.child(self.metrics.duplicates, "radius").inc()
            if cached and ep.transport is not None:  # IN_PROGRESS (b"") means: drop, it is being handled
                ep.transport.sendto(cached, addr)
            return
        if len(self.tasks) >= self.cfg.radius.max_inflight:
            self._drop("overload")  # silence: the NAS retransmits (design.md convention 5)
            return
        self.cache.begin(key)
        task = (self._loop or asyncio.get_running_loop()).create_task(self._handle(ep, client, pkt, addr, key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, ep: _Endpoint, client: Client, pkt: codec.Packet, addr: tuple[str, int],
                      key: tuple[str, int, int, int, bytes]) -> None:
        reply: bytes | None = None
        t0 = time.perf_counter()
        kind = "unknown"
        try:
            if pkt.code == codec.ACCESS_REQUEST and ep.kind == "auth":
                kind = "access"
                reply = await self._access(client, pkt, addr)
            elif pkt.code == codec.ACCOUNTING_REQUEST and ep.kind == "acct":
                kind = "accounting"
                reply = await self._accounting(client, pkt, addr)
            else:
                self._drop("unexpected_code")
        except StoreUnavailable as exc:
            log.warning("radius_store_unavailable", error=str(exc))
            self._drop("store_unavailable")
        except Exception as failure:  # not exc: mypyc gives a name the type of its first except
            log.error("radius_handler_failed", error=repr(failure))
            self._drop("error")
        finally:
            self.cache.finish(key, reply)
        if reply is not None and ep.transport is not None:
            if client.allow_reply():
                ep.transport.sendto(reply, addr)
            else:
                self._drop("rate_limited")
            self.metrics.child(self.metrics.latency, "radius", kind).observe(time.perf_counter() - t0)

    # -- Access-Request (RFC 2865) -------------------------------------------------------------

    @staticmethod
    def _password_check(pkt: codec.Packet, secret: bytes) -> Callable[[str], bool]:
        """How to check the account's stored password against this request (PAP or CHAP, RFC 2865 5.2/5.3)."""
        if pkt.raw_attr(codec.USER_PASSWORD) is not None:
            given = codec.pap_password(pkt, secret)
            if given is None:
                return lambda _stored: False
            return lambda stored: hmac.compare_digest(given, stored.encode())
        if pkt.raw_attr(codec.CHAP_PASSWORD) is not None:
            return lambda stored: codec.chap_ok(pkt, stored.encode())
        return lambda _stored: False

    @staticmethod
    def _hold_key(nas: str, pkt: codec.Packet) -> str:
        """``NAS|User-Name|Called-Station-Id``: the hold of an Access-Request without Acct-Session-Id.

        Parts are :meth:`codec.Packet.wire` text with ``|`` escaped too (``\\x7c``), so no two
        different (NAS, user, number) triples share a key.
        """
        user = pkt.wire(codec.USER_NAME).replace("|", "\\x7c")
        return f"{nas}|{user}|{pkt.wire(codec.CALLED_STATION_ID)}"

    @classmethod
    def _session_key(cls, pkt: codec.Packet, nas: str) -> str:
        """``NAS|Acct-Session-Id`` (docs/radius.md), else the hold key until the Start.

        Qualified by the NAS like FreeRADIUS' Acct-Unique-Session-Id: an Acct-Session-Id is unique
        per NAS only (RFC 2866 section 5.5), and gateways' counters collide, also for one account's
        concurrent calls through two gateways.  Any octet may come (RFC 2865 section 5: strings are
        binary): the id is stored as :func:`ocs.wiretext.wire_text`, never changed into another id.
        """
        asid = pkt.wire(codec.ACCT_SESSION_ID)
        return f"{nas}|{asid}" if asid else cls._hold_key(nas, pkt)

    @staticmethod
    def _nas(pkt: codec.Packet, addr: tuple[str, int], nas_ip: str) -> str:
        """The NAS identity qualifying session keys; ``|`` escaped so the key splits unambiguously.

        ``nas_ip`` is the request's NAS-IP-Address, read once by the caller (reach needs it too).
        """
        nas = pkt.wire(codec.NAS_IDENTIFIER) or nas_ip or addr[0]
        return nas.replace("|", "\\x7c")

    @staticmethod
    def _reach(pkt: codec.Packet, addr: tuple[str, int], nas_ip: str) -> str:
        """``source,NAS-IP-Address,User-Name``: kept on the session for a Disconnect/CoA (:class:`dynauth.Reach`)."""
        return f"{addr[0]},{nas_ip},{pkt.wire(codec.USER_NAME)}"

    async def _access(self, client: Client, pkt: codec.Packet, addr: tuple[str, int]) -> bytes | None:
        if pkt.raw_attr(codec.MESSAGE_AUTHENTICATOR) is not None:
            if not codec.message_authenticator_ok(pkt, client.secret):
                self._drop("bad_message_authenticator")
                return None
        elif self.cfg.radius.require_message_authenticator:
            self._drop("missing_message_authenticator")
            return None
        user, calling, called = pkt.text(codec.USER_NAME), pkt.wire(codec.CALLING_STATION_ID), \
            pkt.text(codec.CALLED_STATION_ID)
        nas_ip = pkt.address(codec.NAS_IP_ADDRESS)
        nas = self._nas(pkt, addr, nas_ip)
        session = self._session_key(pkt, nas)
        req = ChargeRequest(
            subscriber=user or calling, session=session, request_number=m.auth_request_number(pkt.authenticator),
            service=Service.VOICE, destination=called, event_time=datetime.now(UTC),
            requested_units=self.cfg.charging.max_grant_seconds, protocol="radius", origin=nas, calling=calling,
            password_check=self._password_check(pkt, client.secret), hold_seconds=self.cfg.radius.start_timeout_seconds,
            reach=self._reach(pkt, addr, nas_ip))
        out = await self.core.initiate(req)
        if out.status is Status.GRANTED:
            attrs = [codec.integer_attribute(codec.SESSION_TIMEOUT, out.granted_units)]
            interim = self.cfg.radius.acct_interim_interval
            if interim:
                attrs.append(codec.integer_attribute(codec.ACCT_INTERIM_INTERVAL, interim))
            if client.vendor == "cisco":
                attrs += _cisco(f"h323-credit-time={out.granted_units}", 0)
            reply = codec.reply(pkt, codec.ACCESS_ACCEPT, client.secret, attrs)
        else:
            reason = m.REJECT_REASON.get(out.status, out.reason or "rejected")
            if out.status is Status.NOT_RATED and out.reason.startswith(m.NO_FX_RATE):
                reason = out.reason  # the core's "no FX rate EUR->USD": say why, not "destination"
            attrs = [codec.attribute(codec.REPLY_MESSAGE, reason.encode())]
            if client.vendor == "cisco":
                attrs += _cisco("", m.CISCO_RETURN_CODE.get(out.status, m.CISCO_OTHER_REFUSAL))
            reply = codec.reply(pkt, codec.ACCESS_REJECT, client.secret, attrs)
        self._count("access", out)
        if request_lines.allow("access"):  # sampled under load (ocs.log_sampling); check before the call
            log.info("access", session=session, account=out.account, peer=client.name, outcome=out.status.value,
                     granted=out.granted_units, duplicate=out.duplicate)
        return reply

    def _count(self, kind: str, out: Outcome) -> None:
        self.metrics.child(self.metrics.requests, "radius", kind, out.status.value).inc()

    # -- Accounting-Request (RFC 2866) ---------------------------------------------------------

    async def _accounting(self, client: Client, pkt: codec.Packet, addr: tuple[str, int]) -> bytes | None:
        if not codec.accounting_authenticator_ok(pkt, client.secret):
            self._drop("bad_authenticator")
            return None
        if pkt.raw_attr(codec.MESSAGE_AUTHENTICATOR) is not None and \
                not codec.message_authenticator_ok(pkt, client.secret):
            self._drop("bad_message_authenticator")
            return None
        try:
            status = m.AcctStatus(pkt.integer(codec.ACCT_STATUS_TYPE) or 0)
        except ValueError:
            self._drop("unknown_status")
            return None
        nas_ip = pkt.address(codec.NAS_IP_ADDRESS)
        nas = self._nas(pkt, addr, nas_ip)
        delay = pkt.integer(codec.ACCT_DELAY_TIME) or 0
        when = datetime.now(UTC) - timedelta(seconds=delay)
        if m.VERB_OF[status] == "terminate_origin":
            n = await self.core.terminate_origin(nas, m.ORIGIN_CAUSE[status])
            log.info("accounting_on_off", nas=nas, status=status.name, settled=n)
        else:
            reach = self._reach(pkt, addr, nas_ip) if status is m.AcctStatus.START else ""  # kept by a Start that opens
            await self._session_accounting(pkt, status, nas, when, reach)
        return codec.accounting_response(pkt, client.secret)

    async def _session_accounting(self, pkt: codec.Packet, status: m.AcctStatus, nas: str, when: datetime,
                                  reach: str) -> None:
        user, calling, called = pkt.text(codec.USER_NAME), pkt.wire(codec.CALLING_STATION_ID), \
            pkt.text(codec.CALLED_STATION_ID)
        sid = self._session_key(pkt, nas)
        t = pkt.integer(codec.ACCT_SESSION_TIME) or 0
        cause = m.TERMINATE_CAUSES.get(pkt.integer(codec.ACCT_TERMINATE_CAUSE) or 0, "")
        req = ChargeRequest(
            subscriber=user or calling, session=sid, request_number=m.request_number(status, t),
            service=Service.VOICE, destination=called, event_time=when, used_units=t, used_is_total=True,
            requested_units=self.cfg.charging.max_grant_seconds, protocol="radius", origin=nas, calling=calling,
            termination_cause=cause, hold_seconds=self.call_hold, reach=reach)
        verb = m.VERB_OF[status]
        out: Outcome | None = None
        if verb == "bind":
            subscriber = user or calling
            # the Access-Request's hold: under the hold key, or already under the call's key when the
            # Access-Request carried Acct-Session-Id (then only its expiry grows to the call's)
            if not await self.core.bind(self._hold_key(nas, pkt), sid, subscriber, self.call_hold, nas) and \
                    not await self.core.bind(sid, sid, subscriber, self.call_hold, nas):
                out = await self.core.initiate(req)  # the Access-Request was not ours
        else:
            out = await getattr(self.core, verb)(req)
        if out is not None:
            self._count(status.name.lower(), out)
        else:  # a Start that bound the Access-Request's hold: counted as a granted start
            self.metrics.child(self.metrics.requests, "radius", "start", Status.GRANTED.value).inc()
        if request_lines.allow("accounting"):  # sampled under load (ocs.log_sampling)
            log.info("accounting", session=sid, status=status.name, session_time=t,
                     outcome=out.status.value if out else "bound", account=out.account if out else "")

    # -- Dynamic Authorization (RFC 5176): what control asks of this front end --------------------

    def reachable(self, reach: str) -> bool:
        """Would a Disconnect/CoA for a session with this ``reach`` be sent (its client has ``coa = true``)?"""
        where = dynauth.Reach.parse(reach)
        client = self.clients.lookup(where.source) if where is not None else None
        return client is not None and client.coa

    async def disconnect(self, session_id: str, reach: str) -> ControlResult:
        """Disconnect-Request (RFC 5176 section 2.1) for one session: block, operator, credit limit."""
        return await self._dynauth(codec.DISCONNECT_REQUEST, session_id, reach, [])

    async def change_authorization(self, session_id: str, reach: str, session_timeout: int) -> ControlResult:
        """CoA-Request (RFC 5176 section 2.2) with the session's new total Session-Timeout (a top-up)."""
        attrs = [codec.integer_attribute(codec.SESSION_TIMEOUT, max(0, min(session_timeout, 0xFFFFFFFF)))]
        return await self._dynauth(codec.COA_REQUEST, session_id, reach, attrs)

    async def _dynauth(self, code: int, session_id: str, reach: str, extra: list[bytes]) -> ControlResult:
        """Send to the session's NAS if its client entry (in the current table) has ``coa = true``.

        The client entry is found by the source address the session's requests came from; the
        request goes to the session's NAS-IP-Address (else that source) on the entry's ``coa_port``
        with the entry's secret (spec section 9).
        """
        kind = dynauth.KIND[code]
        where = dynauth.Reach.parse(reach)
        client = self.clients.lookup(where.source) if where is not None else None
        if where is None:
            result = ControlResult(Ack.NOT_ENABLED, detail="the session kept no NAS address (opened by an older ocsd)")
        elif client is None:
            result = ControlResult(Ack.NOT_ENABLED, detail=f"no radius.clients entry for {where.source} any more")
        elif not client.coa:
            result = ControlResult(Ack.NOT_ENABLED, detail=f"client {client.name}: coa = false")
        else:
            try:
                attrs = [*dynauth.session_attributes(session_id, where), *extra]
            except ValueError as exc:  # an attribute over 253 octets, a NAS-IP-Address that is not IPv4
                result = ControlResult(Ack.REFUSED, detail=f"cannot build the request: {exc}")
            else:
                result = await self.dynauth.request(code, where.destination, client.coa_port, client.secret, attrs)
        self.metrics.child(self.metrics.control_requests, "radius", kind, result.ack.value).inc()
        return result
