"""ASR and RAR from a real :class:`DiameterServer` to Erlang/OTP's ``diameter`` client, in process.

The server runs in the test's loop on a free port with a :class:`FakeCore` (no Redis, no
PostgreSQL): the test itself calls :meth:`DiameterServer.abort_session` and
:meth:`DiameterServer.reauth_session`, as the control plane does, and sees

- the client's answer (ASA/RAA) decide the result (RFC 6733 sections 8.3.2, 8.5.2),
- the client act on it as RFC 4006 says: after an acknowledged RAR a CCR-U (section 5.5),
  after an acknowledged ASR a CCR-T (section 5.6), both reaching the core,
- OTP decode our ASR/RAR against the RFC 6733 grammar of diameter/ocs_gy.dia (``errors=0``),
- tshark decode the ASR, RAR, ASA and RAA (command codes 274 and 258) with no malformed packet
  and no error-level expert info,
- a silent client: one retransmission with the T bit after ``answer_timeout``, then no_answer,
- the peer listeners hear the peer come and go, and a gone peer is ``peer_gone``.

The end-to-end forms (ocsd as a subprocess, ``ocsctl account block`` / ``topup``) are in
test_diameter_erlang.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocs import config
from ocs.control.model import Ack
from ocs.diameter.server import DiameterServer
from ocs.metrics import Metrics
from tests.interop import otp
from tests.support.daemon import free_port
from tests.support.fake_core import FakeCore
from tests.support.tools import need

pytestmark = pytest.mark.interop

CLIENT = "pgw.erlang.test"  # the OTP client's Origin-Host (ocs_gy_client.erl)
OPEN = ("I,rg=1,rsu=60,called=4930123456",)  # the session every test starts with


@pytest.fixture
def ebin(tmp_path: Path) -> Path:
    """The dictionary and the client compiled into tmp (fails under CI=true when OTP is missing)."""
    try:
        return otp.build(tmp_path / "ebin", need=need)
    except otp.OtpMissing as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@contextlib.asynccontextmanager
async def _server(answer_timeout: float = 5.0) -> AsyncIterator[tuple[DiameterServer, FakeCore, list[tuple[str, bool]]]]:
    """A started DiameterServer on a free loopback port; yields it, its core and what its listeners heard."""
    cfg = config.from_mapping({"diameter": {"listen": [f"127.0.0.1:{free_port()}"],
                                            "origin_host": "ocs.test.example.net",
                                            "origin_realm": "test.example.net"}}, env={})
    core = FakeCore()
    server = DiameterServer(cfg, core, Metrics())
    server.answer_timeout = answer_timeout
    heard: list[tuple[str, bool]] = []
    server.state.peer_listeners.append(lambda host, up: heard.append((host, up)))
    await server.start()
    try:
        yield server, core, heard
    finally:
        await server.stop(timeout=2.0)


class _Client:
    """ocs_gy_client.erl as an asyncio subprocess whose ``tag key=value`` lines can be awaited."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []

    @classmethod
    async def start(cls, ebin: Path, port: int, *steps: str) -> _Client:
        proc = await asyncio.create_subprocess_exec(*otp.command(ebin, "ocs_gy_client", str(port), *steps, need=need),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        return cls(proc)

    async def until(self, tag: str, timeout: float = 30.0, **fields: str) -> dict[str, str]:
        """The next line ``tag`` whose fields include ``fields`` (lines before it are kept in ``out``)."""
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), left)
            except TimeoutError:
                break
            if not raw:
                raise AssertionError("client ended:\n" + "\n".join(self.out))
            line = raw.decode(errors="replace").rstrip("\n")
            self.out.append(line)
            ((got, kv),) = otp.parse_lines(line)
            if got == tag and fields.items() <= kv.items():
                return kv
        raise AssertionError(f"no {tag} {fields} within {timeout} s:\n" + "\n".join(self.out))

    async def finish(self, timeout: float = 30.0) -> list[tuple[str, dict[str, str]]]:
        """Every line once the client exited 0 (after its DPR/DPA)."""
        assert self.proc.stdout is not None
        rest = await asyncio.wait_for(self.proc.stdout.read(), timeout)
        self.out += rest.decode(errors="replace").splitlines()
        assert await asyncio.wait_for(self.proc.wait(), timeout) == 0, "\n".join(self.out)
        lines = otp.parse_lines("\n".join(self.out))
        assert [t for t, _ in lines][-2:] == ["down", "done"], self.out
        return lines

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


@contextlib.asynccontextmanager
async def _client(ebin: Path, port: int, *steps: str) -> AsyncIterator[_Client]:
    client = await _Client.start(ebin, port, *steps)
    try:
        yield client
    finally:
        await client.kill()


async def _run(*cmd: str) -> str:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return out.decode()


