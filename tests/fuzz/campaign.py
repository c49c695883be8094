"""The fuzz campaign against one running ocsd: batches of mutated inputs, liveness probes, a drain check.

Shared by the bounded test (``tests/fuzz/test_campaign.py``, part of the normal test command)
and the long run (``make fuzz``, ``python -m bench --only fuzz``).  See docs/fuzzing.md.

A campaign alternates batches and probes.  In a batch, one thread plays RADIUS datagrams in
windows (a few hundred in flight, the next window once the replies stop coming) and others play
Diameter episodes (one TCP connection each: CER, pipelined CCRs, then a tail that kills or
abandons the connection, an abrupt close or a DPR); a slowloris connection dribbles a CER and
CCRs one octet at a time throughout.  Between batches the probes check that ocsd is alive, that
/healthz answers, that a well-formed Access-Request gets an Access-Accept and a well-formed CCR-I
a 2001, and record RSS and open file descriptors.  At the end the usage streams must drain into
PostgreSQL: every record the scripts emitted is a row (or a dead letter).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import random
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import redis

from ocs.diameter import codec as dc
from ocs.diameter import constants as c
from ocs.store.keys import Keys
from tests.fuzz import generators as g
from tests.fuzz import wire as w
from tests.support.daemon import Daemon

PROBE_USER, PROBE_ALIAS, PROBE_PASSWORD = "probe", "4917000000001", "probe-secret"
FUZZ_USER, FUZZ_ALIAS, FUZZ_PASSWORD = "fuzz", "4917000000002", "fuzz-secret"
REG_USER, REG_ALIAS, REG_PASSWORD = "reg", "4917000000003", "reg-secret"
TARIFF = "fuzzdemo"
# demo-like (scripts/demo/rates.csv) but one band, so that prices do not depend on the hour
RATES = """prefix,destination,rate,connect_fee,first_increment,next_increment,service
49,Germany fixed,0.06,0.02,30,6,voice
4930,Germany Berlin,0.05,0.02,30,6,voice
4915,Germany mobile,0.12,0,60,60,voice
44,United Kingdom,0.04,0,1,1,voice
1,USA and Canada,0.02,0,6,6,voice
1,Data,0.01,0,1024,1024,data
10,Data premium,0.02,0,1024,1024,data
"""

RADIUS_WINDOW = 200  # datagrams in flight per socket
RADIUS_SOCKETS = 2
RADIUS_IDLE = 0.08  # a window is over when no reply came for this long (or every clean one is answered)
DIAMETER_WORKERS = 2
DIAMETER_PIPELINE = 64  # at most this many CCRs pipelined on one connection
DIAMETER_IDLE = 1.0
FD_SLACK = 50  # open descriptors above the start tolerated at a probe (connections closed)
RSS_LIMIT_MB = 1024  # generous: recorded and printed, this only catches a runaway
DRAIN_SECONDS = 90.0


def provision(d: Daemon, *, accounts: tuple[str, ...] = (PROBE_USER, FUZZ_USER, REG_USER),
              fuzz_balance: str = "1000000.00", probe_balance: str = "100000.00", reg_balance: str = "10.00") -> None:
    """Tariff ``fuzzdemo`` and (of) accounts ``probe`` (liveness), ``fuzz`` (the campaign) and ``reg``."""
    rates = d.tmp / "fuzz_rates.csv"
    rates.write_text(RATES)
    d.ocsctl("tariff", "import", TARIFF, str(rates), "--currency", "EUR", "--timezone", "UTC")
    for user, alias, pw, bal in ((PROBE_USER, PROBE_ALIAS, PROBE_PASSWORD, probe_balance),
                                 (FUZZ_USER, FUZZ_ALIAS, FUZZ_PASSWORD, fuzz_balance),
                                 (REG_USER, REG_ALIAS, REG_PASSWORD, reg_balance)):
        if user in accounts:
            d.ocsctl("account", "create", user, "--currency", "EUR", "--tariff", TARIFF, "--alias", alias,
                     "--password", pw)
            d.ocsctl("topup", user, bal, "--reference", f"fuzz-{user}-1")


# -- observations of the daemon ----------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def healthz(d: Daemon, timeout: float = 5.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def log_tail(d: Daemon, n: int = 6000) -> str:
    try:
        return d.log_path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def stream_lengths(d: Daemon, shards: int = 16) -> int:
    r = redis.Redis.from_url(d.redis_url)
    try:
        keys = Keys(d.prefix, shards)
        return sum(int(r.xlen(s)) for s in keys.all_usage_streams())
    finally:
        r.close()


def records_emitted(d: Daemon, shards: int = 16) -> int:
    """Usage records the scripts appended (each takes the next ``seq`` of its shard; CDRs do not)."""
    r = redis.Redis.from_url(d.redis_url)
    try:
        keys = Keys(d.prefix, shards)
        return sum(int(r.get(keys.seq(s)) or 0) for s in range(shards))
    finally:
        r.close()


def pg(d: Daemon, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(d.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(go())


def pg_counts(d: Daemon) -> dict[str, int]:
    row = pg(d, "SELECT (SELECT count(*) FROM usage) AS usage, (SELECT count(*) FROM cdrs) AS cdrs,"
                " (SELECT CASE WHEN to_regclass('usage_dead_letters') IS NULL THEN NULL ELSE 0 END) AS dl")[0]
    out = {"usage": int(row["usage"]), "cdrs": int(row["cdrs"]), "dead_letters": 0, "dead_usage": 0}
    if row["dl"] is not None:
        dl = pg(d, "SELECT count(*) AS n, count(*) FILTER (WHERE record_id NOT LIKE 'cdr:%'"
                   " AND record_id NOT LIKE 'ref:%') AS u"  # CDRs: of sessions, of refused attempts
                   " FROM usage_dead_letters")[0]
        out["dead_letters"], out["dead_usage"] = int(dl["n"]), int(dl["u"])
    return out


# -- probes ------------------------------------------------------------------------------------------


class ProbeFailed(AssertionError):
    pass


@dataclass
class Prober:
    d: Daemon
    n: int = 0

    def radius(self) -> None:
        self.n += 1
        auth = os.urandom(16)
        raw = w.access_request(self.n & 0xFF, auth, user=PROBE_USER.encode(), password=PROBE_PASSWORD.encode(),
                               called=b"4930123456", nas_id=b"probe-nas", session=f"probe-{self.n}".encode())
        reply = w.radius_exchange(self.d.ports["auth"], raw, timeout=2.0, tries=3)
        if reply is None:
            raise ProbeFailed("RADIUS probe: no (verifiable) reply to a well-formed Access-Request")
        if reply[0] != w.ACCESS_ACCEPT:
            msg = w.reply_attrs(reply).get(w.REPLY_MESSAGE, [b""])[0]
            raise ProbeFailed(f"RADIUS probe: code {reply[0]} ({msg!r}), not Access-Accept")

    def diameter(self) -> None:
        self.n += 1
        sid = f"probe.test;{self.n}".encode()
        try:
            with socket.create_connection(("127.0.0.1", self.d.ports["diameter"]), timeout=5) as s:
                buf = bytearray()
                s.sendall(w.cer(1, host="probe.pgw.test"))
                cea = w.read_message(s, buf)
                if cea is None or w.result_code(cea) != c.SUCCESS:
                    raise ProbeFailed(f"Diameter probe: CEA {cea!r}")
                s.sendall(dc.message(c.CCR, dc.FLAG_R, c.APP_CC, 2, 2, *w.ccr_avps(
                    sid, c.INITIAL, 0, subscriber=PROBE_ALIAS.encode(), called=b"4930123456", requested=60)))
                cca = w.read_message(s, buf)
                if cca is None or w.result_code(cca) != c.SUCCESS:
                    raise ProbeFailed(f"Diameter probe: CCR-I answered {w.result_code(cca) if cca else 'nothing'}")
                s.sendall(dc.message(c.CCR, dc.FLAG_R, c.APP_CC, 3, 3, *w.ccr_avps(
                    sid, c.TERMINATION, 1, subscriber=None, requested=None, used=0)))
                w.read_message(s, buf)
        except OSError as exc:
            raise ProbeFailed(f"Diameter probe: {exc!r}") from exc

    def all(self) -> None:
        proc = self.d.proc
        assert proc is not None
        if proc.poll() is not None:
            raise ProbeFailed(f"ocsd exited with {proc.returncode}")
        try:
            status = healthz(self.d)
        except OSError as exc:
            raise ProbeFailed(f"/healthz: {exc!r}") from exc
        if status != 200:
            raise ProbeFailed(f"/healthz answered {status}")
        self.radius()
        self.diameter()


# -- RADIUS batches ----------------------------------------------------------------------------------


@dataclass
class RadiusStats:
    sent: int = 0
    replies: int = 0
    answered: int = 0  # replies that verify against the request they answer
    clean_sent: int = 0
    clean_answered: int = 0
    bad_replies: int = 0  # a reply whose authenticator does not verify: a daemon bug
    windows: int = 0
    bad_samples: list[str] = field(default_factory=list)


def radius_batch(d: Daemon, gen: g.RadiusGen, count: int, st: RadiusStats, deadline: float) -> None:
    ports = {"auth": d.ports["auth"], "acct": d.ports["acct"]}
    socks = []
    recent: list[dict[int, list[bytes]]] = [{} for _ in range(RADIUS_SOCKETS)]
    for _ in range(RADIUS_SOCKETS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    try:
        left = count
        while left > 0 and time.monotonic() < deadline:
            st.windows += 1
            pending: list[dict[int, bytes]] = []
            clean: list[set[int]] = []
            waiting = 0
            for s in socks:
                out: dict[int, bytes] = {}
                clean.append(set())
                for ident in range(min(RADIUS_WINDOW, left)):
                    case = gen.next(ident)
                    left -= 1
                    st.sent += 1
                    try:
                        s.sendto(case.raw, ("127.0.0.1", ports[case.port]))
                    except OSError:
                        continue  # e.g. a datagram beyond the socket's limit
                    if len(case.raw) >= 20:
                        out[ident] = case.raw
                    if case.expect:
                        clean[-1].add(ident)
                        st.clean_sent += 1
                        waiting += 1
                pending.append(out)
                if left <= 0:
                    break
            clean_left = waiting
            while clean_left > 0 or waiting == 0:
                ready, _, _ = select.select(socks, [], [], RADIUS_IDLE)
                if not ready:
                    break
                for s in ready:
                    k = socks.index(s)
                    while True:
                        try:
                            data = s.recv(65535)
                        except BlockingIOError:
                            break
                        st.replies += 1
                        if len(data) < 20:
                            st.bad_replies += 1
                            continue
                        req = pending[k].get(data[1]) if k < len(pending) else None
                        if req is not None and w.reply_ok(data, req):
                            del pending[k][data[1]]
                            st.answered += 1
                            if data[1] in clean[k]:
                                clean_left -= 1
                                st.clean_answered += 1
                        elif any(w.reply_ok(data, old) for old in recent[k].get(data[1], ())):
                            st.answered += 1  # late, to an earlier window
                        else:
                            st.bad_replies += 1  # answers no request we sent from this socket lately
                            if len(st.bad_samples) < 5:
                                st.bad_samples.append(data.hex())
            for k, out in enumerate(pending):  # unanswered: a late reply may still come
                for ident, raw in out.items():
                    lst = recent[k].setdefault(ident, [])
                    lst.append(raw)
                    del lst[:-32]  # a reply may come many windows late (ocsd stalled a moment)
    finally:
        for s in socks:
            s.close()


# -- Diameter batches --------------------------------------------------------------------------------


@dataclass
class DiameterStats:
    sent: int = 0  # messages (and pre-CER garbage, tails) written
    answers: int = 0
    episodes: int = 0
    connect_errors: int = 0
    resets: int = 0  # the server closed while we wrote or read: expected after killers
    idle_waits: int = 0  # answers expected but none came within DIAMETER_IDLE
    missing_answers: int = 0
    bad_answers: int = 0  # an answer our codec cannot decode: a daemon bug
    results: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **kw: int) -> None:
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def result(self, code: int) -> None:
        with self.lock:
            self.results[code] = self.results.get(code, 0) + 1


def _read_answers(s: socket.socket, buf: bytearray, want: int, st: DiameterStats) -> int:
    got = 0
    s.settimeout(DIAMETER_IDLE)
    while got < want:
        try:
            raw = w.read_message(s, buf)
        except TimeoutError:
            st.add(idle_waits=1)
            break
        except ValueError:
            st.add(bad_answers=1)
            break
        if raw is None:
            break
        got += 1
        try:
            st.result(w.result_code(raw))
        except dc.CodecError:
            st.add(bad_answers=1)
    st.add(answers=got, missing_answers=max(0, want - got))
    return got


def play_episode(port: int, ep: g.Episode, st: DiameterStats) -> None:
    st.add(episodes=1)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        st.add(connect_errors=1)
        return
    buf = bytearray()
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ep.pre:
            st.add(sent=1)
            s.sendall(ep.pre)
            s.settimeout(0.05)
            with contextlib.suppress(TimeoutError, ValueError):
                while w.read_message(s, buf) is not None:  # maybe an error answer, then the close
                    pass
            return
        if ep.cer:
            st.add(sent=1)
            s.sendall(w.cer(1))
            s.settimeout(5)
            cea = w.read_message(s, buf)
            if cea is None or w.result_code(cea) != c.SUCCESS:
                st.add(bad_answers=1)
                return
        data = b"".join(m.raw for m in ep.messages)
        want = sum(1 for m in ep.messages if m.expect)
        st.add(sent=len(ep.messages))
        if ep.ending == "rst_inflight":  # pipelined CCRs, then gone before any answer
            s.sendall(data)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        s.sendall(data)
        _read_answers(s, buf, want, st)
        if ep.tail:
            st.add(sent=1)
            s.sendall(ep.tail)
            s.settimeout(0.02)
            with contextlib.suppress(TimeoutError, ValueError):
                while w.read_message(s, buf) is not None:
                    pass
        elif ep.ending == "dpr":
            st.add(sent=1)
            s.sendall(dc.message(c.DPR, dc.FLAG_R, 0, 7, 7, dc.utf8(c.ORIGIN_HOST, "fuzz.pgw.test"),
                                 dc.utf8(c.ORIGIN_REALM, "test"), dc.u32(c.DISCONNECT_CAUSE, 0)))
            _read_answers(s, buf, 1, st)
        elif ep.ending == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (ConnectionError, BrokenPipeError):
        st.add(resets=1)
    except OSError:
        st.add(resets=1)
    finally:
        s.close()


def diameter_worker(port: int, gen: g.DiameterGen, count: int, st: DiameterStats, deadline: float) -> None:
    done = 0
    while done < count and time.monotonic() < deadline:
        ep = gen.episode(min(DIAMETER_PIPELINE, count - done))
        play_episode(port, ep, st)
        done += ep.count


class Slowloris(threading.Thread):
    """One connection dribbling a CER and then CCRs one octet at a time (and a silent half-frame one)."""

    def __init__(self, port: int, rng: random.Random, period: float = 0.02) -> None:
        super().__init__(daemon=True, name="slowloris")
        self.port = port
        self.rng = rng
        self.period = period
        self.stop_event = threading.Event()
        self.octets = 0
        self.answers = 0
        self.reconnects = 0

    def run(self) -> None:
        end = time.monotonic() + 3600  # bounded whatever happens
        n = 0
        while not self.stop_event.is_set() and time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    s.setblocking(False)
                    stream = w.cer(1, host="slow.pgw.test")
                    n += 1
                    sid = f"slow;{n}".encode()
                    for k in range(50):
                        stream += dc.message(c.CCR, dc.FLAG_R, c.APP_CC, 10 + k, 10 + k, *w.ccr_avps(
                            sid, c.INITIAL if k == 0 else c.UPDATE, k, subscriber=FUZZ_ALIAS.encode(),
                            called=b"4930123456", used=None if k == 0 else k))
                    for octet in range(len(stream)):
                        if self.stop_event.wait(self.period):
                            return
                        s.send(stream[octet:octet + 1])
                        self.octets += 1
                        with contextlib.suppress(BlockingIOError):
                            data = s.recv(65536)
                            if not data:
                                raise ConnectionError("closed by ocsd")
                            self.answers += 1
            except OSError:
                self.reconnects += 1
                if self.stop_event.wait(0.5):
                    return


# -- the campaign ------------------------------------------------------------------------------------


@dataclass
class Report:
    seed: int
    packets: int
    radius: RadiusStats = field(default_factory=RadiusStats)
    diameter: DiameterStats = field(default_factory=DiameterStats)
    seconds: float = 0.0
    fuzz_seconds: float = 0.0
    batches: int = 0
    rss_start: float = 0.0
    rss_peak: float = 0.0
    rss_end: float = 0.0
    fds_start: int = 0
    fds_peak: int = 0
    fds_end: int = 0
    survived: bool = False
    failure: str = ""
    drained: bool = False
    drain_seconds: float = 0.0
    records_emitted: int = 0
    pg: dict[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    slowloris_octets: int = 0
    refilled: float = 0.0  # EUR topped up on the fuzz account between batches
    radius_kinds: dict[str, int] = field(default_factory=dict)
    diameter_kinds: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        r, dm = self.radius, self.diameter
        rate = (r.sent + dm.sent) / self.fuzz_seconds if self.fuzz_seconds else 0
        lines = [
            f"fuzz seed={self.seed} packets/protocol={self.packets} batches={self.batches}",
            f"  time: total {self.seconds:.1f} s, fuzzing {self.fuzz_seconds:.1f} s ({rate:,.0f} packets/s),"
            f" drain {self.drain_seconds:.1f} s",
            f"  radius: sent {r.sent}, replies {r.replies} ({r.answered} verified), clean answered {r.clean_answered}/{r.clean_sent},"
            f" bad replies {r.bad_replies}, windows {r.windows}",
            f"  diameter: sent {dm.sent}, answers {dm.answers}, episodes {dm.episodes}, resets {dm.resets},"
            f" idle waits {dm.idle_waits}, missing {dm.missing_answers}, bad answers {dm.bad_answers},"
            f" connect errors {dm.connect_errors}, slowloris octets {self.slowloris_octets}",
            f"  diameter results: {dict(sorted(dm.results.items()))}",
            f"  rss MiB start/peak/end: {self.rss_start}/{self.rss_peak}/{self.rss_end};"
            f" fds start/peak/end: {self.fds_start}/{self.fds_peak}/{self.fds_end}",
            f"  fuzz account topped up by {self.refilled:,.2f} EUR between batches\n"
            f"  records emitted {self.records_emitted}; postgres {self.pg}; drained {self.drained};"
            f" exit {self.exit_code}; survived {self.survived}",
        ]
        if self.failure:
            lines.append(f"  FAILURE: {self.failure}")
        return "\n".join(lines)


def default_seed() -> int:
    env = os.environ.get("OCS_FUZZ_SEED")
    return int(env) if env else int(time.time())


def run_campaign(d: Daemon, packets: int, seed: int, *, batch: int = 5000, time_budget: float = 3600.0,
                 say: Callable[[str], None] = print, stop: bool = True) -> Report:
    """Fuzz ``d`` with ``packets`` RADIUS datagrams and ``packets`` Diameter messages; never raises for the
    daemon's sake: the report says what failed (``survived`` False, ``failure``)."""
    assert d.proc is not None
    pid = d.proc.pid
    rep = Report(seed=seed, packets=packets)
    t0 = time.monotonic()
    deadline = t0 + time_budget
    say(f"fuzz: seed {seed} (OCS_FUZZ_SEED={seed} reproduces the inputs), {packets} packets per protocol")
    probe = Prober(d)
    rgen = g.RadiusGen(random.Random(f"{seed}:radius"))
    dgens = [g.DiameterGen(random.Random(f"{seed}:diameter:{i}"), tag=f"d{i}") for i in range(DIAMETER_WORKERS)]
    slow = Slowloris(d.ports["diameter"], random.Random(f"{seed}:slow"))
    try:
        probe.all()
        rep.rss_start = rep.rss_peak = rss_mb(pid)
        rep.fds_start = rep.fds_peak = fd_count(pid)
        slow.start()
        done = 0
        t_fuzz = time.monotonic()
        while done < packets:
            if time.monotonic() > deadline:
                raise ProbeFailed(f"time budget of {time_budget:.0f} s exhausted after {done} packets")
            n = min(batch, packets - done)
            rep.batches += 1
            bdeadline = time.monotonic() + max(60.0, n / 100)
            threads = [threading.Thread(target=radius_batch, args=(d, rgen, n, rep.radius, bdeadline))]
            share = [n // DIAMETER_WORKERS + (1 if i < n % DIAMETER_WORKERS else 0) for i in range(DIAMETER_WORKERS)]
            threads += [threading.Thread(target=diameter_worker, args=(d.ports["diameter"], dg, k, rep.diameter,
                                                                      bdeadline))
                        for dg, k in zip(dgens, share, strict=True)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=max(1.0, bdeadline - time.monotonic() + 10))
            done += n
            rep.fuzz_seconds = time.monotonic() - t_fuzz
            rep.rss_peak = max(rep.rss_peak, rss_mb(pid))
            probe.all()
            rep.refilled += refill(d)
            fds = settle_fds(pid, rep.fds_start + FD_SLACK)
            rep.fds_peak = max(rep.fds_peak, fds)
            rss = rss_mb(pid)
            rep.rss_peak = max(rep.rss_peak, rss)
            say(f"fuzz: batch {rep.batches}: {done}/{packets} per protocol, {rep.fuzz_seconds:.1f} s,"
                f" rss {rss} MiB, fds {fds}, radius replies {rep.radius.replies},"
                f" diameter answers {rep.diameter.answers}")
            if fds > rep.fds_start + FD_SLACK:
                raise ProbeFailed(f"open descriptors grew from {rep.fds_start} to {fds} with our connections closed:"
                                  f" {fd_breakdown(pid)}")
            if rss > RSS_LIMIT_MB:
                raise ProbeFailed(f"RSS {rss} MiB beyond {RSS_LIMIT_MB} MiB")
        slow.stop_event.set()
        slow.join(timeout=5)
        rep.slowloris_octets = slow.octets
        probe.all()
        rep.fds_end = settle_fds(pid, rep.fds_start + FD_SLACK)
        rep.rss_end = rss_mb(pid)
        if rep.fds_end > rep.fds_start + FD_SLACK:
            raise ProbeFailed(f"open descriptors grew from {rep.fds_start} to {rep.fds_end} at the end:"
                              f" {fd_breakdown(pid)}")
        t_drain = time.monotonic()
        rep.drained = wait_drained(d)
        rep.drain_seconds = time.monotonic() - t_drain
        rep.records_emitted = records_emitted(d)
        rep.pg = pg_counts(d)
        if not rep.drained:
            raise ProbeFailed(f"usage streams not drained within {DRAIN_SECONDS:.0f} s:"
                              f" {stream_lengths(d)} entries left")
        stored = rep.pg["usage"] + rep.pg["dead_usage"]
        if stored != rep.records_emitted:
            raise ProbeFailed(f"{rep.records_emitted} usage records emitted, {rep.pg['usage']} in usage +"
                              f" {rep.pg['dead_usage']} dead letters")
        if d.proc.poll() is not None:
            raise ProbeFailed(f"ocsd exited with {d.proc.returncode}")
        rep.survived = True
        if stop:
            rep.exit_code = d.stop()
            if rep.exit_code != 0:
                rep.survived = False
                rep.failure = f"SIGTERM: exit {rep.exit_code}"
    except (ProbeFailed, AssertionError, OSError) as exc:
        rep.survived = False
        rep.failure = f"{type(exc).__name__}: {exc}"
        if d.proc.poll() is not None:
            rep.exit_code = d.proc.returncode
    finally:
        slow.stop_event.set()
        slow.join(timeout=5)
        rep.slowloris_octets = slow.octets
        with contextlib.suppress(OSError):
            rep.rss_end = rep.rss_end or rss_mb(pid)
        rep.seconds = time.monotonic() - t0
        rep.radius_kinds = rgen.stats
        merged: dict[str, int] = {}
        for dg in dgens:
            for k, v in dg.stats.items():
                merged[k] = merged.get(k, 0) + v
        rep.diameter_kinds = merged
    say(rep.summary())
    if not rep.survived:
        say("fuzz: ocsd log tail:\n" + log_tail(d))
    return rep


def refill(d: Daemon, account: str = FUZZ_USER, floor: float = 100_000.0, to: float = 1_000_000.0) -> float:
    """Top the fuzz account up when huge reported usage has eaten it (else everything after is 4012 /
    "no credit" and reaches less of the charging logic).  The balance alone counts (holds expire), so
    the balance never goes beyond ``to``.  Returns the amount added."""
    balance = float(d.ocsctl("account", "show", account, json_out=True)["balance"])
    if balance >= floor:
        return 0.0
    amount = round(to - balance, 2)
    d.ocsctl("topup", account, f"{amount:.2f}", "--reference", f"fuzz-refill-{time.time_ns()}")
    return amount


def fd_breakdown(pid: int) -> str:
    """What ocsd's descriptors are: files by kind, TCP sockets by remote port (6379 Redis, 5432 PostgreSQL)."""
    inodes: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        kind = target.split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
        if target.startswith("socket:["):
            inodes[target[8:-1]] = 1
    ports: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if len(f) > 9 and f[9] in inodes:
                    port = str(int(f[2].rsplit(":", 1)[1], 16))
                    ports[port] = ports.get(port, 0) + 1
    return f"descriptors {kinds}; TCP sockets by remote port {ports}"


def settle_fds(pid: int, bound: int, wait: float = 5.0) -> int:
    """Open descriptors of ``pid`` once the server has seen our closes (up to ``wait`` s for <= bound)."""
    end = time.monotonic() + wait
    n = fd_count(pid)
    while n > bound and time.monotonic() < end:
        time.sleep(0.1)
        n = fd_count(pid)
    return n


def wait_drained(d: Daemon, seconds: float = DRAIN_SECONDS) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if stream_lengths(d) == 0:
            return True
        if d.proc is not None and d.proc.poll() is not None:
            return False
        time.sleep(0.25)
    return stream_lengths(d) == 0
