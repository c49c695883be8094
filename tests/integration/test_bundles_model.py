"""Property test: the scripts against a pure Python model of bundle + money (docs/wholesale.md "Bundles").

Random interleavings of two sessions' reserve / update / terminate / retransmission on one prepaid
account with a bundle: every answer and every counter equals the model's (which holds included seconds
first, then money for the rest of the cap, and rates the money part as one call of the seconds not
included), the bundle is never overspent (used + held <= quota), money is never overspent (the balance
never goes below zero while usage stays within grants), and balance = top-ups - settled charges.
A second property runs the two sessions truly concurrently and checks the invariants.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import date

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ocs.app import build_core
from ocs.charging import Charging
from ocs.metrics import Metrics
from ocs.model import Outcome, Status
from ocs.rating import bundles as rb
from ocs.rating.engine import CompiledTariff, GrantPlan, Selection, affordable
from ocs.store.tariff_cache import MemoryTariffSource
from tests.conftest import REDIS_URL
from tests.support.balance import T0, demo_tariff, make_cfg, provision, voice

pytestmark = pytest.mark.integration
PK = "2026-11:B"


def blocks_within(plan: GrantPlan, units: int) -> int:
    """Whole blocks of ``plan`` within ``units`` (the Lua ``blocks_within``)."""
    k, left = 0, units
    for u, _rate, count in plan.segments:
        take = min(count, left // u)
        k, left = k + take, left - take * u
        if take < count:
            break
    return k


@dataclass
class Sess:
    used: int = 0
    iu: int = 0  # included seconds consumed
    ih: int = 0  # included seconds held
    hold: int = 0  # money held
    hunits: int = 0
    chg: int = 0
    open: bool = True


@dataclass
class Model:
    tariff: CompiledTariff
    sel: Selection
    bal: int
    quota: int
    rsv: int = 0
    u: int = 0
    h: int = 0
    settled: int = 0
    sessions: dict[str, Sess] = field(default_factory=dict)

    def _grant(self, s: Sess, cap: int) -> tuple[int, bool]:
        """Included first, then money for the rest of the cap: (total units, final)."""
        money = s.used - s.iu
        plan = self.tariff.grant_plan(self.sel, money, cap)
        s.ih = max(0, min(cap, self.quota - self.u - self.h))
        if s.ih:
            plan = dataclasses.replace(plan, max_blocks=min(plan.max_blocks, blocks_within(plan, cap - s.ih)))
        k, units, hold = affordable(plan, max(0, self.bal - self.rsv))
        self.h += s.ih
        self.rsv += hold
        s.hold, s.hunits = hold, units + s.ih
        return s.hunits, k < plan.max_blocks

    def reserve(self, sid: str, cap: int) -> tuple[Status, int, int]:
        s = Sess()
        units, _final = self._grant(s, cap)
        if units == 0:
            return Status.OUT_OF_CREDIT, 0, 0
        self.sessions[sid] = s
        return Status.GRANTED, units, s.hold

    def debit(self, sid: str, delta: int, cap: int | None) -> tuple[Status, int, int]:
        s = self.sessions[sid]
        inc_now = min(delta, s.ih)
        s.used += delta
        s.iu += inc_now
        charge = self.tariff.rate(self.sel, s.used - s.iu).charge
        amount, s.chg = charge - s.chg, charge
        self.bal -= amount
        self.settled += amount
        self.rsv -= s.hold
        self.u += inc_now
        self.h -= s.ih
        s.ih = s.hold = s.hunits = 0
        if cap is None:
            s.open = False
            return Status.GRANTED, 0, amount
        units, _final = self._grant(s, cap)
        return (Status.GRANTED if units else Status.OUT_OF_CREDIT), units, amount


OP = st.tuples(st.integers(0, 1), st.sampled_from(["reserve", "update", "update", "update", "terminate", "again"]),
               st.integers(0, 100), st.integers(1, 400))


async def _state(r: aioredis.Redis, core: Charging) -> tuple[int, int, int, int]:
    bal, rsv = await r.hmget(core.keys.account("m"), "bal", "rsv")
    u, h = await r.hmget(core.keys.bundles("m"), f"u:{PK}", f"h:{PK}")
    return int(bal), int(rsv), int(u or 0), int(h or 0)


async def _core(prefix: str) -> tuple[aioredis.Redis, Charging]:
    r = aioredis.Redis.from_url(REDIS_URL, decode_responses=False)
    src = MemoryTariffSource()
    src.add(demo_tariff())
    core = build_core(make_cfg(prefix), r, Metrics(), src)
    await core.start()
    return r, core


async def _cleanup(r: aioredis.Redis, core: Charging, prefix: str) -> None:
    await core.close()
    keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await r.delete(*keys)
    await r.aclose()


async def _setup(r: aioredis.Redis, core: Charging, balance: int, quota: int) -> None:
    await provision(r, core.keys, "m", balance)
    await r.hset(core.keys.account("m"), "bun", rb.encode([rb.Bundle("B", "", quota, date(2026, 11, 1), None)]))


async def _run_sequence(ops: list[tuple[int, str, int, int]], balance: int, quota: int, dest: str) -> None:
    prefix = f"ocstest:{uuid.uuid4().hex[:8]}:"
    r, core = await _core(prefix)
    try:
        await _setup(r, core, balance, quota)
        tariff = await core.tariffs.current("t")
        sel = tariff.select(dest, T0)
        assert sel is not None
        model = Model(tariff, sel, balance, quota)
        gen, rq, last = [0, 0], [0, 0], [None, None]
        done = 0
        for who, wanted, pct, cap in [(0, "reserve", 0, ops[0][3]), (1, "reserve", 0, ops[-1][3]), *ops]:
            sid = f"s{who}.{gen[who]}"
            s = model.sessions.get(sid)
            if wanted == "again":  # a retransmission of this session's last request: its answer, nothing moved
                if last[who] is None:
                    continue
                before = await _state(r, core)
                req, first = last[who]
                again = await (core.initiate(req) if req.request_number == 0 else
                               core.terminate(req) if req.requested_units is None else core.update(req))
                assert again.duplicate and _key(again) == _key(first)
                assert await _state(r, core) == before
                continue
            is_open = s is not None and s.open  # an update of a closed session opens one, a reserve of an open one updates
            op = "update" if wanted == "reserve" and is_open else "reserve" if not is_open else wanted
            if op == "reserve":
                gen[who] += 1
                sid, rq[who] = f"s{who}.{gen[who]}", 0
                req = voice(sid, 0, sub="m", req=cap, dest=dest)
                out = await core.initiate(req)
                want = model.reserve(sid, cap)
            else:
                assert s is not None
                rq[who] += 1
                delta = s.hunits * pct // 100  # within the grant: no overuse
                terminate = op == "terminate"
                req = voice(sid, rq[who], sub="m", used=delta, req=None if terminate else cap, dest=dest)
                out = await (core.terminate(req) if terminate else core.update(req))
                want = model.debit(sid, delta, None if terminate else cap)
            last[who] = (req, out)
            done += 1
            got = (out.status, out.granted_units, out.reserved if op == "reserve" else out.charged)
            assert got == want, (op, sid, got, want)
            assert await _state(r, core) == (model.bal, model.rsv, model.u, model.h)
            assert model.u + model.h <= quota and model.bal >= 0 and model.rsv <= model.bal
            assert model.bal == balance - model.settled
        event(f"requests: {min(done // 10 * 10, 30)}+")
    finally:
        await _cleanup(r, core, prefix)


def _key(o: Outcome) -> tuple[object, ...]:
    return o.status, o.granted_units, o.charged, o.reserved, o.final


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OP, min_size=5, max_size=40), balance=st.integers(0, 2_000_000),
       quota=st.integers(0, 900), dest=st.sampled_from(["4930123456", "4915112345", "441234"]))
def test_scripts_match_the_bundle_and_money_model(ops: list[tuple[int, str, int, int]], balance: int, quota: int,
                                                  dest: str) -> None:
    asyncio.run(_run_sequence(ops, balance, quota, dest))


async def _run_concurrent(steps: list[tuple[int, int]], balance: int, quota: int) -> None:
    prefix = f"ocstest:{uuid.uuid4().hex[:8]}:"
    r, core = await _core(prefix)
    try:
        await _setup(r, core, balance, quota)

        async def one(who: int) -> int:
            charged, granted, sid = 0, 0, f"c{who}"
            out = await core.initiate(voice(sid, 0, sub="m", req=steps[0][1]))
            granted = out.granted_units if out.status is Status.GRANTED else 0
            if not granted:
                return 0
            for n, (pct, cap) in enumerate(steps[1:], start=1):
                used = granted * pct // 100
                reqs = [voice(sid, n, sub="m", used=used, req=cap)] * 2  # a retransmission racing the original
                outs = await asyncio.gather(*(core.update(q) for q in reqs))
                assert _key(outs[0]) == _key(outs[1])
                charged += outs[0].charged
                granted = outs[0].granted_units
            end = await core.terminate(voice(sid, len(steps), sub="m", used=granted))
            return charged + end.charged

        charged = sum(await asyncio.gather(one(0), one(1)))
        bal, rsv, u, h = await _state(r, core)
        assert (rsv, h) == (0, 0) and u <= quota
        assert bal == balance - charged and bal >= 0
    finally:
        await _cleanup(r, core, prefix)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(0, 100), st.integers(1, 400)), min_size=1, max_size=6),
       balance=st.integers(0, 1_000_000), quota=st.integers(0, 600))
def test_concurrent_sessions_and_retransmissions_never_overspend(steps: list[tuple[int, int]], balance: int,
                                                                 quota: int) -> None:
    asyncio.run(_run_concurrent(steps, balance, quota))