@contextlib.asynccontextmanager
async def _capture(port: int, pcap: Path) -> AsyncIterator[None]:
    """tshark on lo for the port, from when it says it captures until a moment after the block."""
    cap = await asyncio.create_subprocess_exec(need("tshark"), "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap),
                                               stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert cap.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"Capturing on" not in (line := await cap.stderr.readline()):
                assert line, "tshark ended before capturing"
        await asyncio.sleep(0.5)  # the message comes as the capture starts, not after
        yield
    finally:
        await asyncio.sleep(0.5)
        if cap.returncode is None:
            cap.send_signal(signal.SIGINT)
        await asyncio.wait_for(cap.communicate(), 20)


FIELDS = ("tcp.srcport", "diameter.cmd.code", "diameter.flags.request", "diameter.flags.proxyable",
          "diameter.flags.error", "diameter.flags.T", "diameter.applicationId", "diameter.Session-Id",
          "diameter.Origin-Host", "diameter.Destination-Host", "diameter.Destination-Realm",
          "diameter.Auth-Application-Id", "diameter.Re-Auth-Request-Type", "diameter.Result-Code")


async def _wire(pcap: Path, port: int) -> list[dict[str, str]]:
    """ASR/ASA/RAR/RAA as tshark decodes them (after checking the whole capture decodes cleanly)."""
    tshark = [need("tshark"), "-r", str(pcap), "-d", f"tcp.port=={port},diameter"]
    bad = await _run(*tshark, "-Y", "_ws.malformed || _ws.expert.severity >= error")
    assert bad.strip() == "", bad
    out = await _run(*tshark, "-Y", "diameter.cmd.code == 274 || diameter.cmd.code == 258", "-T", "fields",
                     "-E", "occurrence=f", *(x for f in FIELDS for x in ("-e", f)))
    rows = [dict(zip(FIELDS, line.split("\t"), strict=True)) for line in out.splitlines()]
    for r in rows:
        r["from"] = "ocsd" if int(r["tcp.srcport"]) == port else "client"
        for name in ("request", "proxyable", "error", "T"):
            r[name] = str(r.pop(f"diameter.flags.{name}") in ("1", "True"))
    return rows


def _port(server: DiameterServer) -> int:
    return server.bound[0][1]


def _counted(server: DiameterServer, kind: str, ack: Ack) -> float:
    return float(server.state.metrics.control_requests.labels("diameter", kind, ack.value)._value.get())


def _retries(server: DiameterServer, kind: str) -> float:
    return float(server.state.metrics.control_retries.labels("diameter", kind)._value.get())


async def _open_session(client: _Client, core: FakeCore) -> str:
    i = await client.until("cca", type="1")
    assert (i["result"], i["granted_time"], i["errors"]) == ("2001", "60", "0"), i
    assert core.verbs == ["initiate"]
    return i["session"]


# -- acknowledged: ASA/RAA 2001, then the CCR RFC 4006 asks for ------------------------------

async def test_asr_to_otp_asa_2001_then_ccr_t(ebin: Path, tmp_path: Path) -> None:
    pcap = tmp_path / "asr.pcap"
    async with _server() as (server, core, heard):
        port = _port(server)
        async with _capture(port, pcap), _client(ebin, port, *OPEN, "W,req=asr,usu=20") as client:
            sid = await _open_session(client, core)
            assert server.open_peer_hosts() == {CLIENT} and heard == [(CLIENT, True)]
            got = await server.abort_session(CLIENT, sid)
            asr = await client.until("asr")
            t = await client.until("cca", type="3")
            lines = await client.finish()
        assert (got.ack, got.code) == (Ack.ACKED, 2001)
        assert (asr["session"], asr["retransmitted"], asr["errors"], asr["answer"]) == (sid, "false", "0", "2001")
        assert (t["result"], t["mscc_result"], t["errors"], t["session"]) == ("2001", "2001", "0", sid)
        assert [tag for tag, _ in lines].count("asr") == 1
        # the CCR-T the ASR caused reached the core: usage 20 s, Termination-Cause ADMINISTRATIVE
        assert core.verbs == ["initiate", "terminate"]
        term = core.calls[1]
        assert (term.session, term.rating_group, term.used_units, term.termination_cause, term.origin) == (
            sid, 1, 20, "DIAMETER_ADMINISTRATIVE", CLIENT)
        assert _counted(server, "asr", Ack.ACKED) == 1 and _retries(server, "asr") == 0
        # the client sent DPR on its way out: the peer is gone from this node
        for _ in range(100):
            if heard[-1:] == [(CLIENT, False)]:
                break
            await asyncio.sleep(0.02)
        assert heard == [(CLIENT, True), (CLIENT, False)] and server.open_peer_hosts() == set()
        gone = await server.abort_session(CLIENT, sid)
        assert gone.ack is Ack.PEER_GONE and _counted(server, "asr", Ack.PEER_GONE) == 1
    req, ans = await _wire(pcap, port)
    assert (req["from"], req["diameter.cmd.code"], req["request"], req["proxyable"], req["T"]) == (
        "ocsd", "274", "True", "True", "False")
    assert (req["diameter.applicationId"], req["diameter.Auth-Application-Id"], req["diameter.Session-Id"]) == (
        "4", "4", sid)
    assert (req["diameter.Origin-Host"], req["diameter.Destination-Host"], req["diameter.Destination-Realm"]) == (
        "ocs.test.example.net", CLIENT, "erlang.test")
    assert (ans["from"], ans["diameter.cmd.code"], ans["request"], ans["error"]) == ("client", "274", "False", "False")
    assert (ans["diameter.Session-Id"], ans["diameter.Result-Code"]) == (sid, "2001")


async def test_rar_to_otp_raa_2001_then_ccr_u(ebin: Path, tmp_path: Path) -> None:
    pcap = tmp_path / "rar.pcap"
    async with _server() as (server, core, _heard):
        port = _port(server)
        async with _capture(port, pcap), _client(ebin, port, *OPEN, "W,req=rar,usu=10,rsu=300",
                                                 "T,usu=5") as client:
            sid = await _open_session(client, core)
            got = await server.reauth_session(CLIENT, sid)
            rar = await client.until("rar")
            u = await client.until("cca", type="2")
            await client.until("cca", type="3", result="2001")
            await client.finish()
        assert (got.ack, got.code) == (Ack.ACKED, 2001)
        assert (rar["session"], rar["retransmitted"], rar["errors"], rar["answer"]) == (sid, "false", "0", "2001")
        assert (u["result"], u["granted_time"], u["errors"], u["session"]) == ("2001", "60", "0", sid)
        # the CCR-U the RAR caused reached the core: 10 s used, 300 s asked for
        assert core.verbs == ["initiate", "update", "terminate"]
        upd = core.calls[1]
        assert (upd.session, upd.request_number, upd.used_units, upd.requested_units) == (sid, 1, 10, 300)
        assert _counted(server, "rar", Ack.ACKED) == 1
    req, ans = await _wire(pcap, port)
    assert (req["from"], req["diameter.cmd.code"], req["request"], req["proxyable"]) == ("ocsd", "258", "True", "True")
    assert (req["diameter.applicationId"], req["diameter.Auth-Application-Id"]) == ("4", "4")
    assert (req["diameter.Re-Auth-Request-Type"], req["diameter.Session-Id"]) == ("0", sid)  # AUTHORIZE_ONLY
    assert (req["diameter.Destination-Host"], req["diameter.Destination-Realm"]) == (CLIENT, "erlang.test")
    assert (ans["from"], ans["diameter.cmd.code"], ans["request"]) == ("client", "258", "False")
    assert (ans["diameter.Session-Id"], ans["diameter.Result-Code"]) == (sid, "2001")


# -- refused: the answer's code, and no CCR follows ----------------------------------------------

@pytest.mark.parametrize(("kind", "code", "ack"), [
    ("asr", 5002, Ack.UNKNOWN_SESSION), ("rar", 5012, Ack.REFUSED), ("asr", 3002, Ack.REFUSED),
])
async def test_otp_answers_refusals(ebin: Path, tmp_path: Path, kind: str, code: int, ack: Ack) -> None:
    pcap = tmp_path / f"{kind}-{code}.pcap"
    async with _server() as (server, core, _heard):
        port = _port(server)
        async with _capture(port, pcap), _client(ebin, port, *OPEN, f"W,req={kind},answer={code}",
                                                 "T,usu=5") as client:
            sid = await _open_session(client, core)
            send = server.abort_session if kind == "asr" else server.reauth_session
            got = await send(CLIENT, sid)
            line = await client.until(kind)
            await client.finish()
        assert (got.ack, got.code) == (ack, code)
        assert (line["errors"], line["answer"]) == ("0", str(code))
        assert core.verbs == ["initiate", "terminate"]  # only the client's own CCR-T: nothing followed the refusal
        assert _counted(server, kind, ack) == 1 and _retries(server, kind) == 0
    _req, ans = await _wire(pcap, port)
    assert (ans["from"], ans["diameter.Result-Code"]) == ("client", str(code))
    assert ans["error"] == str(code < 4000)  # a 3xxx answer carries the E bit (RFC 6733 section 3)


# -- silent: one retransmission, then no_answer --------------------------------------------------

async def test_silent_otp_client_is_retried_once_then_no_answer(ebin: Path) -> None:
    async with _server(answer_timeout=1.0) as (server, core, _heard):
        port = _port(server)
        async with _client(ebin, port, *OPEN, "W,req=rar,answer=none,count=2", "P,ms=2500", "T,usu=5") as client:
            sid = await _open_session(client, core)
            t0 = time.monotonic()
            got = await server.reauth_session(CLIENT, sid)
            waited = time.monotonic() - t0
            first = await client.until("rar")
            again = await client.until("rar")
            lines = await client.finish()
        assert got.ack is Ack.NO_ANSWER and 1.9 <= waited <= 4.0, (got, waited)  # 2 x answer_timeout
        assert (first["session"], first["retransmitted"], first["answer"], first["errors"]) == (sid, "false", "none",
                                                                                                "0")
        assert (again["session"], again["retransmitted"], again["answer"]) == (sid, "true", "none")  # the T bit
        assert 800 <= int(again["ms"]) - int(first["ms"]) <= 2500  # answer_timeout apart
        assert [tag for tag, _ in lines].count("rar") == 2  # retried once, never a third time
        assert _retries(server, "rar") == 1 and _counted(server, "rar", Ack.NO_ANSWER) == 1
        assert core.verbs == ["initiate", "terminate"]
