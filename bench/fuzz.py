"""The long fuzz campaign against a real ocsd: does it survive, and what does surviving cost?

Runs ``tests/fuzz/campaign.py`` (docs/fuzzing.md): 1,000,000 mutated RADIUS datagrams and
1,000,000 mutated Diameter messages (``quick``: 20,000 each) against a fresh ocsd with its own
database and Redis prefix, with liveness probes between batches of 5,000 and a drain check at
the end.  One row:

- ``ops`` packets sent (both protocols), ``seconds`` the fuzzing time, ``throughput`` packets/s;
- ``radius_replies`` / ``diameter_answers`` what came back (most mutated RADIUS packets are
  dropped by design: silence is the RFC's answer to a malformed or unauthenticated packet);
- ``rss_start_mb`` / ``rss_peak_mb`` / ``rss_end_mb`` ocsd's VmRSS; ``fds_start`` / ``fds_peak`` /
  ``fds_end`` its open descriptors (measured with our connections closed);
- ``records`` usage records emitted, ``dead_letters`` records PostgreSQL refused (kept aside);
- ``survived`` yes when ocsd answered every probe, drained its streams and exited 0 on SIGTERM;
  else ``failure`` says what broke and the seed reproduces the inputs.

Run alone with ``python -m bench.fuzz [--quick] [--packets N] [--seed S] [--private-redis]``;
``--private-redis`` gives ocsd a redis-server of its own on a free loopback port, so that other test
runs on a shared Redis (a ``SCRIPT FLUSH``, say) cannot disturb a long campaign.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench.common import format_table
from tests.fuzz.campaign import Report, provision, run_campaign
from tests.support.daemon import REDIS_URL, Daemon, free_port

FULL, QUICK = 1_000_000, 20_000


def _row(rep: Report) -> dict[str, Any]:
    ops = rep.radius.sent + rep.diameter.sent
    row: dict[str, Any] = {
        "name": f"fuzz campaign ({rep.packets:,} per protocol)",
        "ops": ops,
        "seconds": round(rep.fuzz_seconds, 1),
        "throughput": round(ops / rep.fuzz_seconds, 1) if rep.fuzz_seconds else None,
        "seed": rep.seed,
        "radius_replies": rep.radius.replies,
        "diameter_answers": rep.diameter.answers,
        "rss_start_mb": rep.rss_start,
        "rss_peak_mb": rep.rss_peak,
        "rss_end_mb": rep.rss_end,
        "fds_start": rep.fds_start,
        "fds_peak": rep.fds_peak,
        "fds_end": rep.fds_end,
        "records": rep.records_emitted,
        "dead_letters": rep.pg.get("dead_letters"),
        "drain_s": round(rep.drain_seconds, 1),
        "survived": "yes" if rep.survived else "no",
    }
    if rep.failure:
        row["failure"] = rep.failure
    return row


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own on a free loopback port, without persistence."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def campaign(packets: int, seed: int | None = None, *, own_redis: bool = False) -> Report:
    seed = int(time.time()) if seed is None else seed
    if own_redis:
        with private_redis() as url:
            return _campaign(packets, seed, url)
    return _campaign(packets, seed, REDIS_URL)


def _campaign(packets: int, seed: int, redis_url: str) -> Report:
    with tempfile.TemporaryDirectory() as tmp:
        d = Daemon(Path(tmp), redis_url=redis_url)
        d.write_config()
        d.create_database()
        provision(d)
        d.start()
        try:
            return run_campaign(d, packets, seed, time_budget=4 * 3600,
                                say=lambda s: print(s, file=sys.stderr, flush=True))
        finally:
            d.stop()
            d.cleanup()


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [_row(campaign(QUICK if quick else FULL))]


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK:,} packets per protocol instead of {FULL:,}")
    ap.add_argument("--packets", type=int, help="packets per protocol (overrides --quick)")
    ap.add_argument("--seed", type=int, help="seed of the inputs (default: the time)")
    ap.add_argument("--private-redis", action="store_true", help="run ocsd on a redis-server of its own")
    args = ap.parse_args(argv)
    packets = args.packets or (QUICK if args.quick else FULL)
    print(format_table([_row(campaign(packets, args.seed, own_redis=args.private_redis))]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
