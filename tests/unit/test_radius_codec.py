"""ocs.radius.codec against pyrad as the reference: same attributes, same authenticators, same bytes."""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyrad import packet as rp

from ocs.radius import codec
from tests.support.radius_client import DICT

secrets = st.binary(min_size=1, max_size=32)
# attribute types other than 26 (pyrad splits Vendor-Specific into sub-attributes) and 80 (added on purpose)
kinds = st.integers(min_value=1, max_value=255).filter(lambda k: k not in (26, 80))
attributes = st.lists(st.tuples(kinds, st.binary(min_size=0, max_size=60)), max_size=12)


def raw_packet(code: int, ident: int, auth: bytes, attrs: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes((k, len(v) + 2)) + v for k, v in attrs)
    return struct.pack("!BBH", code, ident, 20 + len(body)) + auth + body


@given(st.integers(0, 255), st.binary(min_size=16, max_size=16), attributes)
def test_decode_matches_pyrad(ident: int, auth: bytes, attrs: list[tuple[int, bytes]]) -> None:
    raw = raw_packet(codec.ACCOUNTING_REQUEST, ident, auth, attrs)
    ours = codec.decode(raw + b"\x00padding")  # octets beyond Length are ignored
    theirs = rp.Packet(packet=raw, dict=DICT)
    assert (ours.code, ours.ident, ours.authenticator) == (theirs.code, theirs.id, theirs.authenticator)
    assert ours.attrs == {k: list(v) for k, v in OrderedDict.items(theirs)}


@given(secrets, st.integers(0, 255), st.integers(0, 2**32 - 1), st.booleans())
def test_access_reply_bytes_match_pyrad(secret: bytes, ident: int, timeout: int, accept: bool) -> None:
    req = rp.AuthPacket(code=rp.AccessRequest, id=ident, secret=secret, dict=DICT)
    req.AddAttribute("User-Name", "alice")
    req.add_message_authenticator()
    raw = req.RequestPacket()
    ref = req.CreateReply()
    ref.code = rp.AccessAccept if accept else rp.AccessReject
    ref.add_message_authenticator()  # first, as ours (BlastRADIUS hardening)
    if accept:
        ref.AddAttribute("Session-Timeout", timeout)
        attrs = [codec.integer_attribute(codec.SESSION_TIMEOUT, timeout)]
    else:
        ref.AddAttribute("Reply-Message", "no credit")
        attrs = [codec.attribute(codec.REPLY_MESSAGE, b"no credit")]
    ours = codec.reply(codec.decode(raw), codec.ACCESS_ACCEPT if accept else codec.ACCESS_REJECT, secret, attrs)
    assert ours == ref.ReplyPacket()
    assert req.VerifyReply(req.CreateReply(packet=ours), ours, enforce_ma=True)


@given(secrets, st.integers(0, 255), st.integers(1, 3), st.integers(0, 10**6))
def test_accounting_request_and_response_match_pyrad(secret: bytes, ident: int, status: int, t: int) -> None:
    req = rp.AcctPacket(code=rp.AccountingRequest, id=ident, secret=secret, dict=DICT)
    req.AddAttribute("Acct-Status-Type", status)
    req.AddAttribute("Acct-Session-Id", "s-1")
    req.AddAttribute("Acct-Session-Time", t)
    raw = req.RequestPacket()
    pkt = codec.decode(raw)
    assert codec.accounting_authenticator_ok(pkt, secret)
    assert rp.AcctPacket(packet=raw, secret=secret, dict=DICT).VerifyAcctRequest()
    assert pkt.integer(codec.ACCT_STATUS_TYPE) == status and pkt.integer(codec.ACCT_SESSION_TIME) == t
    assert not codec.accounting_authenticator_ok(pkt, secret + b"x")
    tampered = codec.decode(raw[:-1] + bytes([raw[-1] ^ 1]))
    assert not codec.accounting_authenticator_ok(tampered, secret)
    ref = req.CreateReply()
    ref.code = rp.AccountingResponse
    ref.add_message_authenticator()
    assert codec.accounting_response(pkt, secret) == ref.ReplyPacket()


