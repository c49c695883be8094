"""The RADIUS front end over a fake datagram transport with a fake core (the component tier).

Packets are built and replies checked with pyrad, an implementation that is not ours.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from pyrad import packet as rp

from ocs import config
from ocs.metrics import Metrics
from ocs.model import Outcome, Status
from ocs.radius.server import RadiusServer, _Endpoint
from tests.support.fake_core import FakeCore
from tests.support.radius_client import DICT, SECRET, access, acct

NAS = ("127.0.0.1", 40000)


class FakeDatagramTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 1812) if name == "sockname" else None

    def close(self) -> None:
        pass


def _server(core: FakeCore, **radius: Any) -> tuple[RadiusServer, dict[str, _Endpoint], Metrics]:
    cfg = config.from_mapping({}, env={})
    cfg = dataclasses.replace(cfg, radius=dataclasses.replace(cfg.radius, **radius))
    metrics = Metrics()
    server = RadiusServer(cfg, core, metrics)
    eps = {}
    for kind in ("auth", "acct"):
        ep = _Endpoint(server, kind)
        ep.transport = FakeDatagramTransport()  # type: ignore[assignment]
        eps[kind] = ep
    server.endpoints = eps
    server.accepting = True
    return server, eps, metrics


async def _deliver(server: RadiusServer, ep: _Endpoint, raw: bytes, addr: tuple[str, int] = NAS) -> None:
    server.received(ep, raw, addr)
    while server.tasks:
        await asyncio.gather(*server.tasks)


def _sent(ep: _Endpoint) -> list[bytes]:
    return [d for d, _a in ep.transport.sent]  # type: ignore[union-attr]


def _dropped(metrics: Metrics, reason: str) -> float:
    return float(metrics.dropped.labels("radius", reason)._value.get())


async def test_access_accept_carries_the_grant_and_a_valid_authenticator() -> None:
    core = FakeCore(outcome=Outcome(Status.GRANTED, granted_units=1234))
    server, eps, _m = _server(core)
    req = access("alice", session="call-1")
    await _deliver(server, eps["auth"], req.RequestPacket())
    [raw] = _sent(eps["auth"])
    reply = rp.Packet(packet=raw, dict=DICT, secret=SECRET)
    assert req.VerifyReply(reply, raw, enforce_ma=True)  # Response Authenticator and Message-Authenticator
    assert reply.code == rp.AccessAccept and reply["Session-Timeout"] == [1234]
    assert core.verbs == ["initiate"]
    call = core.calls[0]
    assert call.session == "127.0.0.1|call-1" and call.requested_units == server.cfg.charging.max_grant_seconds


@pytest.mark.parametrize(("status", "message"), [(Status.OUT_OF_CREDIT, "no credit"),
                                                 (Status.BLOCKED, "account blocked"),
                                                 (Status.NOT_RATED, "destination not rated")])
async def test_access_reject_says_why(status: Status, message: str) -> None:
    server, eps, _m = _server(FakeCore(outcome=Outcome(status)))
    req = access("alice")
    await _deliver(server, eps["auth"], req.RequestPacket())
    [raw] = _sent(eps["auth"])
    reply = rp.Packet(packet=raw, dict=DICT, secret=SECRET)
    assert reply.code == rp.AccessReject and reply["Reply-Message"] == [message]


async def test_retransmission_is_answered_from_the_cache_without_the_core() -> None:
    core = FakeCore()
    server, eps, m = _server(core)
    raw = access("alice").RequestPacket()
    await _deliver(server, eps["auth"], raw)
    await _deliver(server, eps["auth"], raw)
    assert len(core.calls) == 1
    first, second = _sent(eps["auth"])
    assert first == second
    assert m.duplicates.labels("radius")._value.get() == 1


async def test_unknown_client_malformed_and_unsigned_are_dropped_and_counted() -> None:
    core = FakeCore()
    server, eps, m = _server(core)
    await _deliver(server, eps["auth"], access("alice").RequestPacket(), ("10.9.9.9", 1))
    await _deliver(server, eps["auth"], b"\x01\x02\x00\x10" + bytes(12))  # shorter than a header
    raw = bytearray(access("alice").RequestPacket())
    raw[2:4] = (len(raw) + 40).to_bytes(2, "big")  # Length beyond the datagram
    await _deliver(server, eps["auth"], bytes(raw))
    await _deliver(server, eps["auth"], access("alice", ma=False).RequestPacket())
    assert core.calls == [] and _sent(eps["auth"]) == []
    assert _dropped(m, "unknown_client") == 1 and _dropped(m, "bad_length") == 2
    assert _dropped(m, "missing_message_authenticator") == 1


async def test_accounting_dispatches_through_the_verb_table() -> None:
    core = FakeCore(bound=False)
    server, eps, _m = _server(core)
    for status, t in ((1, 0), (3, 30), (2, 61)):
        req = acct(status, "s-1", time=t)
        await _deliver(server, eps["acct"], req.RequestPacket())
    assert core.verbs == ["bind 127.0.0.1|alice|4930123456 -> 127.0.0.1|s-1", "bind 127.0.0.1|s-1 -> 127.0.0.1|s-1",
                          "initiate", "update", "terminate"]
    assert [c.used_units for c in core.calls] == [0, 30, 61] and all(c.used_is_total for c in core.calls)
    assert len(_sent(eps["acct"])) == 3
    for raw in _sent(eps["acct"]):
        assert rp.Packet(packet=raw, dict=DICT, secret=SECRET).code == rp.AccountingResponse


async def test_accounting_on_settles_the_nas_with_its_cause() -> None:
    core = FakeCore()
    server, eps, _m = _server(core)
    pkt = rp.AcctPacket(code=rp.AccountingRequest, secret=SECRET, dict=DICT)
    pkt.AddAttribute("Acct-Status-Type", 7)
    pkt.AddAttribute("NAS-Identifier", "gw1")
    await _deliver(server, eps["acct"], pkt.RequestPacket())
    assert core.origins == [("gw1", "NAS-Reboot")] and len(_sent(eps["acct"])) == 1


async def test_accounting_with_a_bad_authenticator_is_dropped() -> None:
    core = FakeCore()
    server, eps, m = _server(core)
    raw = acct(3, "s-2", time=5, secret=b"wrong").RequestPacket()
    await _deliver(server, eps["acct"], raw)
    assert core.calls == [] and _dropped(m, "bad_authenticator") == 1


async def test_odd_octets_in_ids_become_distinct_storable_session_keys() -> None:
    """A NUL stopped every flush; two different raw ids must never share a session."""
    core = FakeCore()
    server, eps, _m = _server(core)
    for asid in (b"abc\x00def", b"abc\\x00def", b"\xff\xfe"):
        pkt = rp.AcctPacket(code=rp.AccountingRequest, secret=SECRET, dict=DICT)
        pkt.AddAttribute("Acct-Status-Type", 3)
        pkt.AddAttribute("User-Name", "alice")
        pkt.AddAttribute("NAS-Identifier", b"gw|1\x00")
        pkt.AddAttribute("Acct-Session-Id", asid)
        pkt.AddAttribute("Acct-Session-Time", 10)
        await _deliver(server, eps["acct"], pkt.RequestPacket())
    sessions = [c.session for c in core.calls]
    assert sessions == ["gw\\x7c1\\x00|abc\\x00def", "gw\\x7c1\\x00|abc\\\\x00def", "gw\\x7c1\\x00|\\xff\\xfe"]
    assert all("\0" not in s for s in sessions)


async def test_store_failure_drops_so_the_nas_retransmits() -> None:
    from ocs.model import StoreUnavailable

    class DownCore(FakeCore):
        async def initiate(self, req: Any) -> Outcome:
            raise StoreUnavailable("redis down")

    server, eps, m = _server(DownCore())
    raw = access("alice").RequestPacket()
    await _deliver(server, eps["auth"], raw)
    assert _sent(eps["auth"]) == [] and _dropped(m, "store_unavailable") == 1
    assert server.cache.get((NAS[0], NAS[1], raw[0], raw[1], raw[4:20])) is None  # the retransmission is handled


async def test_cisco_gateways_get_h323_credit_time_and_return_codes() -> None:
    """IOS voice gateways do not enforce Session-Timeout: they read the h323 VSAs (radius/dictionary.cisco)."""
    from ocs.config import RadiusClient

    core = FakeCore(outcome=Outcome(Status.GRANTED, granted_units=754))
    server, eps, _m = _server(core, clients=(RadiusClient(vendor="cisco"),))
    req = access("alice")
    await _deliver(server, eps["auth"], req.RequestPacket())
    reply = rp.Packet(packet=_sent(eps["auth"])[0], dict=DICT, secret=SECRET)
    assert reply.code == rp.AccessAccept and reply["Session-Timeout"] == [754]
    assert reply["h323-credit-time"] == ["h323-credit-time=754"]
    assert reply["h323-return-code"] == ["h323-return-code=0"]
    for status, code in ((Status.UNKNOWN_SUBSCRIBER, 1), (Status.OUT_OF_CREDIT, 4), (Status.BLOCKED, 4),
                         (Status.NOT_RATED, 9)):
        core.outcome = Outcome(status)
        await _deliver(server, eps["auth"], access("alice").RequestPacket())
        reject = rp.Packet(packet=_sent(eps["auth"])[-1], dict=DICT, secret=SECRET)
        assert reject.code == rp.AccessReject and reject["h323-return-code"] == [f"h323-return-code={code}"]
        assert "h323-credit-time" not in reject


async def test_other_clients_get_no_vendor_attributes() -> None:
    server, eps, _m = _server(FakeCore())
    await _deliver(server, eps["auth"], access("alice").RequestPacket())
    reply = rp.Packet(packet=_sent(eps["auth"])[0], dict=DICT, secret=SECRET)
    assert "h323-credit-time" not in reply and "h323-return-code" not in reply


def test_an_unknown_vendor_is_refused_with_the_key_named() -> None:
    with pytest.raises(config.ConfigError, match=r"radius\.clients\[0\]\.vendor"):
        config.from_mapping({"radius": {"clients": [{"address": "10.0.0.1", "secret": "s", "vendor": "nokia"}]}},
                            env={})


# -- Dynamic Authorization (RFC 5176): what a session keeps, and the control verbs -----------------

async def test_sessions_opened_keep_source_nas_ip_and_user_as_reach() -> None:
    core = FakeCore(bound=False)
    server, eps, _m = _server(core)
    req = access("al,ice", session="call-1")
    req["NAS-IP-Address"] = "192.0.2.7"  # where the NAS takes Disconnect/CoA, not the source
    await _deliver(server, eps["auth"], req.RequestPacket(), ("127.0.0.1", 40000))
    start = acct(1, "call-2", user="bob\x00", nas="192.0.2.8")  # a Start whose Access-Request was not ours
    await _deliver(server, eps["acct"], start.RequestPacket())
    interim = acct(3, "call-2", time=30)
    await _deliver(server, eps["acct"], interim.RequestPacket())
    assert core.verbs[0] == "initiate" and core.calls[0].session == "192.0.2.7|call-1"
    assert core.calls[0].reach == "127.0.0.1,192.0.2.7,al,ice"
    assert core.calls[1].session == "192.0.2.8|call-2" and core.calls[1].reach == "127.0.0.1,192.0.2.8,bob\\x00"
    assert core.calls[2].reach == ""  # only the request that opens a session carries it
    no_nas_ip = access("carol", session="call-3")
    del no_nas_ip["NAS-IP-Address"]
    await _deliver(server, eps["auth"], no_nas_ip.RequestPacket(), ("127.0.0.1", 40000))
    assert core.calls[3].reach == "127.0.0.1,,carol"


async def test_disconnect_and_coa_go_to_the_session_nas_only_when_its_client_has_coa() -> None:
    from ocs.config import RadiusClient
    from tests.support.nas_stub import NasStub

    with NasStub() as nas:
        clients = (RadiusClient(address="127.0.0.0/8", coa=True, coa_port=nas.port, name="gw"),
                   RadiusClient(address="10.1.1.1", name="no-coa"))
        server, _eps, m = _server(FakeCore(), clients=clients)
        try:
            # source 127.0.0.5 finds the client entry; NAS-IP-Address 127.0.0.1 is where it goes
            result = await server.disconnect("127.0.0.1|call-1", "127.0.0.5,127.0.0.1,alice")
            assert result.ok
            result = await server.change_authorization("127.0.0.1|call-1", "127.0.0.1,,alice", 1800)
            assert result.ok
            first, second = nas.received
            assert first.code == rp.DisconnectRequest and second.code == rp.CoARequest
            assert first.attrs["Acct-Session-Id"] == ["call-1"] and first.attrs["NAS-IP-Address"] == ["127.0.0.1"]
            assert second.attrs["Session-Timeout"] == [1800] and "NAS-IP-Address" not in second.attrs
            assert first.source[0] == "127.0.0.1"  # sent from the auth listener's address

            not_enabled = await server.disconnect("10.1.1.1|x", "10.1.1.1,,alice")
            assert not_enabled.ack.value == "not_enabled" and "no-coa" in not_enabled.detail
            unknown = await server.disconnect("10.9.9.9|x", "10.9.9.9,,alice")
            assert unknown.ack.value == "not_enabled" and "10.9.9.9" in unknown.detail
            assert (await server.disconnect("gw|x", "")).ack.value == "not_enabled"
            bad_ip = await server.disconnect("gw|x", "127.0.0.5,not-an-address,alice")
            assert bad_ip.ack.value == "refused" and "cannot build" in bad_ip.detail
            assert len(nas.received) == 2  # nothing sent for those
            assert server.dynauth.schedule == (1.0, 2.0, 2.0)  # spec section 9: retries after 1 s and 2 s
            # the client table in force is the one asked: a reload that turns coa off is obeyed
            server.reload_clients((RadiusClient(address="127.0.0.0/8", name="gw"),))
            assert (await server.disconnect("127.0.0.1|call-1", "127.0.0.5,127.0.0.1,alice")).ack.value == \
                "not_enabled"
        finally:
            await server.stop(timeout=1)
    counted = m.control_requests
    assert counted.labels("radius", "disconnect", "acked")._value.get() == 1
    assert counted.labels("radius", "coa", "acked")._value.get() == 1
    assert counted.labels("radius", "disconnect", "not_enabled")._value.get() == 4
