"""Single inputs the fuzz campaign found to stop ocsd or all flushing to PostgreSQL: the fixed behaviour.

One test per input; each drives a fresh ocsd (tests/fuzz/conftest.py: tariff ``fuzzdemo``, account
``reg`` with 10.00 EUR, alias 4917000000003, password ``reg-secret``) and asserts what the fixed
daemon does: it keeps running, the charge is settled and bounded, every record reaches PostgreSQL
under a storable session id, and SIGTERM still exits 0.  docs/fuzzing.md lists them.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from ocs.diameter import codec as dc
from ocs.diameter import constants as c
from tests.fuzz import wire as w
from tests.fuzz.campaign import REG_ALIAS, REG_PASSWORD, REG_USER, TARIFF, log_tail, pg
from tests.support.daemon import Daemon

pytestmark = pytest.mark.e2e


@pytest.fixture
def make_daemon(make_daemon: Callable[..., Daemon]) -> Callable[..., Daemon]:
    """The fuzz tier's ``make_daemon`` with only the account ``reg`` (faster to provision)."""
    return lambda *args, **kw: make_daemon(*args, accounts=(REG_USER,), **kw)

FLUSH_WAIT = 20.0  # seconds for a record to reach PostgreSQL (the flusher runs every 100 ms)
CALLED = b"4930123456"
OVERUSE = 600  # charging.max_overuse_seconds, the default


# -- helpers -----------------------------------------------------------------------------------------


def alive(d: Daemon) -> None:
    assert d.proc is not None
    code = d.proc.poll()
    assert code is None, f"ocsd exited with {code}:\n{log_tail(d)}"


def stop_ok(d: Daemon) -> None:
    alive(d)
    assert d.stop() == 0, log_tail(d)


def wait_rows(d: Daemon, sql: str, *args: Any, n: int = 1) -> list[Any]:
    """Rows of ``sql`` once there are at least ``n`` (bounded wait); fails with the daemon's state."""
    end = time.monotonic() + FLUSH_WAIT
    rows: list[Any] = []
    while time.monotonic() < end:
        rows = pg(d, sql, *args)
        if len(rows) >= n or (d.proc is not None and d.proc.poll() is not None):
            break
        time.sleep(0.2)
    assert len(rows) >= n, (f"{len(rows)} rows (< {n}) of {sql} {args} after {FLUSH_WAIT:.0f} s;"
                            f" ocsd {'alive' if d.proc and d.proc.poll() is None else 'exited'};"
                            f" dead letters: {dead_letters(d)}\n{log_tail(d, 3000)}")
    return rows


def dead_letters(d: Daemon) -> list[dict[str, Any]]:
    if pg(d, "SELECT to_regclass('usage_dead_letters') IS NOT NULL AS ok")[0]["ok"]:
        return [dict(r) for r in pg(d, "SELECT record_id, error FROM usage_dead_letters")]
    return []


def account(d: Daemon, user: str = REG_USER) -> dict[str, Any]:
    return dict(d.ocsctl("account", "show", user, json_out=True))


def price(d: Daemon, seconds: int, number: bytes = CALLED) -> Decimal:
    return Decimal(d.ocsctl("tariff", "rate", TARIFF, number.decode(), "--seconds", str(seconds),
                            json_out=True)["charge"])


def access(d: Daemon, *, ident: int = 1, auth: bytes | None = None, called: bytes = CALLED, nas: bytes,
           session: bytes | None = None) -> bytes:
    raw = w.access_request(ident, auth or os.urandom(16), user=REG_USER.encode(), password=REG_PASSWORD.encode(),
                           called=called, nas_id=nas, session=session)
    reply = w.radius_exchange(d.ports["auth"], raw)
    assert reply is not None, f"no reply to the Access-Request\n{log_tail(d, 3000)}"
    assert reply[0] == w.ACCESS_ACCEPT, (reply[0], w.reply_attrs(reply).get(w.REPLY_MESSAGE))
    return reply


def session_timeout(reply: bytes) -> int:
    return int(struct.unpack("!I", w.reply_attrs(reply)[w.SESSION_TIMEOUT][0])[0])


def accounting(d: Daemon, status: int, *, ident: int, session: bytes | None, nas: bytes, time: int | None = None,
               user: bytes | None = REG_USER.encode()) -> None:
    raw = w.accounting_request(ident, status, session=session, user=user, nas_id=nas, called=CALLED, time=time)
    reply = w.radius_exchange(d.ports["acct"], raw)
    assert reply is not None, f"no Accounting-Response (status {status}, session {session!r})\n{log_tail(d, 3000)}"
    assert reply[0] == w.ACCOUNTING_RESPONSE


