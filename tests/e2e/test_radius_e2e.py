"""RADIUS prepaid against ocsd as a subprocess with real Redis and PostgreSQL (docs/radius.md)."""

from __future__ import annotations

import pytest
from pyrad import packet as rp

from tests.support.daemon import Daemon
from tests.support.radius_client import SECRET, access, acct, exchange, send

pytestmark = pytest.mark.e2e


def _balance(d: Daemon) -> tuple[str, str]:
    doc = d.ocsctl("account", "show", "alice", json_out=True)
    return doc["balance"], doc["reserved"]


def test_access_accept_holds_the_whole_call(daemon: Daemon) -> None:
    req = access("alice", password="alice-secret")
    reply = send(daemon.ports["auth"], req)
    assert reply.code == rp.AccessAccept
    assert reply.message_authenticator  # always sent (BlastRADIUS)
    assert reply.verify_message_authenticator(original_authenticator=req.authenticator,
                                              original_code=rp.AccessRequest)
    # 10.00 buys 0.02 + 3600 s at 0.06/min = 3.62: capped at max_grant_seconds
    assert reply["Session-Timeout"] == [3600]
    assert _balance(daemon) == ("10.00", "3.62")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"user": "nobody", "password": "x"}, "unknown account"),
        ({"user": "alice", "password": "wrong"}, "bad password"),
        ({"user": "alice", "password": "alice-secret", "called": "999"}, "destination not rated"),
    ],
)
def test_access_reject_says_why(daemon: Daemon, kwargs: dict[str, str], reason: str) -> None:
    user = kwargs.pop("user")
    reply = send(daemon.ports["auth"], access(user, **kwargs))
    assert reply.code == rp.AccessReject
    assert reply["Reply-Message"] == [reason]


def test_chap_and_no_credit(daemon: Daemon) -> None:
    assert send(daemon.ports["auth"], access("alice", chap="alice-secret")).code == rp.AccessAccept
    assert send(daemon.ports["auth"], access("alice", chap="nope", called="4931")).code == rp.AccessReject
    daemon.ocsctl("adjust", "alice", "-10.00", "--reason", "empty")
    reply = send(daemon.ports["auth"], access("alice", password="alice-secret", called="4932"))
    assert reply.code == rp.AccessReject and reply["Reply-Message"] == ["no credit"]


def test_missing_message_authenticator_is_dropped(daemon: Daemon) -> None:
    assert send(daemon.ports["auth"], access("alice", password="alice-secret", ma=False)) is None


def test_start_interim_stop_and_duplicated_stop(daemon: Daemon) -> None:
    auth, acc = daemon.ports["auth"], daemon.ports["acct"]
    assert send(auth, access("alice", password="alice-secret")).code == rp.AccessAccept
    assert send(acc, acct(1, "call-1")).code == rp.AccountingResponse
    assert send(acc, acct(3, "call-1", time=30)).code == rp.AccountingResponse
    assert send(acc, acct(2, "call-1", time=61, cause=1)).code == rp.AccountingResponse
    assert _balance(daemon) == ("9.914", "0.00")
    # the same Stop again with a new identifier: charged once
    assert send(acc, acct(2, "call-1", time=61, cause=1)).code == rp.AccountingResponse
    assert _balance(daemon) == ("9.914", "0.00")
    # a Stop for a session we never saw is acknowledged and charged
    assert send(acc, acct(2, "ghost", time=61)).code == rp.AccountingResponse
    assert _balance(daemon) == ("9.828", "0.00")


def test_retransmission_answered_from_cache(daemon: Daemon) -> None:
    pkt = access("alice", password="alice-secret")
    raw = pkt.RequestPacket()
    first = exchange(daemon.ports["auth"], raw)
    second = exchange(daemon.ports["auth"], raw)
    assert first is not None and first == second
    assert _balance(daemon)[1] == "3.62"  # one hold, not two


def test_unknown_client_and_bad_packets_are_dropped(daemon: Daemon) -> None:
    bad = access("alice", password="alice-secret", secret=b"wrong").RequestPacket()
    assert exchange(daemon.ports["auth"], bad, timeout=1) is None  # bad Message-Authenticator
    assert exchange(daemon.ports["auth"], b"\x01\x02\x00\x05", timeout=1) is None
    raw = bytearray(access("alice", password="alice-secret").RequestPacket())
    raw[21] = 250  # an attribute length running past the packet
    assert exchange(daemon.ports["auth"], bytes(raw), timeout=1) is None
    acc_bad = acct(1, "x", secret=b"other").RequestPacket()
    assert exchange(daemon.ports["acct"], acc_bad, timeout=1) is None
    assert send(daemon.ports["auth"], access("alice", password="alice-secret")).code == rp.AccessAccept
    assert SECRET


def test_accounting_on_settles_the_nas(daemon: Daemon) -> None:
    auth, acc = daemon.ports["auth"], daemon.ports["acct"]
    send(auth, access("alice", password="alice-secret"))
    send(acc, acct(1, "c2"))
    send(acc, acct(3, "c2", time=61))
    pkt = acct(7, "", user="")
    assert send(acc, pkt).code == rp.AccountingResponse
    assert _balance(daemon) == ("9.914", "0.00")


def test_one_acct_session_id_on_two_gateways_is_two_calls(daemon: Daemon) -> None:
    """Gateways' Acct-Session-Id counters collide (RFC 2866 5.5: unique per NAS): one account, two calls."""
    acc = daemon.ports["acct"]
    for nas in ("10.0.0.1", "10.0.0.2"):
        assert send(acc, acct(1, "0000A3F1", nas=nas)).code == rp.AccountingResponse
    assert send(acc, acct(2, "0000A3F1", nas="10.0.0.1", time=61)).code == rp.AccountingResponse
    assert send(acc, acct(2, "0000A3F1", nas="10.0.0.2", time=30)).code == rp.AccountingResponse
    # 61 s (0.086) and 30 s (0.02 + 0.03 = 0.05), each its own call
    assert _balance(daemon) == ("9.864", "0.00")
