"""Every node-local cache honours its bound from ``[cache]`` (docs/performance.md, "Memory").

No Redis here: the stores get a stand-in pipeline that answers the few commands they send.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import generate_latest

from ocs import config
from ocs.metrics import MAX_SERIES, OVERFLOW, Metrics
from ocs.radius.dedup import IN_PROGRESS, DuplicateCache
from ocs.rating.tariff import RateRow, Tariff
from ocs.store.accounts_view import AccountView
from ocs.store.keys import Keys
from ocs.store.pipeline import AutoPipeline
from ocs.store.session_state import SessionState, SessionStates
from ocs.store.tariff_cache import MemoryTariffSource, TariffCache


class FakeRedis:
    """Stands in for redis-py behind a real AutoPipeline (a mypyc-compiled store takes no duck-typed pipeline).

    Answers HMGET on ``account:*`` with a prepaid account, everything else with None.
    """

    def __init__(self) -> None:
        self.commands = 0

    def pipeline(self, transaction: bool = True) -> FakeRedisPipeline:
        return FakeRedisPipeline(self)


class FakeRedisPipeline:
    def __init__(self, redis: FakeRedis) -> None:
        self.redis = redis
        self.sent: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> None:
        self.sent.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        self.redis.commands += len(self.sent)
        return [[b"prepaid", b"active", b"t", b"EUR", b"", b"100", b"0", b"0"]
                if args[0] == "HMGET" and ":acct:" in args[1] else None for args in self.sent]


def fake_pipe(redis: FakeRedis | None = None) -> AutoPipeline:
    return AutoPipeline(redis or FakeRedis())  # type: ignore[arg-type]


def test_config_cache_table_defaults_and_override() -> None:
    cfg = config.from_mapping({}, env={})
    assert cfg.cache == config.CacheConfig(sessions=50000, accounts=10000, radius_duplicates=50000,
                                           tariff_versions=16)
    cfg = config.from_mapping({"cache": {"sessions": 7, "radius_duplicates": 0}}, env={})
    assert (cfg.cache.sessions, cfg.cache.radius_duplicates, cfg.cache.accounts) == (7, 0, 10000)
    with pytest.raises(config.ConfigError, match=r"^cache\.sessions"):
        config.from_mapping({"cache": {"sessions": -1}}, env={})


def test_duplicate_cache_keeps_at_most_its_bound_oldest_out() -> None:
    cache = DuplicateCache(ttl=30, max_entries=100)
    for i in range(1000):
        key = ("127.0.0.1", 1000, 4, i % 256, i.to_bytes(16, "big"))
        cache.begin(key)
        cache.finish(key, b"reply-%d" % i)
        assert len(cache.entries) <= 100
    assert cache.get(("127.0.0.1", 1000, 4, 999 % 256, (999).to_bytes(16, "big"))) == b"reply-999"
    assert cache.get(("127.0.0.1", 1000, 4, 0, (0).to_bytes(16, "big"))) is None


def test_duplicate_cache_in_progress_and_evicted_while_handled() -> None:
    cache = DuplicateCache(ttl=30, max_entries=2)
    a, b, c = (("h", 1, 4, n, bytes(16)) for n in range(3))
    cache.begin(a)
    assert cache.get(a) == IN_PROGRESS
    cache.begin(b)
    cache.begin(c)  # a is evicted while still being handled
    cache.finish(a, b"late")  # ... and its reply is not put back beyond the bound
    assert len(cache.entries) == 2 and cache.get(a) is None


def test_duplicate_cache_zero_disables() -> None:
    cache = DuplicateCache(ttl=30, max_entries=0)
    key = ("h", 1, 4, 1, bytes(16))
    cache.begin(key)
    cache.finish(key, b"x")
    assert len(cache.entries) == 0 and cache.get(key) is None


def _state(i: int) -> SessionState:
    return SessionState("acct", f"s{i}", 0, {"used": "0"})


def test_session_caches_keep_at_most_their_bound_least_recently_written_out() -> None:
    store = SessionStates(fake_pipe(), Keys("t:"), cache_entries=50)
    for i in range(500):
        store.keep(_state(i))
        store.remember("alice", f"s{i}", "acct")
        store.keep(_state(0))  # written again and again: stays
        store.remember("alice", "s0", "acct")
        assert len(store._states) <= 50 and len(store._owner) <= 50
    assert ("acct", "s0", 0) in store._states and ("alice", "s0") in store._owner
    assert ("acct", "s499", 0) in store._states and ("acct", "s1", 0) not in store._states
    store.forget("acct", "s0", 0)
    assert ("acct", "s0", 0) not in store._states


async def test_account_view_keeps_at_most_its_bound() -> None:
    pipe = FakeRedis()
    view = AccountView(fake_pipe(pipe), Keys("t:"), max_entries=20)
    for i in range(200):
        found = await view.resolve(f"a{i}")
        assert found is not None and found.id == f"a{i}"
        assert len(view._cache) <= 20
    before = pipe.commands
    assert await view.resolve("a199") is not None  # a recent one is still cached
    assert pipe.commands == before
    assert "a0" not in view._cache


async def test_account_view_drops_expired_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocs.store import accounts_view

    clock = [1000.0]
    monkeypatch.setattr(accounts_view.time, "monotonic", lambda: clock[0])
    view = AccountView(fake_pipe(), Keys("t:"), max_entries=1000)
    for i in range(50):
        await view.resolve(f"a{i}")
    clock[0] += 2.0  # all of them a second old and more
    await view.resolve("fresh")
    assert list(view._cache) == ["fresh"]


def _tariff(name: str, version: int) -> Tariff:
    return Tariff(name=name, version=version, currency="EUR", timezone="UTC",
                  rows=(RateRow("49", "Germany", 60_000, 0, 60, 60, line=2),))


async def test_tariff_cache_keeps_at_most_its_bound_but_every_current_version() -> None:
    src = MemoryTariffSource()
    for v in range(1, 11):
        src.add(_tariff("t", v))
    for name in ("u", "w"):
        src.add(_tariff(name, 1))
    cache = TariffCache(src, fake_pipe(), Keys("t:"), max_versions=4)
    assert await cache.preload() == 3  # current: t v10, u v1, w v1
    for v in range(1, 11):  # sessions still rating on old versions
        assert (await cache.get("t", v)).tariff.version == v
        assert len(cache._compiled) <= 4
        assert {("t", 10), ("u", 1), ("w", 1)} <= set(cache._compiled)
    assert ("t", 1) not in cache._compiled  # the oldest old version went first
    assert (await cache.get("t", 1)).tariff.version == 1  # and comes back on demand


async def test_tariff_cache_bound_below_the_number_of_tariffs_keeps_current_ones() -> None:
    src = MemoryTariffSource()
    for n in range(5):
        src.add(_tariff(f"t{n}", 1))
    cache = TariffCache(src, fake_pipe(), Keys("t:"), max_versions=2)
    await cache.preload()
    assert len(cache._compiled) == 5  # current versions are never dropped (no reload thrash)


def test_metric_families_keep_at_most_max_series() -> None:
    m = Metrics()
    for code in range(MAX_SERIES + 500):  # e.g. a Diameter command code from the wire as a label
        m.requests.labels("diameter", str(code), "3007").inc()
        m.child(m.dropped, "diameter", f"reason-{code}").inc()
    assert len(m.requests._metrics) == MAX_SERIES + 1  # the cap, plus the ("other", ...) series
    assert len(m.dropped._metrics) == MAX_SERIES + 1
    assert len(m._children) <= MAX_SERIES
    text = generate_latest(m.registry).decode()
    line = f'ocs_requests_total{{protocol="{OVERFLOW}",result="{OVERFLOW}",type="{OVERFLOW}"}} 500.0'
    assert line in text
    m.requests.labels("diameter", "0", "3007").inc()  # an existing series still counts as itself
    assert m.requests.labels("diameter", "0", "3007")._value.get() == 2.0


def test_soak_packets_are_what_ocsd_accepts() -> None:
    """bench/soak.py encodes its own packets (pyrad is too slow for millions): our codec must accept them."""
    from bench.soak import access_request, accounting_request
    from ocs.radius import codec

    secret = b"testing123"
    pkt = codec.decode(access_request(7, "soak1", "soak-pw-1", "4930000000001", secret))
    assert (pkt.code, pkt.ident, pkt.text(codec.USER_NAME)) == (codec.ACCESS_REQUEST, 7, "soak1")
    assert codec.message_authenticator_ok(pkt, secret)
    assert codec.pap_password(pkt, secret) == b"soak-pw-1"
    pkt = codec.decode(accounting_request(9, 2, "soak-x-1", "soak1", "4930000000001", seconds=30, cause=1,
                                          secret=secret))
    assert codec.accounting_authenticator_ok(pkt, secret)
    assert (pkt.integer(codec.ACCT_STATUS_TYPE), pkt.integer(codec.ACCT_SESSION_TIME)) == (2, 30)