class Gy:
    def __init__(self, d: Daemon) -> None:
        self.s = socket.create_connection(("127.0.0.1", d.ports["diameter"]), timeout=10)
        self.buf = bytearray()
        self.n = 0
        assert w.result_code(self.request(w.cer(0))) == c.SUCCESS

    def request(self, raw: bytes) -> bytes:
        self.s.sendall(raw)
        ans = w.read_message(self.s, self.buf)
        assert ans is not None, "connection closed by ocsd"
        return ans

    def ccr(self, session: bytes, rtype: int, number: int, **kw: Any) -> bytes:
        self.n += 1
        return self.request(dc.message(c.CCR, dc.FLAG_R, c.APP_CC, self.n, self.n,
                                       *w.ccr_avps(session, rtype, number, **kw)))

    def close(self) -> None:
        self.s.close()


# -- a. a hold settled by Accounting-On / Off ----------------------------------------------------------

TOP_BIT_AUTHENTICATORS = [b"\x80\x00\x00\x00", b"\xde\xad\xbe\xef", b"\xff\xff\xff\xff", b"\xc0\x00\x00\x01"]


def test_a_hold_settled_by_accounting_on_off_reaches_postgres(make_daemon: Callable[..., Daemon]) -> None:
    """Access-Accept hold without Acct-Session-Id, then Accounting-On and -Off from its NAS.

    Was: the settlement's request number (Request Authenticator's first 4 octets + 10^9) overflowed the
    int32 ``usage.request_number``; the flusher's task died and took ocsd down (exit 0).
    """
    d = make_daemon()
    for i, head in enumerate(TOP_BIT_AUTHENTICATORS):
        called = b"49301234" + str(50 + i).encode()
        access(d, ident=i, auth=head + os.urandom(12), called=called, nas=b"nas-a")
        assert Decimal(account(d)["reserved"]) > 0
        accounting(d, w.ACCOUNTING_ON, ident=100 + i, session=None, nas=b"nas-a", user=None)
        accounting(d, w.ACCOUNTING_OFF, ident=200 + i, session=None, nas=b"nas-a", user=None)
        assert Decimal(account(d)["reserved"]) == 0, "the hold was not settled"
        sid = f"nas-a|{REG_USER}|{called.decode()}"
        wait_rows(d, "SELECT request_number FROM usage WHERE session_id = $1", sid)
        wait_rows(d, "SELECT 1 FROM cdrs WHERE session_id = $1", sid)
        alive(d)
    assert dead_letters(d) == []
    stop_ok(d)


# -- b. Stop with a huge Acct-Session-Time ---------------------------------------------------------------

HUGE_TIMES = [147_483_648, 4_294_967_295]


def _call_with_stop(d: Daemon, t: int, sid: bytes) -> tuple[int, str]:
    reply = access(d, nas=b"nas-b", session=sid)
    accounting(d, w.START, ident=2, session=sid, nas=b"nas-b")
    accounting(d, w.STOP, ident=3, session=sid, nas=b"nas-b", time=t)
    return session_timeout(reply), f"nas-b|{sid.decode()}"


@pytest.mark.parametrize("t", HUGE_TIMES)
def test_b_stop_with_huge_session_time_reaches_postgres(make_daemon: Callable[..., Daemon], t: int) -> None:
    """Was: Stop request number 2,000,000,000 + T overflowed int32 (T = 147,483,648 is the first that does)."""
    d = make_daemon()
    _grant, sid = _call_with_stop(d, t, f"b-{t}".encode())
    alive(d)
    wait_rows(d, "SELECT 1 FROM usage WHERE session_id = $1", sid)
    wait_rows(d, "SELECT 1 FROM cdrs WHERE session_id = $1", sid)
    assert dead_letters(d) == []
    stop_ok(d)


@pytest.mark.parametrize("t", HUGE_TIMES)
def test_b2_stop_overuse_is_capped(make_daemon: Callable[..., Daemon], t: int) -> None:
    """charging.max_overuse_seconds = 600 (default): at most grant + 600 s are charged; the rest is excess."""
    d = make_daemon()
    before = Decimal(account(d)["balance"])
    grant, sid = _call_with_stop(d, t, f"b2-{t}".encode())
    charged = before - Decimal(account(d)["balance"])
    cap = price(d, grant + OVERUSE)
    assert charged <= cap, f"charged {charged} EUR for {t} s; grant {grant} s + {OVERUSE} s cost {cap}"
    rows = wait_rows(d, "SELECT request_number, excess_units FROM usage WHERE session_id = $1"
                        " ORDER BY request_number DESC", sid)
    assert rows[0]["excess_units"] > 0, [dict(r) for r in rows]
    stop_ok(d)


