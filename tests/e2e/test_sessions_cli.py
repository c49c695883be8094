"""``ocsctl session list``: the open sessions of a running ocsd, over both protocols."""

from __future__ import annotations

import pytest

from ocs.diameter import constants as c
from tests.support.daemon import Daemon
from tests.support.diameter_client import GyClient, ccr, result
from tests.support.radius_client import access, send

pytestmark = pytest.mark.e2e


def test_session_list_shows_open_sessions_and_forgets_closed_ones(daemon: Daemon) -> None:
    cl = GyClient(daemon.ports["diameter"])
    try:
        assert result(cl.cer()) == 2001
        assert result(cl.request(c.CCR, 4, *ccr("ls;1", c.INITIAL, 0, called="4930123456", rg=1, requested=120))) \
            == 2001
        assert send(daemon.ports["auth"], access("alice", password="alice-secret", session="call-7")) is not None
        listed = daemon.ocsctl("session", "list", json_out=True)
        by_id = {s["session_id"]: s for s in listed["sessions"]}
        assert listed["count"] == 2 and set(by_id) == {"ls;1", "127.0.0.1|call-7"}
        gy = by_id["ls;1"]
        assert (gy["account"], gy["protocol"], gy["rating_group"], gy["granted"], gy["used"]) == \
            ("alice", "diameter", 1, 120, 0)
        assert gy["held"] != "0.00" and gy["started"] and gy["peer"]
        assert by_id["127.0.0.1|call-7"]["protocol"] == "radius" and by_id["127.0.0.1|call-7"]["peer"] == "127.0.0.1"
        assert daemon.ocsctl("session", "list", "--account", "alice", json_out=True)["count"] == 2
        assert daemon.ocsctl("session", "list", "--account", "nobody*", json_out=True)["count"] == 0
        assert result(cl.request(c.CCR, 4, *ccr("ls;1", c.TERMINATION, 1, rg=1, used=30))) == 2001
        left = daemon.ocsctl("session", "list", json_out=True)["sessions"]
        assert [s["session_id"] for s in left] == ["127.0.0.1|call-7"]
        text = daemon.ocsctl("session", "list").stdout
        assert "127.0.0.1|call-7" in text and "1 open session(s)" in text
    finally:
        cl.close()
