"""ocs.store.resp + the auto-pipeline's raw path against the real Redis (and a silent server for timeouts)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio.connection import Connection
from redis.exceptions import ResponseError

from ocs.model import StoreUnavailable
from ocs.store.pipeline import AutoPipeline
from ocs.store.resp import Endpoint, RespConnection, encode, endpoint_of
from ocs.store.scripts import Script
from tests.conftest import REDIS_URL
from tests.support.proxy import TcpProxy

pytestmark = pytest.mark.integration

_arg = st.one_of(st.text(max_size=40), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                 st.binary(max_size=40))


@given(st.sampled_from(["EVALSHA", "HSET", "GET", "XADD"]), st.lists(_arg, max_size=12))
def test_encode_matches_redis_py(command: str, args: list[str | int | bytes]) -> None:
    """Byte for byte what redis-py's own packer sends (its encoder is the reference).

    (redis-py splits a first argument on spaces, "CONFIG GET"; ours is always one word.)
    """
    conn = Connection()
    assert encode((command, *args)) == b"".join(conn.pack_command(command, *args))


async def test_batch_replies_in_order_with_errors_per_command(redis_client: aioredis.Redis, key_prefix: str) -> None:
    rp = AutoPipeline(redis_client, raw=True)
    assert rp.is_raw
    key = f"{key_prefix}h"
    try:
        results = await asyncio.gather(
            rp.call("HSET", key, "a", "1", "b", "2"),
            rp.call("LPUSH", key, "x"),  # WRONGTYPE: only this command fails
            rp.call("HGETALL", key),
            rp.call("HINCRBY", key, "a", -5),
            return_exceptions=True,
        )
    finally:
        await rp.drain()
    assert results[0] == 2
    assert isinstance(results[1], ResponseError) and "WRONGTYPE" in str(results[1])
    assert results[2] == [b"a", b"1", b"b", b"2"]  # raw: HGETALL is a flat list
    assert results[3] == -4


async def test_noscript_reloads_and_retries(redis_client: aioredis.Redis, key_prefix: str) -> None:
    rp = AutoPipeline(redis_client, raw=True)
    s = Script("bind")  # any registered script; SCRIPT FLUSH makes the server forget it
    rp.register(s)
    await rp.load_scripts()
    await redis_client.script_flush()
    try:
        res = await rp.script(s, [f"{key_prefix}a", f"{key_prefix}b", f"{key_prefix}z"], ["m1", "m2", "n", 1])
    finally:
        await rp.drain()
    assert res is not None  # answered (the script's own code), not NOSCRIPT
    assert (await redis_client.script_exists(s.sha))[0]


async def test_noscript_under_load_reloads_once_and_resends_on_the_same_connection(
        redis_client: aioredis.Redis, key_prefix: str) -> None:
    """500 script calls in flight meet NOSCRIPT (SCRIPT FLUSH): one reload, every call answered, and no
    redis-py connection per call (the old retry filled the client pool: found by the fuzz tier)."""
    client = aioredis.Redis.from_url(REDIS_URL, max_connections=5)
    rp = AutoPipeline(client, raw=True)
    s = Script("bind")
    rp.register(s)
    await rp.load_scripts()
    await rp.script(s, [f"{key_prefix}x", f"{key_prefix}y", f"{key_prefix}z", f"{key_prefix}o"], ["m1", "m2", "n", 1])
    await redis_client.script_flush()
    try:
        results = await asyncio.gather(*(
            rp.script(s, [f"{key_prefix}a{i}", f"{key_prefix}b{i}", f"{key_prefix}z", f"{key_prefix}o"],
                      ["m1", "m2", "n", 1]) for i in range(500)), return_exceptions=True)
    finally:
        await rp.drain()
        created = len(client.connection_pool._available_connections) + len(client.connection_pool._in_use_connections)
        await client.aclose()
    assert all(r == b"NOOLD" for r in results), {type(r).__name__ for r in results}
    assert created <= 2  # the reload itself; the 500 resends went out on our own connection


async def test_select_db_and_reconnect_after_loss(redis_client: aioredis.Redis, key_prefix: str) -> None:
    ep = endpoint_of(redis_client)
    assert ep is not None
    conn = RespConnection(dataclasses.replace(ep, db=3))
    key = f"{key_prefix}db3"
    loop = asyncio.get_running_loop()
    try:
        await conn.connect()
        fut = loop.create_future()
        conn.send([(("SET", key, "v"), fut)])
        assert await fut == b"OK"
        assert await redis_client.get(key) is None  # written in db 3, not db 0
        assert conn.transport is not None
        conn.transport.abort()
        await asyncio.sleep(0.05)
        assert not conn.connected
        await conn.connect()
        fut = loop.create_future()
        conn.send([(("DEL", key), fut)])
        assert await fut == 1
    finally:
        conn.close()


async def test_silent_server_times_out_and_the_pipeline_recovers(redis_client: aioredis.Redis,
                                                                  key_prefix: str) -> None:
    ep = endpoint_of(redis_client)
    assert ep is not None
    proxy = TcpProxy(ep.host, ep.port)
    client = aioredis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=1)
    rp = AutoPipeline(client, raw=True)
    try:
        assert await rp.call("PING") == b"PONG"
        proxy.freeze()  # connections stay open but nothing flows: only our timeout can notice
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(rp.call("PING"), 5)
        proxy.thaw()
        assert await rp.call("PING") == b"PONG"
    finally:
        await rp.drain()
        await client.aclose()
        proxy.close()


async def test_unreachable_server_is_store_unavailable() -> None:
    conn = RespConnection(Endpoint(host="127.0.0.1", port=1, connect_timeout=1))
    with pytest.raises(StoreUnavailable):
        await conn.connect()


async def test_a_server_that_speaks_no_resp_fails_cleanly() -> None:
    """Pointed at the wrong port (an HTTP server, say): the commands fail, the process goes on."""

    async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        await reader.read(100)  # until our side gives up and closes
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = RespConnection(Endpoint(port=port))
    try:
        await conn.connect()
        fut = asyncio.get_running_loop().create_future()
        conn.send([(("PING",), fut)])
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(fut, 5)
        assert not conn.connected
    finally:
        conn.close()
        server.close()
        await server.wait_closed()