# -- c. Diameter CC-Request-Number 2^31 and 2^32-1 ------------------------------------------------------


def test_c_cc_request_numbers_beyond_int32_reach_postgres(make_daemon: Callable[..., Daemon]) -> None:
    """Was: CC-Request-Number (Unsigned32) >= 2^31 overflowed the int32 column and stopped the flush."""
    d = make_daemon()
    gy = Gy(d)
    sid = b"reg.pgw.test;c;1"
    try:
        assert w.result_code(gy.ccr(sid, c.INITIAL, 0, subscriber=REG_ALIAS.encode(), called=CALLED)) == 2001
        assert w.result_code(gy.ccr(sid, c.UPDATE, 2**31, subscriber=None, used=61)) == 2001
        assert w.result_code(gy.ccr(sid, c.TERMINATION, 2**32 - 1, subscriber=None, requested=None,
                                    used=5)) == 2001
    finally:
        gy.close()
    alive(d)
    rows = wait_rows(d, "SELECT request_number FROM usage WHERE session_id = $1 AND request_number::bigint >= $2",
                     sid.decode(), 2**31, n=2)
    assert {r["request_number"] for r in rows} >= {2**31, 2**32 - 1}
    wait_rows(d, "SELECT 1 FROM cdrs WHERE session_id = $1", sid.decode())
    stop_ok(d)


# -- d. NUL octets and invalid UTF-8 in identifiers ------------------------------------------------------


def _normal_session_flushes(d: Daemon, name: bytes) -> None:
    """A plain session after the odd one: its records reach PostgreSQL too (one NUL stopped all flushing)."""
    accounting(d, w.START, ident=50, session=name, nas=b"nas-d")
    accounting(d, w.STOP, ident=51, session=name, nas=b"nas-d", time=61)
    sid = f"nas-d|{name.decode()}"
    wait_rows(d, "SELECT 1 FROM usage WHERE session_id = $1", sid)
    wait_rows(d, "SELECT 1 FROM cdrs WHERE session_id = $1", sid)


@pytest.mark.parametrize(("nas", "session", "stored"), [
    (b"nas\x00x", b"d1", "nas\\x00x|d1"),
    (b"nas-d", b"abc\x00def", "nas-d|abc\\x00def"),
    (b"nas-d", b"\xff\xfe", "nas-d|\\xff\\xfe"),
], ids=["nul-in-nas-identifier", "nul-in-acct-session-id", "invalid-utf8-acct-session-id"])
def test_d_odd_octets_are_stored_escaped(make_daemon: Callable[..., Daemon], nas: bytes, session: bytes,
                                         stored: str) -> None:
    """Was: a NUL went into the usage stream as is, PostgreSQL refused it (text cannot hold NUL), the
    flusher retried the same batch forever and no record of anyone reached PostgreSQL again."""
    d = make_daemon()
    accounting(d, w.START, ident=1, session=session, nas=nas)
    accounting(d, w.STOP, ident=2, session=session, nas=nas, time=61)
    alive(d)
    wait_rows(d, "SELECT 1 FROM usage WHERE session_id = $1", stored)
    wait_rows(d, "SELECT 1 FROM cdrs WHERE session_id = $1", stored)
    _normal_session_flushes(d, b"normal-after")
    assert dead_letters(d) == []
    stop_ok(d)


def test_d_escaping_is_injective(make_daemon: Callable[..., Daemon]) -> None:
    """b"a\\x00" and b"a\\\\x00" (a backslash, then "x00") are two calls with two stored ids."""
    d = make_daemon()
    for i, raw in enumerate((b"a\x00", b"a\\x00")):
        accounting(d, w.START, ident=10 + i, session=raw, nas=b"nas-d")
        accounting(d, w.STOP, ident=20 + i, session=raw, nas=b"nas-d", time=61)
    wait_rows(d, "SELECT 1 FROM cdrs WHERE session_id = $1", "nas-d|a\\x00")
    wait_rows(d, "SELECT 1 FROM cdrs WHERE session_id = $1", "nas-d|a\\\\x00")
    rows = pg(d, "SELECT DISTINCT session_id FROM usage WHERE session_id LIKE 'nas-d|a%'")
    assert len(rows) == 2, [r["session_id"] for r in rows]
    _normal_session_flushes(d, b"normal-after")
    assert dead_letters(d) == []
    stop_ok(d)


