"""A lean pipelined RESP2 connection for the charging hot path (asyncio Protocol + hiredis).

Why not redis-py here: its per-command Python work (argument encoding in
``pack_command``, response callbacks, timeouts per read) costs ~25-85 µs of
client CPU per command, which capped the charging core at ~2,700 verbs/s
(docs/performance.md).  The charging core already batches every command of a
loop tick into one round trip (:mod:`ocs.store.pipeline`); this connection
writes such a batch with one ``transport.write`` and parses replies with
hiredis' C reader, so a command costs a few microseconds.

Semantics kept from redis-py, so callers see no difference:

- replies are raw (bytes, int, nested lists); ``HGETALL`` is a flat list;
- a Redis error reply becomes :class:`redis.exceptions.ResponseError` (or
  :class:`~redis.exceptions.NoScriptError` for NOSCRIPT) for that command only;
- a lost or silent connection fails every command in flight with
  :class:`ocs.model.StoreUnavailable`; the next command reconnects.

Only plain TCP or a Unix socket (with optional AUTH and SELECT) is spoken;
TLS and Redis Cluster stay on redis-py's pipeline (see :mod:`ocs.store.pipeline`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError

from ocs.model import StoreUnavailable


class _ReplyError(Exception):
    """What hiredis hands back (as a value) for an error reply."""


def encode(args: tuple[Any, ...]) -> bytes:
    """One command in RESP2 (an array of bulk strings).

    The common case (ASCII text and integers) is built as one str and encoded
    once, ~30 % cheaper than encoding argument by argument.
    """
    parts = [f"*{len(args)}\r\n"]
    for arg in args:
        if type(arg) is str:
            a = arg
        elif type(arg) is bytes:
            return _encode_bytes(args)
        else:
            a = str(arg)
        if not a.isascii():
            return _encode_bytes(args)
        parts.append(f"${len(a)}\r\n{a}\r\n")
    return "".join(parts).encode()


def _encode_bytes(args: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(parts)


def error_of(reply: _ReplyError) -> ResponseError:
    msg = str(reply)
    if msg.startswith("NOSCRIPT"):
        return NoScriptError(msg)
    return ResponseError(msg)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect (taken from a redis-py client's connection kwargs)."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""  # Unix socket, instead of host/port
    db: int = 0
    username: str | None = None
    password: str | None = None
    connect_timeout: float = 2.0
    timeout: float = 5.0


class _Protocol(asyncio.Protocol):
    """Forwards to its connection only while it is the connection's current one.

    (A closed connection's ``connection_lost`` may arrive after a reconnect; it must not
    clobber the new transport or fail the new connection's commands.)
    """

    def __init__(self, conn: RespConnection) -> None:
        self.conn = conn

    def data_received(self, data: bytes) -> None:
        if self.conn._protocol is self:
            self.conn.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn._protocol is self:
            self.conn.connection_lost(exc)


Settle = Callable[[tuple[Any, ...], "asyncio.Future[Any]", Any], None]


def _settle(_args: tuple[Any, ...], fut: asyncio.Future[Any], reply: Any) -> None:
    if fut.done():
        return
    if isinstance(reply, BaseException):
        fut.set_exception(reply)
    else:
        fut.set_result(reply)


class RespConnection:
    """One pipelined connection: FIFO of waiting commands, replies matched in order (RESP guarantees it).

    ``settle(args, future, reply)`` is called for every reply, in order; an
    error reply arrives as a :class:`redis.exceptions.ResponseError` instance,
    so the owner decides (NOSCRIPT: reload and retry) without an extra task.
    """

    def __init__(self, endpoint: Endpoint, settle: Settle | None = None) -> None:
        self.endpoint = endpoint
        self.settle = settle or _settle
        self.transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._reader: Any = None
        self._waiting: collections.deque[tuple[tuple[Any, ...], asyncio.Future[Any], float]] = collections.deque()
        self._connecting: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    # -- connect ------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self.connected:
            return
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        fut = self._connecting
        try:
            await asyncio.shield(fut)
        finally:
            if fut.done():
                self._connecting = None

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        ep = self.endpoint
        try:
            if ep.path:
                coro = loop.create_unix_connection(lambda: _Protocol(self), ep.path)
            else:
                coro = loop.create_connection(lambda: _Protocol(self), ep.host, ep.port)
            transport, protocol = await asyncio.wait_for(coro, ep.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"redis: cannot connect to {ep.path or f'{ep.host}:{ep.port}'}: {exc}") from exc
        self._reader = hiredis.Reader(replyError=_ReplyError)
        self._protocol = protocol
        self.transport = transport  # uvloop transports are not asyncio subclasses: no isinstance checks
        hello: list[tuple[Any, ...]] = []
        if ep.password:
            hello.append(("AUTH", ep.username, ep.password) if ep.username else ("AUTH", ep.password))
        if ep.db:
            hello.append(("SELECT", ep.db))
        if hello:
            futs: list[asyncio.Future[Any]] = [loop.create_future() for _ in hello]
            self._write(list(zip(hello, futs, strict=True)))
            for res in await asyncio.gather(*futs, return_exceptions=True):
                if isinstance(res, BaseException):
                    self.close()
                    raise StoreUnavailable(f"redis: handshake failed: {res}")

    # -- send and receive ---------------------------------------------------------------------

    def send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        """Write every command of the batch in one write; each reply goes to ``settle`` in order."""
        if not self.connected:
            raise StoreUnavailable("redis: not connected")
        self._write(batch)

    def _write(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        assert self.transport is not None
        now = time.monotonic()
        self._waiting.extend([(args, fut, now) for args, fut in batch])
        self.transport.write(b"".join([encode(args) for args, _ in batch]))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.endpoint.timeout, self._check_timeout)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting, settle = self._waiting, self.settle
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:  # not RESP: nothing after this can be trusted
                self._fail(StoreUnavailable(f"redis: protocol error: {exc}"))
                self.close()
                return
            if reply is False:
                return
            if not waiting:  # a reply nobody asked for: the stream is out of step
                self.close()
                return
            args, fut, _ = waiting.popleft()
            settle(args, fut, error_of(reply) if isinstance(reply, _ReplyError) else reply)

    def _check_timeout(self) -> None:
        self._timer = None
        if not self._waiting:
            return
        age = time.monotonic() - self._waiting[0][2]
        if age >= self.endpoint.timeout:
            self._fail(StoreUnavailable(f"redis: no reply within {self.endpoint.timeout:g}s"))
            self.close()
            return
        self._timer = asyncio.get_running_loop().call_later(self.endpoint.timeout - age, self._check_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(StoreUnavailable(f"redis: connection lost{f': {exc}' if exc else ''}"))

    def _fail(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, collections.deque()
        for _, fut, _ in waiting:
            if not fut.done():
                fut.set_exception(exc)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._protocol = None
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        self._fail(StoreUnavailable("redis: connection closed"))


def endpoint_of(client: Any, timeout: float = 5.0) -> Endpoint | None:
    """The endpoint of a plain redis-py client, or None where only redis-py can talk to it (TLS, cluster)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return None
    cls = pool.connection_class.__name__
    kw = pool.connection_kwargs
    if cls not in ("Connection", "UnixDomainSocketConnection") or kw.get("ssl"):
        return None
    return Endpoint(
        host=str(kw.get("host", "127.0.0.1")), port=int(kw.get("port", 6379)), path=str(kw.get("path") or ""),
        db=int(kw.get("db") or 0), username=kw.get("username"), password=kw.get("password"),
        connect_timeout=kw.get("socket_connect_timeout") or 2.0,
        timeout=kw.get("socket_timeout") or timeout,
    )
