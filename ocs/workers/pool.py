"""The supervisor's side of ``ocsd --workers N``: start, watch, restart and stop the worker processes.

A worker is ``python -m ocs.app --worker I --inherit ...`` with the listeners and its end of a
socket pair passed by descriptor (:mod:`ocs.workers.link`), the supervisor's environment minus
``NOTIFY_SOCKET``/``WATCHDOG_*`` (only the supervisor talks to systemd: ``NotifyAccess=main``).

- **Start-up**: every worker must report ready; one that exits first (or hangs for
  :data:`READY_SECONDS`) fails the start: ocsd exits 1 with one line saying which and why.
- **Later**: a worker that exits is started again after a back-off (1 s doubling to 30 s, back to
  1 s after a minute of health), counted in ``ocs_worker_restarts_total`` and logged as a warning;
  one that stops beating for :data:`HANG_SECONDS` is killed first. Its counters so far are kept
  (from its last scrape), so the merged sums never go back.
- **Stop**: SIGTERM to every worker (each drains its fronts as a single ocsd does), our copies of
  the listeners closed, at most ``timeout`` seconds, then SIGKILL for any left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry

from ocs import metrics_merge as mm
from ocs.config import split_hostport
from ocs.metrics import Metrics
from ocs.workers import node_name
from ocs.workers.listeners import Listeners

log = structlog.get_logger("ocs.workers")

READY_SECONDS = 60.0  # a starting worker silent this long is killed (tariffs load from PostgreSQL or Redis)
HANG_SECONDS = 20.0  # a ready worker that has not beaten (every 2 s) this long is killed and restarted
FETCH_SECONDS = 0.9  # a worker's /metrics or /readyz answer, within the supervisor's own 1 s check bound
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
HEALTHY_SECONDS = 60.0
SYSTEMD_ONLY = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


class WorkerFailed(Exception):
    """A worker died or hung before it was ready at start-up (ocsd exits 1 with this line)."""


class NotReady(Exception):
    """Why /readyz says no for the workers: which one and what it answered."""


@dataclass(eq=False)
class Worker:
    index: int
    proc: asyncio.subprocess.Process
    channel: socket.socket
    ready: bool = False
    http: str = ""  # its internal /metrics and /readyz
    answered: float = 0.0  # requests answered, from its last beat
    failure: str = ""  # what it reported (or we saw) before it died
    snapshot: mm.Families | None = None  # its last /metrics, parsed


def _exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


async def fetch(address: str, path: str, timeout: float = FETCH_SECONDS) -> tuple[int, bytes]:
    """GET ``path`` from a worker's internal HTTP endpoint (ocs.http: one request per connection)."""
    host, port = split_hostport(address)

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: ocsd\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read()
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    return await asyncio.wait_for(go(), timeout)


