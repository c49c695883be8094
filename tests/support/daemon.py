"""Run ``ocsd`` as a subprocess against real Redis and PostgreSQL, for e2e and interop tests.

Each :class:`Daemon` gets its own database, Redis key prefix and free ports,
writes a config file, starts ``ocsd --config``, waits for the ``ready`` log
line and, on :meth:`stop`, sends SIGTERM and checks the exit status.  The
``ocsctl`` helper runs the CLI with the same config, as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PG_ADMIN_DSN = os.environ.get("OCS_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
READY = re.compile(r'"event":\s*"ready"')
REDIS_URL = os.environ.get("OCS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A currently free loopback port (TCP and UDP both free, so one number serves both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s2:
                s2.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return sorted(out)


def _pg(dsn: str, sql: str) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


@dataclass
class Daemon:
    """One ``ocsd`` under test plus its private stores."""

    tmp: Path
    extra_toml: str = ""
    name: str = field(default_factory=lambda: f"ocs_e2e_{uuid.uuid4().hex[:10]}")
    proc: subprocess.Popen[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    redis_url: str = REDIS_URL
    reuse_port: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    # ocsd --workers: 1 = one process as before; >= 2 a supervisor and its workers.  OCS_TEST_WORKERS=N
    # runs every e2e daemon that does not choose with N (the product's default is one per core)
    workers: int = field(default_factory=lambda: int(os.environ.get("OCS_TEST_WORKERS", "1")))
    request_lines_per_second: int = 0  # every per-request log line by default (tests/e2e/test_log_sampling_e2e.py)

    @property
    def dsn(self) -> str:
        return PG_ADMIN_DSN.rpartition("/")[0] + "/" + self.name

    @property
    def prefix(self) -> str:
        return f"{self.name}:"

    @property
    def config_path(self) -> Path:
        return self.tmp / "ocs.toml"

    @property
    def log_path(self) -> Path:
        return self.tmp / "ocsd.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("OCS_REDIS_URL", None)
        env.pop("OCS_POSTGRES_DSN", None)
        env["OCS_CONFIG"] = str(self.config_path)
        env.update(self.extra_env)
        return env

    def write_config(self) -> None:
        for key in ("diameter", "auth", "acct", "http"):
            port = self.ports.get(key) or free_port()
            while port in {p for k, p in self.ports.items() if k != key}:  # a freed port can come back at once
                port = free_port()
            self.ports[key] = port
        self.config_path.write_text(
            f"""
