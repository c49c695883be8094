"""A worker's side of ``ocsd --workers N``: its inherited sockets and its channel to the supervisor.

The channel is one end of a SOCK_SEQPACKET socket pair (one JSON message per packet, never torn):

- the worker sends ``{"ready": ..., "http": "127.0.0.1:PORT"}`` once it serves (its internal
  ``/metrics`` and ``/readyz`` address), ``{"beat": N}`` every :data:`BEAT_SECONDS` (N: requests
  answered so far, for the dashboard's rate), and ``{"failed": "..."}`` when its start-up failed
  (the supervisor prints that as ocsd's one line);
- the supervisor sends nothing: when it is gone (killed), the worker reads end-of-file and
  stops as on SIGTERM, so no worker outlives its supervisor holding the ports and Redis.

Sends never block the worker's loop: the messages are tiny and a full channel (a supervisor that
stopped reading) drops a beat rather than charging.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Callable
from typing import Any

import structlog

from ocs.config import Config
from ocs.workers import node_name
from ocs.workers.listeners import Inherited, adopt

log = structlog.get_logger("ocs.workers")

BEAT_SECONDS = 2.0
INTERNAL_HTTP = "127.0.0.1:0"  # a worker's /metrics and /readyz: loopback, a port of the kernel's choice


class WorkerLink:
    def __init__(self, index: int, inherited: Inherited) -> None:
        self.index = index
        self.inherited = inherited
        self.channel = socket.socket(fileno=inherited.channel)
        self.channel.setblocking(False)

    @classmethod
    def parse(cls, index: int, inherit: str | None) -> WorkerLink:
        if index < 0 or not inherit:
            raise ValueError("--worker needs an index and --inherit (ocsd starts its workers itself)")
        return cls(index, Inherited.decode(inherit))

    def config(self, cfg: Config) -> Config:
        """The worker's view of the config: its own node name, an internal HTTP endpoint, no REST API."""
        return dataclasses.replace(
            cfg,
            node=dataclasses.replace(cfg.node, name=node_name(cfg.node.name, self.index), workers=1),
            http=dataclasses.replace(cfg.http, listen=INTERNAL_HTTP),
            api=dataclasses.replace(cfg.api, listen=""),
        )

    def listeners(self) -> tuple[list[socket.socket], dict[str, socket.socket]]:
        return adopt(self.inherited)

    def send(self, **message: Any) -> bool:
        try:
            self.channel.send(json.dumps(message).encode())
        except OSError:  # full (supervisor not reading) or gone: nothing to wait for
            return False
        return True

    def ready(self, http: tuple[str, int]) -> None:
        self.send(ready=self.index, http=f"{http[0]}:{http[1]}")

    def failed(self, error: str) -> None:
        self.send(failed=error)

    async def keep(self, answered: Callable[[], float], gone: Callable[[], None]) -> None:
        """Beat every :data:`BEAT_SECONDS` until the supervisor goes away, then call ``gone`` (stop)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.channel, 64), BEAT_SECONDS)
            except TimeoutError:
                self.send(beat=answered())
                continue
            if not data:
                log.warning("supervisor_gone", worker=self.index, meaning="stopping: no worker outlives its supervisor")
                gone()
                return