class WorkerPool:
    def __init__(self, count: int, listeners: Listeners, metrics: Metrics, node: str,
                 config_path: str | None) -> None:
        self.count = count
        self.listeners = listeners
        self.metrics = metrics
        self.node = node
        self.config_path = config_path
        self.workers: list[Worker | None] = [None] * count
        self.starting = True
        self.stopping = False
        self.carry: mm.Families = {}  # counters of workers that died (monotonic merged sums)
        self.carried = 0.0  # requests those had answered
        self._slots: set[asyncio.Task[None]] = set()
        self._all_ready: asyncio.Future[None] | None = None
        self.command = [sys.executable, "-m", "ocs.app"]  # a worker is ocsd itself (tests run stand-ins)

    # -- start, watch, restart ---------------------------------------------------------------

    async def start(self) -> None:
        """Start every worker and wait until each is ready; WorkerFailed when one dies first."""
        self._all_ready = asyncio.get_running_loop().create_future()
        for index in range(self.count):
            task = asyncio.ensure_future(self._slot(index))
            task.set_name(f"worker-{index}")
            self._slots.add(task)
            task.add_done_callback(self._slots.discard)
        await asyncio.shield(self._all_ready)
        self.starting = False

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in SYSTEMD_ONLY:  # READY/WATCHDOG/STOPPING are the supervisor's to say (NotifyAccess=main)
            env.pop(key, None)
        return env

    async def _spawn(self, index: int) -> Worker:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        inherited = self.listeners.inherited(theirs.fileno())
        argv = [*self.command, "--worker", str(index), "--inherit", inherited.encode(),
                *(["--config", self.config_path] if self.config_path else [])]
        try:
            proc = await asyncio.create_subprocess_exec(*argv, pass_fds=inherited.fds(), env=self._env(),
                                                        stdin=subprocess.DEVNULL)
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()  # the worker's copy only: its exit is our end-of-file
        mine.setblocking(False)
        log.info("worker_started", worker=index, node=node_name(self.node, index), pid=proc.pid)
        return Worker(index, proc, mine)

    async def _slot(self, index: int) -> None:
        """One worker's life, restarted after every death until ocsd stops (or its start-up failed)."""
        loop = asyncio.get_running_loop()
        backoff = FIRST_BACKOFF
        while not self.stopping:
            began = loop.time()
            try:
                worker = await self._spawn(index)
            except OSError as exc:  # fork or exec refused (no memory, no processes left)
                if self._failed_start(f"worker {index}: cannot start: {exc}"):
                    return
                log.error("worker_start_failed", worker=index, error=repr(exc), retry_in=backoff)
            else:
                self.workers[index] = worker
                try:
                    await self._listen(worker)
                    code = await worker.proc.wait()
                finally:
                    self._gone(worker)
                if self.stopping:
                    return
                why = worker.failure or "no reason given (see its log lines)"
                if self._failed_start(f"worker {index} {_exit(code)} before it was ready: {why}"):
                    return
                self.metrics.worker_restarts.inc()
                log.warning("worker_died_restarting", worker=index, pid=worker.proc.pid, exit=_exit(code),
                            reason=worker.failure, restart_in=backoff)
            if loop.time() - began > HEALTHY_SECONDS:
                backoff = FIRST_BACKOFF
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF, backoff * 2)

    def _failed_start(self, reason: str) -> bool:
        """At start-up a worker's death is ocsd's: fail start() (True). Later it is restarted (False)."""
        if not self.starting:
            return False
        if self._all_ready is not None and not self._all_ready.done():
            self._all_ready.set_exception(WorkerFailed(reason))
        return True

    async def _listen(self, w: Worker) -> None:
        """Read the worker's messages until its end-of-file (it exited); kill it when it falls silent."""
        loop = asyncio.get_running_loop()
        while True:
            silence = HANG_SECONDS if w.ready else READY_SECONDS
            try:
                data = await asyncio.wait_for(loop.sock_recv(w.channel, 65536), silence)
            except TimeoutError:
                if not self.stopping:
                    w.failure = w.failure or f"no sign of life for {silence:g} s (killed)"
                    log.error("worker_hung", worker=w.index, pid=w.proc.pid, silent_seconds=silence, ready=w.ready)
                    with contextlib.suppress(ProcessLookupError):
                        w.proc.kill()
                continue
            if not data:
                return
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            if "beat" in msg:
                w.answered = float(msg["beat"])
            elif "ready" in msg:
                w.ready, w.http = True, str(msg["http"])
                self._count_live()
                if all(x is not None and x.ready for x in self.workers) and self._all_ready is not None \
                        and not self._all_ready.done():
                    self._all_ready.set_result(None)
            elif "failed" in msg:
                w.failure = str(msg["failed"])

    def _gone(self, w: Worker) -> None:
        w.channel.close()
        w.ready = False
        if w.snapshot is not None:
            self.carry = mm.merge([self.carry, mm.monotonic(w.snapshot)])
        self.carried += w.answered
        self._count_live()

    def _count_live(self) -> None:
        self.metrics.workers.set(self.live())

    def live(self) -> int:
        """Workers running and ready (what the systemd watchdog keep-alive and ``ocs_workers`` say)."""
        return sum(1 for w in self.workers if w is not None and w.ready)

    # -- signals and stop -------------------------------------------------------------------

    def _running(self) -> list[Worker]:
        return [w for w in self.workers if w is not None and w.proc.returncode is None]

    def signal(self, sig: int) -> int:
        """Send ``sig`` to every running worker (SIGHUP: reload); returns how many."""
        sent = 0
        for w in self._running():
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(sig)
                sent += 1
        return sent

    async def stop(self, timeout: float) -> None:
        """SIGTERM every worker and wait at most ``timeout`` s for all to exit, then SIGKILL."""
        self.stopping = True
        running = self._running()
        self.signal(signal.SIGTERM)
        self.listeners.close()
        waits = {asyncio.ensure_future(w.proc.wait()): w for w in running}
        if waits:
            _done, late = await asyncio.wait(waits, timeout=timeout)
            for fut in late:
                log.error("worker_killed", worker=waits[fut].index, pid=waits[fut].proc.pid, after_seconds=timeout)
                with contextlib.suppress(ProcessLookupError):
                    waits[fut].proc.kill()
            if late:
                await asyncio.wait(late, timeout=1.0)
        for task in list(self._slots):
            task.cancel()
        if self._slots:
            await asyncio.wait(list(self._slots), timeout=1.0)

    # -- what the supervisor serves for them -----------------------------------------------

    def answered(self) -> float:
        """Requests answered by every worker so far (the dashboard's rate; ocs.api)."""
        return self.carried + sum(w.answered for w in self.workers if w is not None and w.ready)

    async def _scrape(self, w: Worker) -> None:
        try:
            status, body = await fetch(w.http, "/metrics")
            if status == 200:
                w.snapshot = mm.parse(body)
        except (OSError, TimeoutError, ValueError, IndexError) as exc:  # busy or dying: its last scrape stands
            log.warning("worker_metrics_unavailable", worker=w.index, error=repr(exc))

    async def exposition(self, own: CollectorRegistry) -> bytes:
        """One /metrics: our registry, then every ready worker's, merged (ocs.metrics_merge)."""
        ready = [w for w in self.workers if w is not None and w.ready and w.http]
        await asyncio.gather(*(self._scrape(w) for w in ready))
        sources = [mm.of_registry(own), self.carry, *(w.snapshot for w in ready if w.snapshot is not None)]
        return mm.expose(mm.merge(sources))

    async def check(self) -> None:
        """Readiness: every worker running, ready, and answering its own /readyz with 200."""
        async def one(w: Worker | None, index: int) -> str | None:
            if w is None or not w.ready:
                return f"worker {index}: not running"
            try:
                status, body = await fetch(w.http, "/readyz")
            except (OSError, TimeoutError, ValueError, IndexError) as exc:
                return f"worker {index}: no answer ({type(exc).__name__})"
            if status != 200:
                return f"worker {index}: " + "; ".join(body.decode(errors="replace").split("\n")).strip("; ")
            return None

        problems = [p for p in await asyncio.gather(*(one(w, i) for i, w in enumerate(self.workers))) if p]
        if problems:
            raise NotReady("; ".join(problems))
