"""Our flat codec is byte-compatible with python-diameter (the oracle), and the Gy mapping is table-driven."""

from __future__ import annotations

from diameter.message import Avp as LibAvp
from diameter.message import Message as LibMessage
from hypothesis import given, settings
from hypothesis import strategies as st

from ocs.diameter import codec, gy
from ocs.diameter import constants as c
from ocs.model import Outcome, Service, Status
from tests.support.diameter_client import ccr

codes = st.sampled_from([c.SESSION_ID, c.USER_NAME, c.SERVICE_CONTEXT_ID])  # UTF8String (Origin-* are DiamIdent)


@settings(max_examples=200, deadline=None)
@given(codes, st.text(max_size=300))
def test_utf8_avp_matches_python_diameter(code: int, value: str) -> None:
    assert codec.utf8(code, value) == LibAvp.new(code, value=value, is_mandatory=True).as_bytes()


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([c.CC_REQUEST_NUMBER, c.RESULT_CODE, c.CC_TIME, c.RATING_GROUP, c.VALIDITY_TIME]),
       st.integers(0, 2**31 - 1))  # some are Integer32 in python-diameter's dictionary
def test_u32_avp_matches_python_diameter(code: int, value: int) -> None:
    assert codec.u32(code, value) == LibAvp.new(code, value=value, is_mandatory=True).as_bytes()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_u64_avp_matches_python_diameter(value: int) -> None:
    assert codec.u64(c.CC_TOTAL_OCTETS, value) == LibAvp.new(c.CC_TOTAL_OCTETS, value=value,
                                                             is_mandatory=True).as_bytes()


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=40), st.integers(0, 2**31), st.integers(0, 86400))
def test_ccr_decodes_like_python_diameter(session: str, number: int, used: int) -> None:
    raw = codec.message(c.CCR, codec.FLAG_R, 4, 7, 9, *ccr(session, c.UPDATE, number, rg=3, used=used,
                                                             called="4930"))
    ours = codec.decode(raw)
    lib = LibMessage.from_bytes(raw, plain_msg=True)
    assert (ours.code, ours.app_id, ours.hop_by_hop, ours.end_to_end) == (
        lib.header.command_code, lib.header.application_id, lib.header.hop_by_hop_identifier,
        lib.header.end_to_end_identifier)
    assert [a.code for a in ours.avps] == [a.code for a in lib.avps]
    assert ours.first(c.SESSION_ID).text() == session  # type: ignore[union-attr]
    assert lib.as_bytes() == raw


def test_64k_avp_round_trips() -> None:
    big = codec.utf8(c.SESSION_ID, "x" * 65536)
    raw = codec.message(c.CCR, codec.FLAG_R, 4, 1, 1, big)
    assert codec.decode(raw).first(c.SESSION_ID).data == b"x" * 65536  # type: ignore[union-attr]


def _parse(*avps: bytes) -> gy.Ccr:
    return gy.parse_ccr(codec.decode(codec.message(c.CCR, codec.FLAG_R, 4, 1, 1, *avps)))


def test_mapping_table() -> None:
    p = _parse(*ccr("s", c.INITIAL, 0, called="+4930123", rg=7, requested=120))
    (req,) = p.requests
    assert (req.service, req.rating_group, req.requested_units, req.destination, req.subscriber) == (
        Service.VOICE, 7, 120, "+4930123", "4915110000001")
    data = _parse(*ccr("d", c.UPDATE, 1, rg=10, mscc=True, extra=()), codec.grouped(
        c.MULTIPLE_SERVICES_CREDIT_CONTROL, codec.u32(c.RATING_GROUP, 20),
        codec.grouped(c.USED_SERVICE_UNIT, codec.u64(c.CC_TOTAL_OCTETS, 5000))))
    assert [(r.rating_group, r.service, r.used_units) for r in data.requests][-1] == (20, Service.DATA, 5000)
    assert set(gy.RESULT_OF) == set(Status)  # every outcome has a Result-Code
    for status, code in [(Status.GRANTED, 2001), (Status.OUT_OF_CREDIT, 4012), (Status.BLOCKED, 4010),
                         (Status.UNKNOWN_SUBSCRIBER, 5030), (Status.NOT_RATED, 5031),
                         (Status.UNKNOWN_SESSION, 5002), (Status.INVALID, 5005), (Status.ERROR, 5012)]:
        assert gy.RESULT_OF[status] == code


def test_missing_avps_give_5005_with_failed_avp() -> None:
    avps = [a for a in ccr("s", c.INITIAL, 0) if codec.decode_avps(a)[0].code != c.CC_REQUEST_NUMBER]
    try:
        _parse(*avps)
    except gy.GyError as exc:
        assert exc.result == 5005 and codec.decode_avps(exc.failed)[0].code == c.CC_REQUEST_NUMBER
    else:
        raise AssertionError("no error")


def test_cca_is_deterministic_and_final_unit_indication() -> None:
    p = _parse(*ccr("s", c.INITIAL, 0, called="4930", rg=1))
    out = Outcome(Status.GRANTED, granted_units=60, validity_seconds=1800, final=True)
    a = gy.encode_cca(p, [out], "ocs", "realm", 1, 2)
    b = gy.encode_cca(p, [Outcome(Status.GRANTED, granted_units=60, validity_seconds=1800, final=True,
                                  duplicate=True)], "ocs", "realm", 1, 2)
    assert a == b
    m = codec.decode(a)
    mscc = m.first(c.MULTIPLE_SERVICES_CREDIT_CONTROL).group()  # type: ignore[union-attr]
    assert codec.find(mscc, c.FINAL_UNIT_INDICATION) is not None
    assert LibMessage.from_bytes(a, plain_msg=True).as_bytes() == a
    assert not m.flags & codec.FLAG_P  # the request had no P bit


def test_cca_copies_the_proxiable_bit_of_the_ccr() -> None:
    """RFC 6733 section 6.2 (found by the Erlang/OTP client, which sets P on every CCR)."""
    p = _parse(*ccr("s", c.INITIAL, 0, called="4930", rg=1))
    out = Outcome(Status.GRANTED, granted_units=60, validity_seconds=1800)
    a = codec.decode(gy.encode_cca(p, [out], "ocs", "realm", 1, 2, codec.FLAG_R | codec.FLAG_P))
    assert a.flags & codec.FLAG_P and not a.is_request
