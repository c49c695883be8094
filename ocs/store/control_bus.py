"""The Redis side of server-initiated control (docs/control.md).

Several ocsd nodes share one Redis; a Diameter peer is connected to some of them, a RADIUS NAS
can be reached from any.  Three things live here, none on the charging path:

- the registry: every node's heartbeat (``P nodes``) and, per Diameter Origin-Host, the nodes
  holding an open connection to it (``P peer:<host>``), so a command for a session goes to a
  node that can send its ASR/RAR;
- the command bus: one stream per node (``P ctl:<node>``, consumer group ``ctl``) that any node
  or ``ocsctl`` appends to, and a reply list per command someone waits for;
- the open sessions of an account (``P S:acct:<id>:live``, kept by the charging scripts) read as
  :class:`LiveSession`, and the ``ctl`` mark (``mark.lua``) that makes the session's record carry
  the cause (ADMINISTRATIVE, CREDIT_LIMIT) however it ends.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ocs.control.model import Ack, ControlResult, Op
from ocs.store import placement
from ocs.store.charging_scripts import parse_member
from ocs.store.keys import Keys
from ocs.store.replies import fields, text
from ocs.store.scripts import Script

GROUP = "ctl"
HEARTBEAT_SECONDS = 5.0
ALIVE_MS = 15_000  # a node (or its hold on a peer) not refreshed for this long is gone
STREAM_MAXLEN = 100_000
REPLY_TTL = 120
MARK = Script("mark")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class LiveSession:
    """One open (session, rating group) as control needs it."""

    account: str
    sid: str
    rg: int
    protocol: str
    origin: str  # Diameter Origin-Host, RADIUS NAS identity
    node: str  # the node that opened it
    reach: str  # what the front end stored to reach the client (RADIUS: source, NAS-IP, user)
    used: int
    granted: int
    final: bool  # its last grant carried Final-Unit-Indication (cut short by the balance)

    @classmethod
    def of(cls, account: str, sid: str, rg: int, f: dict[str, str]) -> LiveSession:
        last = f.get(f"o:{f.get('rq', '')}", "")
        parts = last.split("|")
        return cls(account, sid, rg, f.get("proto", ""), f.get("origin", ""), f.get("node", ""),
                   f.get("reach", ""), int(f.get("used") or 0), int(f.get("hunits") or 0),
                   len(parts) > 2 and parts[0] == "granted" and parts[2] == "1")


@dataclass(frozen=True, slots=True)
class Command:
    """One request to a node: end (ABORT) or re-authorize (REAUTH) one session of an account."""

    op: Op
    account: str
    sid: str
    cause: str = ""
    reply: str = ""  # reply list id when someone waits for the outcome ('' = nobody)
    deadline_ms: int = 0  # not executed after this (a node back from a stop skips stale work)
    groups: tuple[int, ...] = (0,)  # the session's open rating groups when the command was issued

    def encode(self) -> dict[str, str]:
        return {"op": self.op.value, "account": self.account, "sid": self.sid, "cause": self.cause,
                "reply": self.reply, "deadline": str(self.deadline_ms), "rgs": ",".join(map(str, self.groups))}

    @classmethod
    def decode(cls, f: dict[str, str]) -> Command:
        return cls(Op(f["op"]), f["account"], f["sid"], f.get("cause", ""), f.get("reply", ""),
                   int(f.get("deadline") or 0), tuple(int(g) for g in (f.get("rgs") or "0").split(",")))


class ControlBus:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    # -- registry ---------------------------------------------------------------------------

    async def heartbeat(self, node: str, peers: Iterable[str]) -> None:
        """This node is alive, and holds these Diameter peers, for the next :data:`ALIVE_MS`."""
        until = now_ms() + ALIVE_MS
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.nodes(), {node: now_ms()})
        for host in peers:
            pipe.hset(self.keys.peer(host), node, until)
            pipe.pexpire(self.keys.peer(host), ALIVE_MS)
        await pipe.execute()

    async def peer_down(self, node: str, host: str) -> None:
        await self.redis.hdel(self.keys.peer(host), node)

    async def leave(self, node: str, peers: Iterable[str]) -> None:
        """A node stopping: no command should wait for it."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self.keys.nodes(), node)
        for host in peers:
            pipe.hdel(self.keys.peer(host), node)
        await pipe.execute()

    async def live_nodes(self) -> list[str]:
        """Nodes with a recent heartbeat, most recent first."""
        raw = await self.redis.zrevrangebyscore(self.keys.nodes(), "+inf", now_ms() - ALIVE_MS)
        return [text(n) for n in raw]  # type: ignore[arg-type]

    async def peer_nodes(self, host: str) -> list[str]:
        """Nodes holding an open connection to Diameter peer ``host`` now."""
        now = now_ms()
        raw = await self.redis.hgetall(self.keys.peer(host))
        return sorted(n for n, until in fields(raw).items() if int(until or 0) > now)  # type: ignore[arg-type]

    # -- sessions ---------------------------------------------------------------------------

    async def open_sessions(self, account: str) -> list[LiveSession]:
        """Every open session of ``account`` (the live set, checked against the hashes)."""
        await placement.ensure(self.redis.execute_command, self.keys, account)  # a reseller's subscriber's shard
        members = [parse_member(text(m)) for m in await self.redis.smembers(self.keys.live(account))]
        pipe = self.redis.pipeline(transaction=False)
        for acct, sid, rg in members:
            pipe.hgetall(self.keys.session(acct, sid, rg))
        out = []
        for (acct, sid, rg), raw in zip(members, await pipe.execute(), strict=True):
            f = fields(raw)
            if f and f.get("closed") != "1":
                out.append(LiveSession.of(acct, sid, rg, f))
        return sorted(out, key=lambda s: (s.sid, s.rg))

    async def session(self, account: str, sid: str, groups: tuple[int, ...]) -> list[LiveSession]:
        """The rating groups ``groups`` of session ``sid`` still open (one read each, not the account's set)."""
        await placement.ensure(self.redis.execute_command, self.keys, account)
        pipe = self.redis.pipeline(transaction=False)
        for rg in groups:
            pipe.hgetall(self.keys.session(account, sid, rg))
        out = []
        for rg, raw in zip(groups, await pipe.execute(), strict=True):
            f = fields(raw)
            if f and f.get("closed") != "1":
                out.append(LiveSession.of(account, sid, rg, f))
        return out

    async def find(self, sid: str) -> list[LiveSession]:
        """The open rating groups of front-end session ``sid`` (through the session-id index)."""
        account = text(await self.redis.get(self.keys.session_index(sid)))
        if not account:
            return []
        return [s for s in await self.open_sessions(account) if s.sid == sid]

    async def mark(self, s: LiveSession, cause: str) -> bool:
        """Make the session's record carry ``cause`` however it ends; False when it is closed."""
        await placement.ensure(self.redis.execute_command, self.keys, s.account)
        return text(await MARK(self.redis, [self.keys.session(s.account, s.sid, s.rg)], [cause])) == "OK"

    # -- commands ---------------------------------------------------------------------------

    async def send(self, node: str, cmd: Command) -> None:
        await self.redis.xadd(self.keys.control(node), cmd.encode(),  # type: ignore[arg-type]
                              maxlen=STREAM_MAXLEN, approximate=True)

    async def send_many(self, routed: Iterable[tuple[str, Command]]) -> int:
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for node, cmd in routed:
            pipe.xadd(self.keys.control(node), cmd.encode(), maxlen=STREAM_MAXLEN,  # type: ignore[arg-type]
                      approximate=True)
            n += 1
        if n:
            await pipe.execute()
        return n

    async def ensure_group(self, node: str) -> None:
        try:
            await self.redis.xgroup_create(self.keys.control(node), GROUP, id="0", mkstream=True)
        except ResponseError as exc:  # BUSYGROUP: it exists
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, node: str, *, pending: bool, count: int = 500,
                   block_ms: int = 1000) -> list[tuple[str, Command | None]]:
        """Commands for ``node``: its unacknowledged ones (``pending``), else new ones (blocking)."""
        reply: Any = await self.redis.xreadgroup(GROUP, node, {self.keys.control(node): "0" if pending else ">"},
                                            count=count, block=None if pending else block_ms)
        out: list[tuple[str, Command | None]] = []
        for _stream, entries in reply or []:
            for ident, raw in entries:
                try:
                    out.append((text(ident), Command.decode(fields(raw or {}))))
                except (KeyError, ValueError):  # not ours to understand: acknowledged and dropped
                    out.append((text(ident), None))
        return out

    async def ack(self, node: str, idents: list[str]) -> None:
        if idents:
            await self.redis.xack(self.keys.control(node), GROUP, *idents)

    async def reply(self, ident: str, result: ControlResult, node: str) -> None:
        key = self.keys.control_reply(ident)
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, json.dumps({**result.to_dict(), "node": node}))
        pipe.expire(key, REPLY_TTL)
        await pipe.execute()

    async def wait_reply(self, ident: str, timeout: float) -> tuple[ControlResult, str] | None:
        """The reply to command ``ident`` within ``timeout`` seconds, else None (short BLPOPs)."""
        deadline = time.monotonic() + timeout
        key = self.keys.control_reply(ident)
        while (left := deadline - time.monotonic()) > 0:
            got: Any = await self.redis.blpop([key], timeout=max(1, min(2, int(left))))
            if got:
                doc = json.loads(got[1])
                return ControlResult(Ack(doc["result"]), int(doc.get("code") or 0), doc.get("detail", "")), \
                    doc.get("node", "")
        return None
