"""Server-initiated control through running daemons (docs/control.md).

Two ocsd nodes share Redis and PostgreSQL; a Diameter client is connected to node A only, and
``ocsctl session disconnect`` is issued with node B's configuration: the command must reach A,
which sends the ASR on its connection; the client answers ASA and ends the session with CCR-T,
whose record says ADMINISTRATIVE.  Then the bad inputs: an unknown session, a node that is down.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocs.diameter import codec
from ocs.diameter import constants as c
from tests.support.daemon import BIN, ROOT, Daemon, provision_demo, require_services
from tests.support.diameter_client import GyClient, ccr, granted_time, result

pytestmark = pytest.mark.e2e

ASR, ASA_OK = 274, 2001


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[Daemon, Daemon]]:
    """Nodes A and B: one database and key prefix, their own ports and node names."""
    require_services()
    a = Daemon(tmp_path / "a")
    a.tmp.mkdir()
    a.write_config()
    a.create_database()
    provision_demo(a)
    b = dataclasses.replace(a, tmp=tmp_path / "b", ports={}, proc=None, log_lines=[],
                            extra_env={"OCS_NODE_NAME": f"{a.name}-b"})
    b.tmp.mkdir()
    b.write_config()
    try:
        a.start()
        b.start()
        yield a, b
        for node in (b, a):
            if node.proc is not None and node.proc.poll() is None:  # not killed by the test
                assert node.stop() == 0, node.log_path.read_text()[-4000:]
    finally:
        b.kill()
        a.cleanup()


def _answer(cl: GyClient, req: codec.Message, code: int) -> None:
    sid = req.first(c.SESSION_ID)
    assert sid is not None
    cl.send(codec.message(req.code, codec.FLAG_P & req.flags, req.app_id, req.hop_by_hop, req.end_to_end,
                          codec.utf8(c.SESSION_ID, sid.text()), codec.u32(c.RESULT_CODE, code),
                          codec.utf8(c.ORIGIN_HOST, "pgw.test"), codec.utf8(c.ORIGIN_REALM, "test")))


def _disconnect(node: Daemon, sid: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "ocsctl"), "session", "disconnect", sid, "--json", *extra], cwd=ROOT,
                            env=node.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)



def test_disconnect_on_node_b_of_a_diameter_session_held_by_node_a(two_nodes: tuple[Daemon, Daemon]) -> None:
    a, b = two_nodes
    cl = GyClient(a.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        sid = "pgw.test;2node;1"
        first = cl.request(c.CCR, 4, *ccr(sid, c.INITIAL, 0, called="4930123456", requested=300))
        assert result(first) == 2001 and granted_time(first)
        time.sleep(0.3)  # A's registry entry for peer pgw.test is written when the peer opens
        asking = _disconnect(b, sid)
        asr = cl.recv()
        assert asr.code == ASR and asr.is_request and asr.app_id == 4
        assert asr.first(c.SESSION_ID).text() == sid  # type: ignore[union-attr]
        _answer(cl, asr, ASA_OK)
        out, err = asking.communicate(timeout=30)
        assert asking.returncode == 0, err
        doc = json.loads(out)
        # A sent it (the node holding the peer; under ocsd --workers one of A's workers, "<name>.w<i>")
        assert doc["result"] == "acked" and re.fullmatch(rf"{re.escape(a.name)}(\.w\d+)?", doc["node"])
        end = cl.request(c.CCR, 4, *ccr(sid, c.TERMINATION, 1, used=42, extra=(codec.u32(c.TERMINATION_CAUSE, 4),)))
        assert result(end) == 2001
    finally:
        cl.close()
    assert a.cdr_cause(sid, tries=100) == "ADMINISTRATIVE"


def test_disconnect_refusals_are_one_line_and_exit_1(two_nodes: tuple[Daemon, Daemon]) -> None:
    a, b = two_nodes
    res = b.ocsctl("session", "disconnect", "no-such-session", check=False)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1 and "unknown_session" in res.stderr
    cl = GyClient(a.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        sid = "pgw.test;down;1"
        assert result(cl.request(c.CCR, 4, *ccr(sid, c.INITIAL, 0, called="4930123456", requested=60))) == 2001
        time.sleep(0.3)
        a.kill()  # A dies: its registry entry is still fresh for up to 15 s
        t0 = time.monotonic()
        res = b.ocsctl("session", "disconnect", sid, "--timeout", "3", check=False)
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        # one process killed cannot leave the registry: no answer within the timeout; under --workers the
        # workers see their supervisor gone and leave it as they stop, so the peer is gone at once
        assert ("no_answer" in res.stderr and a.name in res.stderr) or (a.workers > 1 and "peer_gone" in res.stderr)
        assert time.monotonic() - t0 < 10
    finally:
        cl.close()
