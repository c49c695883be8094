"""RADIUS load against a real ocsd (real holds) and, as a reference, stock FreeRADIUS.

Rows: "radius Access-Request" and "radius Accounting-Request (Start/Interim/Stop)" against ocsd,
"freeradius reference Access-Request" and "freeradius reference Accounting-Request" against a
FreeRADIUS 3 started from a minimal private config (users file + pap, accounting just answers),
with the same load generator and the same packets (built by the same functions; FreeRADIUS gets
REFERENCE_SCALE times as many calls so that its much shorter phases can still be timed).

Load: N calls.  Phase 1 sends one Access-Request per call (distinct Called-Station-Id, so each
makes its own hold under NAS|User-Name|Called-Station-Id); phase 2 plays each call's accounting
as a NAS would: Start (binds the hold to the Acct-Session-Id), Interims with growing
Acct-Session-Time, Stop.  A call's packets go out one after another, each once the previous one
is answered.  One whole call is played packet by packet first (warm-up, not timed).

Then, against ocsd only:

- "radius Access-Request open loop at half the max": Access-Requests for further calls offered on
  a clock (:func:`paced`) at half the closed-loop Access-Request rate of the same run
  (``offered_per_s``), whatever the answers; p50/p99/p99.9 against the target p99 < 5 ms
  (``met``: below it and nothing lost); ``send_lag_ms``: how late behind its clock the generator
  sent (a busy generator shows here, not as server latency);
- "radius Interim-Update only": those calls then go on as their NAS would play them: Start (not
  timed), their INTERIMS Interim-Updates alone (timed: each a debit and a new reservation; the
  issue's "CPU per charging request", target <= 60 us) and Stop (not timed);
- "money check: radius (ocsd)": bench/money.py once every call has ended (balances = ledger -
  usage, nothing reserved, one CDR per call, every record once); raises if not.

The generator is cheap per packet so that it is not the limit: packets are encoded (pyrad)
before the clock starts; each UDP socket has a fixed window of slots, slot i always using
RADIUS identifier i and sending its queue of packets strictly in turn; replies are matched by
identifier and checked with the Response Authenticator in ``datagram_received``, which sends
the slot's next packet straight away (no task, future or timer per packet).  One periodic timer
resends requests unanswered after TIMEOUT and gives them up (counted as lost) after RETRIES
resends; an overall deadline bounds each phase.  Throughput is answers / time to the last answer.

Columns besides the common ones:

- ``sent`` requests in the plan; ``lost`` given up, or outstanding at the deadline; ``unsent``
  never sent before the deadline; ``resent`` retransmissions; ``stray`` replies matching no
  outstanding request (late, or a bad authenticator); ``rejected`` answers other than
  Access-Accept and Accounting-Response;
- ``udp_rcvbuf_errors`` datagrams the kernel dropped for a full socket buffer (host-wide);
- ``max_gap_ms`` the longest time without any answer at all: a server stall shows here;
- ``server_cpu_us_per_req`` ocsd's (or radiusd's) CPU per answered request;
- ``gen_cpu_us_per_req`` this process's CPU per answered request (close to 1e6 / throughput
  would mean the generator is the limit);
- ``redis_cpu_us_per_req`` the Redis server's CPU (ocsd rows; that Redis is shared, so this
  includes whatever else uses it);
- ``ocsd_drops``, ``ocsd_results``, ``ocsd_duplicates``: deltas over the phase of ocsd's
  ocs_dropped_packets_total (by reason), ocs_requests_total (by type/result) and
  ocs_duplicate_requests_total, read from its /metrics;
- ``lost_ends`` (accounting rows) calls whose Stop was given up: ocsd may or may not have closed
  them, the money check allows for that many CDRs more and skips its "nothing reserved" check.

CPU columns count the server's whole process tree (``ocsd --workers``: supervisor and workers).

Targets on a 2-core machine: >= 4,000 Access-Request/s and >= 5,000 Accounting-Request/s.
Run alone with ``python -m bench.radius [--quick] [--sockets N] [--window N] [--server ...]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from bench import money
from bench.common import cpu_seconds, format_table, proc_cpu_seconds, product_defaults, row, tree_rss_mb
from tests.support.daemon import REDIS_URL, Daemon, free_port, provision_demo
from tests.support.radius_client import SECRET, access, acct, exchange

SOCKETS = 4
WINDOW = 64  # slots (= identifiers) per socket: SOCKETS * WINDOW requests in flight
TIMEOUT = 1.0  # seconds before an unanswered request is resent
RETRIES = 2  # resends before a request is given up as lost
TICK = 0.05  # period of the one timer that looks for overdue requests
INTERIMS = 2  # Interim-Updates per call, every 30 s of session time
ACCESS_ACCEPT, ACCOUNTING_RESPONSE = 2, 5

NAMES = {
    "ocsd": ("radius Access-Request", "radius Accounting-Request (Start/Interim/Stop)"),
    "freeradius": ("freeradius reference Access-Request", "freeradius reference Accounting-Request"),
}


# -- the load generator ------------------------------------------------------------------------


@dataclass
class Result:
    """What one phase saw, summed over its sockets."""

    sent: int = 0
    answered: int = 0
    lost: int = 0
    unsent: int = 0
    resent: int = 0
    stray: int = 0
    codes: list[int] = field(default_factory=lambda: [0] * 256)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    gen_cpu: float = 0.0
    gap: list[float] = field(default_factory=lambda: [0.0, 0.0])  # [last answer on any socket, longest silence]
    lost_ends: int = 0  # calls whose last packet was given up or never sent (see blast's call_len)
    send_lag: float = 0.0  # open loop: the longest a packet went out after its time on the clock


class _Socket(asyncio.DatagramProtocol):
    """One connected UDP socket; slot i (RADIUS identifier i) sends queues[i] one packet at a time."""

    def __init__(self, queues: list[list[bytes]], secret: bytes, res: Result, on_idle: Callable[[], None],
                 call_len: int = 0) -> None:
        assert len(queues) <= 256
        self.queues = queues
        self.call_len = call_len  # packets per call, each slot's queue being whole calls; 0: not counted
        self.secret = secret
        self.res = res
        self.lat = res.latencies
        self.codes = res.codes
        self.gap = res.gap
        self.on_idle = on_idle
        n = len(queues)
        self.nxt = [0] * n  # index of the slot's next packet
        self.cur: list[bytes | None] = [None] * n  # the slot's outstanding request
        self.first = [0.0] * n  # when it was first sent (latency is measured from here)
        self.last = [0.0] * n  # when it was last sent (the timeout is measured from here)
        self.tries = [0] * n
        self.busy = n  # slots with work left
        self.last_rx = 0.0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a full window of replies must fit in the receive buffer
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable and the like
        pass

    def start(self, now: float) -> None:
        for i in range(len(self.queues)):
            self._next(i, now)

    def _next(self, i: int, now: float) -> None:
        q, k = self.queues[i], self.nxt[i]
        if k >= len(q):
            self.cur[i] = None
            self.busy -= 1
            if not self.busy:
                self.on_idle()
            return
        raw = q[k]
        self.nxt[i] = k + 1
        self.cur[i] = raw
        self.first[i] = self.last[i] = now
        self.tries[i] = 0
        self.transport.sendto(raw)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.perf_counter()
        i = data[1] if len(data) >= 20 else 256
        raw = self.cur[i] if i < len(self.cur) else None
        # Response Authenticator = MD5(Code+ID+Length+Request Authenticator+Attributes+Secret)
        if raw is None or hashlib.md5(data[:4] + raw[4:20] + data[20:] + self.secret).digest() != data[4:20]:
            self.res.stray += 1  # a late reply to a request given up, or garbage
            return
        self.lat.append(now - self.first[i])
        self.codes[data[0]] += 1
        self.last_rx = now
        gap = self.gap
        gap[1] = max(gap[1], now - gap[0])
        gap[0] = now
        self._next(i, now)

    def sweep(self, now: float) -> None:
        """Resend overdue requests; give up (lost) after RETRIES resends."""
        for i, raw in enumerate(self.cur):
            if raw is not None and now - self.last[i] >= TIMEOUT:
                if self.tries[i] < RETRIES:
                    self.tries[i] += 1
                    self.last[i] = now
                    self.res.resent += 1
                    self.transport.sendto(raw)  # same bytes: the server sees a retransmission
                else:
                    self.res.lost += 1
                    if self.call_len and self.nxt[i] % self.call_len == 0:  # the call's last packet
                        self.res.lost_ends += 1
                    self._next(i, now)

    def abandon(self) -> None:
        """At the deadline: outstanding requests are lost, queued ones unsent."""
        for i, raw in enumerate(self.cur):
            n, k = len(self.queues[i]), self.nxt[i]
            if raw is not None:
                self.res.lost += 1
                self.cur[i] = None
                if self.call_len and k % self.call_len == 0:
                    self.res.lost_ends += 1
            if self.call_len:  # calls ending among the packets k+1 .. n never sent
                self.res.lost_ends += n // self.call_len - k // self.call_len
            self.res.unsent += n - k
            self.nxt[i] = n


async def blast(port: int, plan: list[list[list[bytes]]], deadline_s: float, secret: bytes = SECRET,
                call_len: int = 0) -> Result:
    """Play plan[socket][slot] = packets (identifier = slot) against 127.0.0.1:port.

    ``call_len``: every slot's queue is whole calls of that many packets; calls whose last packet
    went unanswered are counted in ``Result.lost_ends`` (their CDR may or may not exist).
    """
    loop = asyncio.get_running_loop()
    res = Result(sent=sum(len(q) for queues in plan for q in queues))
    done = loop.create_future()
    idle = [0]

    def on_idle() -> None:
        idle[0] += 1
        if idle[0] == len(plan) and not done.done():
            done.set_result(None)

    socks: list[_Socket] = []
    for queues in plan:
        _tr, s = await loop.create_datagram_endpoint(
            lambda q=queues: _Socket(q, secret, res, on_idle, call_len),  # type: ignore[misc]
            remote_addr=("127.0.0.1", port))
        socks.append(s)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    end = t0 + deadline_s

    def tick() -> None:
        if done.done():
            return
        now = time.perf_counter()
        if now >= end:
            for s in socks:
                s.abandon()
            done.set_result(None)
            return
        for s in socks:
            s.sweep(now)
        loop.call_later(TICK, tick)

    res.gap[0] = t0
    for s in socks:
        s.start(t0)
    loop.call_later(TICK, tick)
    await done
    res.gen_cpu = cpu_seconds() - cpu0
    res.answered = len(res.latencies)
    last = max(s.last_rx for s in socks)
    res.elapsed = (last if last > 0 else time.perf_counter()) - t0
    for s in socks:
        s.transport.close()
    return res


class _Paced(asyncio.DatagramProtocol):
    """One UDP socket of the open-loop generator: each request goes out when the clock says (its
    identifier chosen by the caller), whatever is outstanding; replies are matched by identifier
    and checked by Response Authenticator.  No resend: a request still unanswered when its
    identifier comes round again, or at the end, is lost."""

    def __init__(self, secret: bytes, res: Result) -> None:
        self.secret = secret
        self.res = res
        self.cur: list[bytes | None] = [None] * 256
        self.sent = [0.0] * 256
        self.outstanding = 0
        self.last_rx = 0.0
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)

    def error_received(self, exc: Exception) -> None:
        pass

    def send(self, raw: bytes, now: float) -> None:
        i = raw[1]
        if self.cur[i] is not None:  # unanswered 256 requests later on this socket
            self.res.lost += 1
        else:
            self.outstanding += 1
        self.cur[i] = raw
        self.sent[i] = now
        self.transport.sendto(raw)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        now = time.perf_counter()
        raw = self.cur[data[1]] if len(data) >= 20 else None
        if raw is None or hashlib.md5(data[:4] + raw[4:20] + data[20:] + self.secret).digest() != data[4:20]:
            self.res.stray += 1
            return
        self.cur[data[1]] = None
        self.outstanding -= 1
        self.res.latencies.append(now - self.sent[data[1]])
        self.res.codes[data[0]] += 1
        self.last_rx = now


async def paced(port: int, packets: list[bytes], sockets: int, rate: float, secret: bytes = SECRET,
                grace: float = TIMEOUT * (RETRIES + 1)) -> Result:
    """Open loop: packets[k] goes out at t0 + k / rate on socket k % sockets, encoded by the caller
    with identifier (k // sockets) % 256; then up to ``grace`` seconds for the last answers.
    Latency is from the actual send; ``Result.send_lag`` says how far behind the clock that was."""
    loop = asyncio.get_running_loop()
    res = Result(sent=len(packets))
    socks: list[_Paced] = []
    for _ in range(sockets):
        _tr, s = await loop.create_datagram_endpoint(lambda: _Paced(secret, res), remote_addr=("127.0.0.1", port))
        socks.append(s)
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    k, n = 0, len(packets)
    while k < n:
        now = time.perf_counter()
        due = min(n, int((now - t0) * rate) + 1)
        if k < due:
            res.send_lag = max(res.send_lag, now - (t0 + k / rate))
        while k < due:
            socks[k % sockets].send(packets[k], now)
            k += 1
        await asyncio.sleep(0.001)  # libuv timers have a resolution of 1 ms: less would spin
    end = time.perf_counter() + grace
    while any(s.outstanding for s in socks) and time.perf_counter() < end:  # noqa: ASYNC110 - counters of N sockets
        await asyncio.sleep(0.005)
    res.lost += sum(s.outstanding for s in socks)
    res.gen_cpu = cpu_seconds() - cpu0
    res.answered = len(res.latencies)
    last = max(s.last_rx for s in socks)
    res.elapsed = (last if last > 0 else time.perf_counter()) - t0
    for s in socks:
        s.transport.close()
    return res


def _run(coro: Coroutine[Any, Any, Result]) -> Result:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of ocs
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- the calls ---------------------------------------------------------------------------------


def _called(j: int) -> str:
    return f"4930{j:07d}"  # rated by prefix 49; distinct per call so each Access-Request holds


def _access_packets(j: int, ident: int) -> list[bytes]:
    p = access("alice", password="alice-secret", called=_called(j))
    p.id = ident
    return [p.RequestPacket()]


def _encoded(pkts: list[Any], ident: int) -> list[bytes]:
    out = []
    for p in pkts:
        p.id = ident
        out.append(p.RequestPacket())
    return out


def _start_packets(j: int, ident: int) -> list[bytes]:
    return _encoded([acct(1, f"bench-call-{j}", called=_called(j))], ident)


def _interim_packets(j: int, ident: int) -> list[bytes]:
    """INTERIMS Interim-Updates, every 30 s of session time: each a debit and a new reservation."""
    sid, called = f"bench-call-{j}", _called(j)
    return _encoded([acct(3, sid, called=called, time=30 * k) for k in range(1, INTERIMS + 1)], ident)


def _stop_packets(j: int, ident: int) -> list[bytes]:
    return _encoded([acct(2, f"bench-call-{j}", called=_called(j), time=30 * INTERIMS + 15, cause=1)], ident)


def _acct_packets(j: int, ident: int) -> list[bytes]:
    """Call j's accounting: Start, INTERIMS Interim-Updates, Stop."""
    return _start_packets(j, ident) + _interim_packets(j, ident) + _stop_packets(j, ident)


def make_plan(calls: int, per_call: Callable[[int, int], list[bytes]], sockets: int | None = None,
              window: int | None = None, first: int = 0) -> list[list[list[bytes]]]:
    """Call first+n goes to socket n % sockets, slot (n // sockets) % window, encoded with that identifier."""
    sockets, window = sockets or SOCKETS, window or WINDOW
    assert 1 <= window <= 256
    plan: list[list[list[bytes]]] = [[[] for _ in range(window)] for _ in range(sockets)]
    for n in range(calls):
        slot = (n // sockets) % window
        plan[n % sockets][slot].extend(per_call(first + n, slot))
    return plan


# -- measuring a server ------------------------------------------------------------------------


def _redis_pid() -> int | None:
    """The local redis-server serving REDIS_URL (its CPU is part of ocsd's cost)."""
    port = str(urlparse(REDIS_URL).port or 6379)
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if (d / "comm").read_text().strip() != "redis-server":
                continue
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f":{port}" in cmd or f"--port {port}" in cmd:
            return int(d.name)
    return None


def _udp_rcvbuf_errors() -> int:
    """Datagrams the kernel dropped for a full receive buffer, host-wide (/proc/net/snmp)."""
    try:
        lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return 0


def _cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        return proc_cpu_seconds(pid)
    except OSError:
        return 0.0


def _metrics(port: int) -> dict[str, float]:
    """ocsd's RADIUS drop and result counters, as 'family{labels}' -> value."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(("ocs_dropped_packets_total{", "ocs_requests_total{", "ocs_duplicate_requests_total{")) \
                and 'protocol="radius"' in line:
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _delta(before: dict[str, float], after: dict[str, float], family: str, labels: tuple[str, ...]) -> str:
    parts = []
    for key, value in sorted(after.items()):
        if not key.startswith(family + "{"):
            continue
        n = int(value - before.get(key, 0.0))
        if n:
            inner = key[len(family) + 1:-1]
            lab = dict(kv.split("=", 1) for kv in inner.split(",")) if inner else {}
            name = "/".join(lab[x].strip('"') for x in labels if x in lab)
            parts.append(f"{name}={n}" if name else str(n))
    return " ".join(parts) or "none"


def measure(name: str, port: int, plan: list[list[list[bytes]]], deadline_s: float, server_pid: int,
            target: str, redis_pid: int | None = None, metrics_port: int | None = None,
            call_len: int = 0) -> dict[str, Any]:
    """One closed-loop phase (:func:`blast`) as a row; with ``call_len`` (packets per call) the row
    also says how many calls lost their last packet (``lost_ends``: the money check's margin)."""
    more = {"lost_ends": None} if call_len else {}
    out, res = _measured(name, lambda: blast(port, plan, deadline_s, call_len=call_len),
                         sum(len(queues) for queues in plan), server_pid, target, redis_pid, metrics_port, **more)
    if call_len:
        out["lost_ends"] = res.lost_ends
    return out


def _measured(name: str, play: Callable[[], Coroutine[Any, Any, Result]], in_flight: int | None, server_pid: int,
              target: str, redis_pid: int | None = None, metrics_port: int | None = None,
              **more: Any) -> tuple[dict[str, Any], Result]:
    m0 = _metrics(metrics_port) if metrics_port else {}
    srv0, red0, kdrop0 = _cpu(server_pid), _cpu(redis_pid), _udp_rcvbuf_errors()
    res = _run(play())
    srv, red, kdrop = _cpu(server_pid) - srv0, _cpu(redis_pid) - red0, _udp_rcvbuf_errors() - kdrop0
    n = max(res.answered, 1)
    extra: dict[str, Any] = {
        "sent": res.sent, "lost": res.lost, "unsent": res.unsent, "resent": res.resent, "stray": res.stray,
        "rejected": res.answered - res.codes[ACCESS_ACCEPT] - res.codes[ACCOUNTING_RESPONSE],
        "udp_rcvbuf_errors": kdrop,
        "max_gap_ms": round(res.gap[1] * 1000, 1),
        "in_flight": in_flight,
        "server_cpu_us_per_req": round(srv / n * 1e6, 1),
        "server_rss_mb": tree_rss_mb(server_pid),
        "gen_cpu_us_per_req": round(res.gen_cpu / n * 1e6, 1),
    }
    if redis_pid is not None:
        extra["redis_cpu_us_per_req"] = round(red / n * 1e6, 1)
    if metrics_port:
        time.sleep(0.2)  # let late answers and their counters land
        m1 = _metrics(metrics_port)
        extra["ocsd_drops"] = _delta(m0, m1, "ocs_dropped_packets_total", ("reason",))
        extra["ocsd_results"] = _delta(m0, m1, "ocs_requests_total", ("type", "result"))
        extra["ocsd_duplicates"] = _delta(m0, m1, "ocs_duplicate_requests_total", ())
    extra.update(more)
    extra["target"] = target
    return row(name, res.answered, res.elapsed, res.latencies, **extra), res


ACCESS_TARGET, ACCT_TARGET = "4000/s", "5000/s"
P99_TARGET_MS = 5.0  # at half the maximum Access-Request rate, open loop
CPU_TARGET_US = 60.0  # ocsd CPU per charging request at saturation
OPEN_LOOP = "radius Access-Request open loop at half the max"  # row names the suite looks up
INTERIM = "radius Interim-Update only"

REFERENCE_SCALE = 5  # FreeRADIUS answers ~20x faster: more calls so that its phases last long enough to time


def _sizes(quick: bool) -> tuple[int, float]:
    """Calls per phase and the deadline of each phase, in seconds."""
    return (3000, 30.0) if quick else (10_000, 60.0)


WARM_UP_CALL = 9_999_999  # outside any plan's range of call numbers


def warm_up(auth: int, acct_port: int) -> None:
    """One whole call, one packet at a time, before the clock starts.

    Without it the first window of requests meets ocsd's cold caches all at once (each of them
    looks the tariff version up in PostgreSQL, one after another) and p99.9 measures start-up.
    """
    for port, pkts in ((auth, _access_packets(WARM_UP_CALL, 0)), (acct_port, _acct_packets(WARM_UP_CALL, 0))):
        for raw in pkts:
            if not any(exchange(port, raw, timeout=2.0) is not None for _ in range(3)):  # resent as a NAS would
                raise RuntimeError(f"no answer to the warm-up call on port {port} (code {raw[0]}, 3 tries)")


def _both(server: str, auth: int, acct_port: int, pid: int, calls: int, deadline: float,
          **kw: Any) -> list[dict[str, Any]]:
    a_name, c_name = NAMES[server]
    warm_up(auth, acct_port)
    return [
        measure(a_name, auth, make_plan(calls, _access_packets), deadline, pid, ACCESS_TARGET, **kw),
        measure(c_name, acct_port, make_plan(calls, _acct_packets), deadline, pid, ACCT_TARGET,
                call_len=INTERIMS + 2, **kw),
    ]


def open_loop(auth: int, first: int, rate: float, seconds: float, pid: int, **kw: Any) -> dict[str, Any]:
    """Access-Requests for calls first, first+1, ... offered at ``rate``/s for ``seconds`` (:func:`paced`)."""
    packets = [_access_packets(first + k, (k // SOCKETS) % 256)[0] for k in range(max(1, int(rate * seconds)))]
    out, _res = _measured(OPEN_LOOP, lambda: paced(auth, packets, SOCKETS, rate), None, pid,
                          f"p99 < {P99_TARGET_MS:g} ms", offered_per_s=round(rate, 1), **kw)
    out["send_lag_ms"] = round(_res.send_lag * 1000, 2)
    out["met"] = out["p99_ms"] is not None and out["p99_ms"] < P99_TARGET_MS and not out["lost"]
    return out


def run_ocsd(quick: bool = False) -> list[dict[str, Any]]:
    calls, deadline = _sizes(quick)
    with tempfile.TemporaryDirectory() as tmp:
        d = product_defaults(Daemon(Path(tmp)))
        d.write_config()
        d.create_database()
        provision_demo(d, balance="1000000.00")
        d.start()
        try:
            assert d.proc is not None
            auth, acct_port, pid = d.ports["auth"], d.ports["acct"], d.proc.pid
            kw: dict[str, Any] = {"redis_pid": _redis_pid(), "metrics_port": d.ports["http"]}
            rows = _both("ocsd", auth, acct_port, pid, calls, deadline, **kw)
            rate = (rows[0]["throughput"] or 0.0) / 2  # half the closed-loop Access-Request maximum
            rows.append(open_loop(auth, calls, rate, 3.0 if quick else 10.0, pid, **kw))
            opened = rows[-1]["sent"]
            # the open loop's calls go on as their NAS would play them: Start (not timed), the
            # Interim-Updates alone (timed: the CPU per Interim-Update), Stop (not timed)
            _run(blast(acct_port, make_plan(opened, _start_packets, first=calls), deadline))
            rows.append(measure(INTERIM, acct_port, make_plan(opened, _interim_packets, first=calls), deadline, pid,
                                f"<= {CPU_TARGET_US:g} us CPU", **kw))
            ends = _run(blast(acct_port, make_plan(opened, _stop_packets, first=calls), deadline, call_len=1))
            lost_ends = rows[1]["lost_ends"] + ends.lost_ends
            ended = 1 + calls + opened - lost_ends  # 1: the warm-up call
            rows.append(money.check(d, "radius (ocsd)", ended, lost_ends=lost_ends))
            return rows
        finally:
            d.stop()
            d.cleanup()


# -- the FreeRADIUS reference ------------------------------------------------------------------

FREERADIUS_CONF = """\
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = {dir}
confdir = {dir}
modconfdir = {dir}
logdir = {dir}
run_dir = {dir}
db_dir = {dir}
libdir = {libdir}
pidfile = {dir}/radiusd.pid
name = freeradius
correct_escapes = true
max_request_time = 30
cleanup_delay = 5
max_requests = 65536
hostname_lookups = no
proxy_requests = no
log {{
\tdestination = files
\tfile = {dir}/radius.log
\tauth = no
\tauth_badpass = no
\tauth_goodpass = no
}}
security {{
\tallow_core_dumps = no
\tmax_attributes = 200
\treject_delay = 0
\tstatus_server = no
}}
thread pool {{
\tstart_servers = 4
\tmax_servers = 16
\tmin_spare_servers = 2
\tmax_spare_servers = 8
\tmax_requests_per_server = 0
\tauto_limit_acct = no
}}
client local {{
\tipaddr = 127.0.0.1
\tsecret = {secret}
}}
modules {{
\tfiles {{
\t\tfilename = {dir}/users
\t}}
\tpap {{
\t}}
\talways ok {{
\t\trcode = ok
\t}}
}}
server default {{
\tlisten {{
\t\ttype = auth
\t\tipaddr = 127.0.0.1
\t\tport = {auth}
\t\trecv_buff = 4194304
\t}}
\tlisten {{
\t\ttype = acct
\t\tipaddr = 127.0.0.1
\t\tport = {acct}
\t\trecv_buff = 4194304
\t}}
\tauthorize {{
\t\tfiles
\t\tpap
\t}}
\tauthenticate {{
\t\tpap
\t}}
\tpreacct {{
\t}}
\taccounting {{
\t\tok
\t}}
}}
"""

FREERADIUS_USERS = """\
alice\tCleartext-Password := "alice-secret"
\tSession-Timeout = 3600
"""


def freeradius_binary() -> str | None:
    return shutil.which("freeradius") or shutil.which("radiusd") or next(
        (p for p in ("/usr/sbin/freeradius", "/usr/sbin/radiusd") if os.access(p, os.X_OK)), None)


def _libdir() -> str:
    for p in ("/usr/lib/freeradius", "/usr/lib64/freeradius", "/usr/local/lib/freeradius"):
        if Path(p, "rlm_files.so").exists():
            return p
    return "/usr/lib/freeradius"


@contextmanager
def freeradius(tmp: Path, timeout: float = 20.0) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    """Stock FreeRADIUS in the foreground (-f, no -X: no per-request logging) on free loopback ports.

    The config is generated from scratch in tmp: no user/group lines, so when started as root it
    keeps running as root instead of switching to an account that cannot read tmp.
    """
    binary = freeradius_binary()
    if binary is None:
        raise FileNotFoundError("freeradius")
    auth, acct_port = free_port(), free_port()
    (tmp / "radiusd.conf").write_text(FREERADIUS_CONF.format(dir=tmp, libdir=_libdir(), secret=SECRET.decode(),
                                                             auth=auth, acct=acct_port))
    (tmp / "users").write_text(FREERADIUS_USERS)
    out = (tmp / "stdout.log").open("wb")
    proc = subprocess.Popen([binary, "-f", "-d", str(tmp), "-n", "radiusd"], stdout=out, stderr=out)
    try:
        probe = access("alice", password="alice-secret").RequestPacket()
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"freeradius exited {proc.returncode}: {_tail(tmp)}")
            if exchange(auth, probe, timeout=0.2) is not None:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"freeradius did not answer in {timeout}s: {_tail(tmp)}")
        yield proc, auth, acct_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def _tail(tmp: Path) -> str:
    text = ""
    for name in ("stdout.log", "radius.log"):
        p = tmp / name
        if p.exists():
            text += p.read_text(errors="replace")[-1500:]
    return text.strip()


def run_freeradius(quick: bool = False) -> list[dict[str, Any]]:
    if freeradius_binary() is None:
        return [{"name": "freeradius reference", "status": "not installed (apt-get install freeradius)"}]
    calls, deadline = _sizes(quick)
    with tempfile.TemporaryDirectory() as tmp, freeradius(Path(tmp)) as (proc, auth, acct_port):
        return _both("freeradius", auth, acct_port, proc.pid, calls * REFERENCE_SCALE, deadline)


def run(quick: bool = False) -> list[dict[str, Any]]:
    rows = run_ocsd(quick)
    try:
        rows += run_freeradius(quick)
    except Exception as exc:  # the reference must not hide the ocsd figures
        rows.append({"name": "freeradius reference", "status": f"error: {type(exc).__name__}: {exc}"})
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    global SOCKETS, WINDOW
    ap = argparse.ArgumentParser(prog="python -m bench.radius", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3,000 calls per phase instead of 10,000")
    ap.add_argument("--sockets", type=int, default=SOCKETS, help="UDP sockets (default %(default)s)")
    ap.add_argument("--window", type=int, default=WINDOW, help="requests in flight per socket, <= 256")
    ap.add_argument("--server", choices=("ocsd", "freeradius", "both"), default="both")
    args = ap.parse_args(argv)
    if not 1 <= args.window <= 256:
        ap.error("--window must be 1..256 (one RADIUS identifier per slot)")
    SOCKETS, WINDOW = args.sockets, args.window
    if args.server == "ocsd":
        rows = run_ocsd(args.quick)
    elif args.server == "freeradius":
        rows = run_freeradius(args.quick)
    else:
        rows = run(args.quick)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