[node]
name = "{self.name}"
reuse_port = {str(self.reuse_port).lower()}
[diameter]
listen = ["127.0.0.1:{self.ports['diameter']}"]
origin_host = "ocs.test.example.net"
origin_realm = "test.example.net"
watchdog_seconds = 30
[radius]
auth_listen = "127.0.0.1:{self.ports['auth']}"
acct_listen = "127.0.0.1:{self.ports['acct']}"
dictionary = "{ROOT / 'radius' / 'dictionary'}"
[[radius.clients]]
address = "127.0.0.1/32"
secret = "testing123"
name = "local"
[redis]
url = "{self.redis_url}"
key_prefix = "{self.prefix}"
[postgres]
dsn = "{self.dsn}"
[http]
listen = "127.0.0.1:{self.ports['http']}"
[log]
level = "info"
format = "json"
request_lines_per_second = {self.request_lines_per_second}
{self.extra_toml}
"""
        )

    def sibling(self, tmp: Path, suffix: str) -> Daemon:
        """Another instance from the same config file (database, prefix, shared ports with
        ``reuse_port``) with its own node name and HTTP port, set through the environment as
        ``systemd/ocsd@.service`` does; write_config/create_database are not needed for it."""
        tmp.mkdir(parents=True, exist_ok=True)
        other = dataclasses.replace(self, tmp=tmp, proc=None, log_lines=[], extra_env={
            **self.extra_env, "OCS_NODE_NAME": f"{self.name}-{suffix}", "OCS_HTTP_LISTEN": f"127.0.0.1:{free_port()}"})
        other.config_path.write_text(self.config_path.read_text())
        return other

    @property
    def http_port(self) -> int:
        listen = self.extra_env.get("OCS_HTTP_LISTEN")
        return int(listen.rsplit(":", 1)[1]) if listen else self.ports["http"]

    def create_database(self) -> None:
        _pg(PG_ADMIN_DSN, f'CREATE DATABASE "{self.name}"')
        self.ocsctl("db", "migrate")

    def ocsctl(self, *args: str, check: bool = True, json_out: bool = False) -> Any:
        cmd = [str(BIN / "ocsctl"), *args, *(["--json"] if json_out else [])]
        res = subprocess.run(cmd, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {res.returncode}: {res.stderr.strip()}")
        if json_out:
            return json.loads(res.stdout)
        return res

    def start(self, timeout: float = 30.0) -> None:
        seen = self.ready_lines() if self.log_path.exists() else 0
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(
                [str(BIN / "ocsd"), "--config", str(self.config_path), "--workers", str(self.workers)],
                cwd=ROOT, env=self.env(), stdout=logf, stderr=logf,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ocsd exited {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
            if self.ready_lines() > seen:
                return
            time.sleep(0.05)
        raise AssertionError(f"ocsd not ready in {timeout}s:\n{self.log_path.read_text()[-4000:]}")

    def ready_lines(self) -> int:
        return len(READY.findall(self.log_path.read_text()))

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (spec: 0 within 10 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("ocsd did not stop within the timeout") from None

    def children(self) -> list[int]:
        """Pids of the supervisor's worker processes (none with ``workers=1``)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return children_of(self.proc.pid)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            workers = self.children()
            self.proc.kill()
            self.proc.wait()
            for pid in workers:  # they would stop by themselves (supervisor gone); not after the cleanup
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def cdr_cause(self, sid: str, tries: int = 150) -> str:
        """The termination_cause of the session's CDR, polled (the flush to PostgreSQL is asynchronous)."""
        for _ in range(tries):
            rows = json.loads(self.ocsctl("cdr", "export", "--format", "json").stdout)
            found = [r["termination_cause"] for r in rows if r["session_id"] == sid]
            if found:
                return str(found[0])
            time.sleep(0.1)
        raise AssertionError(f"no CDR for {sid}")

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(REDIS_URL)

    def cleanup(self) -> None:
        self.kill()
        r = self.redis()
        try:
            for key in r.scan_iter(match=f"{self.prefix}*", count=1000):
                r.delete(key)
        finally:
            r.close()
        _pg(PG_ADMIN_DSN, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def require_services() -> None:
    """Fail (CI) or skip (dev) when Redis or PostgreSQL is not reachable."""
    try:
        r = redis.Redis.from_url(REDIS_URL)
        r.ping()
        r.close()
        _pg(PG_ADMIN_DSN, "SELECT 1")
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"service not reachable: {exc}")
        pytest.skip(f"service not reachable: {exc}")


DEMO_RATES = """prefix,destination,rate,connect_fee,first_increment,next_increment
49,Germany fixed,0.06,0.02,30,6
4915,Germany mobile,0.12,0,60,60
44,United Kingdom,0.03,0,1,1
"""


def provision_demo(d: Daemon, balance: str = "10.00") -> None:
    """A tariff 'e2e' and a prepaid account 'alice' (alias 4915110000001, password alice-secret)."""
    rates = d.tmp / "rates.csv"
    rates.write_text(DEMO_RATES)
    d.ocsctl("tariff", "import", "e2e", str(rates), "--currency", "EUR", "--timezone", "UTC")
    d.ocsctl(
        "account", "create", "alice", "--currency", "EUR", "--tariff", "e2e",
        "--alias", "4915110000001", "--password", "alice-secret",
    )
    d.ocsctl("topup", "alice", balance, "--reference", "e2e-alice-1")


@contextlib.contextmanager
def running(tmp_path: Path, **settings: Any) -> Iterator[Daemon]:
    """A provisioned, running ocsd (``settings``: Daemon fields); stopped with SIGTERM (exit 0 asserted)
    and cleaned up."""
    require_services()
    d = Daemon(tmp_path, **settings)
    d.write_config()
    d.create_database()
    provision_demo(d)
    try:
        d.start()
        yield d
        assert d.stop() == 0, d.log_path.read_text()[-4000:]
    finally:
        d.cleanup()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A provisioned, running ocsd; stopped with SIGTERM (exit 0 asserted) and cleaned up."""
    with running(tmp_path) as d:
        yield d
