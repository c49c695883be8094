"""Structure-aware mutation of RADIUS and Diameter Gy requests (seeded, reproducible).

Each generator starts from a well-formed request of a plausible call flow
(Access-Request, Accounting Start/Interim/Stop/On/Off; CCR-I/U/T/E on
sessions it keeps), mutates its *structure* (values, widths, duplicates,
missing and unknown attributes/AVPs, nested garbage), signs it correctly so
it passes the authenticity checks and reaches the charging logic, and then,
for a share of the inputs, mutates the *bytes* (length lies, truncation,
random authenticators, bit flips).  Everything random comes from the
``random.Random`` passed in, so a seed reproduces the inputs.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass, field

from ocs.diameter import codec as dc
from ocs.diameter import constants as c
from tests.fuzz import wire as w

FUZZ_USER, FUZZ_ALIAS, FUZZ_PASSWORD = b"fuzz", b"4917000000002", b"fuzz-secret"
NAS_IDS = [b"fuzz-nas-1", b"fuzz-nas-2", b"fuzz-nas-3", b"nas\x00x", b"\xff\xfe", b"a|b", b"nas\\x00x"]
CALLED = [b"4930123456", b"4915112345678", b"4420123456", b"12125550100", b"999", b"", b"+4930123456"]

WEIRD_STRINGS: list[bytes] = [
    b"", b"\x00", b"\x00\x00\x00", b"nas\x00x", b"abc\x00def", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80", b"\xc0\x80", b"\xe2\x82", b"\\", b"\\x00", b"a\\x00", b"a\x00", b"|", b"a|b|c", b"||",
    b"%s%n%x%d", b"'; DROP TABLE usage; --", b"\x7f", b"\x1b[2J", "日本語".encode(), "😀".encode(),
    b" ", b"\n\r\t", b"\r\n\r\n", b"A" * 253, b"\x00" * 253, b"9" * 253, b"\xff" * 253, b"+4930123456",
    b"4930123456\x00", FUZZ_USER, FUZZ_ALIAS, b"fuzz\x00", b"FUZZ", b"cdr:x:0", b"{s00}", b"*", b"?", b"-1",
    b"0", b"1e309", b"NaN", "\u2028".encode(), b"\xef\xbb\xbffuzz",
]
WEIRD_INTS = [0, 1, 2, 60, 61, 600, 3600, 86_400, 147_483_648, 1_000_000_000, 2_000_000_000, 2**31 - 1, 2**31,
              2**31 + 1, 2**32 - 2, 2**32 - 1]
WRONG_WIDTHS = [b"", b"\x01", b"\x00\x01", b"\x00\x00\x01", b"\x00\x00\x00\x00\x01", b"\xff" * 8, b"\x00" * 16]

RADIUS_STRING_FIELDS = [w.USER_NAME, w.NAS_IDENTIFIER, w.ACCT_SESSION_ID, w.CALLED_STATION_ID, w.CALLING_STATION_ID,
                        w.CLASS, w.REPLY_MESSAGE, w.PROXY_STATE]
RADIUS_INT_FIELDS = [w.ACCT_SESSION_TIME, w.ACCT_STATUS_TYPE, w.ACCT_DELAY_TIME, w.ACCT_TERMINATE_CAUSE,
                     w.SESSION_TIMEOUT, w.NAS_PORT, w.ACCT_INPUT_OCTETS, w.EVENT_TIMESTAMP, w.NAS_IP_ADDRESS]


def weird_bytes(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.6:
        return rng.choice(WEIRD_STRINGS)
    if r < 0.8:
        return rng.randbytes(rng.randint(0, 253))
    return bytes(rng.choice(b"\x00\\|\xff\x7f\x01a9") for _ in range(rng.randint(1, 40)))


@dataclass
class RadiusCase:
    raw: bytes
    port: str  # "auth" or "acct"
    expect: bool  # a reply is expected (signed, well-formed, plausible)
    kind: str


@dataclass
class RadiusGen:
    """RADIUS inputs: signed-valid-but-weird, invalid, and unsigned garbage."""

    rng: random.Random
    tag: str = "r"
    sessions: list[tuple[bytes, bytes, int]] = field(default_factory=list)  # (nas, Acct-Session-Id, time)
    n: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _nas(self) -> list[tuple[int, bytes]]:
        r = self.rng.random()
        if r < 0.7:
            return [(w.NAS_IDENTIFIER, self.rng.choice(NAS_IDS[:3]))]
        if r < 0.85:
            return [(w.NAS_IDENTIFIER, self.rng.choice(NAS_IDS))]
        if r < 0.95:
            return [(w.NAS_IP_ADDRESS, bytes((10, 9, 9, self.rng.randint(1, 4))))]
        return []

    def _session(self) -> tuple[bytes, bytes, int]:
        if self.sessions and self.rng.random() < 0.6:
            i = self.rng.randrange(len(self.sessions))
            return self.sessions[i]
        self.n += 1
        sid = f"{self.tag}-{self.n}".encode()
        if self.rng.random() < 0.1:
            sid = self.rng.choice([sid + b"\x00", b"\x00" + sid, sid + b"\xff", sid.replace(b"-", b"\\"),
                                   sid + b"|x", weird_bytes(self.rng)])
        nas = self.rng.choice(NAS_IDS[:3]) if self.rng.random() < 0.9 else self.rng.choice(NAS_IDS)
        s = (nas, sid, 0)
        self.sessions.append(s)
        if len(self.sessions) > 256:
            del self.sessions[: len(self.sessions) - 256]
        return s

    def _access(self, ident: int) -> tuple[list[tuple[int, bytes]], bytes, bytes | None]:
        rng = self.rng
        auth = rng.randbytes(16)
        called = rng.choice(CALLED[:4]) if rng.random() < 0.8 else rng.choice(CALLED)
        fields: list[tuple[int, bytes]] = [(w.USER_NAME, FUZZ_USER if rng.random() < 0.8 else FUZZ_ALIAS),
                                           (w.CALLED_STATION_ID, called), (w.CALLING_STATION_ID, FUZZ_ALIAS),
                                           *self._nas()]
        if rng.random() < 0.5:
            _nas, sid, _t = self._session()
            fields.append((w.ACCT_SESSION_ID, sid))
        pw: bytes | None = FUZZ_PASSWORD
        r = rng.random()
        if r < 0.1:
            pw = b"wrong"
        elif r < 0.15:
            pw = None
        elif r < 0.2:
            pw = None
            chap_id = b"\x07"
            fields.append((w.CHAP_PASSWORD, chap_id + hashlib.md5(chap_id + FUZZ_PASSWORD + auth).digest()))
        return fields, auth, pw

    def _accounting(self) -> list[tuple[int, bytes]]:
        rng = self.rng
        r = rng.random()
        status = w.START if r < 0.3 else w.INTERIM if r < 0.55 else w.STOP if r < 0.93 else \
            w.ACCOUNTING_ON if r < 0.96 else w.ACCOUNTING_OFF if r < 0.99 else rng.choice([0, 4, 9, 15, 2**32 - 1])
        nas, sid, t = self._session()
        t = t + rng.choice([0, 1, 30, 61, 600, 3599]) if rng.random() < 0.9 else rng.choice(WEIRD_INTS)
        fields: list[tuple[int, bytes]] = [(w.ACCT_STATUS_TYPE, struct.pack("!I", status))]
        if status in (w.ACCOUNTING_ON, w.ACCOUNTING_OFF):
            fields += [(w.NAS_IDENTIFIER, nas)] if rng.random() < 0.9 else self._nas()
            return fields
        fields += [(w.ACCT_SESSION_ID, sid), (w.USER_NAME, FUZZ_USER if rng.random() < 0.85 else FUZZ_ALIAS),
                   (w.NAS_IDENTIFIER, nas), (w.CALLED_STATION_ID, rng.choice(CALLED[:4])),
                   (w.CALLING_STATION_ID, FUZZ_ALIAS), (w.NAS_IP_ADDRESS, b"\x7f\x00\x00\x01")]
        if status != w.START:
            fields.append((w.ACCT_SESSION_TIME, struct.pack("!I", t & 0xFFFFFFFF)))
        if rng.random() < 0.3:
            fields.append((w.ACCT_DELAY_TIME, struct.pack("!I", rng.choice([0, 1, 5, 60, 2**31, 2**32 - 1]))))
        if status == w.STOP and rng.random() < 0.5:
            fields.append((w.ACCT_TERMINATE_CAUSE, struct.pack("!I", rng.choice([1, 2, 11, 0, 99, 2**32 - 1]))))
        return fields

    # structure mutations: the packet stays signed and well-framed
    def _mutate_fields(self, fields: list[tuple[int, bytes]]) -> str:
        rng = self.rng
        op = rng.choice(["string", "string", "int", "int", "width", "dup", "drop", "add", "vsa", "shuffle",
                         "long", "password"])
        if op == "string":
            kind = rng.choice(RADIUS_STRING_FIELDS)
            present = [i for i, (k, _v) in enumerate(fields) if k == kind]
            value = weird_bytes(rng)
            if present:
                fields[rng.choice(present)] = (kind, value)
            else:
                fields.append((kind, value))
        elif op == "int":
            kind = rng.choice(RADIUS_INT_FIELDS)
            value = struct.pack("!I", rng.choice(WEIRD_INTS))
            present = [i for i, (k, _v) in enumerate(fields) if k == kind]
            if present:
                fields[rng.choice(present)] = (kind, value)
            else:
                fields.append((kind, value))
        elif op == "width":
            kind = rng.choice(RADIUS_INT_FIELDS)
            fields.append((kind, rng.choice(WRONG_WIDTHS)))
            if rng.random() < 0.5:
                fields[:] = [f for f in fields if f[0] != kind or len(f[1]) != 4]
        elif op == "dup" and fields:
            f = rng.choice(fields)
            for _ in range(rng.randint(1, 4)):
                fields.insert(rng.randrange(len(fields) + 1), (f[0], f[1] if rng.random() < 0.5 else weird_bytes(rng)))
        elif op == "drop" and fields:
            del fields[rng.randrange(len(fields))]
        elif op == "add":
            for _ in range(rng.randint(1, 8)):
                fields.append((rng.choice([0, 7, 12, 50, 79, 95, 120, 200, 241, 255]), weird_bytes(rng)))
        elif op == "vsa":
            vendor = struct.pack("!I", rng.choice([9, 10415, 0, 2**32 - 1]))
            inner = bytes((rng.randint(0, 255), rng.randint(0, 255))) + rng.randbytes(rng.randint(0, 20))
            fields.append((w.VENDOR_SPECIFIC, vendor + inner))
        elif op == "shuffle":
            rng.shuffle(fields)
        elif op == "long":
            kind = rng.choice(RADIUS_STRING_FIELDS)
            fields[:] = [f for f in fields if f[0] != kind]
            fields.append((kind, rng.choice([b"A", b"\x00", b"\xff", b"9"]) * 253))
        elif op == "password":
            fields.append((w.USER_PASSWORD, rng.randbytes(rng.choice([0, 1, 15, 17, 32, 128, 144]))))
        return op

    # byte mutations: mostly invalid packets (some stay valid: padding, resigned lies)
    def _mutate_bytes(self, raw: bytes) -> tuple[bytes, bool, str]:
        rng = self.rng
        op = rng.choice(["attr_len", "attr_len", "truncate", "header_len", "header_len", "auth", "bitflip", "code",
                         "padding", "attr_len_resigned", "splice"])
        b = bytearray(raw)
        if op in ("attr_len", "attr_len_resigned") and len(b) > 22:
            offsets, pos = [], 20
            while pos + 2 <= len(b) and b[pos + 1] >= 2:
                offsets.append(pos)
                pos += b[pos + 1]
            if offsets:
                at = rng.choice(offsets)
                cur = b[at + 1]
                b[at + 1] = rng.choice([0, 1, 2, cur - 1, max(0, cur - 3), cur + 1, cur + rng.randint(2, 60), 255]) \
                    & 0xFF
            out = bytes(b)
            return (w.resign(out) if op == "attr_len_resigned" else out), False, op
        if op == "truncate":
            cut = rng.randrange(len(b))
            if rng.random() < 0.5 and cut >= 20:  # and make the header agree: authenticators break instead
                b[2:4] = struct.pack("!H", cut)
            return bytes(b[:cut]), False, op
        if op == "header_len":
            n = len(b)
            ln = rng.choice([0, 1, 19, 20, n - 1, n + 1, n + 100, 4096, 4097, 65535])
            b[2:4] = struct.pack("!H", ln & 0xFFFF)
            return bytes(b), False, op
        if op == "auth":
            b[4:20] = rng.randbytes(16)
            return bytes(b), False, op
        if op == "bitflip":
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
            return bytes(b), False, op
        if op == "code":
            b[0] = rng.choice([0, 2, 3, 5, 11, 12, 13, 40, 41, 43, 44, 255])
            return bytes(b), False, op
        if op == "padding":  # octets beyond Length are padding (RFC 2865 section 3): still valid
            return bytes(b) + rng.randbytes(rng.randint(1, 300)), True, op
        # splice: this header on random attributes
        return bytes(b[:20]) + rng.randbytes(rng.randint(0, 200)), False, op

    def garbage(self) -> RadiusCase:
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            raw = rng.randbytes(rng.randint(0, 64))
        elif r < 0.6:
            body = rng.randbytes(rng.randint(0, 400))
            raw = struct.pack("!BBH", rng.choice([1, 4]), rng.randrange(256), 20 + len(body)) + rng.randbytes(16) + body
        elif r < 0.8:
            raw = rng.randbytes(rng.randint(4000, 4200))
        else:
            raw = struct.pack("!BBH", rng.choice([1, 4]), rng.randrange(256), rng.choice([20, 4096, 65535])) + \
                bytes(rng.randint(0, 30))
        return RadiusCase(raw, rng.choice(["auth", "acct"]), False, "garbage")

    def next(self, ident: int) -> RadiusCase:
        rng = self.rng
        r = rng.random()
        if r < 0.08:
            case = self.garbage()
            self._count("garbage")
            return case
        access = r < 0.35
        clean = rng.random() < 0.3
        if access:
            fields, auth, pw = self._access(ident)
        else:
            fields, auth, pw = self._accounting(), b"", None
        ops = []
        if not clean:
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                ops.append(self._mutate_fields(fields))
        body = b"".join(w.attr(k, v) for k, v in fields)
        if access and pw is not None:
            body += w.attr(w.USER_PASSWORD, w.pap(pw, auth))
        if access:
            raw = w.sign_access(ident, auth, body, ma=rng.random() > 0.03)
        else:
            raw = w.sign_accounting(ident, body, ma=rng.random() < 0.2)
        expect = clean and len(raw) <= 4096  # mutated ones may well be dropped: not waited for
        kind = ("access" if access else "acct") + (":clean" if clean else ":" + "+".join(ops))
        if rng.random() < 0.3:
            raw, still_valid, op = self._mutate_bytes(raw)
            expect = expect and still_valid
            kind += ":bytes-" + op
        self._count(kind.split(":")[0] + (":clean" if clean else ":mutated") + (":bytes" if "bytes-" in kind else ""))
        return RadiusCase(raw, "auth" if access else "acct", expect, kind)


# -- Diameter ------------------------------------------------------------------------------------------

FUZZ_SUBSCRIBERS = [FUZZ_ALIAS, FUZZ_USER, b"+" + FUZZ_ALIAS]
U32_FIELDS = [c.CC_REQUEST_TYPE, c.CC_REQUEST_NUMBER, c.AUTH_APPLICATION_ID, c.RATING_GROUP, c.REQUESTED_ACTION,
              c.TERMINATION_CAUSE, c.EVENT_TIMESTAMP, c.SUBSCRIPTION_ID_TYPE, c.MULTIPLE_SERVICES_INDICATOR]
U64_VALUES = [0, 1, 2**32, 2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]


def _avp_code(a: bytes) -> int:
    return int.from_bytes(a[:4], "big") if len(a) >= 4 else -1


@dataclass
class DiameterMessage:
    raw: bytes
    expect: bool  # an answer is expected
    kind: str


@dataclass
class Episode:
    """One TCP connection: what goes before the CER, the CER, framed messages, a tail and how it ends."""

    pre: bytes = b""
    cer: bool = True
    messages: list[DiameterMessage] = field(default_factory=list)
    tail: bytes = b""  # sent after the answers: a killer, a partial frame
    ending: str = "close"  # close | rst | dpr | rst_inflight
    kind: str = "normal"

    @property
    def count(self) -> int:
        return len(self.messages) + (1 if self.tail else 0) + (1 if self.pre else 0) + (1 if self.cer else 0)


@dataclass
class DiameterGen:
    rng: random.Random
    tag: str = "d"
    sessions: list[list[int | bytes | bool]] = field(default_factory=list)  # [sid, next number, octets]
    n: int = 0
    hbh: int = 1
    stats: dict[str, int] = field(default_factory=dict)

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _next_hbh(self) -> int:
        self.hbh = (self.hbh + 1) & 0xFFFFFFFF
        return self.hbh

    def _ccr(self) -> tuple[list[bytes], str]:
        rng = self.rng
        sub = rng.choice(FUZZ_SUBSCRIBERS)
        r = rng.random()
        if r < 0.3 or not self.sessions:
            self.n += 1
            sid = f"fuzz.pgw.test;{self.tag};{self.n}".encode()
            octets = rng.random() < 0.3
            self.sessions.append([sid, 1, octets])
            if len(self.sessions) > 128:
                del self.sessions[:len(self.sessions) - 128]
            return ccr_variant(sid, c.INITIAL, 0, sub, octets, rng), "I"
        if r < 0.9:
            s = rng.choice(self.sessions)
            sid, num, octets = bytes(s[0]), int(s[1]), bool(s[2])  # type: ignore[call-overload]
            s[1] = num + 1
            rtype = c.TERMINATION if rng.random() < 0.2 else c.UPDATE
            if rtype == c.TERMINATION:
                self.sessions.remove(s)
            return ccr_variant(sid, rtype, num, sub if rng.random() < 0.5 else None, octets, rng), \
                "T" if rtype == c.TERMINATION else "U"
        self.n += 1
        sid = f"fuzz.pgw.test;{self.tag};e{self.n}".encode()
        avps = ccr_variant(sid, c.EVENT, 0, sub, False, rng)
        avps.append(dc.u32(c.REQUESTED_ACTION, rng.choice([0, 0, 1, 2, 3, 7, 2**32 - 1])))
        return avps, "E"

    def _mutate(self, avps: list[bytes]) -> str:
        rng = self.rng
        op = rng.choice(["number", "number", "type", "units64", "units32", "width", "mscc_garbage", "sub_garbage",
                         "si_garbage", "unknown_m", "unknown_vendor", "dup", "drop", "shuffle", "session_weird",
                         "nested_len", "deep", "many_mscc", "flags", "timestamp", "rg"])
        if op == "number":
            _replace(avps, c.CC_REQUEST_NUMBER, dc.u32(c.CC_REQUEST_NUMBER, rng.choice([2**31, 2**32 - 1, 2**31 - 1,
                                                                                         0, 1, 2**31 + 7])))
        elif op == "type":
            _replace(avps, c.CC_REQUEST_TYPE, dc.u32(c.CC_REQUEST_TYPE, rng.choice([0, 5, 255, 2**32 - 1])))
        elif op == "units64":
            v = rng.choice(U64_VALUES)
            kind = rng.choice([c.CC_TOTAL_OCTETS, c.CC_INPUT_OCTETS, c.CC_OUTPUT_OCTETS, c.CC_SERVICE_SPECIFIC_UNITS])
            unit = dc.u64(kind, v)
            if kind == c.CC_INPUT_OCTETS and rng.random() < 0.5:
                unit += dc.u64(c.CC_OUTPUT_OCTETS, rng.choice(U64_VALUES))
            which = rng.choice([c.USED_SERVICE_UNIT, c.REQUESTED_SERVICE_UNIT])
            _replace(avps, c.MULTIPLE_SERVICES_CREDIT_CONTROL, dc.grouped(
                c.MULTIPLE_SERVICES_CREDIT_CONTROL, dc.grouped(which, unit), dc.u32(c.RATING_GROUP, rng.choice([1, 10]))))
        elif op == "units32":
            unit = dc.u32(c.CC_TIME, rng.choice(WEIRD_INTS))
            inner = [dc.grouped(c.USED_SERVICE_UNIT, unit), dc.grouped(c.REQUESTED_SERVICE_UNIT, unit)]
            _replace(avps, c.MULTIPLE_SERVICES_CREDIT_CONTROL, dc.grouped(
                c.MULTIPLE_SERVICES_CREDIT_CONTROL, *rng.sample(inner, rng.randint(1, 2)), dc.u32(c.RATING_GROUP, 1)))
        elif op == "width":
            code = rng.choice([*U32_FIELDS, c.CC_TIME, c.CC_TOTAL_OCTETS])
            bad = w.raw_avp(code, rng.choice(WRONG_WIDTHS))
            if code in (c.CC_TIME, c.CC_TOTAL_OCTETS):
                bad = dc.grouped(c.MULTIPLE_SERVICES_CREDIT_CONTROL, dc.grouped(c.USED_SERVICE_UNIT, bad))
                _replace(avps, c.MULTIPLE_SERVICES_CREDIT_CONTROL, bad)
            else:
                _replace(avps, code, bad)
        elif op == "mscc_garbage":
            _replace(avps, c.MULTIPLE_SERVICES_CREDIT_CONTROL, w.raw_avp(c.MULTIPLE_SERVICES_CREDIT_CONTROL,
                                                                          garbage_group(rng)))
        elif op == "sub_garbage":
            inner = rng.choice([
                garbage_group(rng),
                dc.u32(c.SUBSCRIPTION_ID_TYPE, rng.choice([0, 1, 2, 3, 4, 99, 2**32 - 1])) +
                dc.avp(c.SUBSCRIPTION_ID_DATA, weird_bytes(rng)),
                dc.avp(c.SUBSCRIPTION_ID_DATA, FUZZ_ALIAS),
                dc.u32(c.SUBSCRIPTION_ID_TYPE, 0),
            ])
            _replace(avps, c.SUBSCRIPTION_ID, w.raw_avp(c.SUBSCRIPTION_ID, inner))
        elif op == "si_garbage":
            inner = rng.choice([
                garbage_group(rng),
                w.raw_avp(c.IMS_INFORMATION, garbage_group(rng), flags=w.AVP_V | w.AVP_M, vendor=c.VENDOR_3GPP),
                dc.grouped(c.IMS_INFORMATION, dc.avp(c.CALLED_PARTY_ADDRESS, weird_bytes(rng), vendor=c.VENDOR_3GPP),
                           vendor=c.VENDOR_3GPP),
                dc.avp(c.ADDRESS_DATA, weird_bytes(rng), vendor=c.VENDOR_3GPP),
            ])
            avps.append(w.raw_avp(c.SERVICE_INFORMATION, inner, flags=w.AVP_V | w.AVP_M, vendor=c.VENDOR_3GPP))
        elif op == "unknown_m":
            avps.insert(rng.randrange(len(avps) + 1), w.raw_avp(rng.choice([9999, 1, 0, 2**32 - 1, 300, 65535]),
                                                                rng.randbytes(rng.randint(0, 24))))
        elif op == "unknown_vendor":
            avps.append(w.raw_avp(rng.randint(1, 5000), rng.randbytes(rng.randint(0, 24)), flags=w.AVP_V | w.AVP_M,
                                  vendor=rng.choice([10415, 9, 0, 2**32 - 1, 5535])))
        elif op == "dup" and avps:
            a = rng.choice(avps)
            for _ in range(rng.randint(1, 3)):
                avps.insert(rng.randrange(len(avps) + 1), a)
        elif op == "drop" and avps:
            del avps[rng.randrange(len(avps))]
        elif op == "shuffle":
            rng.shuffle(avps)
        elif op == "session_weird":
            _replace(avps, c.SESSION_ID, dc.avp(c.SESSION_ID, rng.choice([
                weird_bytes(rng), b"", b"x" * 5000, b"fuzz;\x00;nul", b"fuzz;\xff\xfe", b"fuzz|a\\x00"])))
        elif op == "nested_len":  # a Grouped whose inner AVP lies about its length (outer length true)
            inner = w.raw_avp(c.CC_TIME, b"\x00\x00\x00\x3c", length=rng.choice([0, 1, 7, 13, 64, 2**24 - 1]),
                              pad=rng.random() < 0.5)
            target = rng.choice([c.MULTIPLE_SERVICES_CREDIT_CONTROL, c.SUBSCRIPTION_ID, c.SERVICE_INFORMATION])
            _replace(avps, target, w.raw_avp(target, dc.grouped(c.USED_SERVICE_UNIT, inner) if rng.random() < 0.5
                                             else inner))
        elif op == "deep":
            g = dc.u32(c.CC_TIME, 1)
            for _ in range(rng.choice([10, 100, 1000])):
                g = dc.grouped(c.USED_SERVICE_UNIT, g)
            _replace(avps, c.MULTIPLE_SERVICES_CREDIT_CONTROL, dc.grouped(c.MULTIPLE_SERVICES_CREDIT_CONTROL, g))
        elif op == "many_mscc":
            for rg in range(rng.choice([2, 10, 100])):
                avps.append(dc.grouped(c.MULTIPLE_SERVICES_CREDIT_CONTROL, dc.u32(c.RATING_GROUP, rg),
                                       dc.grouped(c.USED_SERVICE_UNIT, dc.u32(c.CC_TIME, rng.choice(WEIRD_INTS)))))
        elif op == "flags" and avps:
            i = rng.randrange(len(avps))
            a = bytearray(avps[i])
            a[4] = rng.choice([0x00, 0x20, 0x1F, 0xFF & ~0x80, 0xE0])  # V cleared or reserved bits
            avps[i] = bytes(a)
        elif op == "timestamp":
            avps.append(w.raw_avp(c.EVENT_TIMESTAMP, rng.choice([b"\xff\xff\xff\xff", b"\x00" * 4, b"\x01", b"\x00" * 8])))
        elif op == "rg":
            _replace(avps, c.MULTIPLE_SERVICES_CREDIT_CONTROL, dc.grouped(
                c.MULTIPLE_SERVICES_CREDIT_CONTROL, dc.u32(c.RATING_GROUP, rng.choice([0, 10, 99, 2**31, 2**32 - 1])),
                dc.grouped(c.USED_SERVICE_UNIT, dc.u64(c.CC_TOTAL_OCTETS, rng.choice(U64_VALUES)))))
        return op

    def message(self) -> DiameterMessage:
        """A framed request (AVP-level mutations only): the connection survives it."""
        rng = self.rng
        avps, kind = self._ccr()
        ops = []
        if rng.random() < 0.7:
            for _ in range(rng.choice([1, 1, 2, 3])):
                ops.append(self._mutate(avps))
        code, flags, app = c.CCR, dc.FLAG_R, c.APP_CC
        r = rng.random()
        expect = True
        if r < 0.03:
            flags = rng.choice([0x00, 0x40, 0x10, 0xF0, 0x8F])  # R cleared (an "answer") or odd bits
            expect = bool(flags & dc.FLAG_R)
            ops.append("hdr_flags")
        elif r < 0.05:
            code = rng.choice([c.DWR, c.CER, 999, 0, 2**24 - 1, 258, 275])
            ops.append("hdr_code")
        elif r < 0.07:
            app = rng.choice([0, 3, 16777238, 2**32 - 1])
            ops.append("hdr_app")
        hbh = self._next_hbh()
        raw = w.message(code, flags, app, hbh, hbh, b"".join(avps))
        self._count(f"ccr:{kind}:" + ("clean" if not ops else "mutated"))
        return DiameterMessage(raw, expect, kind + ":" + "+".join(ops))

    def killer(self) -> tuple[bytes, str]:
        """A message the framing layer must refuse (or that leaves the stream waiting): the connection dies."""
        rng = self.rng
        avps, _k = self._ccr()
        body = b"".join(avps)
        hbh = self._next_hbh()
        op = rng.choice(["len_short", "len_zero", "len_unaligned", "len_max", "len_long", "version", "top_avp_len",
                         "partial", "len_19"])
        if op == "len_short":
            raw = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body, length=rng.choice([4, 8, 12, 16]))
        elif op == "len_zero":
            raw = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body, length=0)
        elif op == "len_19":
            raw = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body, length=19)
        elif op == "len_unaligned":
            raw = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body, length=20 + len(body) + rng.choice([1, 2, 3]))
        elif op == "len_max":
            raw = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body, length=rng.choice([2**24 - 4, 2**20 + 4]))
        elif op == "len_long":  # the server waits for octets that never come
            raw = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body, length=20 + len(body) + 4 * rng.randint(1, 100))
        elif op == "version":
            raw = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body, version=rng.choice([0, 2, 255]))
        elif op == "top_avp_len":
            bad = w.raw_avp(c.CC_REQUEST_NUMBER, b"\x00\x00\x00\x01", length=rng.choice([0, 4, 7, 9, 200, 2**24 - 1]))
            raw = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body + bad)
        else:  # partial: a prefix of a good frame
            full = w.message(c.CCR, dc.FLAG_R, c.APP_CC, hbh, hbh, body)
            raw = full[:rng.randrange(1, len(full))]
        return raw, op

    def episode(self, max_messages: int) -> Episode:
        rng = self.rng
        r = rng.random()
        ep = Episode()
        if r < 0.04:  # garbage, or something other than a CER, first
            ep.kind = "pre_cer"
            ep.cer = False
            ep.pre = rng.choice([
                rng.randbytes(rng.randint(1, 200)),
                w.message(c.DWR, dc.FLAG_R, 0, 1, 1, dc.utf8(c.ORIGIN_HOST, "x")),
                w.message(c.CCR, dc.FLAG_R, c.APP_CC, 1, 1, b"".join(self._ccr()[0])),
                w.message(c.CER, dc.FLAG_R, 0, 1, 1, w.raw_avp(c.ORIGIN_HOST, b"\xff\xfe")),  # not UTF-8
                w.message(c.CER, dc.FLAG_R, 0, 1, 1, dc.utf8(c.ORIGIN_HOST, "x")),  # no realm, no apps
                w.cer(1, apps=(16777238,)),  # no common application
                w.cer(1, host="\x00nul") + rng.randbytes(8),
                b"\x01\x00\x00\x14" + bytes(16),  # a CER-sized header of zeros
            ])
            return ep
        n = rng.randint(1, max(1, max_messages))
        ep.messages = [self.message() for _ in range(n)]
        r = rng.random()
        if r < 0.2:
            ep.tail, op = self.killer()
            ep.kind = "killer:" + op
        elif r < 0.25:
            ep.ending = "rst_inflight"
            ep.kind = "abrupt"
        elif r < 0.3:
            ep.ending = "dpr"
            ep.kind = "dpr"
        elif r < 0.35:
            ep.ending = "rst"
            ep.kind = "rst"
        if rng.random() < 0.03:
            ep.pre = b""  # a CER after garbage would never be read: keep pre-CER garbage to its own episodes
        self._count("episode:" + ep.kind.split(":")[0])
        return ep


def _replace(avps: list[bytes], code: int, new: bytes) -> None:
    idx = [i for i, a in enumerate(avps) if _avp_code(a) == code]
    if idx:
        avps[idx[0]] = new
    else:
        avps.append(new)


def garbage_group(rng: random.Random) -> bytes:
    """The data of a Grouped AVP: random octets, AVPs with length lies, or AVPs of wrong types."""
    r = rng.random()
    if r < 0.3:
        return rng.randbytes(rng.randint(0, 64))
    if r < 0.6:
        return b"".join(w.raw_avp(rng.choice([c.RATING_GROUP, c.CC_TIME, c.USED_SERVICE_UNIT, c.SUBSCRIPTION_ID_DATA,
                                              c.CALLED_PARTY_ADDRESS, 9999]),
                                  rng.randbytes(rng.randint(0, 16)),
                                  flags=rng.choice([w.AVP_M, 0, w.AVP_V | w.AVP_M]), vendor=c.VENDOR_3GPP,
                                  length=rng.choice([None, None, 0, 5, 8, 300]))
                        for _ in range(rng.randint(1, 5)))
    if r < 0.8:
        return dc.grouped(c.USED_SERVICE_UNIT, rng.randbytes(rng.randint(0, 12)))
    return dc.utf8(c.SUBSCRIPTION_ID_DATA, "4917000000002") * rng.randint(1, 50)


def ccr_variant(sid: bytes, rtype: int, number: int, sub: bytes | None, octets: bool,
                rng: random.Random) -> list[bytes]:
    called = rng.choice(CALLED[:4]) if not octets else None
    used = None if rtype == c.INITIAL else (rng.choice([0, 1, 61, 3600]) if not octets else
                                            rng.choice([0, 1, 1024, 10 * 2**20]))
    requested = None if rtype == c.TERMINATION else (60 if not octets else 2**20)
    return w.ccr_avps(sid, rtype, number, subscriber=sub, called=called, rg=(rng.choice([1, 10]) if octets else 1),
                      requested=requested, used=used, octets=octets)
