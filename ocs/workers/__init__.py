"""``ocsd --workers N``: several charging processes sharing the ports under one supervisor.

One ``ocsd`` process charges on one core (its event loop). With ``--workers N`` (``node.workers``;
0, the default, is one per core) the process systemd started becomes a supervisor that:

- binds the listening sockets once (Diameter TCP, RADIUS auth and acct UDP) and starts N worker
  processes that inherit them (:mod:`ocs.workers.listeners`): the kernel hands each Diameter
  connection to one worker's accept and each RADIUS datagram to one worker's read, so one NAS
  socket's packets spread over every worker;
- runs what is not charging: the usage flusher and its lag, the reaper, the ledger sweep, alert
  delivery, the daily billing run and the REST API, so a worker spends its core on requests;
- serves ``http.listen``: one ``/metrics`` merged from every worker's own (internal) endpoint and its
  own registry (:mod:`ocs.metrics_merge`), ``/readyz`` ready when it and every worker are;
- talks to systemd for all of them (READY once every worker is ready, WATCHDOG while workers live,
  STOPPING), forwards SIGTERM/SIGINT/SIGHUP, restarts a worker that died (:mod:`ocs.workers.pool`).

Each worker is its own control node, ``<node.name>.w<i>``, so an ASR/RAR for a Diameter peer is
routed to the worker holding that peer's connection (docs/control.md). With N = 1 none of this
exists: one process, exactly as before.
"""

from __future__ import annotations

import os


def cores() -> int:
    """CPUs this process may run on (its affinity mask: a cgroup or ``taskset`` may grant fewer than the host has)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve(flag: int | None, configured: int) -> int:
    """How many workers: ``--workers`` when given, else ``node.workers``; 0 means one per core."""
    n = configured if flag is None else flag
    return n if n > 0 else cores()


def node_name(node: str, index: int) -> str:
    """A worker's control node and record name: ``<node.name>.w<i>``."""
    return f"{node}.w{index}"
