"""Soak: ocsd's resident memory over many completed RADIUS sessions (flat after warm-up, or a leak?).

One ocsd (its own database, key prefix and ports, started as the e2e tests start it) gets complete
prepaid calls, the way a NAS plays them: Access-Request (a hold under NAS|User-Name|Called-Station-Id),
Accounting-Start (binds the hold to the Acct-Session-Id), Accounting-Stop (debit, CDR, close). Every
call has its own Acct-Session-Id and Called-Station-Id; the calls go round ACCOUNTS accounts.

Calls are played in rounds of SAMPLE calls through :func:`bench.radius.blast` (the lean generator:
SOCKETS x WINDOW requests in flight, replies checked by Response Authenticator): a round's
Access-Requests, then its Start/Stop pairs. Packets are encoded here with hashlib and hmac (pyrad
costs ~50 µs a packet, which over three million packets would slow the generator more than ocsd).
After each round ocsd's RSS is read from /proc.

After the last round, "money check: soak" (bench/money.py): balances = ledger - usage, nothing
reserved, one CDR per call, every record once; raises if not.

Reported: RSS after warm-up (the first sample at or past WARM_UP of the calls and WARM_UP_MIN calls:
the node-local caches have filled to their bounds by then), RSS at the end, the largest RSS after warm-up and
its growth over the warm-up figure (``flat`` when within 10 %), calls/s and requests/s, losses.
1,000,000 calls in the full run at the default cache bounds. ``--quick`` plays 50,000 calls with
the session and duplicate caches at a fifth of their defaults (QUICK_TOML): at the defaults they
fill only at ~25,000 calls and RSS settles only after its allocator steps (a few ~5 MB dict-table
re-allocations, over ~300,000 calls), which 50,000 calls cannot show; scaled down, the same
mechanism settles within the quick run. ``python -m bench.soak --calls N`` for any other length.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import money
from bench.common import format_table, proc_cpu_seconds, row, tree_rss_mb
from bench.radius import ACCESS_ACCEPT, ACCOUNTING_RESPONSE, SOCKETS, WINDOW, Result, _run, blast, warm_up
from tests.support.daemon import Daemon, provision_demo
from tests.support.radius_client import SECRET

ACCOUNTS = 8  # soak0 .. soak7
FULL, QUICK = 1_000_000, 50_000
WARM_UP = 0.2  # fraction of the calls after which RSS should stay flat ...
WARM_UP_MIN = 30_000  # ... but no earlier than this: at the default bounds the caches are full by ~25,000 calls
FLAT = 0.10  # largest allowed growth over the warm-up figure
QUICK_TOML = "[cache]\nsessions = 10000\nradius_duplicates = 10000\n"  # --quick: a fifth of the defaults
DEADLINE = 120.0  # seconds per phase of one round at most
NAS_IP = bytes((127, 0, 0, 1))

# attribute types (RFC 2865/2866)
USER_NAME, USER_PASSWORD, NAS_IP_ADDRESS, CALLED, CALLING = 1, 2, 4, 30, 31
ACCT_STATUS_TYPE, ACCT_SESSION_ID, ACCT_SESSION_TIME, ACCT_TERMINATE_CAUSE, MESSAGE_AUTH = 40, 44, 46, 49, 80


def _attr(kind: int, value: bytes) -> bytes:
    return bytes((kind, len(value) + 2)) + value


def _int(kind: int, value: int) -> bytes:
    return _attr(kind, struct.pack("!I", value))


def access_request(ident: int, user: str, password: str, called: str, secret: bytes = SECRET) -> bytes:
    """Access-Request with PAP and Message-Authenticator (RFC 2865 5.2, RFC 3579 3.2)."""
    auth = os.urandom(16)
    pw = password.encode().ljust(16, b"\0")
    assert len(pw) == 16, "passwords up to 16 octets"
    key = hashlib.md5(secret + auth).digest()
    crypt = bytes(a ^ b for a, b in zip(pw, key, strict=True))
    attrs = (_attr(USER_NAME, user.encode()) + _attr(USER_PASSWORD, crypt) + _attr(CALLED, called.encode())
             + _attr(CALLING, b"4915110000001") + _attr(NAS_IP_ADDRESS, NAS_IP))
    zero_ma = _attr(MESSAGE_AUTH, bytes(16))
    head = struct.pack("!BBH", 1, ident, 20 + len(attrs) + len(zero_ma))
    ma = hmac.new(secret, head + auth + attrs + zero_ma, "md5").digest()
    return head + auth + attrs + _attr(MESSAGE_AUTH, ma)


def accounting_request(ident: int, status: int, session: str, user: str, called: str, seconds: int = 0,
                       cause: int | None = None, secret: bytes = SECRET) -> bytes:
    """Accounting-Request; Request Authenticator = MD5(header, 16 zeros, attributes, secret) (RFC 2866 3)."""
    attrs = (_int(ACCT_STATUS_TYPE, status) + _attr(ACCT_SESSION_ID, session.encode())
             + _attr(USER_NAME, user.encode()) + _attr(CALLED, called.encode()) + _attr(NAS_IP_ADDRESS, NAS_IP)
             + _int(ACCT_SESSION_TIME, seconds) + (_int(ACCT_TERMINATE_CAUSE, cause) if cause is not None else b""))
    head = struct.pack("!BBH", 4, ident, 20 + len(attrs))
    auth = hashlib.md5(head + bytes(16) + attrs + secret).digest()
    return head + auth + attrs


def _account(j: int) -> tuple[str, str]:
    k = j % ACCOUNTS
    return f"soak{k}", f"soak-pw-{k}"


def _called(j: int) -> str:
    return f"4930{j:09d}"  # rated by prefix 49; distinct per call, so each Access-Request makes its own hold


def round_plans(first: int, calls: int, tag: str) -> tuple[list[list[list[bytes]]], list[list[list[bytes]]]]:
    """plan[socket][slot] of one round: Access-Requests, and Start/Stop pairs (slot i = identifier i)."""
    auth: list[list[list[bytes]]] = [[[] for _ in range(WINDOW)] for _ in range(SOCKETS)]
    acct: list[list[list[bytes]]] = [[[] for _ in range(WINDOW)] for _ in range(SOCKETS)]
    for n in range(calls):
        j = first + n
        s, slot = n % SOCKETS, (n // SOCKETS) % WINDOW
        user, password = _account(j)
        called, sid = _called(j), f"soak-{tag}-{j}"
        auth[s][slot].append(access_request(slot, user, password, called))
        acct[s][slot] += [accounting_request(slot, 1, sid, user, called),
                          accounting_request(slot, 2, sid, user, called, seconds=30, cause=1)]
    return auth, acct


def provision(d: Daemon) -> None:
    provision_demo(d, balance="1000.00")  # tariff e2e; the warm-up call is alice's
    for k in range(ACCOUNTS):
        user, password = _account(k)
        d.ocsctl("account", "create", user, "--currency", "EUR", "--tariff", "e2e", "--password", password)
        d.ocsctl("topup", user, "10000000.00", "--reference", f"soak-{user}")


def _fast_cleanup(d: Daemon) -> None:
    """UNLINK the run's keys in batches (a million tombstones one DEL at a time take minutes)."""
    r = d.redis()
    try:
        batch: list[bytes] = []
        for key in r.scan_iter(match=f"{d.prefix}*", count=10_000):
            batch.append(key)
            if len(batch) >= 5000:
                r.unlink(*batch)
                batch = []
        if batch:
            r.unlink(*batch)
    finally:
        r.close()


