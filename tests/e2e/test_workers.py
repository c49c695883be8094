"""``ocsd --workers 2``: one supervisor, two charging workers sharing the ports (docs/scaling.md, "Workers").

Real Redis and PostgreSQL, the real binary. Which worker reads a datagram or accepts a connection is
the kernel's choice; where a test needs a request to reach a given worker, the other one is
stopped (SIGSTOP) for that moment, so the shared socket has only one reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pyrad import packet as rp

from ocs.diameter import codec
from ocs.diameter import constants as c
from ocs.metrics import Metrics
from tests.support.daemon import BIN, ROOT, Daemon, provision_demo, require_services
from tests.support.diameter_client import GyClient, ccr, granted_time, result
from tests.support.radius_client import access, acct, send

pytestmark = pytest.mark.e2e

ASR = 274


def _make(tmp: Path, **kw: Any) -> Daemon:
    require_services()
    d = Daemon(tmp, workers=2, **kw)
    d.write_config()
    d.create_database()
    provision_demo(d)
    return d


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Daemon]:
    """A provisioned ocsd with two workers; stopped with SIGTERM (exit 0 asserted) unless the test did."""
    d = _make(tmp_path)
    try:
        d.start()
        yield d
        if d.proc is not None and d.proc.poll() is None:
            assert d.stop() == 0, d.log_path.read_text()[-4000:]
    finally:
        d.cleanup()


def _events(d: Daemon, name: str) -> list[dict[str, Any]]:
    return [e for e in d.logs() if e.get("event") == name]


def _workers(d: Daemon) -> dict[int, int]:
    """Worker index -> pid of its current process (the last one started for that index, still alive)."""
    alive = set(d.children())
    out = {}
    for e in _events(d, "worker_started"):
        if e["pid"] in alive:
            out[int(e["worker"])] = int(e["pid"])
    return out


def _internal(d: Daemon) -> dict[int, int]:
    """Worker index -> port of its internal HTTP endpoint (from its latest worker_ready line)."""
    return {int(e["worker"]): int(e["http"][1]) for e in _events(d, "worker_ready")}


@contextlib.contextmanager
def only(d: Daemon, index: int) -> Iterator[None]:
    """Meanwhile, worker ``index`` is the only reader of the shared sockets (the other is stopped)."""
    others = [pid for i, pid in _workers(d).items() if i != index]
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"series twice in one exposition: {key}"
            out[key] = s.value
    return out


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items() if n == name and all((k, w) in lab for k, w in labels.items()))


def _balance(d: Daemon) -> tuple[str, str]:
    doc = d.ocsctl("account", "show", "alice", json_out=True)
    return doc["balance"], doc["reserved"]


def _wait(what: str, ok: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _peers_by_worker(d: Daemon, count: int = 16) -> dict[str, list[tuple[GyClient, str]]]:
    """Diameter connections (each its own Origin-Host) until both workers hold some: node -> [(client, host)]."""
    r = d.redis()
    held: dict[str, list[tuple[GyClient, str]]] = {}
    try:
        for i in range(count):
            host = f"pgw{i}.test"
            cl = GyClient(d.ports["diameter"])
            assert result(cl.cer(host=host)) == 2001
            _wait("the peer's registry entry", lambda h=host: r.hlen(f"{d.prefix}peer:{h}") > 0, 5)  # type: ignore[misc]
            [node] = [n.decode() for n in r.hkeys(f"{d.prefix}peer:{host}")]
            held.setdefault(node, []).append((cl, host))
            if len(held) == 2 and all(len(v) >= 2 for v in held.values()):
                break
    finally:
        r.close()
    assert sorted(held) == [f"{d.name}.w0", f"{d.name}.w1"], f"connections not spread: {sorted(held)}"
    return held


def _close(held: dict[str, list[tuple[GyClient, str]]]) -> None:
    for pairs in held.values():
        for cl, _host in pairs:
            cl.close()


def _ccr(cl: GyClient, host: str, sid: str, rtype: int, number: int, *, flags: int = codec.FLAG_R,
         **kw: Any) -> codec.Message:
    avps = ccr(sid, rtype, number, **kw)
    avps[1] = codec.utf8(c.ORIGIN_HOST, host)  # the connection's own Origin-Host
    return cl.request(c.CCR, 4, *avps, flags=flags)


# -- charging --------------------------------------------------------------------------------------


def test_radius_retransmissions_reaching_the_other_worker_get_identical_answers(pool: Daemon) -> None:
    """Access, Start, Interim, Stop: each answered by one worker, its retransmission by the other."""
    d = pool
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as nas:  # one NAS socket: same source for all
        nas.settimeout(3)

        def twice(port: int, raw: bytes) -> bytes:
            replies = []
            for index in (0, 1):
                with only(d, index):
                    nas.sendto(raw, ("127.0.0.1", port))
                    replies.append(nas.recv(4096))
            assert replies[0] == replies[1], f"worker 1 answered the retransmission differently: {replies}"
            return replies[0]

        sid = "w-call-1"
        acc = access("alice", password="alice-secret", session=sid)
        reply = acc.CreateReply(packet=twice(d.ports["auth"], acc.RequestPacket()))
        assert reply.code == rp.AccessAccept and reply["Session-Timeout"] == [3600]
        assert _balance(d) == ("10.00", "3.62")  # one hold, not two
        for pkt in (acct(1, sid), acct(3, sid, time=30), acct(2, sid, time=61, cause=1)):
            answer = pkt.CreateReply(packet=twice(d.ports["acct"], pkt.RequestPacket()))
            assert answer.code == rp.AccountingResponse
        assert _balance(d) == ("9.914", "0.00")  # 61 s on 30/6 charged once
        # a burst of the same Stop while both workers read: whoever answers, the same bytes, charged once
        raw = acct(2, sid, time=61, cause=1).RequestPacket()
        for _ in range(5):
            nas.sendto(raw, ("127.0.0.1", d.ports["acct"]))
        replies = set()
        with contextlib.suppress(TimeoutError):
            while True:
                replies.add(nas.recv(4096))
        assert len(replies) == 1
    assert _balance(d) == ("9.914", "0.00")
    handled = {e.get("worker") for e in _events(d, "accounting") if e.get("session", "").endswith(sid)}
    assert handled == {0, 1}


def test_diameter_sessions_over_connections_held_by_both_workers(pool: Daemon) -> None:
    d = pool
    held = _peers_by_worker(d)
    try:
        (a, host_a), (b, host_b) = held[f"{d.name}.w0"][0], held[f"{d.name}.w1"][0]
        sid = "pgw.test;w;1"
        first = _ccr(a, host_a, sid, c.INITIAL, 0, called="4930123456", rg=1)
        assert result(first) == 2001 and granted_time(first)
        update = _ccr(b, host_b, sid, c.UPDATE, 1, rg=1, used=30)
        assert result(update) == 2001
        # the same CCR-U again, T flag, on the other worker's connection: the stored answer
        again = _ccr(a, host_a, sid, c.UPDATE, 1, rg=1, used=30, flags=codec.FLAG_R | codec.FLAG_T)
        assert again.avps == update.avps
        end = _ccr(b, host_b, sid, c.TERMINATION, 2, rg=1, used=31)
        assert result(end) == 2001
        assert _ccr(a, host_a, sid, c.TERMINATION, 2, rg=1, used=31, flags=codec.FLAG_R | codec.FLAG_T).avps == end.avps
        # a session per connection, I/U/T each, every connection of both workers
        for n, (cl, host) in enumerate(p for pairs in held.values() for p in pairs):
            s = f"{host};many;{n}"
            assert result(_ccr(cl, host, s, c.INITIAL, 0, called="4930123456", rg=1)) == 2001
            assert result(_ccr(cl, host, s, c.UPDATE, 1, rg=1, used=6)) == 2001
            assert result(_ccr(cl, host, s, c.TERMINATION, 2, rg=1, used=0)) == 2001
    finally:
        _close(held)
    balance, reserved = _balance(d)
    count = sum(len(v) for v in held.values())
    # 61 s on 30/6 once (0.086, retransmissions not charged); 6 s a session: 0.02 + the first 30 s (0.03)
    assert reserved == "0.00" and Decimal(balance) == Decimal("10") - Decimal("0.086") - count * Decimal("0.05")


# -- one /metrics, readiness, restarts -------------------------------------------------------------


def test_one_merged_metrics_endpoint_like_a_single_process(pool: Daemon) -> None:
    d = pool
    for i in range(12):
        assert send(d.ports["acct"], acct(1, f"m-{i}")).code == rp.AccountingResponse
    with only(d, 0):
        assert send(d.ports["acct"], acct(1, "m-w0")).code == rp.AccountingResponse
    with only(d, 1):
        assert send(d.ports["acct"], acct(1, "m-w1")).code == rp.AccountingResponse
    status, text = _get(d.ports["http"], "/metrics")
    assert status == 200
    merged = _samples(text)
    def families(exposition: str) -> dict[str, str]:  # name -> type (a labelled series' _created comes with it)
        return {f.name: f.type for f in text_string_to_metric_families(exposition) if not f.name.endswith("_created")}

    assert families(text) == families(generate_latest(Metrics().registry).decode())  # same families, same types
    assert _total(merged, "ocs_requests_total", protocol="radius") == 14
    assert merged[("ocs_workers", ())] == 2 and merged[("ocs_worker_restarts_total", ())] == 0
    # the sum of what each worker serves on its own internal endpoint
    own = [_samples(_get(port, "/metrics")[1]) for port in _internal(d).values()]
    assert len(own) == 2 and all(_total(s, "ocs_requests_total", protocol="radius") >= 1 for s in own)
    assert sum(_total(s, "ocs_requests_total", protocol="radius") for s in own) == 14
    assert _total(merged, "ocs_request_duration_seconds_count", protocol="radius") == 14
    assert _get(d.ports["http"], "/readyz") == (200, "ready\n")
    assert _get(d.ports["http"], "/healthz")[0] == 200
    ready = _events(d, "ready")
    assert len(ready) == 1 and ready[0]["node"] == d.name and ready[0]["workers"] == 2


def test_a_killed_worker_is_restarted_and_ocsd_keeps_serving(pool: Daemon) -> None:
    d = pool
    for i in range(6):
        assert send(d.ports["acct"], acct(3, f"k-{i}", time=0)).code == rp.AccountingResponse
    before = _total(_samples(_get(d.ports["http"], "/metrics")[1]), "ocs_requests_total")
    pids = _workers(d)
    victim = pids[1]
    os.kill(victim, signal.SIGKILL)
    _wait("worker 1 restarted", lambda: _workers(d).get(1) not in (None, victim)
          and len(_events(d, "worker_ready")) == 3)
    died = _events(d, "worker_died_restarting")
    assert len(died) == 1 and died[0]["worker"] == 1 and died[0]["exit"] == "killed by SIGKILL"
    assert died[0]["level"] == "warning"
    assert _workers(d)[0] == pids[0]  # the other one never stopped
    _wait("ready again", lambda: _get(d.ports["http"], "/readyz")[0] == 200, 10)
    for index in (0, 1):  # both serve, the new worker 1 included
        with only(d, index):
            assert send(d.ports["acct"], acct(3, f"after-{index}", time=0)).code == rp.AccountingResponse
    cl = GyClient(d.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("pgw.test;k;1", c.INITIAL, 0, called="4930123456"))) == 2001
    finally:
        cl.close()
    merged = _samples(_get(d.ports["http"], "/metrics")[1])
    assert merged[("ocs_worker_restarts_total", ())] == 1 and merged[("ocs_workers", ())] == 2
    assert _total(merged, "ocs_requests_total") >= before + 3  # the dead worker's count is kept, not lost
    assert d.proc is not None and d.proc.poll() is None


def test_sigterm_stops_every_worker_then_flushes_and_exits_zero(tmp_path: Path) -> None:
    d = _make(tmp_path)
    # the flusher idles for 10 minutes after its first look: what is charged below is written by
    # the final flush of the supervisor, after its workers stopped
    d.config_path.write_text(d.config_path.read_text().replace("[postgres]\n", "[postgres]\nflush_interval_ms = 600000\n"))
    try:
        d.start()
        time.sleep(0.5)  # the flusher's first (empty) round is behind it
        for index in (0, 1):
            with only(d, index):
                for call in (acct(1, f"t-{index}"), acct(2, f"t-{index}", time=61, cause=1)):
                    assert send(d.ports["acct"], call).code == rp.AccountingResponse
        assert json.loads(d.ocsctl("cdr", "export", "--format", "json").stdout) == []  # nothing flushed yet
        workers = list(_workers(d).values())
        assert d.proc is not None
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 10
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
        stopped = [e for e in _events(d, "stopped")]
        assert {e.get("worker") for e in stopped} == {0, 1, None}
        assert stopped[-1].get("worker") is None  # the supervisor last, after its workers
        rows = json.loads(d.ocsctl("cdr", "export", "--format", "json").stdout)
        assert sorted(r["session_id"] for r in rows) == ["127.0.0.1|t-0", "127.0.0.1|t-1"]
    finally:
        d.cleanup()


def test_sighup_reaches_every_worker(pool: Daemon) -> None:
    assert pool.proc is not None
    pool.proc.send_signal(signal.SIGHUP)
    _wait("both workers reloaded", lambda: {e.get("worker") for e in _events(pool, "reloaded")} == {0, 1}, 10)
    assert _events(pool, "reload_forwarded")[0]["workers"] == 2


# -- systemd -------------------------------------------------------------------------------------


def _recv_with_pid(sock: socket.socket) -> tuple[str, int]:
    """One notification and the sender's pid (SCM_CREDENTIALS, as systemd checks NotifyAccess=main)."""
    msg, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
    pid = -1
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("3i", data[:12])[0]
    return msg.decode(), pid


