"""Calling cards and vouchers against a running ocsd (docs/billing.md, "Vouchers and calling cards").

A card lot generated while the daemon runs is usable over RADIUS at once: the NAS sends the PIN
as User-Name and as password (PAP or CHAP) and gets a Session-Timeout the card's value pays for.
"""

from __future__ import annotations

import csv
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyrad import packet as rp

from tests.support.daemon import Daemon, provision_demo, require_services
from tests.support.radius_client import access, acct, send

pytestmark = pytest.mark.e2e


@pytest.fixture
def card_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """The demo daemon (tariff e2e, alice with 10.00) with a PIN pepper configured."""
    require_services()
    (tmp_path / "pepper").write_text(secrets.token_hex(32) + "\n")
    d = Daemon(tmp_path, extra_toml=f'[billing]\npin_pepper_file = "{tmp_path / "pepper"}"\n')
    d.write_config()
    d.create_database()
    provision_demo(d)
    try:
        d.start()
        yield d
        assert d.stop() == 0, d.log_path.read_text()[-4000:]
    finally:
        d.cleanup()


def _generate(d: Daemon, lot: str, *extra: str, count: int = 3, value: str = "1.00") -> list[dict[str, str]]:
    out = d.tmp / f"{lot}.csv"
    d.ocsctl("pin", "generate", "--count", str(count), "--value", value, "--currency", "EUR", "--lot", lot,
             "-o", str(out), *extra)
    with out.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_card_usable_over_radius_at_once(card_daemon: Daemon) -> None:
    d, auth, acc = card_daemon, card_daemon.ports["auth"], card_daemon.ports["acct"]
    cards = _generate(d, "c1", "--kind", "card", "--tariff", "e2e")
    pin = cards[0]["pin"]
    reply = send(auth, access(pin, password=pin))  # PAP; Called-Station-Id 4930...: 0.06/min, 0.02, 30/6
    assert reply.code == rp.AccessAccept
    # 1.00 pays 0.02 + 978 s at 0.001/s = 0.998 (30 s, then whole 6 s blocks)
    assert reply["Session-Timeout"] == [978]
    card = d.ocsctl("account", "show", cards[0]["account"], json_out=True)
    assert (card["balance"], card["reserved"]) == ("1.00", "0.998")
    assert send(auth, access(cards[1]["pin"], chap=cards[1]["pin"])).code == rp.AccessAccept  # CHAP
    wrong = str(int(pin) + 1) if str(int(pin) + 1) not in {c["pin"] for c in cards} else str(int(pin) + 2)
    reply = send(auth, access(wrong, password=wrong))
    assert reply.code == rp.AccessReject and reply["Reply-Message"] == ["unknown account"]
    reply = send(auth, access(cards[2]["pin"], password=pin))
    assert reply.code == rp.AccessReject and reply["Reply-Message"] == ["bad password"]
    # a call on the card is charged to the card; the lot shows it used once the record is flushed
    assert send(acc, acct(1, "card-call", user=pin)).code == rp.AccountingResponse
    assert send(acc, acct(2, "card-call", user=pin, time=60, cause=1)).code == rp.AccountingResponse
    card = d.ocsctl("account", "show", cards[0]["account"], json_out=True)
    assert (card["balance"], card["reserved"]) == ("0.92", "0.00")
    deadline = time.monotonic() + 10
    while (lot := d.ocsctl("pin", "list", "--lot", "c1", json_out=True))["used"] != 1:
        assert time.monotonic() < deadline, lot
        time.sleep(0.2)
    assert lot["pins"][0]["state"] == "used" and lot["pins"][0]["redeemed_by"] == cards[0]["account"]
    assert d.ocsctl("reconcile", json_out=True)["differences"] == 0


def test_voucher_redeemed_while_the_daemon_runs(card_daemon: Daemon) -> None:
    d = card_daemon
    vouchers = _generate(d, "v1", count=2, value="5.00")
    doc = d.ocsctl("pin", "redeem", vouchers[0]["pin"], "alice", json_out=True)
    assert doc["balance"] == "15.00" and doc["control"] == {"sent": 0, "unreachable": []}
    res = d.ocsctl("pin", "redeem", vouchers[0]["pin"], "alice", check=False)
    assert res.returncode == 1 and "already redeemed" in res.stderr
    reply = send(d.ports["auth"], access("alice", password="alice-secret"))
    assert reply.code == rp.AccessAccept and reply["Session-Timeout"] == [3600]
    assert d.ocsctl("reconcile", json_out=True)["differences"] == 0