def test_d_nul_in_diameter_session_id(make_daemon: Callable[..., Daemon]) -> None:
    """A NUL is valid UTF-8, so a UTF8String Session-Id may carry it: echoed as sent, stored escaped."""
    d = make_daemon()
    gy = Gy(d)
    sid = b"reg.pgw.test;\x00;d"
    try:
        cca = gy.ccr(sid, c.INITIAL, 0, subscriber=REG_ALIAS.encode(), called=CALLED)
        assert w.result_code(cca) == 2001
        assert dc.decode(cca).first(c.SESSION_ID).data == sid
        assert w.result_code(gy.ccr(sid, c.TERMINATION, 1, subscriber=None, requested=None, used=61)) == 2001
        assert w.result_code(gy.ccr(b"reg.pgw.test;normal", c.EVENT, 0, subscriber=REG_ALIAS.encode(),
                                    called=CALLED, requested=None, used=61)) == 2001
    finally:
        gy.close()
    alive(d)
    wait_rows(d, "SELECT 1 FROM usage WHERE session_id = $1", "reg.pgw.test;\\x00;d")
    wait_rows(d, "SELECT 1 FROM cdrs WHERE session_id = $1", "reg.pgw.test;\\x00;d")
    wait_rows(d, "SELECT 1 FROM usage WHERE session_id = $1", "reg.pgw.test;normal")
    assert dead_letters(d) == []
    stop_ok(d)


# -- e. Interim-Update with Acct-Session-Time 0xFFFFFFFF ----------------------------------------------


def test_e_interim_overuse_is_capped(make_daemon: Callable[..., Daemon]) -> None:
    """A session granted 600 s reports 4,294,967,295 s: at most grant + 600 s are debited (was: ~10^9 s)."""
    d = make_daemon("[charging]\nmax_grant_seconds = 600\n")
    before = Decimal(account(d)["balance"])
    reply = access(d, nas=b"nas-e", session=b"e1")
    grant = session_timeout(reply)
    assert grant == 600
    accounting(d, w.START, ident=2, session=b"e1", nas=b"nas-e")
    accounting(d, w.INTERIM, ident=3, session=b"e1", nas=b"nas-e", time=0xFFFFFFFF)
    alive(d)
    debited = before - Decimal(account(d)["balance"])
    cap = price(d, grant + OVERUSE)
    assert debited <= cap, f"debited {debited} EUR; grant {grant} s + {OVERUSE} s cost {cap}"
    wait_rows(d, "SELECT 1 FROM usage WHERE session_id = $1", "nas-e|e1")
    stop_ok(d)


# -- f. found by the campaign itself (docs/fuzzing.md) --------------------------------------------------


def test_f_balance_beyond_1e14_micro_units(make_daemon: Callable[..., Daemon]) -> None:
    """A balance of 100,000,001.00 (1.00000001e14 micro-units): Lua renders that number as
    ``1.00000001e+14`` in the stored outcome and the usage record; the core's int() raised, so every
    request of the account failed (RADIUS: silence, Diameter: 5012) and its records were dead letters."""
    d = make_daemon()
    d.ocsctl("topup", REG_USER, "100000000.00", "--reference", "f-big")
    access(d, nas=b"nas-f", session=b"f1")
    accounting(d, w.START, ident=2, session=b"f1", nas=b"nas-f")
    accounting(d, w.STOP, ident=3, session=b"f1", nas=b"nas-f", time=61)
    gy = Gy(d)
    try:
        assert w.result_code(gy.ccr(b"reg.pgw.test;f", c.INITIAL, 0, subscriber=REG_ALIAS.encode(),
                                    called=CALLED)) == 2001
    finally:
        gy.close()
    wait_rows(d, "SELECT 1 FROM usage WHERE session_id = $1", "nas-f|f1")
    assert dead_letters(d) == []
    stop_ok(d)


def test_f_huge_octets_of_unknown_sessions_keep_the_account_usable(make_daemon: Callable[..., Daemon]) -> None:
    """CCR-U of sessions ocsd never saw with CC-Total-Octets 2^53-1 (accepted: gy.MAX_UNITS) are charged
    ~85.9 million EUR each on the data tariff; two put the balance beyond -1e14 micro-units and from then
    on the account answered only 5012.  Fixed: such usage is bounded, or at least the account still gets
    a definite answer (2001 or 4012), and every record reaches PostgreSQL."""
    d = make_daemon()
    gy = Gy(d)
    try:
        for i in range(3):
            res = w.result_code(gy.ccr(f"reg.pgw.test;orphan;{i}".encode(), c.UPDATE, 1,
                                       subscriber=REG_ALIAS.encode(), octets=True, rg=1, used=2**53 - 1))
            assert res in (5002, 5004, 4012), res  # unknown session charged, or the value refused
        res = w.result_code(gy.ccr(b"reg.pgw.test;after", c.INITIAL, 0, subscriber=REG_ALIAS.encode(),
                                   called=CALLED))
        assert res in (2001, 4012), f"{res}: the account no longer gets a definite answer"
    finally:
        gy.close()
    alive(d)
    end = time.monotonic() + FLUSH_WAIT
    while time.monotonic() < end and pg(d, "SELECT count(*) AS n FROM usage")[0]["n"] < 1:
        time.sleep(0.2)
    assert dead_letters(d) == []
    stop_ok(d)


