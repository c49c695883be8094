"""A small Diameter codec (RFC 6733 sections 3 and 4) for the hot path.

Why our own: python-diameter's typed classes decode a CCR at ~2.5k/s and its
plain-message path at ~5.5k/s (design.md); this flat TLV codec decodes only
what the Gy application reads and encodes answers from pre-packed pieces.  It
is proven byte-compatible with python-diameter in
``tests/unit/test_diameter_codec.py`` (python-diameter is the oracle).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Final

from ocs.wiretext import wire_text

FLAG_R: Final = 0x80
FLAG_P: Final = 0x40
FLAG_E: Final = 0x20
FLAG_T: Final = 0x10
AVP_V: Final = 0x80
AVP_M: Final = 0x40
AVP_P: Final = 0x20


class CodecError(ValueError):
    """Malformed message or AVP; ``avp_code`` names the offending AVP when known."""

    def __init__(self, message: str, avp_code: int = 0) -> None:
        super().__init__(message)
        self.avp_code = avp_code


@dataclass(slots=True)  # one per AVP of every message: slots, and no copy of its bytes but the data
class Avp:
    code: int
    flags: int
    vendor: int
    data: bytes
    _group: list[Avp] | None = field(default=None, repr=False, compare=False)  # group(), decoded once

    def __init__(self, code: int, flags: int, vendor: int, data: bytes) -> None:
        """Written out, not generated: mypyc compiles it (a dataclass's generated __init__ stays
        interpreted Python, and a CCR makes ~20 of these)."""
        self.code = code
        self.flags = flags
        self.vendor = vendor
        self.data = data
        self._group = None

    @property
    def raw(self) -> bytes:
        """The whole AVP as it came, without padding (for Failed-AVP, RFC 6733 section 7.5).

        Rebuilt from its parts, which is exact: the header says only code, flags, length (of
        header and data) and vendor.  Kept out of decoding, which made a second slice per AVP.
        """
        vendor = self.flags & AVP_V
        head = _HEAD.pack(self.code, (self.flags << 24) | ((12 if vendor else 8) + len(self.data)))
        return head + _U32.pack(self.vendor) + self.data if vendor else head + self.data

    @property
    def mandatory(self) -> bool:
        return bool(self.flags & AVP_M)

    def u32(self) -> int:
        if len(self.data) != 4:
            raise CodecError(f"AVP {self.code}: expected 4 bytes", self.code)
        return int.from_bytes(self.data, "big")

    def u64(self) -> int:
        if len(self.data) != 8:
            raise CodecError(f"AVP {self.code}: expected 8 bytes", self.code)
        return int.from_bytes(self.data, "big")

    def text(self) -> str:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            raise CodecError(f"AVP {self.code}: not UTF-8", self.code) from None

    def wire(self) -> str:
        """UTF8String as storable, injective text (:func:`ocs.wiretext.wire_text`: a NUL, a control
        character or a backslash is escaped): for ids and what goes on records."""
        self.text()  # not UTF-8 at all: CodecError (5004), as for any UTF8String
        return wire_text(self.data)

    def group(self) -> list[Avp]:
        """The AVPs of a Grouped AVP, decoded on first use (a CCR's Service-Information is searched
        for several AVPs; decoding its tree again each time was ~10 % of a CCR)."""
        g = self._group
        if g is None:
            g = self._group = decode_avps(self.data)
        return g


@dataclass
class Message:
    version: int
    flags: int
    code: int
    app_id: int
    hop_by_hop: int
    end_to_end: int
    avps: list[Avp] = field(default_factory=list)

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_R)

    def first(self, code: int, vendor: int = 0) -> Avp | None:
        return find(self.avps, code, vendor)

    def all(self, code: int, vendor: int = 0) -> list[Avp]:
        return [a for a in self.avps if a.code == code and a.vendor == vendor]


def find(avps: list[Avp], code: int, vendor: int = 0) -> Avp | None:
    for a in avps:
        if a.code == code and a.vendor == vendor:
            return a
    return None


_HEAD = struct.Struct("!II")
_U32 = struct.Struct("!I")


def decode_avps(buf: bytes) -> list[Avp]:
    out = []
    pos, end = 0, len(buf)
    head, u32 = _HEAD.unpack_from, _U32.unpack_from
    while pos < end:
        if end - pos < 8:
            raise CodecError("truncated AVP header")
        fields: tuple[int, int] = head(buf, pos)  # typed: native ints when compiled (Any is slow there)
        code, flags_len = fields
        flags, length = flags_len >> 24, flags_len & 0xFFFFFF
        if flags & AVP_V:
            if length < 12 or pos + length > end:
                raise CodecError(f"AVP {code}: bad length {length}", code)
            out.append(Avp(code, flags, u32(buf, pos + 8)[0], buf[pos + 12:pos + length]))
        else:
            if length < 8 or pos + length > end:
                raise CodecError(f"AVP {code}: bad length {length}", code)
            out.append(Avp(code, flags, 0, buf[pos + 8:pos + length]))
        pos += (length + 3) & ~3
    return out


def decode_header(buf: bytes | bytearray) -> tuple[int, int]:
    """(version, length) of the message starting ``buf`` (at least 4 bytes)."""
    return buf[0], int.from_bytes(buf[1:4], "big")


def decode(buf: bytes) -> Message:
    if len(buf) < 20 or int.from_bytes(buf[1:4], "big") != len(buf):
        raise CodecError("message length mismatch")
    app_id, hbh, e2e = struct.unpack_from("!III", buf, 8)
    return Message(buf[0], buf[4], int.from_bytes(buf[5:8], "big"), app_id, hbh, e2e, decode_avps(buf[20:]))


# -- encoding -------------------------------------------------------------------------------------

def avp(code: int, data: bytes, *, vendor: int = 0, mandatory: bool = True) -> bytes:
    flags = (AVP_M if mandatory else 0) | (AVP_V if vendor else 0)
    hdr = 12 if vendor else 8
    length = hdr + len(data)
    head = struct.pack("!II", code, (flags << 24) | length)
    if vendor:
        head += struct.pack("!I", vendor)
    return head + data + b"\0" * (-length % 4)


def u32(code: int, value: int, **kw: int | bool) -> bytes:
    return avp(code, struct.pack("!I", value), **kw)  # type: ignore[arg-type]


def u64(code: int, value: int, **kw: int | bool) -> bytes:
    return avp(code, struct.pack("!Q", value), **kw)  # type: ignore[arg-type]


def utf8(code: int, value: str, **kw: int | bool) -> bytes:
    return avp(code, value.encode(), **kw)  # type: ignore[arg-type]


def grouped(code: int, *parts: bytes, **kw: int | bool) -> bytes:
    return avp(code, b"".join(parts), **kw)  # type: ignore[arg-type]


def address(code: int, value: str, **kw: int | bool) -> bytes:
    ip = ip_address(value)
    family = 1 if ip.version == 4 else 2
    return avp(code, struct.pack("!H", family) + ip.packed, **kw)  # type: ignore[arg-type]


def message(code: int, flags: int, app_id: int, hop_by_hop: int, end_to_end: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    length = 20 + len(body)
    return (bytes([1]) + length.to_bytes(3, "big") + bytes([flags]) + code.to_bytes(3, "big")
            + struct.pack("!III", app_id, hop_by_hop, end_to_end) + body)