def soak(calls: int, sample: int, d: Daemon, log: Any = None) -> dict[str, Any]:
    assert d.proc is not None
    pid, tag = d.proc.pid, os.urandom(3).hex()
    warm_up(d.ports["auth"], d.ports["acct"])
    samples: list[tuple[int, float]] = [(0, tree_rss_mb(pid) or 0.0)]
    total = Result()
    cpu0, t0, busy = proc_cpu_seconds(pid), time.perf_counter(), 0.0
    done = 0
    while done < calls:
        n = min(sample, calls - done)
        auth_plan, acct_plan = round_plans(done, n, tag)
        for port, plan in ((d.ports["auth"], auth_plan), (d.ports["acct"], acct_plan)):
            res = _run(blast(port, plan, DEADLINE, call_len=1 if plan is auth_plan else 2))
            busy += res.elapsed
            if plan is acct_plan:
                total.lost_ends += res.lost_ends
            for k in ("sent", "answered", "lost", "unsent", "resent", "stray"):
                setattr(total, k, getattr(total, k) + getattr(res, k))
            total.codes = [a + b for a, b in zip(total.codes, res.codes, strict=True)]
            total.latencies += res.latencies[::50]  # a sample is enough for percentiles
        done += n
        samples.append((done, tree_rss_mb(pid) or 0.0))
        if log is not None:
            print(f"soak: {done:>9,} calls  rss {samples[-1][1]:6.1f} MB  "
                  f"{done / (time.perf_counter() - t0):7.0f} calls/s", file=log, flush=True)
    wall = time.perf_counter() - t0
    cpu = proc_cpu_seconds(pid) - cpu0
    warm_at = max(WARM_UP * calls, min(WARM_UP_MIN, calls // 2))
    warm = next((s for s in samples if s[0] >= warm_at), samples[-1])
    after = [r for n, r in samples if n >= warm[0]]
    peak = max(after)
    growth = peak / warm[1] - 1 if warm[1] else 0.0
    rejected = total.answered - total.codes[ACCESS_ACCEPT] - total.codes[ACCOUNTING_RESPONSE]
    return row(f"soak: RADIUS calls (Access, Start, Stop), {calls:,} calls", calls, busy, total.latencies,
               calls_per_s=round(calls / busy, 1), requests_per_s=round(total.answered / busy, 1),
               wall_s=round(wall, 1), server_cpu_us_per_req=round(cpu / max(total.answered, 1) * 1e6, 1),
               rss_start_mb=samples[0][1], warm_up_calls=warm[0], rss_warm_mb=warm[1],
               rss_end_mb=samples[-1][1], rss_peak_after_warm_mb=peak, growth_after_warm_pct=round(growth * 100, 1),
               flat=growth <= FLAT, sent=total.sent, lost=total.lost, unsent=total.unsent, resent=total.resent,
               stray=total.stray, rejected=rejected, lost_ends=total.lost_ends, rss_trend_mb=_trend(samples),
               rss_samples=samples)


def _trend(samples: list[tuple[int, float]], points: int = 10) -> str:
    """RSS at the start and at every tenth of the run, for the table."""
    last = samples[-1][0]
    marks = [samples[0]] + [next(s for s in samples if s[0] >= last * k / points) for k in range(1, points + 1)]
    return " ".join(f"{r:.0f}" for _n, r in marks)


def run(quick: bool = False, calls: int | None = None, sample: int | None = None,
        extra_toml: str = "") -> list[dict[str, Any]]:
    calls = calls or (QUICK if quick else FULL)
    if quick and not extra_toml:
        extra_toml = QUICK_TOML
    sample = sample or max(5000, calls // 50)
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp), extra_toml=extra_toml)
        d.write_config()
        d.create_database()
        try:
            provision(d)
            d.start()
            result = soak(calls, sample, d, log=sys.stderr)
            lost_ends = result["lost_ends"]  # calls whose Stop went unanswered
            checked = money.check(d, "soak", 1 + calls - lost_ends, lost_ends=lost_ends)  # 1: the warm-up call
            d.stop()
            samples = result.pop("rss_samples")
            result["cache"] = " ".join(extra_toml.split()) or "defaults"
            print("soak: rss samples (calls:MB):", " ".join(f"{n}:{r}" for n, r in samples), file=sys.stderr)
        finally:
            d.kill()
            _fast_cleanup(d)
            d.cleanup()
    return [result, checked]


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK:,} calls instead of {FULL:,}, caches at a fifth of their bounds")
    ap.add_argument("--calls", type=int, help="number of complete calls")
    ap.add_argument("--sample", type=int, help="calls per round (RSS is read after each round)")
    ap.add_argument("--toml", default="", help="extra config lines for ocsd (e.g. a [cache] table)")
    args = ap.parse_args(argv)
    print(format_table(run(args.quick, args.calls, args.sample, args.toml.replace("\\n", "\n"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
