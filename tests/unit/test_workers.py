"""ocs.workers without Redis: the pool of ``ocsd --workers N`` driven with stand-in worker processes.

A stand-in speaks the real channel (ocs.workers.link) and serves the real internal HTTP endpoint
(ocs.http) with a registry of its own; how it misbehaves is chosen by ``FAKE_MODE``. The real
workers (ocsd itself, with Redis and PostgreSQL) are tested in tests/e2e/test_workers.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ocs import config
from ocs.app import _parse_args
from ocs.metrics import Metrics
from ocs.workers import cores, node_name, resolve
from ocs.workers import pool as pool_module
from ocs.workers.link import WorkerLink
from ocs.workers.listeners import Inherited, ListenError, Listeners
from ocs.workers.pool import WorkerFailed, WorkerPool

FAKE = '''
import asyncio, os, signal, sys, time
from ocs.http import HttpServer
from ocs.metrics import Metrics
from ocs.workers import link as link_module
from ocs.workers.link import WorkerLink

args = sys.argv[1:]
index = int(args[args.index("--worker") + 1])
mode = os.environ.get("FAKE_MODE", "")
link_module.BEAT_SECONDS = float(os.environ.get("FAKE_BEAT", "2"))


async def main() -> None:
    link = WorkerLink.parse(index, args[args.index("--inherit") + 1])
    metrics = Metrics()
    metrics.requests.labels("radius", "start", "granted").inc(index + 1)
    http = HttpServer("127.0.0.1:0", metrics, {})
    await http.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, (lambda: None) if mode == "stubborn" else stop.set)
    if mode == f"fail{index}":
        link.failed("redis: cannot connect to redis://nowhere")
        sys.exit(1)
    link.ready(http.bound)
    if mode == f"hang{index}":
        time.sleep(3600)
    keeper = asyncio.ensure_future(link.keep(metrics.requests_answered, stop.set))
    await stop.wait()
    keeper.cancel()

asyncio.run(main())
'''


def _cfg() -> config.Config:
    return config.from_mapping({"diameter": {"listen": ["127.0.0.1:0"]},
                                "radius": {"auth_listen": "127.0.0.1:0", "acct_listen": "127.0.0.1:0"}}, env={})


@pytest.fixture
async def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[type[WorkerPool]]:
    """A factory of pools whose workers are the stand-in; every pool made is stopped afterwards."""
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE)
    monkeypatch.setattr(pool_module, "FIRST_BACKOFF", 0.05)
    made: list[WorkerPool] = []

    def factory(count: int = 2) -> WorkerPool:
        p = WorkerPool(count, Listeners.bind(_cfg()), Metrics(), "n1", None)
        p.command = [sys.executable, str(script)]
        made.append(p)
        return p

    yield factory  # type: ignore[misc]
    for p in made:
        await p.stop(timeout=2)


async def _until(what: str, ok: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _environ(pid: int) -> bytes:
    with open(f"/proc/{pid}/environ", "rb") as fh:  # procfs: never blocks
        return fh.read()


def _requests(text: bytes) -> float:
    return sum(s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples
               if s.name == "ocs_requests_total")


def _value(metrics: Metrics, name: str) -> float:
    return next(s.value for f in metrics.registry.collect() for s in f.samples if s.name == name)


async def test_start_merge_ready_and_stop(make: type[WorkerPool], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BEAT", "0.05")
    monkeypatch.setenv("NOTIFY_SOCKET", "/nowhere")  # not passed on: only the supervisor talks to systemd
    p = make(2)  # type: ignore[call-arg]
    await asyncio.wait_for(p.start(), 30)
    assert p.live() == 2 and _value(p.metrics, "ocs_workers") == 2
    assert _requests(await p.exposition(p.metrics.registry)) == 1 + 2  # worker 0 counted 1, worker 1 counted 2
    await p.check()
    await _until("beats", lambda: p.answered() == 3)
    procs = [w.proc for w in p.workers if w is not None]
    for w in p.workers:
        assert w is not None
        assert b"NOTIFY_SOCKET=" not in _environ(w.proc.pid)
    await p.stop(timeout=5)
    assert all(proc.returncode == 0 for proc in procs)  # stopped by SIGTERM, cleanly
    assert p.listeners.auth.fileno() == -1  # our copies closed: the port is free again


async def test_a_worker_failing_its_start_fails_ocsd_with_its_reason(make: type[WorkerPool],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "fail1")
    p = make(2)  # type: ignore[call-arg]
    with pytest.raises(WorkerFailed) as err:
        await asyncio.wait_for(p.start(), 30)
    assert str(err.value) == ("worker 1 exited with code 1 before it was ready: redis: cannot connect to"
                              " redis://nowhere")
    assert _value(p.metrics, "ocs_worker_restarts_total") == 0  # not restarted: the start failed


async def test_a_killed_worker_is_restarted_counted_and_its_counts_kept(make: type[WorkerPool],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BEAT", "0.05")
    p = make(2)  # type: ignore[call-arg]
    await asyncio.wait_for(p.start(), 30)
    assert _requests(await p.exposition(p.metrics.registry)) == 3  # a scrape: the supervisor knows their counts
    await _until("beats", lambda: p.answered() == 3)
    victim = p.workers[1]
    assert victim is not None
    victim.proc.send_signal(signal.SIGKILL)
    await _until("worker 1 back", lambda: p.live() == 2 and p.workers[1] is not victim)
    assert _value(p.metrics, "ocs_worker_restarts_total") == 1 and _value(p.metrics, "ocs_workers") == 2
    # the dead worker's 2 are kept; its successor counts 2 of its own: the sum never goes back
    assert _requests(await p.exposition(p.metrics.registry)) == 1 + 2 + 2
    await _until("beats", lambda: p.answered() == 5)


async def test_a_hung_worker_is_killed_and_restarted(make: type[WorkerPool], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_BEAT", "0.05")
    monkeypatch.setenv("FAKE_MODE", "hang1")
    monkeypatch.setattr(pool_module, "HANG_SECONDS", 0.5)
    p = make(2)  # type: ignore[call-arg]
    await asyncio.wait_for(p.start(), 30)  # it said ready, then its loop stopped (no beats)
    first = p.workers[1]
    assert first is not None
    await _until("the hung worker killed", lambda: first.proc.returncode is not None)
    assert first.proc.returncode == -signal.SIGKILL
    await _until("restarted", lambda: _value(p.metrics, "ocs_worker_restarts_total") >= 1)
    healthy = p.workers[0]
    assert healthy is not None and healthy.proc.returncode is None  # beating: left alone


async def test_stop_kills_a_worker_that_ignores_sigterm(make: type[WorkerPool],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "stubborn")
    p = make(1)  # type: ignore[call-arg]
    await asyncio.wait_for(p.start(), 30)
    w = p.workers[0]
    assert w is not None
    t0 = time.monotonic()
    await p.stop(timeout=0.5)
    assert time.monotonic() - t0 < 3
    assert w.proc.returncode == -signal.SIGKILL


async def test_readiness_names_a_worker_that_is_not_running(make: type[WorkerPool]) -> None:
    p = make(2)  # type: ignore[call-arg]
    await asyncio.wait_for(p.start(), 30)
    p.stopping = True  # no restart: worker 0 stays away
    w = p.workers[0]
    assert w is not None
    w.proc.send_signal(signal.SIGKILL)
    await _until("worker 0 gone", lambda: p.live() == 1)
    with pytest.raises(pool_module.NotReady, match="worker 0: not running"):
        await p.check()


# -- the pieces ------------------------------------------------------------------------------------


def test_how_many_workers() -> None:
    assert resolve(None, 3) == 3
    assert resolve(2, 3) == 2  # the flag wins
    assert resolve(None, 0) == cores() == len(os.sched_getaffinity(0))  # 0: one per core
    assert resolve(0, 5) == cores()
    assert resolve(1, 0) == 1  # one process, no supervisor
    assert node_name("ocs1", 3) == "ocs1.w3"


def test_workers_flag_and_key_are_bounded() -> None:
    assert _parse_args(["--workers", "4"]).workers == 4
    assert _parse_args([]).workers is None
    with pytest.raises(SystemExit):
        _parse_args(["--workers", "-1"])
    assert config.from_mapping({"node": {"workers": 8}}, env={}).node.workers == 8
    assert config.from_mapping({}, env={}).node.workers == 0
    with pytest.raises(config.ConfigError, match=r"^node\.workers: "):
        config.from_mapping({"node": {"workers": -1}}, env={})


def test_inherited_descriptors_travel_as_text() -> None:
    spec = Inherited((5, 6), 7, 8, 9)
    assert spec.encode() == "diameter=5,6;auth=7;acct=8;channel=9"
    assert Inherited.decode(spec.encode()) == spec and spec.fds() == (5, 6, 7, 8, 9)
    with pytest.raises(ValueError, match="bad --inherit"):
        Inherited.decode("diameter=5;auth=x")


def test_a_worker_sees_its_own_node_name_and_no_public_endpoints() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        link = WorkerLink(2, Inherited((), 0, 0, b.detach()))  # the link owns that descriptor now
        cfg = link.config(config.from_mapping({"node": {"name": "ocs7", "workers": 4},
                                               "api": {"listen": "127.0.0.1:8080"}}, env={}))
        assert (cfg.node.name, cfg.node.workers, cfg.http.listen, cfg.api.listen) == ("ocs7.w2", 1, "127.0.0.1:0", "")
        link.ready(("127.0.0.1", 4242))
        assert a.recv(100) == b'{"ready": 2, "http": "127.0.0.1:4242"}'
    finally:
        a.close()
        link.channel.close()


def test_a_taken_port_is_named_like_a_single_process_does() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        cfg = config.from_mapping({"diameter": {"listen": ["127.0.0.1:0"]},
                                   "radius": {"auth_listen": f"127.0.0.1:{port}", "acct_listen": "127.0.0.1:0"}},
                                  env={})
        with pytest.raises(ListenError) as err:
            Listeners.bind(cfg)
    assert str(err.value) == (f"radius: cannot listen: [Errno 98] error while attempting to bind on address"
                              f" ('127.0.0.1', {port}): address already in use")
