"""Text from the wire as data: a lossless, injective, storable form of any octet string.

RADIUS strings may carry any octet (RFC 2865 section 5: "text" is UTF-8 only by
recommendation; "string" is binary), and a Diameter UTF8String may carry NUL.
Identifiers that end up in keys and records (session ids, NAS identities,
calling numbers) go through :func:`wire_text`:

- valid UTF-8 without a control character or backslash is kept as it is (the
  common case, a single check);
- otherwise ``\\`` becomes ``\\\\``, and each control octet (C0 and DEL) and
  each octet that is not part of valid UTF-8 becomes ``\\xNN`` (lowercase hex).

So the result is always valid UTF-8 without NUL (PostgreSQL ``text`` takes it,
a NUL stopped every flush before), and two different octet strings never give
the same text (``b"a\\x00"`` -> ``a\\x00``, ``b"a\\\\x00"`` -> ``a\\\\x00``): an odd
octet can neither break a write nor be turned into another session's id.
:func:`wire_bytes` is the inverse.
"""

from __future__ import annotations

import re

_PLAIN = re.compile(rb"[\x00-\x1f\x7f\\]")
_ESCAPES = re.compile(r"\\(\\|x[0-9a-f]{2})")


def _escape_text(text: str) -> str:
    out = []
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        elif 0xDC80 <= o <= 0xDCFF:  # an undecodable octet, carried by surrogateescape
            out.append(f"\\x{o - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


def wire_text(raw: bytes) -> str:
    """The storable text of ``raw`` (module docstring)."""
    if not _PLAIN.search(raw):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return _escape_text(raw.decode("utf-8", "surrogateescape"))


def wire_bytes(text: str) -> bytes:
    """Inverse of :func:`wire_text`: the original octets."""
    out = bytearray()
    pos = 0
    for m in _ESCAPES.finditer(text):
        out += text[pos:m.start()].encode("utf-8")
        esc = m.group(1)
        out += b"\\" if esc == "\\" else bytes([int(esc[1:], 16)])
        pos = m.end()
    out += text[pos:].encode("utf-8")
    return bytes(out)
