"""RFC 5176 Disconnect/CoA from ocsd (ocs/radius/dynauth.py): packets, answers, retries, garbage.

Requests are compared byte for byte with pyrad's ``CoAPacket`` and with authenticators computed
here by hand (hashlib/hmac); answers come from pyrad (``tests/support/nas_stub.py``) or are built
by hand, including FreeRADIUS's zero-vector Message-Authenticator on ACK/NAK.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyrad import packet as rp

from ocs.control.model import Ack
from ocs.metrics import Metrics
from ocs.radius import codec, dynauth
from ocs.radius.dynauth import DynAuthClient, Reach
from ocs.wiretext import wire_text
from tests.support.nas_stub import Answer, NasStub, Received, nak, silent
from tests.support.radius_client import DICT, SECRET

FAST = (0.2, 0.3, 0.3)  # the 1 s / 2 s / 2 s schedule, shortened


def _value(family: object, *labels: str) -> float:
    return float(family.labels(*labels)._value.get())  # type: ignore[attr-defined]


# -- reach and session identification ---------------------------------------------------------

def test_reach_splits_user_last_so_commas_in_user_names_survive() -> None:
    assert Reach.parse("10.0.0.9,192.0.2.1,ali,ce") == Reach("10.0.0.9", "192.0.2.1", "ali,ce")
    assert Reach.parse("10.0.0.9,,bob").destination == "10.0.0.9"  # type: ignore[union-attr]
    assert Reach.parse("10.0.0.9,192.0.2.1,bob").destination == "192.0.2.1"  # type: ignore[union-attr]
    assert Reach.parse("") is None and Reach.parse("10.0.0.9") is None and Reach.parse(",,bob") is None


@pytest.mark.parametrize(("sid", "user", "asid"), [
    ("gw1|call-1", "alice", b"call-1"),
    ("gw\\x7c1|a|b", "alice", b"a|b"),  # a | inside the Acct-Session-Id: not a hold key
    ("gw1|x\\x00y\\\\z", "alice", b"x\x00y\\z"),  # wire text back to the octets sent
    ("gw1|alice|4930123456", "alice", None),  # hold key: NAS|User-Name|Called-Station-Id
    ("gw1|a\\x7cb|4930", "a|b", None),  # hold key of a user name with a |
    ("gw1||4930", "", None),  # hold key of a call without User-Name
    ("no-bar", "alice", None),
])
def test_acct_session_id_from_the_session_key(sid: str, user: str, asid: bytes | None) -> None:
    assert dynauth.acct_session_id(sid, user) == asid


@given(st.binary(min_size=1, max_size=60), st.binary(max_size=30))
def test_any_acct_session_id_round_trips_through_the_key(asid: bytes, user: bytes) -> None:
    rest, user_text = wire_text(asid), wire_text(user)
    head, bar, _tail = rest.partition("|")
    assume(not (bar and head == user_text.replace("|", "\\x7c")))  # reads as that user's hold key: documented limit
    assert dynauth.acct_session_id(f"nas|{rest}", user_text) == asid


def test_session_attributes_are_the_octets_the_nas_sent() -> None:
    attrs = dynauth.session_attributes("gw1|c\\xff1", Reach("10.0.0.9", "192.0.2.1", "b\\x00b"))
    assert attrs == [codec.attribute(codec.ACCT_SESSION_ID, b"c\xff1"), codec.attribute(codec.USER_NAME, b"b\x00b"),
                     codec.attribute(codec.NAS_IP_ADDRESS, bytes([192, 0, 2, 1]))]
    assert dynauth.session_attributes("gw1|bob|4930", Reach("10.0.0.9", "", "bob")) == [
        codec.attribute(codec.USER_NAME, b"bob")]  # hold key, no NAS-IP-Address: only what is known


# -- the request on the wire -----------------------------------------------------------------

@settings(max_examples=50)
@given(st.sampled_from([rp.DisconnectRequest, rp.CoARequest]), st.integers(0, 255),
       st.binary(min_size=1, max_size=40), st.text(min_size=1, max_size=20), st.integers(0, 2**32 - 1))
def test_request_bytes_match_pyrad(code: int, ident: int, secret: bytes, asid: str, stamp: int) -> None:
    ref = rp.CoAPacket(code=code, id=ident, secret=secret, dict=DICT)
    ref.add_message_authenticator()  # first, as ocsd places it
    ref.AddAttribute("Acct-Session-Id", asid)
    ref.AddAttribute("Event-Timestamp", stamp)
    ours = dynauth.build_request(code, ident, secret, [codec.attribute(codec.ACCT_SESSION_ID, asid.encode()),
                                                       codec.integer_attribute(codec.EVENT_TIMESTAMP, stamp)])
    assert ours == ref.RequestPacket()


def test_request_authenticators_by_hand() -> None:
    """Message-Authenticator over the zeroed header vector first, then MD5 over the final attributes."""
    body = codec.attribute(codec.ACCT_SESSION_ID, b"call-1") + codec.integer_attribute(codec.SESSION_TIMEOUT, 900)
    raw = dynauth.build_request(codec.COA_REQUEST, 77, b"xyzzy", [body])
    head = bytes([43, 77]) + struct.pack("!H", 20 + 18 + len(body))
    assert raw[:4] == head and raw[20:22] == b"\x50\x12" and raw[38:] == body
    ma = hmac.new(b"xyzzy", head + bytes(16) + b"\x50\x12" + bytes(16) + body, "md5").digest()
    assert raw[22:38] == ma
    assert raw[4:20] == hashlib.md5(head + bytes(16) + b"\x50\x12" + ma + body + b"xyzzy").digest()
    pkt = codec.decode(raw)
    assert codec.accounting_authenticator_ok(pkt, b"xyzzy")  # the RFC 2866 section 3 rule
    assert codec.message_authenticator_matches(pkt, bytes(16), b"xyzzy")


# -- answers ------------------------------------------------------------------------------------

def _request(code: int = rp.DisconnectRequest) -> tuple[bytes, object]:
    raw = dynauth.build_request(code, 5, SECRET, [codec.attribute(codec.ACCT_SESSION_ID, b"s1")])
    return raw, rp.CoAPacket(packet=raw, secret=SECRET, dict=DICT)


def _by_hand(code: int, ident: int, req_auth: bytes, attrs: bytes, secret: bytes = SECRET,
             ma_vector: bytes | None = None) -> bytes:
    if ma_vector is not None:
        head = bytes([code, ident]) + struct.pack("!H", 20 + 18 + len(attrs))
        ma = hmac.new(secret, head + ma_vector + b"\x50\x12" + bytes(16) + attrs, "md5").digest()
        attrs = b"\x50\x12" + ma + attrs
    head = bytes([code, ident]) + struct.pack("!H", 20 + len(attrs))
    return head + hashlib.md5(head + req_auth + attrs + secret).digest() + attrs


def test_answers_from_pyrad_and_by_hand_verify() -> None:
    raw, req = _request()
    reply = req.CreateReply()  # type: ignore[attr-defined]
    reply.add_message_authenticator()  # RFC 3579 3.2: computed with the Request Authenticator
    pyrad_ack = codec.decode(reply.ReplyPacket())
    assert pyrad_ack.code == codec.DISCONNECT_ACK and dynauth.answer_authentic(pyrad_ack, raw[4:20], SECRET)
    plain = codec.decode(_by_hand(41, 5, raw[4:20], b""))
    assert dynauth.answer_authentic(plain, raw[4:20], SECRET)
    zero_vector = codec.decode(_by_hand(41, 5, raw[4:20], b"", ma_vector=bytes(16)))  # as FreeRADIUS 3.2 signs
    assert dynauth.answer_authentic(zero_vector, raw[4:20], SECRET)


def test_forged_answers_do_not_verify() -> None:
    raw, _req = _request()
    auth = raw[4:20]
    assert not dynauth.answer_authentic(codec.decode(_by_hand(41, 5, auth, b"", secret=b"other")), auth, SECRET)
    assert not dynauth.answer_authentic(codec.decode(_by_hand(41, 5, bytes(16), b"")), auth, SECRET)
    bad_ma = bytearray(_by_hand(41, 5, auth, b"", ma_vector=auth))
    bad_ma[30] ^= 1  # the Message-Authenticator damaged, the Response Authenticator recomputed over it
    fixed = bytes(bad_ma[:4]) + hashlib.md5(bytes(bad_ma[:4]) + auth + bytes(bad_ma[20:]) + SECRET).digest() + \
        bytes(bad_ma[20:])
    assert not dynauth.answer_authentic(codec.decode(fixed), auth, SECRET)


@pytest.mark.parametrize(("cause", "ack", "label"), [
    (503, Ack.UNKNOWN_SESSION, "503"), (501, Ack.REFUSED, "501"), (404, Ack.REFUSED, "404"),
    (508, Ack.REFUSED, "508"), (999, Ack.REFUSED, "other"), (None, Ack.REFUSED, "none"),
])
def test_nak_error_cause(cause: int | None, ack: Ack, label: str) -> None:
    attrs = codec.integer_attribute(codec.ERROR_CAUSE, cause) if cause is not None else b""
    result = dynauth.interpret(codec.decode(_by_hand(42, 1, bytes(16), attrs)))
    assert result.ack is ack and result.code == (cause or 0)
    assert dynauth.cause_label(result.code) == label
    assert dynauth.interpret(codec.decode(_by_hand(44, 1, bytes(16), b""))).ack is Ack.ACKED


# -- the client against a NAS (pyrad stub on loopback) -------------------------------------------

async def _send(nas: NasStub, metrics: Metrics, code: int = codec.DISCONNECT_REQUEST,
                user: str = "alice", client: DynAuthClient | None = None) -> object:
    own = client is None
    client = client or DynAuthClient(metrics, bind_host="127.0.0.1", schedule=FAST)
    try:
        attrs = dynauth.session_attributes("gw1|call-7", Reach("127.0.0.1", "127.0.0.1", user))
        return await client.request(code, "127.0.0.1", nas.port, SECRET, attrs)
    finally:
        if own:
            client.close()


async def test_ack_nak_and_what_the_nas_saw() -> None:
    m = Metrics()
    with NasStub() as nas:
        result = await _send(nas, m)
        assert result.ok  # type: ignore[attr-defined]
        [rec] = nas.received
        assert rec.authentic and rec.code == rp.DisconnectRequest
        assert rec.attrs["Acct-Session-Id"] == ["call-7"] and rec.attrs["User-Name"] == ["alice"]
        assert rec.attrs["NAS-IP-Address"] == ["127.0.0.1"] and rec.attrs["Event-Timestamp"]
    with NasStub(answer=nak(503)) as nas:
        result = await _send(nas, m, codec.COA_REQUEST)
        assert result.ack is Ack.UNKNOWN_SESSION and result.code == 503  # type: ignore[attr-defined]
    assert _value(m.coa_naks, "coa", "503") == 1
    assert _value(m.dropped, "radius", "bad_coa_answer") == 0


async def test_a_silent_nas_gets_three_sends_then_no_answer() -> None:
    m = Metrics()
    with NasStub(answer=silent) as nas:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        result = await _send(nas, m, codec.COA_REQUEST)
        took = loop.time() - t0
        assert result.ack is Ack.NO_ANSWER  # type: ignore[attr-defined]
        sent = nas.wait(3)
    assert len(sent) == 3 and len({r.raw for r in sent}) == 1  # the same datagram each time (same Identifier)
    assert sum(FAST) - 0.05 <= took < sum(FAST) + 1.0
    assert _value(m.control_retries, "radius", "coa") == 2


def _garbage() -> Answer:
    """Three kinds of garbage, one per send: a stray octet, a Length beyond the datagram, an Access-Accept."""
    kinds = iter([lambda i: b"\x00", lambda i: bytes([41, i, 0, 200]) + bytes(16),
                  lambda i: bytes([2, i, 0, 20]) + bytes(16)])
    return lambda rec, req: next(kinds)(rec.ident)


async def test_a_nas_answering_garbage_is_dropped_counted_and_ends_bad_answer() -> None:
    m = Metrics()
    with NasStub(answer=_garbage()) as nas:
        result = await _send(nas, m)
        assert len(nas.received) == 3
    assert result.ack is Ack.BAD_ANSWER  # type: ignore[attr-defined]
    assert _value(m.dropped, "radius", "bad_coa_answer") == 3


async def test_a_wrong_secret_answer_never_decides_and_the_real_one_still_counts() -> None:
    m = Metrics()

    def forged_then_real(rec: Received, req: object) -> bytes:
        fake = _by_hand(41, rec.ident, rec.raw[4:20], b"", secret=b"not-the-secret")
        nas.sock.sendto(fake, rec.source)  # type: ignore[union-attr]
        return _by_hand(42, rec.ident, rec.raw[4:20], codec.integer_attribute(codec.ERROR_CAUSE, 506))

    with NasStub(answer=forged_then_real) as nas:
        result = await _send(nas, m)
    assert result.ack is Ack.REFUSED and result.code == 506  # type: ignore[attr-defined]
    assert _value(m.dropped, "radius", "bad_coa_answer") == 1
    assert _value(m.coa_naks, "disconnect", "506") == 1


async def test_answers_from_elsewhere_are_dropped() -> None:
    m = Metrics()

    def from_another_port(rec: Received, req: object) -> None:
        reply = req.CreateReply()  # type: ignore[attr-defined]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.sendto(reply.ReplyPacket(), rec.source)  # right authenticator, wrong source port

    with NasStub(answer=from_another_port) as nas:
        result = await _send(nas, m)
    assert result.ack is Ack.NO_ANSWER  # type: ignore[attr-defined]
    assert _value(m.dropped, "radius", "bad_coa_answer") == 3


async def test_identifiers_per_destination_and_more_than_256_in_flight() -> None:
    m = Metrics()
    client = DynAuthClient(m, schedule=(2.0, 2.0, 2.0))
    try:
        with NasStub() as nas:
            results = await asyncio.gather(*(_send(nas, m, client=client) for _ in range(300)))
            assert all(r.ok for r in results)  # type: ignore[attr-defined]
            assert len(nas.received) == 300  # no retransmission needed, none confused with another
            idents = [r.ident for r in nas.received[:256]]
            assert len(set(idents)) == 256
    finally:
        client.close()
    assert client._dests == {} and client._in_flight == {}


async def test_close_ends_requests_in_flight_and_refuses_new_ones() -> None:
    m = Metrics()
    client = DynAuthClient(m, schedule=(5.0, 5.0, 5.0))
    with NasStub(answer=silent) as nas:
        pending = asyncio.ensure_future(_send(nas, m, client=client))
        await asyncio.to_thread(nas.wait, 1)
        client.close()
        result = await asyncio.wait_for(pending, 2)
        assert result.ack is Ack.NO_ANSWER  # type: ignore[attr-defined]
        again = await _send(nas, m, client=client)
        assert again.ack is Ack.NO_ANSWER and len(nas.received) == 1  # type: ignore[attr-defined]


async def test_unsolicited_datagrams_are_counted_not_fatal() -> None:
    m = Metrics()
    client = DynAuthClient(m)
    client.received(b"", ("127.0.0.1", 1))
    client.received(b"\x29" * 19, ("127.0.0.1", 1))
    client.received(bytes(40), ("127.0.0.1", 1))
    assert _value(m.dropped, "radius", "bad_coa_answer") == 3


async def test_close_while_the_socket_is_being_made_leaves_no_socket_open() -> None:
    """close() racing the first request's socket creation: the late socket is closed, not kept."""
    client = DynAuthClient(Metrics(), schedule=FAST)
    await client._opening.acquire()  # hold the socket creation until close() has run
    req = asyncio.ensure_future(client.request(codec.DISCONNECT_REQUEST, "127.0.0.1", 9, SECRET, []))
    await asyncio.sleep(0)
    client.close()
    client._opening.release()
    out = await req
    assert out.ack is Ack.NO_ANSWER
    assert client._transports == {}
