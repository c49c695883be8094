"""Who is asked to do what: account events and operator requests turned into per-node commands.

Used alike by ``ocsctl`` (block, top-up, adjustment, ``session disconnect``) and by ocsd (a
postpaid account passing its credit limit, ledger rows the sweep applied).  Routing
(docs/control.md): a Diameter session's command goes to a node holding an open connection to its
peer (its ASR/RAR must leave on that connection, RFC 6733 section 2.1); a RADIUS session's to the
node that opened it when that node is alive, else to any live node (any node can reach a NAS).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import structlog

from ocs.control.model import ADMINISTRATIVE, Ack, ControlResult, Op
from ocs.store.control_bus import Command, ControlBus, LiveSession, now_ms

log = structlog.get_logger("ocs.control")

COMMAND_TTL_MS = 60_000  # a command not executed within this is dropped (the event is stale)


@dataclass
class Dispatched:
    """What one account event led to: commands sent, sessions no node can reach."""

    sent: int = 0
    unroutable: list[LiveSession] = field(default_factory=list)


def _per_session(sessions: Iterable[LiveSession]) -> list[tuple[LiveSession, tuple[int, ...]]]:
    """One entry per front-end session (an ASR/RAR/Disconnect ends or re-authorizes all its groups)."""
    seen: dict[tuple[str, str], list[LiveSession]] = {}
    for s in sessions:
        seen.setdefault((s.account, s.sid), []).append(s)
    return [(group[0], tuple(sorted(g.rg for g in group))) for group in seen.values()]


class Dispatcher:
    def __init__(self, bus: ControlBus, *, node: str = "") -> None:
        self.bus = bus
        self.node = node  # this process's node (ocsd), preferred when it can do the work; '' for ocsctl

    async def route(self, s: LiveSession, live: list[str] | None = None) -> str | None:
        if s.protocol == "diameter":
            nodes = await self.bus.peer_nodes(s.origin)
            return self.node if self.node in nodes else (nodes[0] if nodes else None)
        live = live if live is not None else await self.bus.live_nodes()
        for candidate in (s.node, self.node):
            if candidate and candidate in live:
                return candidate
        return live[0] if live else None

    async def _dispatch(self, sessions: list[LiveSession], op: Op, cause: str) -> Dispatched:
        out = Dispatched()
        live = await self.bus.live_nodes()
        routed = []
        deadline = now_ms() + COMMAND_TTL_MS
        for s, groups in _per_session(sessions):
            node = await self.route(s, live)
            if node is None:
                out.unroutable.append(s)
                log.warning("control_unroutable", op=op.value, session=s.sid, account=s.account,
                            protocol=s.protocol, peer=s.origin)
                continue
            routed.append((node, Command(op, s.account, s.sid, cause, deadline_ms=deadline, groups=groups)))
        out.sent = await self.bus.send_many(routed)
        return out

    async def abort_account(self, account: str, cause: str = ADMINISTRATIVE) -> Dispatched:
        """Ask the network to end every open session of ``account`` (block, credit limit)."""
        return await self._dispatch(await self.bus.open_sessions(account), Op.ABORT, cause)

    async def reauth_account(self, account: str) -> Dispatched:
        """Re-authorize the sessions of ``account`` whose last grant was cut short (top-up, adjustment)."""
        sessions = [s for s in await self.bus.open_sessions(account) if s.final]
        return await self._dispatch(sessions, Op.REAUTH, "")

    async def disconnect(self, sid: str, timeout: float) -> tuple[ControlResult, str]:
        """``ocsctl session disconnect``: end one session and wait for the peer's answer (bounded).

        Returns the result and the node that sent the request; a node that does not answer within
        ``timeout`` (stopped, killed) is reported as NO_ANSWER, naming the node.
        """
        found = await self.bus.find(sid)
        if not found:
            return ControlResult(Ack.UNKNOWN_SESSION, detail=f"no open session {sid!r}"), ""
        s = found[0]
        node = await self.route(s)
        if node is None:
            what = f"Diameter peer {s.origin!r}" if s.protocol == "diameter" else "any NAS"
            return ControlResult(Ack.PEER_GONE, detail=f"no live ocsd node holds a connection to {what}"), ""
        ident = uuid.uuid4().hex
        await self.bus.send(node, Command(Op.ABORT, s.account, sid, ADMINISTRATIVE, reply=ident,
                                          deadline_ms=now_ms() + int(timeout * 1000),
                                          groups=tuple(sorted(f.rg for f in found))))
        got = await self.bus.wait_reply(ident, timeout)
        if got is None:
            return ControlResult(Ack.NO_ANSWER, detail=f"node {node} did not answer within {timeout:g} s"), node
        return got