def test_f_rating_group_beyond_int32_reaches_postgres(make_daemon: Callable[..., Daemon]) -> None:
    """Rating-Group is an Unsigned32 (RFC 4006 section 8.29), ``usage.rating_group``/``cdrs.rating_group``
    are integer: a record with Rating-Group >= 2^31 is refused by PostgreSQL (now a dead letter; before
    the dead-letter table it stopped the flush)."""
    d = make_daemon()
    gy = Gy(d)
    sid = b"reg.pgw.test;rg"
    try:
        # data rated by the destination's prefix (``1``, a data row of the tariff): charged, so recorded
        res = w.result_code(gy.ccr(sid, c.UPDATE, 1, subscriber=REG_ALIAS.encode(), octets=True, rg=2**31,
                                   called=b"12125550100", requested=None, used=2**20))
        assert res in (5002, 5031), res
    finally:
        gy.close()
    alive(d)
    if res == 5002:  # charged as usage of an unknown session: the record must be stored as it is
        rows = wait_rows(d, "SELECT rating_group FROM usage WHERE session_id = $1", sid.decode())
        assert rows[0]["rating_group"] == 2**31
    assert dead_letters(d) == []
    stop_ok(d)


def test_f_connection_without_cer_is_closed(make_daemon: Callable[..., Daemon]) -> None:
    """A TCP connection that never sends a CER (nothing, or half a header) was kept forever: the
    watchdog only acts on open peers, so idle connections could use up ocsd's descriptors.  With
    watchdog_seconds = 6 it must be closed within a few watchdog periods."""
    d = make_daemon(edit=lambda t: t.replace("watchdog_seconds = 30", "watchdog_seconds = 6"))
    silent = socket.create_connection(("127.0.0.1", d.ports["diameter"]), timeout=30)
    half = socket.create_connection(("127.0.0.1", d.ports["diameter"]), timeout=30)
    half.sendall(b"\x01\x00\x01")
    try:
        for s in (silent, half):
            try:
                data = s.recv(1)
            except TimeoutError:
                data = None
            except OSError:
                data = b""
            assert data == b"", "ocsd kept a connection without CER open for 30 s (watchdog 6 s)"
    finally:
        silent.close()
        half.close()
    stop_ok(d)


def test_f_start_keeps_the_hold_of_an_access_request_with_acct_session_id(
        make_daemon: Callable[..., Daemon]) -> None:
    """An Access-Request that carries Acct-Session-Id (Cisco: ``radius-server attribute 44
    include-in-access-req``, the example in docs/radius.md) holds under ``NAS|Acct-Session-Id`` with
    the start timeout.  Its Accounting-Start then found no hold to bind, initiate() met the existing
    session ("invalid") and the hold kept the start timeout: the reaper ended the call mid-way
    (CDR cause ``expired``, hold released, later Interims charged as an unknown session)."""
    def edit(text: str) -> str:
        return text.replace("[radius]\n", "[radius]\nstart_timeout_seconds = 3\n").replace(
            "[redis]", "[charging]\nreaper_interval_seconds = 1\n[redis]")

    d = make_daemon(edit=edit)
    access(d, nas=b"nas-g", session=b"g1")
    accounting(d, w.START, ident=2, session=b"g1", nas=b"nas-g")
    time.sleep(8)  # well past start_timeout_seconds + the reaper period (grace is added to call holds)
    expired = pg(d, "SELECT termination_cause FROM cdrs WHERE session_id = $1", "nas-g|g1")
    assert expired == [], f"the call was ended after its Start: {[dict(r) for r in expired]}"
    assert Decimal(account(d)["reserved"]) > 0, "the hold of a started call was released"
    accounting(d, w.STOP, ident=3, session=b"g1", nas=b"nas-g", time=30)
    rows = wait_rows(d, "SELECT termination_cause FROM cdrs WHERE session_id = $1", "nas-g|g1")
    assert rows[0]["termination_cause"] != "expired"
    stop_ok(d)
