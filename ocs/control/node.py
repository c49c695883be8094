"""This node's side of control: executes the commands of its stream, keeps its registry entry fresh.

Runs as supervised tasks of ocsd (:meth:`ControlNode.run`, :meth:`ControlNode.heartbeats`), never
inside a charging request: the core and the Diameter peers only call the non-blocking hooks
(:meth:`credit_limit`, :meth:`credited`, :meth:`peer_changed`), which queue work as tasks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Protocol

import structlog
from redis.exceptions import RedisError

from ocs.control.dispatch import Dispatched, Dispatcher
from ocs.control.model import ADMINISTRATIVE, CREDIT_LIMIT, Ack, ControlResult, Op
from ocs.metrics import Metrics
from ocs.model import Outcome, Status
from ocs.store.control_bus import HEARTBEAT_SECONDS, Command, ControlBus, LiveSession, now_ms

log = structlog.get_logger("ocs.control")

CONCURRENCY = 1000  # commands executed at once (each mostly waits for a peer's answer)
REDIS_CONCURRENCY = 32  # of which at most this many talk to Redis at once (the client's pool is bounded)
REPEAT_SECONDS = 5.0  # the same account event within this is not dispatched again
REDIS_DOWN = (RedisError, OSError, TimeoutError)  # an outage: wait and go on (as the flusher and reaper do)


class DiameterControl(Protocol):
    """What control needs of the Diameter front end (:class:`ocs.diameter.server.DiameterServer`)."""

    async def abort_session(self, peer_host: str, session_id: str) -> ControlResult: ...

    async def reauth_session(self, peer_host: str, session_id: str) -> ControlResult: ...

    def open_peer_hosts(self) -> set[str]: ...


class RadiusControl(Protocol):
    """What control needs of the RADIUS front end (:class:`ocs.radius.server.RadiusServer`)."""

    call_hold: int

    def reachable(self, reach: str) -> bool: ...

    async def disconnect(self, session_id: str, reach: str) -> ControlResult: ...

    async def change_authorization(self, session_id: str, reach: str, session_timeout: int) -> ControlResult: ...


class Reauthorizer(Protocol):
    """The core verb a RADIUS CoA needs: a larger grant for a session (:meth:`ocs.charging.Charging.reauthorize`)."""

    async def reauthorize(self, account: str, sid: str, rg: int, hold_seconds: int | None = None) -> Outcome: ...


class ControlNode:
    def __init__(self, node: str, bus: ControlBus, core: Reauthorizer, diameter: DiameterControl,
                 radius: RadiusControl, metrics: Metrics) -> None:
        self.node = node
        self.bus = bus
        self.dispatcher = Dispatcher(bus, node=node)
        self.core = core
        self.diameter = diameter
        self.radius = radius
        self.metrics = metrics
        self._sem = asyncio.Semaphore(CONCURRENCY)
        self._redis_gate = asyncio.Semaphore(REDIS_CONCURRENCY)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recent: dict[tuple[str, str], float] = {}

    # -- hooks (sync, never block the caller) ------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, REDIS_DOWN):  # a registry update or dispatch during an outage: the next one mends it
            log.warning("control_task_failed", error=repr(exc))
        elif exc is not None:
            log.error("control_task_failed", error=repr(exc))

    def _fresh(self, kind: str, account: str) -> bool:
        now = time.monotonic()
        if len(self._recent) > 10_000:
            self._recent = {k: t for k, t in self._recent.items() if now - t < REPEAT_SECONDS}
        if now - self._recent.get((kind, account), -REPEAT_SECONDS) < REPEAT_SECONDS:
            return False
        self._recent[(kind, account)] = now
        return True

    def credit_limit(self, account: str) -> None:
        """The core saw a postpaid account's balance pass its credit limit: end its sessions."""
        if self._fresh("credit_limit", account):
            log.info("credit_limit_reached", account=account)
            self._spawn(self._account_event("abort", account, self.dispatcher.abort_account(account, CREDIT_LIMIT)))

    def credited(self, account: str) -> None:
        """Money arrived (ledger rows applied by this node): re-authorize sessions cut short."""
        if self._fresh("credited", account):
            self._spawn(self._account_event("reauth", account, self.dispatcher.reauth_account(account)))

    def peer_changed(self, host: str, up: bool) -> None:
        """A Diameter peer reached OPEN on this node, or its connection went away."""
        if up:
            self._spawn(self.bus.heartbeat(self.node, [host]))
        else:
            self._spawn(self.bus.peer_down(self.node, host))

    async def _account_event(self, what: str, account: str, dispatching: Coroutine[Any, Any, Dispatched]) -> None:
        done = await dispatching
        for s in done.unroutable:
            kind = _kind(s.protocol, Op.ABORT if what == "abort" else Op.REAUTH)
            self.metrics.child(self.metrics.control_requests, s.protocol or "other", kind, Ack.PEER_GONE.value).inc()
        log.info("control_dispatched", what=what, account=account, sent=done.sent, unroutable=len(done.unroutable))

    # -- tasks -------------------------------------------------------------------------------

    async def heartbeats(self) -> None:
        while True:
            try:
                await self.bus.heartbeat(self.node, self.diameter.open_peer_hosts())
            except REDIS_DOWN as exc:
                log.warning("control_redis_unavailable", task="heartbeat", error=repr(exc))
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def run(self) -> None:
        """Execute this node's commands; a Redis outage is waited out (warning, back-off), not fatal."""
        backoff = 0.5
        while True:
            try:
                await self._serve()
            except REDIS_DOWN as exc:
                log.warning("control_redis_unavailable", task="control", error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(10.0, backoff * 2)

    async def _serve(self) -> None:
        """First the commands a previous run left unacknowledged, then new ones."""
        await self.bus.ensure_group(self.node)
        pending = True
        while True:
            batch = await self.bus.read(self.node, pending=pending)
            if pending and not batch:
                pending = False
                continue
            for ident, cmd in batch:
                if cmd is None:
                    await self.bus.ack(self.node, [ident])
                else:
                    await self._sem.acquire()
                    self._spawn(self._run_one(ident, cmd))
            if pending:  # pending entries are re-read from "0" until acknowledged: wait for these
                await self.drain()

    async def drain(self, timeout: float | None = None) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def leave(self) -> None:
        """Stopping: take this node out of the registry so no one routes to it."""
        await self.bus.leave(self.node, self.diameter.open_peer_hosts())

    async def _run_one(self, ident: str, cmd: Command) -> None:
        try:
            result = await self.execute(cmd)
        except REDIS_DOWN as exc:  # an outage: the asker hears of it (or times out), the loop goes on
            log.warning("control_command_failed", op=cmd.op.value, session=cmd.sid, error=repr(exc))
            result = ControlResult(Ack.REFUSED, detail=f"Redis unavailable on {self.node}: {exc!r}")
        except Exception as exc:  # a bug: logged as one, the loop goes on
            log.error("control_command_failed", op=cmd.op.value, session=cmd.sid, error=repr(exc))
            result = ControlResult(Ack.REFUSED, detail=f"failed on {self.node}: {exc!r}")
        finally:
            self._sem.release()
        try:
            async with self._redis_gate:
                if cmd.reply:
                    await self.bus.reply(cmd.reply, result, self.node)
                await self.bus.ack(self.node, [ident])
        except REDIS_DOWN as exc:  # unacknowledged: executed again at the next start, within its deadline
            log.warning("control_ack_failed", op=cmd.op.value, session=cmd.sid, error=repr(exc))

    # -- one command -------------------------------------------------------------------------

    async def execute(self, cmd: Command) -> ControlResult:
        if cmd.deadline_ms and now_ms() > cmd.deadline_ms:
            log.warning("control_command_expired", op=cmd.op.value, session=cmd.sid, account=cmd.account)
            return ControlResult(Ack.NO_ANSWER, detail="expired before this node could send it")
        async with self._redis_gate:
            sessions = await self.bus.session(cmd.account, cmd.sid, cmd.groups)
            if cmd.op is Op.ABORT:
                for each in sessions:
                    await self.bus.mark(each, cmd.cause or ADMINISTRATIVE)
        if not sessions:
            return ControlResult(Ack.UNKNOWN_SESSION, detail="session no longer open")
        s = sessions[0]
        if cmd.op is Op.ABORT:
            result = await self._abort(s)
        else:
            result = await self._reauth(s)
        log.info("control_request", op=cmd.op.value, session=s.sid, account=s.account, protocol=s.protocol,
                 peer=s.origin, cause=cmd.cause, result=result.ack.value, code=result.code, detail=result.detail)
        return result

    async def _abort(self, s: LiveSession) -> ControlResult:
        if s.protocol == "diameter":
            return await self.diameter.abort_session(s.origin, s.sid)
        return await self.radius.disconnect(s.sid, s.reach)

    async def _reauth(self, s: LiveSession) -> ControlResult:
        if s.protocol == "diameter":
            return await self.diameter.reauth_session(s.origin, s.sid)
        if not self.radius.reachable(s.reach):  # no CoA could carry it: do not hold more money for nothing
            return await self.radius.change_authorization(s.sid, s.reach, 0)  # NOT_ENABLED: counted, says why
        out = await self.core.reauthorize(s.account, s.sid, s.rg, self.radius.call_hold)
        if out.status is not Status.GRANTED or not out.granted_units:
            return ControlResult(Ack.REFUSED, detail=f"no larger grant: {out.status.value} {out.reason}".strip())
        return await self.radius.change_authorization(s.sid, s.reach, s.used + out.granted_units)


def _kind(protocol: str, op: Op) -> str:
    if protocol == "diameter":
        return "asr" if op is Op.ABORT else "rar"
    return "disconnect" if op is Op.ABORT else "coa"
