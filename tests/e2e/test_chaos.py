"""Chaos: mixed Diameter + RADIUS load with retransmissions while ocsd is SIGKILLed and its stores cut.

One ``ocsd`` reaches Redis and PostgreSQL through cuttable proxies (tests/support/proxy.py).  Twelve
client threads drive Diameter Gy sessions (CCR-I/U/T, one or two rating groups, some CCR-T without
MSCC) and RADIUS sessions (Access-Request, Start, Interims, Stop) for 54 accounts (50 prepaid, some
nearly empty, 4 postpaid) on a time-banded tariff whose peak/offpeak boundary falls inside the run,
with ~20 % retransmissions (Diameter: the identical CCR with the T flag, sometimes racing on a second
connection; RADIUS: identical packets, re-signed resends with a new identifier and Acct-Delay-Time,
back-to-back bursts), duplicate Stops, and silent sessions left to the reaper.  Meanwhile a chaos
thread SIGKILLs and restarts ocsd three times (once while PostgreSQL is cut), restarts it with
SIGTERM once, cuts PostgreSQL for 5 s, cuts Redis for 2.5 s and stalls it for 6.5 s (beyond ocsd's
5 s Redis timeout); top-ups and adjustments run through ``ocsctl`` (retried with their reference).
Clients retry the same request on 3004, silence or a dropped connection, as a NAS or gateway would:
those retries are what must be charged once.  Seeded; the thread interleaving is not, and the checks
do not depend on it (nor on prices).

At the end (holds released, streams drained, SIGTERM): per account, balance == ledger -
sum(usage.amount) and reserved == 0; PostgreSQL holds exactly the usage records the Lua scripts
emitted (the per-shard ``seq`` counters), one per request number; the streams are empty and nothing
is pending; ``ocsctl reconcile`` finds no difference; records charged while PostgreSQL was cut arrived
after the restore; every granted session has exactly one CDR per rating group, whose charge is its
usage; each session was charged for exactly the usage its client reported in answered requests; a
retransmission is answered like the original; ocsd logged no error.

Two bugs this run found are reproduced at the end of this file as regression tests: a refusal was not
a stored outcome (a retransmitted CCR-I could be granted after credit arrived), and the CDR of usage
charged after a reap was dropped (it shared the reaper's CDR id; CDRs now carry a revision).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pyrad import packet as rp

from ocs import money
from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.store.keys import Keys
from tests.support.daemon import Daemon, provision_demo, require_services
from tests.support.diameter_client import ccr, granted_time
from tests.support.proxy import TcpProxy
from tests.support.radius_client import access, acct, send

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = 20261203
PREPAID, POSTPAID = 50, 4
WORKERS_DIAMETER, WORKERS_RADIUS = 6, 6
LOAD_SECONDS = 44.0  # no new session after this (from the start of the load)
RETRANSMIT = 0.2
REQUEST_PATIENCE = 30.0  # how long a client keeps retrying one request before giving the session up
SHARDS = 16

# validity + grace = 6 s for Diameter; max(validity, max_grant) + grace = 12 s after a RADIUS Start;
# a RADIUS Access-Accept without Start is held 4 s.
EXTRA_TOML = """
[charging]
grant_seconds = 10
max_grant_seconds = 10
validity_seconds = 4
grace_seconds = 2
reaper_interval_seconds = 1
"""
RADIUS_TOML = "start_timeout_seconds = 4\n"  # goes into the [radius] table the Daemon writes

RATES = """prefix,destination,rate,connect_fee,first_increment,next_increment,band
49,Germany fixed,0.60,0.02,6,6,peak
49,Germany fixed,0.30,0.02,6,6,offpeak
4930,Germany Berlin,0.50,0.01,1,1,peak
4930,Germany Berlin,0.20,0.01,1,1,offpeak
4915,Germany mobile,1.20,0,5,5,any
44,United Kingdom,0.40,0,1,1,any
447,United Kingdom mobile,0.90,0.03,3,2,peak
447,United Kingdom mobile,0.45,0.03,3,2,offpeak
"""
DESTINATIONS = ["4930123456", "4989123456", "4915112345678", "442071234567", "447700900123", "4930555"]


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def bands_around(when: datetime) -> str:
    """peak for the 12 h before the minute boundary nearest ``when`` (UTC), offpeak for the 12 h after it: with
    ``when`` the middle of the load, calls early in the run are rated peak, later ones offpeak, and the calls
    around the boundary cross it (rule 3: each block at the band where it starts)."""
    boundary = (when.hour * 60 + when.minute + (1 if when.second >= 30 else 0)) % 1440
    rows = ["band,days,start,end"]
    for band, start in (("peak", (boundary - 720) % 1440), ("offpeak", boundary)):
        end = start + 720
        if end <= 1440:
            rows.append(f"{band},mon-sun,{_hhmm(start)},{_hhmm(end) if end < 1440 else '24:00'}")
        else:
            rows.append(f"{band},mon-sun,{_hhmm(start)},24:00")
            rows.append(f"{band},mon-sun,00:00,{_hhmm(end - 1440)}")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- bookkeeping


@dataclass
class Session:
    proto: str  # "diameter" | "radius"
    sid: str  # the session id the client uses (RADIUS CDRs are keyed "<NAS>|<Acct-Session-Id>")
    account: str
    granted_rgs: set[int] = field(default_factory=set)  # rating groups granted (CCR-I 2001, Access-Accept: 0)
    ended: bool = False  # the client saw the answer to its CCR-T / Stop
    silent: bool = False  # deliberately left to the reaper
    gave_up: bool = False  # a request stayed unanswered for REQUEST_PATIENCE
    reported: dict[int, int] = field(default_factory=dict)  # rating group -> usage (s) reported in answered
    # requests: the used_total the session must be charged for


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    sessions: list[Session] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)

    def inc(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def code(self, key: str) -> None:
        with self.lock:
            self.codes[key] += 1

    def add(self, s: Session) -> None:
        with self.lock:
            self.sessions.append(s)

    def mismatch(self, text: str) -> None:
        with self.lock:
            self.mismatches.append(text)

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def event(self, text: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), text))


# --------------------------------------------------------------------------- Diameter client


def _mscc(msg: codec.Message) -> tuple[int, int | None]:
    """(Result-Code of the first MSCC, else the command's; granted CC-Time)."""
    top = msg.first(c.RESULT_CODE)
    code = top.u32() if top else -1
    for m in msg.all(c.MULTIPLE_SERVICES_CREDIT_CONTROL):
        inner = codec.find(m.group(), c.RESULT_CODE)
        if inner is not None:
            code = inner.u32()
        break
    return code, granted_time(msg)


def _outcomes(msg: codec.Message) -> dict[int, tuple[int, int]]:
    top = msg.first(c.RESULT_CODE)
    return _per_rg(msg) or {-1: (top.u32() if top else -1, 0)}


def _compare(stats: Stats, what: str, first: codec.Message, again: codec.Message) -> None:
    """A retransmission must be answered like the original, byte for byte (stored outcomes)."""
    if [a.raw for a in again.avps] == [a.raw for a in first.avps]:
        return
    o, a = _outcomes(first), _outcomes(again)
    stats.mismatch(f"{what}: first answered {o}, the retransmission {a}")


class GyPeer:
    """One blocking Diameter connection that reconnects (CER) by itself after a kill."""

    def __init__(self, port: int, host: str, stats: Stats) -> None:
        self.port, self.host, self.stats = port, host, stats
        self.sock: socket.socket | None = None
        self.buf = b""
        self.ids = 0

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock, self.buf = None, b""

    def next_ids(self) -> int:
        self.ids = (self.ids + 1) & 0xFFFFFFFF
        return self.ids

    def _connect(self) -> bool:
        try:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            self.sock.settimeout(8)  # longer than ocsd's own Redis timeout (5 s), so 3004 arrives first
            n = self.next_ids()
            self.sock.sendall(codec.message(
                c.CER, codec.FLAG_R, 0, n, n, codec.utf8(c.ORIGIN_HOST, self.host),
                codec.utf8(c.ORIGIN_REALM, "test"), codec.address(c.HOST_IP_ADDRESS, "127.0.0.1"),
                codec.u32(c.VENDOR_ID, 0), codec.utf8(c.PRODUCT_NAME, "chaos", mandatory=False),
                codec.u32(c.AUTH_APPLICATION_ID, c.APP_CC)))
            cea = self._read(n)
            if cea is None or cea.first(c.RESULT_CODE) is None or cea.first(c.RESULT_CODE).u32() != 2001:
                self.close()
                return False
            self.stats.inc("diameter_connects")
            return True
        except OSError:
            self.close()
            return False

    def _read(self, hbh: int) -> codec.Message | None:
        assert self.sock is not None
        while True:
            if len(self.buf) >= 20:
                _v, length = codec.decode_header(self.buf)
                if len(self.buf) >= length:
                    raw, self.buf = self.buf[:length], self.buf[length:]
                    msg = codec.decode(raw)
                    if msg.is_request:  # DWR (or DPR): answer it, keep waiting
                        self.sock.sendall(codec.message(
                            msg.code, 0, msg.app_id, msg.hop_by_hop, msg.end_to_end,
                            codec.u32(c.RESULT_CODE, 2001), codec.utf8(c.ORIGIN_HOST, self.host),
                            codec.utf8(c.ORIGIN_REALM, "test")))
                        continue
                    if msg.hop_by_hop == hbh:
                        return msg
                    continue  # a late answer to an earlier, already retried request
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def exchange(self, raw: bytes, hbh: int) -> codec.Message | None:
        """Send once; None on silence, a lost connection or no connection."""
        if self.sock is None and not self._connect():
            return None
        assert self.sock is not None
        try:
            self.sock.sendall(raw)
            return self._read(hbh)
        except (OSError, ConnectionError):
            self.close()
            return None

    def request(self, avps: list[bytes], deadline: float) -> tuple[codec.Message | None, bytes]:
        """Send one CCR until it gets an answer other than 3004 (each retry: same ids, T flag)."""
        hbh = self.next_ids()
        first = True

        def build(h: int, flags: int = codec.FLAG_R) -> bytes:
            return codec.message(c.CCR, flags, c.APP_CC, h, h, *avps)

        while time.monotonic() < deadline:
            self.stats.inc("diameter_requests")
            if not first:
                self.stats.inc("diameter_retries")
            flags = codec.FLAG_R if first else codec.FLAG_R | codec.FLAG_T
            ans = self.exchange(build(hbh, flags), hbh)
            first = False
            if ans is None:
                self.stats.code("diameter:no-answer")
                time.sleep(0.2)
                continue
            top = ans.first(c.RESULT_CODE)
            if top is not None and top.u32() in (3004, 5012):
                self.stats.code(f"diameter:{top.u32()}")
                time.sleep(0.3)
                continue
            return ans, build(hbh, codec.FLAG_R | codec.FLAG_T)
        return None, b""

    def race(self, other: GyPeer, avps: list[bytes], what: str, deadline: float) -> tuple[codec.Message | None, bytes]:
        """The same CCR on two connections at once (a gateway retransmitting over a second path before the
        first answer came): both answers must be the same; on any trouble fall back to :meth:`request`."""
        h1, h2 = self.next_ids(), other.next_ids()
        raw1 = codec.message(c.CCR, codec.FLAG_R, c.APP_CC, h1, h1, *avps)
        raw2 = codec.message(c.CCR, codec.FLAG_R | codec.FLAG_T, c.APP_CC, h2, h1, *avps)
        if (self.sock is None and not self._connect()) or (other.sock is None and not other._connect()):
            return self.request(avps, deadline)
        assert self.sock is not None and other.sock is not None
        self.stats.inc("diameter_requests", 2)
        self.stats.inc("diameter_retransmits")
        self.stats.inc("diameter_races")
        try:
            self.sock.sendall(raw1)
            other.sock.sendall(raw2)
            a1 = self._read(h1)
        except (OSError, ConnectionError):
            self.close()
            other.close()
            return self.request(avps, deadline)
        try:
            a2: codec.Message | None = other._read(h2)
        except (OSError, ConnectionError):
            other.close()
            a2 = None
        codes = [a.first(c.RESULT_CODE) for a in (a1, a2) if a is not None]
        if a2 is None or any(x is not None and x.u32() in (3004, 5012) for x in codes):
            return self.request(avps, deadline)
        _compare(self.stats, what, a1, a2)
        return a1, raw1[:4] + bytes([raw1[4] | codec.FLAG_T]) + raw1[5:]

    def retransmit(self, raw_t: bytes, original: codec.Message, what: str, deadline: float) -> None:
        """The gateway did not see our answer: the same CCR again with the T flag; the same answer expected."""
        hbh = int.from_bytes(raw_t[12:16], "big")
        while time.monotonic() < deadline:
            self.stats.inc("diameter_requests")
            self.stats.inc("diameter_retransmits")
            ans = self.exchange(raw_t, hbh)
            if ans is None:
                time.sleep(0.2)
                continue
            top = ans.first(c.RESULT_CODE)
            if top is not None and top.u32() in (3004, 5012):
                time.sleep(0.3)
                continue
            _compare(self.stats, what, original, ans)
            return


def _ccr(sid: str, rtype: int, number: int, alias: str, called: str, used: dict[int, int | None] | None) -> list[bytes]:
    """A CCR with one MSCC per rating group (Used-Service-Unit where a usage is given); ``used`` None: a
    CCR without MSCC (on a CCR-T: the end of every rating group the session opened)."""
    avps = ccr(sid, rtype, number, subscriber=alias, called=called if rtype == c.INITIAL else "", mscc=False)
    for rg, units in (used or {}).items():
        inner = [codec.grouped(c.USED_SERVICE_UNIT, codec.u32(c.CC_TIME, units))] if units is not None else []
        avps.append(codec.grouped(c.MULTIPLE_SERVICES_CREDIT_CONTROL, *inner, codec.u32(c.RATING_GROUP, rg)))
    return avps


def _per_rg(msg: codec.Message) -> dict[int, tuple[int, int]]:
    """rating group -> (MSCC Result-Code, granted CC-Time or 0)."""
    out = {}
    for m in msg.all(c.MULTIPLE_SERVICES_CREDIT_CONTROL):
        g = m.group()
        rg, code, gsu = codec.find(g, c.RATING_GROUP), codec.find(g, c.RESULT_CODE), codec.find(g, c.GRANTED_SERVICE_UNIT)
        t = codec.find(gsu.group(), c.CC_TIME) if gsu is not None else None
        out[rg.u32() if rg else 0] = (code.u32() if code else -1, t.u32() if t else 0)
    return out


def diameter_session(peer: GyPeer, other: GyPeer, rnd: random.Random, s: Session, alias: str,
                     stats: Stats) -> None:
    """CCR-I, 0-3 CCR-U, CCR-T; one or (1 in 5) two rating groups; some go silent; some end without MSCC."""
    called = rnd.choice(DESTINATIONS)
    rgs = [1, 2] if rnd.random() < 0.2 else [1]
    silent_at = rnd.choice([None] * 9 + [0, 1])  # ~1 in 5.5: stop talking after request 0 or 1
    n_updates = rnd.randint(0, 3)
    sent: list[bytes] = []

    def call(number: int, rtype: int, used: dict[int, int | None] | None) -> dict[int, tuple[int, int]] | None:
        avps = _ccr(s.sid, rtype, number, alias, called, used)
        sent[:] = avps
        deadline = time.monotonic() + REQUEST_PATIENCE
        if rnd.random() < 0.06:
            ans, raw_t = peer.race(other, avps, f"{s.sid}#{number}", deadline)
        else:
            ans, raw_t = peer.request(avps, deadline)
        if ans is None:
            s.gave_up = True
            return None
        for rg, units in (used or {}).items():
            s.reported[rg] = s.reported.get(rg, 0) + (units or 0)
        top = ans.first(c.RESULT_CODE)
        per_rg = _per_rg(ans)
        for code, _g in per_rg.values() or [(top.u32() if top else -1, 0)]:
            stats.code(f"diameter:{'IUT'[rtype - 1]}:{code}")
        if rnd.random() < RETRANSMIT:
            time.sleep(rnd.random() * 0.2)
            peer.retransmit(raw_t, ans, f"{s.sid}#{number}", time.monotonic() + REQUEST_PATIENCE)
        return per_rg

    res = call(0, c.INITIAL, dict.fromkeys(rgs))
    if res is None:
        return
    grants = {rg: g for rg, (code, g) in res.items() if code == 2001 and g > 0}
    if not grants:
        return
    s.granted_rgs.update(grants)
    opened = set(grants)
    number = 0
    for _ in range(n_updates):
        if silent_at == number or not grants:
            break
        time.sleep(rnd.uniform(0.05, 0.5))
        number += 1
        res = call(number, c.UPDATE, {rg: rnd.randint(1, g) for rg, g in grants.items()})
        if res is None:
            return
        if any(code == 5002 for code, _g in res.values()):  # reaped meanwhile (a pause beyond validity + grace)
            return
        grants = {rg: g for rg, (code, g) in res.items() if code == 2001 and g > 0}
    if silent_at is not None and silent_at <= number:
        s.silent = True
        return
    time.sleep(rnd.uniform(0.05, 0.4))
    number += 1
    if rnd.random() < 0.25:  # CCR-T without MSCC: every rating group ends, nothing more used
        final: dict[int, int | None] | None = None
    else:
        final = {rg: rnd.randint(0, grants[rg]) if rg in grants else 0 for rg in sorted(opened)}
    if call(number, c.TERMINATION, final) is not None:
        s.ended = True
        if rnd.random() < 0.15:  # the same CCR-T again under a new hop-by-hop id (another path, no T flag)
            stats.inc("duplicate_stops")
            peer.request(list(sent), time.monotonic() + REQUEST_PATIENCE)


# --------------------------------------------------------------------------- RADIUS client


class Nas:
    """A NAS: one UDP socket (fixed source port, so identical resends hit ocsd's RFC 5080 cache)."""

    def __init__(self, ports: dict[str, int], stats: Stats) -> None:
        self.ports, self.stats = ports, stats
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.next_id = random.Random(SEED).randrange(256)

    def close(self) -> None:
        self.sock.close()

    def new_id(self) -> int:
        self.next_id = (self.next_id + 1) % 256
        return self.next_id

    def _once(self, port: int, pkt: Any, raw: bytes, timeout: float) -> Any:
        self.sock.sendto(raw, ("127.0.0.1", port))
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return None
            if len(data) < 20 or data[1] != pkt.id:
                continue  # a late reply to an earlier request
            try:
                reply = pkt.CreateReply(packet=data)
            except Exception:
                continue
            if pkt.VerifyReply(reply, data):
                return reply

    def request(self, port: int, pkt: Any, deadline: float, *, resign: bool) -> Any:
        """Send until answered: identical retransmissions first, then (accounting) re-signed with a new id."""
        pkt.id = self.new_id()
        raw = pkt.RequestPacket()
        tries = 0
        while time.monotonic() < deadline:
            self.stats.inc("radius_requests")
            if tries:
                self.stats.inc("radius_retries")
            reply = self._once(port, pkt, raw, 1.5)
            if reply is not None:
                return reply
            self.stats.code("radius:no-answer")
            tries += 1
            if resign and tries % 3 == 0:  # the NAS gives up on this identifier and re-signs (RFC 2866 5.2)
                pkt.id = self.new_id()
                pkt["Acct-Delay-Time"] = int(1.5 * tries)
                raw = pkt.RequestPacket()
        return None

    def burst(self, port: int, make: Callable[[], Any], what: str, deadline: float) -> Any:
        """A NAS retransmitting before the first answer: the packet twice, then re-signed with a new identifier,
        back to back (so the RFC 5080 cache and the request-number idempotency race); both answers equal."""
        p1, p2 = make(), make()
        p1.id, p2.id = self.new_id(), self.new_id()
        p2["Acct-Delay-Time"] = 1
        raw1, raw2 = p1.RequestPacket(), p2.RequestPacket()
        self.stats.inc("radius_requests", 3)
        self.stats.inc("radius_retransmits", 2)
        self.stats.inc("radius_bursts")
        for raw in (raw1, raw1, raw2):
            self.sock.sendto(raw, ("127.0.0.1", port))
        replies: dict[int, Any] = {}
        end = time.monotonic() + 2.0
        while len(replies) < 2 and (left := end - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            for p in (p1, p2):
                if len(data) >= 20 and data[1] == p.id and p.id not in replies:
                    with contextlib.suppress(Exception):
                        reply = p.CreateReply(packet=data)
                        if p.VerifyReply(reply, data):
                            replies[p.id] = reply
        if len(replies) < 2:
            return self.request(port, p1, deadline, resign=True)
        r1, r2 = replies[p1.id], replies[p2.id]
        if (r1.code, r1.get("Session-Timeout")) != (r2.code, r2.get("Session-Timeout")):
            self.stats.mismatch(f"{what}: concurrent copies answered {r1.code} and {r2.code}")
        return r1

    def retransmit(self, port: int, pkt: Any, first: Any, what: str, deadline: float, *, resign: bool) -> None:
        """An identical copy (RFC 5080 cache, or the handler after a restart) or a re-signed one.

        pyrad's RequestPacket() gives the same bytes again while the identifier is unchanged."""
        if resign:
            pkt.id = self.new_id()
            pkt["Acct-Delay-Time"] = 1 + int(pkt.get("Acct-Delay-Time", [0])[0])
        raw = pkt.RequestPacket()
        while time.monotonic() < deadline:
            self.stats.inc("radius_requests")
            self.stats.inc("radius_retransmits")
            reply = self._once(port, pkt, raw, 1.5)
            if reply is None:
                continue
            got = (reply.code, reply.get("Session-Timeout"))
            want = (first.code, first.get("Session-Timeout"))
            if got != want:
                self.stats.mismatch(f"{what}: retransmission answered {got}, first answer {want}")
            return


def radius_session(nas: Nas, rnd: random.Random, s: Session, password: str, stats: Stats, late: bool) -> None:
    called = rnd.choice(DESTINATIONS)
    auth_port, acct_port = nas.ports["auth"], nas.ports["acct"]

    def deadline() -> float:
        return time.monotonic() + REQUEST_PATIENCE

    req = access(s.account, password=password, called=called, session=s.sid)
    reply = nas.request(auth_port, req, deadline(), resign=False)
    if reply is None:
        s.gave_up = True
        return
    stats.code(f"radius:auth:{reply.code}")
    if rnd.random() < RETRANSMIT:
        nas.retransmit(auth_port, req, reply, f"{s.sid}#auth", deadline(), resign=False)
    if reply.code != rp.AccessAccept:
        return
    s.granted_rgs.add(0)
    s.reported[0] = 0
    timeout = int((reply.get("Session-Timeout") or [10])[0])
    silence = rnd.random()
    if silence < 0.06:  # accepted, never started: the start timeout releases the hold
        s.silent = True
        return

    def accounting(status: int, t: int) -> Any:
        def make() -> Any:
            return acct(status, s.sid, user=s.account, time=t, called=called)

        pkt = make()
        burst = rnd.random() < 0.06
        if burst:
            r = nas.burst(acct_port, make, f"{s.sid}#acct{status}@{t}", deadline())
        else:
            r = nas.request(acct_port, pkt, deadline(), resign=True)
        if r is None:
            s.gave_up = True
            return None
        s.reported[0] = max(s.reported.get(0, 0), t)
        stats.code(f"radius:acct{status}:{r.code}")
        if rnd.random() < RETRANSMIT:
            resign = burst or rnd.random() < 0.5  # after a burst ``pkt`` itself was never sent
            nas.retransmit(acct_port, pkt, r, f"{s.sid}#acct{status}@{t}", deadline(), resign=resign)
        return r

    time.sleep(rnd.uniform(0.02, 0.3))
    if accounting(1, 0) is None:
        return
    t = 0
    for _ in range(rnd.randint(0, 2)):
        time.sleep(rnd.uniform(0.05, 0.5))
        t = min(timeout, t + rnd.randint(1, max(1, timeout // 2)))
        if accounting(3, t) is None:
            return
    if silence < 0.12 and not late:  # started, then silent: released max(validity, max grant) + grace later
        s.silent = True
        return
    time.sleep(rnd.uniform(0.05, 0.4))
    t = min(timeout, t + rnd.randint(0, max(1, timeout // 2)))
    stop = accounting(2, t)
    if stop is None:
        return
    s.ended = True
    if rnd.random() < 0.25:  # a duplicate Stop, re-signed with a new identifier (e.g. after a NAS failover)
        stats.inc("duplicate_stops")
        time.sleep(rnd.uniform(0.0, 0.3))
        nas.request(acct_port, acct(2, s.sid, user=s.account, time=t, called=called), deadline(), resign=True)


# --------------------------------------------------------------------------- the stores, read directly


def _pg_fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def _wait(what: str, cond: Callable[[], bool], timeout: float, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def _ocsctl_in_process(d: Daemon, *argv: str) -> None:
    """One ocsctl verb run in this process: its parser, its config loading (with the environment the
    ``ocsctl`` subprocess would get) and its verb code, without starting an interpreter (~0.2 s of CPU) per
    call.  For the bulk setup only; the top-ups during the run, ``account show`` and ``reconcile`` run the
    real ``ocsctl`` command.  Refusals raise."""
    from ocs import config
    from ocs.cli.main import Context, build_parser

    args = build_parser().parse_args([*argv, "--json"])
    ctx = Context(config.load(str(d.config_path), env=d.env()), True)

    async def go() -> None:
        try:
            await args.func(ctx, args)
        finally:
            await ctx.close()

    asyncio.run(go())


def _nonzero(d: dict[int, int]) -> dict[int, int]:
    return {k: v for k, v in d.items() if v}


def _client_sid(session_id: str) -> str:
    """The client's session id of a record: RADIUS sessions are stored as ``<NAS>|<Acct-Session-Id>``."""
    return session_id.removeprefix("127.0.0.1|")


# --------------------------------------------------------------------------- the test


@pytest.fixture
def chaos_daemon(tmp_path: Path) -> Iterator[tuple[Daemon, TcpProxy, TcpProxy]]:
    require_services()
    redis_proxy = TcpProxy("127.0.0.1", 6379)
    pg_proxy = TcpProxy("127.0.0.1", 5432)
    d = Daemon(tmp_path, extra_toml=EXTRA_TOML)
    d.redis_url = f"redis://127.0.0.1:{redis_proxy.port}/0"
    d.extra_env = {"OCS_POSTGRES_DSN": f"postgresql://postgres@127.0.0.1:{pg_proxy.port}/{d.name}"}
    d.write_config()
    d.config_path.write_text(d.config_path.read_text().replace("[[radius.clients]]",
                                                               RADIUS_TOML + "[[radius.clients]]", 1))
    try:
        d.create_database()
        yield d, redis_proxy, pg_proxy
    finally:
        redis_proxy.close()
        pg_proxy.close()
        d.cleanup()


def test_chaos_money_and_records_survive(chaos_daemon: tuple[Daemon, TcpProxy, TcpProxy]) -> None:
    d, redis_proxy, pg_proxy = chaos_daemon
    t_begin = time.monotonic()
    rnd = random.Random(SEED)
    stats = Stats()

    # ---- tariff with a band boundary one or two minutes from now, accounts, top-ups
    (d.tmp / "rates.csv").write_text(RATES)
    (d.tmp / "bands.csv").write_text(bands_around(datetime.now(UTC) + timedelta(seconds=3 + LOAD_SECONDS / 2)))
    d.ocsctl("tariff", "import", "chaos", str(d.tmp / "rates.csv"), "--bands", str(d.tmp / "bands.csv"),
             "--currency", "EUR", "--timezone", "UTC")
    accounts = [f"pre{i:02d}" for i in range(PREPAID)] + [f"post{i}" for i in range(POSTPAID)]
    alias = {a: f"49170{n:05d}" for n, a in enumerate(accounts)}
    password = {a: f"pw-{a}" for a in accounts}

    def create(a: str) -> None:
        extra = ["--postpaid", "--credit-limit", "3.00"] if a.startswith("post") else []
        _ocsctl_in_process(d, "account", "create", a, "--currency", "EUR", "--tariff", "chaos",
                           "--alias", alias[a], "--password", password[a], *extra)
        if a.startswith("pre"):  # a few nearly empty accounts run out of credit during the run
            _ocsctl_in_process(d, "topup", a, rnd_amounts[a], "--reference", f"chaos-initial-{a}")

    rnd_amounts = {a: rnd.choice(["0.15", "0.40", "1.00", "2.50", "4.00", "6.00"]) for a in accounts}
    with ThreadPoolExecutor(4) as pool, contextlib.redirect_stdout(io.StringIO()):
        list(pool.map(create, accounts))
    t_setup = time.monotonic() - t_begin

    d.start()
    stop_load = threading.Event()
    load_start = time.monotonic()
    counter = iter(range(1_000_000))
    counter_lock = threading.Lock()

    def next_n() -> int:
        with counter_lock:
            return next(counter)

    def diameter_worker(w: int) -> None:
        wr = random.Random(SEED * 31 + w)
        peer = GyPeer(d.ports["diameter"], f"pgw{w}.test", stats)
        other = GyPeer(d.ports["diameter"], f"pgw{w}b.test", stats)  # a second path, for racing copies
        try:
            while not stop_load.is_set() and time.monotonic() - load_start < LOAD_SECONDS:
                a = wr.choice(accounts)
                s = Session("diameter", f"pgw{w}.test;chaos;{next_n()}", a)
                stats.add(s)
                diameter_session(peer, other, wr, s, alias[a], stats)
        except Exception as exc:
            stats.problem(f"diameter worker {w}: {exc!r}")
        finally:
            peer.close()
            other.close()

    def radius_worker(w: int) -> None:
        wr = random.Random(SEED * 37 + w)
        nas = Nas(d.ports, stats)
        try:
            while not stop_load.is_set() and time.monotonic() - load_start < LOAD_SECONDS:
                a = wr.choice(accounts)
                s = Session("radius", f"chaos-r-{w}-{next_n()}", a)
                stats.add(s)
                radius_session(nas, wr, s, password[a], stats, late=time.monotonic() - load_start > LOAD_SECONDS - 16)
        except Exception as exc:
            stats.problem(f"radius worker {w}: {exc!r}")
        finally:
            nas.close()

    # ---- top-ups and adjustments while charging (retried with the same reference: applied once)
    credits: list[tuple[str, str, str, str]] = []  # (verb, account, amount, reference)
    for n in range(8):
        credits.append(("topup", rnd.choice(accounts[:PREPAID]), rnd.choice(["0.50", "1.25", "3.00"]), f"chaos-topup-{n}"))
    for n in range(4):
        credits.append(("adjust", rnd.choice(accounts), rnd.choice(["0.10", "-0.05", "0.333333", "-0.20"]),
                        f"chaos-adjust-{n}"))

    def credit_worker() -> None:
        for n, (verb, a, amount, ref) in enumerate(credits):
            while time.monotonic() - load_start < (n + 1) * (LOAD_SECONDS - 6) / len(credits):
                time.sleep(0.05)
            extra = ["--reason", "chaos test"] if verb == "adjust" else []
            deadline = time.monotonic() + 40
            while True:
                res = d.ocsctl(verb, a, amount, "--reference", ref, *extra, check=False)
                stats.inc("ocsctl_calls")
                if res.returncode == 0:
                    break
                if time.monotonic() > deadline:
                    stats.problem(f"{verb} {a} {amount} {ref} kept failing: {res.stderr.strip()}")
                    return
                stats.inc("ocsctl_retries")
                time.sleep(0.5)

    # ---- chaos
    pg_window: list[tuple[datetime, datetime]] = []

    def event(text: str) -> None:
        stats.event(f"{time.monotonic() - load_start:5.1f}s {text}")

    def kill() -> None:
        d.kill()
        stats.inc("kills")
        event("SIGKILL")

    def start() -> None:
        d.start(timeout=30)
        event("started")

    def pg_cut() -> None:
        pg_proxy.cut()
        stats.inc("pg_cuts")
        event("PostgreSQL cut")

    def pg_restore() -> None:
        pg_proxy.restore()
        event("PostgreSQL restored")

    def step(action: str) -> None:
        if action == "kill":  # in flight: requests, scripts, a flush between COMMIT and XACK
            kill()
            time.sleep(0.3)
            start()
        elif action == "term":  # graceful: drain, DPR, flush, exit 0
            code = d.stop()
            stats.inc("terms")
            event(f"SIGTERM, exit {code}")
            if code != 0:
                stats.problem(f"ocsd exited {code} on SIGTERM under load")
            start()
        elif action == "pg_cut":  # charging goes on, records wait in the streams
            t0 = datetime.now(UTC)
            pg_cut()
            time.sleep(5)
            pg_restore()
            pg_window.append((t0, datetime.now(UTC)))
        elif action == "pg_cut_kill":  # killed while its flushes fail; restarted once PostgreSQL is back
            pg_cut()
            time.sleep(1.5)
            kill()
            time.sleep(1.5)
            pg_restore()
            start()
        elif action == "redis_cut":  # 3004 / RADIUS silence, reconnect
            redis_proxy.cut()
            stats.inc("redis_cuts")
            event("Redis cut")
            time.sleep(2.5)
            redis_proxy.restore()
            event("Redis restored")
        elif action == "redis_freeze":  # beyond ocsd's 5 s Redis timeout: 3004, then the held bytes arrive late
            redis_proxy.freeze()
            stats.inc("redis_stalls")
            event("Redis stalled")
            time.sleep(6.5)
            redis_proxy.thaw()
            event("Redis thawed")

    def chaos() -> None:
        cr = random.Random(SEED + 1)
        plan: list[tuple[float, str]] = [
            (5 + cr.random() * 2, "kill"),
            (10, "pg_cut"),
            (17, "term"),
            (21, "redis_cut"),
            (26 + cr.random() * 2, "kill"),
            (31, "redis_freeze"),
            (39.5, "pg_cut_kill"),
        ]
        try:
            for at, action in plan:
                while time.monotonic() - load_start < at:
                    time.sleep(0.05)
                assert d.proc is not None
                if d.proc.poll() is not None:
                    stats.problem(f"ocsd exited by itself ({d.proc.returncode}) before {action}")
                    start()
                step(action)
        except Exception as exc:  # reported below; the load goes on
            stats.problem(f"chaos: {exc!r}"[:4000])

    threads = [threading.Thread(target=diameter_worker, args=(w,), name=f"dia{w}") for w in range(WORKERS_DIAMETER)]
    threads += [threading.Thread(target=radius_worker, args=(w,), name=f"rad{w}") for w in range(WORKERS_RADIUS)]
    threads += [threading.Thread(target=credit_worker, name="credit"), threading.Thread(target=chaos, name="chaos")]
    for th in threads:
        th.start()
    try:
        for th in threads:
            th.join(timeout=max(1.0, LOAD_SECONDS + 2 * REQUEST_PATIENCE + 20 - (time.monotonic() - load_start)))
    finally:
        stop_load.set()
        redis_proxy.thaw()
        redis_proxy.restore()
        pg_proxy.restore()
    hung = [th.name for th in threads if th.is_alive()]
    assert not hung, f"threads still running: {hung}"
    load_seconds = time.monotonic() - load_start
    assert d.proc is not None and d.proc.poll() is None, "ocsd died:\n" + d.log_path.read_text()[-4000:]

    info: dict[str, Any] = {"usage": "?", "cdrs": "?", "cdr_updates": "?", "drain": 0.0}

    def summary() -> str:
        sessions = stats.sessions
        by_proto = Counter(s.proto for s in sessions)
        n = stats.counts
        warnings = Counter(str(e.get("event")) for e in d.logs() if e.get("level") == "warning")
        return (
            f"chaos: {len(sessions)} sessions (diameter {by_proto['diameter']}, radius {by_proto['radius']}; "
            f"granted {sum(bool(s.granted_rgs) for s in sessions)}, ended by client {sum(s.ended for s in sessions)}, "
            f"silent {sum(s.silent for s in sessions)}, given up {sum(s.gave_up for s in sessions)}); "
            f"requests diameter {n['diameter_requests']} radius {n['radius_requests']}; "
            f"retransmits {n['diameter_retransmits'] + n['radius_retransmits']} (racing copies "
            f"{n['diameter_races'] + n['radius_bursts']}), retries {n['diameter_retries'] + n['radius_retries']}, "
            f"duplicate stops {n['duplicate_stops']}; kills {n['kills']}, SIGTERM restarts {n['terms']}, "
            f"pg cuts {n['pg_cuts']}, redis cuts {n['redis_cuts']}, redis stalls {n['redis_stalls']}; "
            f"ocsctl {n['ocsctl_calls']} (retried {n['ocsctl_retries']}); usage records {info['usage']}, "
            f"CDRs {info['cdrs']} ({info['cdr_updates']} brought up to date after their session closed); "
            f"setup {t_setup:.1f}s, load {load_seconds:.1f}s, drain {info['drain']:.1f}s, "
            f"total {time.monotonic() - t_begin:.1f}s\n"
            f"answers: {dict(sorted(stats.codes.items()))}\n"
            f"ocsd warnings: {dict(warnings)}\n"
            f"chaos: {'; '.join(text for _t, text in stats.events)}"
        )

    try:
        _check(d, stats, accounts, credits, info, pg_window)
    finally:
        print(summary())


def _check(d: Daemon, stats: Stats, accounts: list[str], credits: list[tuple[str, str, str, str]],
           info: dict[str, Any],
           pg_window: list[tuple[datetime, datetime]]) -> None:
    """The end of a chaos run: drain, stop, and every invariant."""
    t_drain = time.monotonic()
    # ---- drain: every hold released (client ends or the reaper), every record flushed
    keys = Keys(d.prefix, SHARDS)
    r = d.redis()
    try:
        def holds() -> int:
            pipe = r.pipeline(transaction=False)
            for a in accounts:
                pipe.hget(keys.account(a), "rsv")
            return sum(int(v or 0) for v in pipe.execute())

        def stream_len() -> int:
            return sum(int(r.xlen(s)) for s in keys.all_usage_streams())

        _wait("every hold to be released", lambda: holds() == 0, 40)
        _wait("the usage streams to drain", lambda: stream_len() == 0, 30)
        assert d.stop() == 0, d.log_path.read_text()[-4000:]
        info["drain"] = time.monotonic() - t_drain
        assert stream_len() == 0
        emitted = sum(int(r.get(keys.seq(s)) or 0) for s in range(SHARDS))
        totals_rsv = sum(int(r.hget(keys.totals(s), "rsv") or 0) for s in range(SHARDS))
        pending = 0
        for s in keys.all_usage_streams():
            with contextlib.suppress(Exception):
                pending += int(r.xpending(s, "flush")["pending"])
    finally:
        r.close()

    # ---- per account: balance == ledger - settled charges, nothing reserved.  The balances are read from
    # Redis; `ocsctl account show --json` (one process each, ~0.2 s) must show the same for a sample.
    r = d.redis()
    try:
        pipe = r.pipeline(transaction=False)
        for a in accounts:
            pipe.hmget(keys.account(a), "bal", "rsv")
        state = {a: (int(b or 0), int(v or 0)) for a, (b, v) in zip(accounts, pipe.execute(), strict=True)}
    finally:
        r.close()
    sample = sorted(set(random.Random(SEED + 2).sample(accounts, 12)) | {a for _v, a, _m, _r in credits}
                    | {a for a in accounts if a.startswith("post")})
    with ThreadPoolExecutor(6) as pool:
        shown = dict(zip(sample, pool.map(lambda a: d.ocsctl("account", "show", a, json_out=True), sample),
                         strict=True))
    differ = {a: (shown[a]["balance"], shown[a]["reserved"], state[a]) for a in sample
              if (money.parse(shown[a]["balance"]), money.parse(shown[a]["reserved"])) != state[a]}
    assert not differ, f"ocsctl account show disagrees with Redis: {differ}"
    ledger = {row["account_id"]: (int(row["total"]), int(row["unapplied"])) for row in _pg_fetch(
        d.dsn, "SELECT account_id, sum(amount) AS total, count(*) FILTER (WHERE applied_at IS NULL) AS unapplied"
               " FROM ledger GROUP BY account_id")}
    settled = {row["account_id"]: int(row["s"]) for row in _pg_fetch(
        d.dsn, "SELECT account_id, sum(amount) AS s FROM usage GROUP BY account_id")}
    wrong = []
    for a in accounts:
        bal, rsv = state[a]
        credited, unapplied = ledger.get(a, (0, 0))
        expected = credited - settled.get(a, 0)
        if bal != expected or rsv != 0 or unapplied:
            wrong.append(f"{a}: balance {bal} expected {expected} (ledger {credited}, settled "
                         f"{settled.get(a, 0)}), reserved {rsv}, unapplied ledger rows {unapplied}")
    assert not wrong, "money not conserved:\n" + "\n".join(wrong)
    assert totals_rsv == 0, f"shard totals still hold {totals_rsv}"

    # ---- every usage record exactly once
    n_usage = int(_pg_fetch(d.dsn, "SELECT count(*) AS n FROM usage")[0]["n"])
    info["usage"] = n_usage
    assert n_usage == emitted, f"{emitted} usage records emitted by the scripts, {n_usage} in PostgreSQL"
    assert pending == 0, f"{pending} stream entries still pending"
    rec = d.ocsctl("reconcile", json_out=True, check=False)  # exit 1 on drift, the report still printed
    assert rec["differences"] == 0, [e for e in rec["report"] if e["difference"] != "0"]

    # ---- CDRs: at most one per session and rating group; one for every granted session; charge == usage
    cdrs = _pg_fetch(d.dsn, "SELECT session_id, rating_group, charge, termination_cause, revision FROM cdrs")
    info["cdrs"] = len(cdrs)
    per_key = Counter((row["session_id"], row["rating_group"]) for row in cdrs)
    assert max(per_key.values(), default=1) == 1, [k for k, v in per_key.items() if v > 1]
    usage_by_session = {(row["session_id"], row["rating_group"]): (int(row["s"]), int(row["last"]), row["kinds"])
                        for row in _pg_fetch(
        d.dsn, "SELECT session_id, rating_group, sum(amount) AS s, max(charged_total) AS last,"
               " array_agg(DISTINCT kind) AS kinds FROM usage GROUP BY session_id, rating_group")}
    cdr_keys = {(_client_sid(row["session_id"]), row["rating_group"]) for row in cdrs}
    missing = [(s.sid, rg) for s in stats.sessions for rg in s.granted_rgs if (s.sid, rg) not in cdr_keys]
    assert not missing, f"granted sessions without a CDR: {missing[:10]} ({len(missing)})"
    charge_wrong = []
    for row in cdrs:
        used = usage_by_session.get((row["session_id"], row["rating_group"]))
        total = used[0] if used else 0
        ok = total == row["charge"] and (used is None or used[1] == total)
        if not ok:
            charge_wrong.append(f"{row['session_id']}/{row['rating_group']}: CDR {row['charge']} "
                                f"({row['termination_cause']}), usage sum {total}, last charged_total "
                                f"{used[1] if used else None}, kinds {used[2] if used else None}")
    info["cdr_updates"] = int(_pg_fetch(d.dsn, "SELECT count(*) AS n FROM cdrs WHERE revision > 1")[0]["n"])
    assert not charge_wrong, "CDR and usage disagree:\n" + "\n".join(charge_wrong[:20])

    # ---- each request charged once: one record per request number, and the session's used total is
    # what the client reported in the requests it got an answer to (a retry counted twice would show)
    twice = _pg_fetch(d.dsn, "SELECT session_id, rating_group, request_number, count(*) AS n FROM usage"
                             " GROUP BY 1, 2, 3 HAVING count(*) > 1")
    assert not twice, [tuple(row) for row in twice[:10]]
    used_total: dict[str, dict[int, int]] = {}
    for row in _pg_fetch(d.dsn, "SELECT session_id, rating_group, max(used_total) AS u FROM usage GROUP BY 1, 2"):
        used_total.setdefault(_client_sid(row["session_id"]), {})[row["rating_group"]] = int(row["u"])
    used_wrong = [f"{s.sid} ({s.proto}, {'silent' if s.silent else 'ended' if s.ended else 'refused'}): "
                  f"reported {s.reported}, charged for {used_total.get(s.sid, {})}"
                  for s in stats.sessions
                  if not s.gave_up and _nonzero(used_total.get(s.sid, {})) != _nonzero(s.reported)]
    assert not used_wrong, "usage charged differently from what was reported:\n" + "\n".join(used_wrong[:20])

    # ---- charging went on while PostgreSQL was cut, and those records arrived after the restore
    assert pg_window, "the PostgreSQL cut did not happen"
    t0, t1 = pg_window[0]
    during = _pg_fetch(d.dsn, "SELECT count(*) AS n, min(inserted_at) AS first FROM usage"
                              " WHERE event_time >= $1 AND event_time < $2", t0, t1)[0]
    assert during["n"] > 0, "nothing was charged while PostgreSQL was cut"
    assert during["first"] >= t1 - (t1 - t0) / 5, (during["first"], t0, t1)

    # ---- the run itself
    logs = d.logs()
    errors = [entry for entry in logs if entry.get("level") in ("error", "critical")]
    assert stats.counts["kills"] >= 2 and stats.counts["pg_cuts"] >= 1 and stats.counts["redis_cuts"] >= 1
    assert not stats.problems, stats.problems
    assert not stats.mismatches, "retransmissions answered differently:\n" + "\n".join(stats.mismatches[:20])
    assert not errors, "ocsd logged errors:\n" + "\n".join(map(str, errors[:20]))



# --------------------------------------------------------------------------- a bug the chaos run found


@pytest.fixture
def short_timers(tmp_path: Path) -> Iterator[Daemon]:
    """The demo account 'alice' on an ocsd whose holds expire after about a second."""
    require_services()
    d = Daemon(tmp_path, extra_toml="[charging]\nvalidity_seconds = 1\ngrace_seconds = 1\nreaper_interval_seconds = 1\n")
    d.write_config()
    d.config_path.write_text(d.config_path.read_text().replace(
        "[[radius.clients]]", "start_timeout_seconds = 1\n[[radius.clients]]", 1))
    try:
        d.create_database()
        provision_demo(d)
        d.start()
        yield d
        assert d.stop() == 0
    finally:
        d.cleanup()


def test_cdr_of_a_call_started_after_its_hold_expired(short_timers: Daemon) -> None:
    """Access-Accept, then the Start comes after radius.start_timeout_seconds (a call ringing long, a NAS
    retrying through an outage): the reaper releases the hold and writes a CDR (cause expired, charge 0);
    the Start opens the session again, the Stop charges 30 s (0.05) and writes the call's CDR under the
    same record id, which PostgreSQL drops.  Money is conserved (the usage record is there); the CDR
    export says the call cost nothing."""
    d = short_timers
    reply = send(d.ports["auth"], access("alice", password="alice-secret", session="late-1"))
    assert reply is not None and reply.code == rp.AccessAccept
    _wait("the reaper to release the hold",
          lambda: any(e.get("event") == "session_expired" for e in d.logs()), 15, step=0.2)
    assert send(d.ports["acct"], acct(1, "late-1", time=0)) is not None
    assert send(d.ports["acct"], acct(2, "late-1", time=30)) is not None
    assert d.ocsctl("account", "show", "alice", json_out=True)["balance"] == "9.95"  # charged once: 0.05

    def flushed() -> bool:
        return bool(_pg_fetch(d.dsn, "SELECT 1 FROM usage WHERE session_id = '127.0.0.1|late-1'"))

    _wait("the usage record in PostgreSQL", flushed, 15, step=0.2)
    time.sleep(0.5)
    usage = _pg_fetch(d.dsn, "SELECT sum(amount) AS s FROM usage WHERE session_id = '127.0.0.1|late-1'")[0]["s"]
    cdr = _pg_fetch(d.dsn, "SELECT charge, duration, termination_cause FROM cdrs WHERE session_id = '127.0.0.1|late-1'")
    assert usage == 50_000
    assert [(r["charge"], r["duration"]) for r in cdr] == [(50_000, 30)], [tuple(r) for r in cdr]


def test_retransmitted_ccr_i_after_a_refusal_is_answered_identically(tmp_path: Path) -> None:
    """docs/architecture.md: 'a retransmission ... is answered identically and moves nothing'.  CCR-I answered
    4012 (0.01 EUR cannot pay a block); credit arrives (a top-up, or another call's hold released); the
    gateway's retransmission of that CCR-I (T flag, same request number) is answered 2001 with a grant, and
    0.32 EUR is held for a session the gateway refused, until validity + grace (default 31 min)."""
    require_services()
    d = Daemon(tmp_path)
    d.write_config()
    try:
        d.create_database()
        provision_demo(d, balance="0.01")
        d.start()
        gy = GyPeer(d.ports["diameter"], "pgw.test", Stats())
        try:
            avps = ccr("refused;1", c.INITIAL, 0, called="4930123456", rg=1)
            first, raw_t = gy.request(avps, time.monotonic() + 10)
            assert first is not None and _mscc(first)[0] == 4012
            d.ocsctl("topup", "alice", "1.00", "--reference", "e2e-alice-2")
            hbh = int.from_bytes(raw_t[12:16], "big")
            again = gy.exchange(raw_t, hbh)
            assert again is not None
            held = d.ocsctl("account", "show", "alice", json_out=True)["reserved"]
            assert (_mscc(again), held) == (_mscc(first), "0.00"), (_mscc(again), held)
        finally:
            gy.close()
        assert d.stop() == 0
    finally:
        d.cleanup()