@given(secrets, st.integers(0, 255))
def test_message_authenticator_verified_like_pyrad(secret: bytes, ident: int) -> None:
    req = rp.AuthPacket(code=rp.AccessRequest, id=ident, secret=secret, dict=DICT)
    req.AddAttribute("User-Name", "bob")
    req.AddAttribute("Called-Station-Id", "4930123456")
    req.add_message_authenticator()
    raw = req.RequestPacket()
    pkt = codec.decode(raw)
    assert codec.message_authenticator_ok(pkt, secret)
    assert not codec.message_authenticator_ok(pkt, secret + b"!")
    flipped = bytearray(raw)
    flipped[-3] ^= 0x01  # inside an attribute value
    assert not codec.message_authenticator_ok(codec.decode(bytes(flipped)), secret)


@given(secrets, st.binary(min_size=1, max_size=128).filter(lambda b: not b.endswith(b"\x00")))
def test_pap_decrypts_what_pyrad_encrypts(secret: bytes, password: bytes) -> None:
    req = rp.AuthPacket(code=rp.AccessRequest, secret=secret, dict=DICT)
    req.AddAttribute("User-Name", "alice")
    req.AddAttribute("User-Password", req.PwCrypt(password))
    pkt = codec.decode(req.RequestPacket())
    assert codec.pap_password(pkt, secret) == password


@given(st.binary(min_size=1, max_size=40), st.booleans())
def test_chap_checked_like_pyrad(password: bytes, with_challenge: bool) -> None:
    req = rp.AuthPacket(code=rp.AccessRequest, secret=b"s", dict=DICT)
    req.authenticator = req.CreateAuthenticator()
    challenge = b"0123456789abcdef" if with_challenge else req.authenticator
    if with_challenge:
        req.AddAttribute("CHAP-Challenge", challenge)
    chap_id = b"\x2a"
    req.AddAttribute("CHAP-Password", chap_id + hashlib.md5(chap_id + password + challenge).digest())
    raw = req.RequestPacket()
    pkt = codec.decode(raw)
    assert codec.chap_ok(pkt, password)
    assert rp.AuthPacket(packet=raw, secret=b"s", dict=DICT).VerifyChapPasswd(password)
    assert not codec.chap_ok(pkt, password + b"x")


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x01\x01\x00", "bad_length"),  # shorter than a header
    (b"\x01\x01\x00\x13" + bytes(16), "bad_length"),  # Length below 20
    (b"\x01\x01\x00\x30" + bytes(16), "bad_length"),  # Length beyond the datagram
    (b"\x01\x01\x00\x17" + bytes(16) + b"\x01\x05\x41", "bad_attribute"),  # attribute overruns Length
    (b"\x01\x01\x00\x16" + bytes(16) + b"\x01\x01", "bad_attribute"),  # attribute length 1
    (b"\x01\x01\x00\x15" + bytes(16) + b"\x01", "bad_attribute"),  # half an attribute header
])
def test_malformed_packets_name_their_reason(data: bytes, reason: str) -> None:
    with pytest.raises(codec.MalformedPacket) as err:
        codec.decode(data)
    assert err.value.reason == reason


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_else(data: bytes) -> None:
    try:
        pkt = codec.decode(data)
    except codec.MalformedPacket:
        return
    codec.message_authenticator_ok(pkt, b"s")
    codec.accounting_authenticator_ok(pkt, b"s")
    codec.pap_password(pkt, b"s")
    codec.chap_ok(pkt, b"p")


@given(st.binary(max_size=100), st.binary(max_size=300))
def test_hmac_md5_is_rfc2104(secret: bytes, data: bytes) -> None:
    """The pads-kept HMAC-MD5 equals the standard library's, for any secret length (over 64: hashed first)."""
    import hmac

    assert codec.hmac_md5(secret, data) == hmac.new(secret, data, "md5").digest()
    assert codec.hmac_md5(secret, data) == hmac.new(secret, data, "md5").digest()  # the kept pads are not consumed
