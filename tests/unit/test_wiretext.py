"""Text from the wire is stored losslessly and safely (a NUL stopped every flush)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ocs.radius import mapping as m
from ocs.wiretext import wire_bytes, wire_text


@given(st.binary(max_size=64))
def test_wire_text_is_lossless_and_storable(raw: bytes) -> None:
    text = wire_text(raw)
    assert wire_bytes(text) == raw
    assert "\0" not in text
    text.encode("utf-8")  # no lone surrogate: PostgreSQL text takes it


@given(st.binary(max_size=24), st.binary(max_size=24))
def test_wire_text_is_injective(a: bytes, b: bytes) -> None:
    if a != b:
        assert wire_text(a) != wire_text(b)


def test_plain_values_are_unchanged_and_odd_octets_escaped() -> None:
    assert wire_text(b"gw1|call-0001@example.net") == "gw1|call-0001@example.net"
    assert wire_text("Zürich".encode()) == "Zürich"
    assert wire_text(b"abc\x00def") == "abc\\x00def"
    assert wire_text(b"\xff\xfe") == "\\xff\\xfe"
    assert wire_text(b"a\\x00") == "a\\\\x00"  # not the same id as b"a\x00"


@given(st.sampled_from([m.AcctStatus.INTERIM, m.AcctStatus.STOP]), st.integers(0, 2**32 - 1),
       st.binary(min_size=16, max_size=16))
def test_radius_request_numbers_fit_and_never_collide(status: m.AcctStatus, t: int, auth: bytes) -> None:
    n = m.request_number(status, t)
    a = m.auth_request_number(auth)
    assert 0 < n < 2**35 and 0 < a < 2**35  # bigint column, exact in Lua, below the settlement range
    assert n != a
    other = m.AcctStatus.STOP if status is m.AcctStatus.INTERIM else m.AcctStatus.INTERIM
    assert m.request_number(other, t) != n
    assert m.request_number(status, t + 1 if t < 2**32 - 1 else t - 1) != n