def test_systemd_hears_only_the_supervisor(tmp_path: Path) -> None:
    """READY=1 once both workers are ready, WATCHDOG=1 and STOPPING=1: all from the supervisor's pid."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        listener.settimeout(5)
        (tmp_path / "d").mkdir()
        d = _make(tmp_path / "d", extra_env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        try:
            d.start()
            assert d.proc is not None
            supervisor = d.proc.pid
            workers = list(_workers(d).values())
            assert len(workers) == 2
            for pid in workers:  # the workers were not even told where systemd listens
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                assert not [v for v in environ if v.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_"))]
            heard = [_recv_with_pid(listener) for _ in range(3)]  # READY=1, then keep-alives every 0.5 s
            assert heard[0] == ("READY=1", supervisor)
            assert heard[1:] == [("WATCHDOG=1", supervisor)] * 2
            ready_at = _events(d, "ready")[0]["timestamp"]
            assert all(e["timestamp"] <= ready_at for e in _events(d, "worker_ready"))
            assert len(_events(d, "worker_ready")) == 2
            assert d.stop() == 0
            rest = []
            with contextlib.suppress(TimeoutError):
                while True:
                    rest.append(_recv_with_pid(listener))
            assert ("STOPPING=1", supervisor) in rest
            assert {pid for _m, pid in rest} == {supervisor} and [m for m, _p in heard + rest].count("READY=1") == 1
        finally:
            d.cleanup()


# -- control -------------------------------------------------------------------------------------


def _answer(cl: GyClient, req: codec.Message, code: int) -> None:
    sid = req.first(c.SESSION_ID)
    assert sid is not None
    cl.send(codec.message(req.code, codec.FLAG_P & req.flags, req.app_id, req.hop_by_hop, req.end_to_end,
                          codec.utf8(c.SESSION_ID, sid.text()), codec.u32(c.RESULT_CODE, code),
                          codec.utf8(c.ORIGIN_HOST, "pgw.test"), codec.utf8(c.ORIGIN_REALM, "test")))


def test_session_disconnect_reaches_the_worker_holding_the_peer(pool: Daemon) -> None:
    d = pool
    held = _peers_by_worker(d)
    try:
        for node, pairs in sorted(held.items()):
            cl, host = pairs[0]
            sid = f"{host};ctl;1"
            assert result(_ccr(cl, host, sid, c.INITIAL, 0, called="4930123456", requested=300)) == 2001
            asking = subprocess.Popen([str(BIN / "ocsctl"), "session", "disconnect", sid, "--json"], cwd=ROOT,
                                      env=d.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            asr = cl.recv()
            assert asr.code == ASR and asr.is_request
            assert asr.first(c.SESSION_ID).text() == sid  # type: ignore[union-attr]
            _answer(cl, asr, 2001)
            out, err = asking.communicate(timeout=30)
            assert asking.returncode == 0, err
            doc = json.loads(out)
            assert doc["result"] == "acked" and doc["node"] == node  # the worker holding that connection sent it
            end = _ccr(cl, host, sid, c.TERMINATION, 1, used=42, extra=(codec.u32(c.TERMINATION_CAUSE, 4),))
            assert result(end) == 2001
            assert d.cdr_cause(sid, tries=100) == "ADMINISTRATIVE"
    finally:
        _close(held)


# -- start-up failures ---------------------------------------------------------------------------


def test_a_worker_dying_before_ready_is_one_line_and_exit_1(tmp_path: Path) -> None:
    require_services()
    d = Daemon(tmp_path, workers=2)
    d.write_config()
    d.create_database()
    site = tmp_path / "site"
    site.mkdir()
    # worker 1 exits at interpreter start-up (its command line carries --worker 1), the supervisor does not
    (site / "sitecustomize.py").write_text(
        "import os, sys\nif sys.argv[1:3] == ['--worker', '1']:\n    os._exit(3)\n")
    env = {**d.env(), "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        res = subprocess.run([str(BIN / "ocsd"), "--config", str(d.config_path), "--workers", "2"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, env=env)
        assert res.returncode == 1, res.stderr[-3000:]
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("ocsd: worker 1 exited with code 3 before it was ready"), last
        assert "Traceback" not in res.stderr
        leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, str(d.config_path))]
        assert not leftovers  # worker 0 did not outlive the failed start
    finally:
        d.cleanup()


def _cmdline_has(proc: Path, needle: str) -> bool:
    try:
        return needle.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_a_taken_port_is_still_one_line_and_exit_1(tmp_path: Path) -> None:
    require_services()
    d = Daemon(tmp_path, workers=2)
    d.write_config()
    d.create_database()
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", d.ports["diameter"]))
    taken.listen()
    try:
        res = subprocess.run([str(BIN / "ocsd"), "--config", str(d.config_path), "--workers", "2"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30, env=d.env())
        assert res.returncode == 1
        assert res.stderr.strip().splitlines()[-1].startswith("ocsd: diameter: cannot listen:")
        assert "Traceback" not in res.stderr and "worker_started" not in res.stderr  # before any worker
    finally:
        taken.close()
        d.cleanup()

