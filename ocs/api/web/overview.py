"""What the dashboard's first page and the self-care page show, read cheaply.

- live sessions: the shard expiry indexes' sizes (every open session with a hold is in one; 16
  ZCARDs in one pipeline), or a reseller's subscribers' open sessions;
- requests per second: the charging requests this ocsd answered since the previous look, from its
  own request counter (``Services.requests_total``, given by the daemon; other nodes count theirs);
- today's revenue and the hourly chart: the report rollups (docs/reports.md), never the CDRs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from ocs import money
from ocs.api.deps import Services, reseller_of, visible_sessions
from ocs.api.tokens import Principal
from ocs.billing import cdrs
from ocs.store.provision import Conn


async def _live(svc: Services, who: Principal) -> int:
    if reseller_of(who) is not None:
        return len(await visible_sessions(svc, who, None))
    pipe = svc.redis.pipeline(transaction=False)
    for shard in range(svc.keys.shards):
        pipe.zcard(svc.keys.expiry(shard))
    return int(sum(await pipe.execute()))


def _rate(app: FastAPI, total: Callable[[], float] | None) -> float | None:
    """Requests/s since the last look (at least 1 s apart), from the daemon's counter if it gave one."""
    if total is None:
        return None
    now, count = time.monotonic(), total()
    last = getattr(app.state, "rate_sample", None)
    if last is None or now - last[0] >= 1:
        app.state.rate_sample = (now, count)
    if last is None or now <= last[0]:
        return None
    rate = (count - last[1]) / (now - last[0])
    app.state.last_rate = rate if now - last[0] >= 1 else getattr(app.state, "last_rate", rate)
    return float(app.state.last_rate)


async def _today(conn: Conn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await conn.fetch(
        "SELECT bucket, currency, sum(attempts) AS attempts, sum(answered) AS answered, sum(revenue) AS revenue"
        " FROM report_rollup WHERE dim = 'hour' AND bucket >= $1 AND bucket < $2 GROUP BY 1, 2 ORDER BY 1, 2",
        start, start + timedelta(days=1))
    totals: dict[str, int] = {}
    hours: dict[str, list[int]] = {}
    for r in rows:
        cur = r["currency"] or "-"
        totals[cur] = totals.get(cur, 0) + int(r["revenue"])
        hours.setdefault(cur, [0] * 24)[r["bucket"].astimezone(UTC).hour] += int(r["revenue"])
    main = max(totals, key=lambda c: totals[c]) if totals else ""
    chart = {"labels": [f"{h:02d}:00" for h in range(24)], "currency": main,
             "revenue": [money.format(v) for v in hours.get(main, [0] * 24)]}
    attempts = sum(int(r["attempts"]) for r in rows)
    answered = sum(int(r["answered"]) for r in rows)
    revenue = [{"currency": c, "amount": money.format(v)} for c, v in sorted(totals.items()) if c != "-"]
    return revenue, {"chart": chart, "attempts": attempts, "answered": answered,
                     "asr": f"{100 * answered / attempts:.1f}" if attempts else ""}


async def facts(app: FastAPI, svc: Services, who: Principal) -> dict[str, Any]:
    rate = _rate(app, svc.requests_total)
    out: dict[str, Any] = {"live": await _live(svc, who), "rate": "" if rate is None else f"{rate:,.1f}"}
    if reseller_of(who) is None:
        async with svc.pool.acquire() as conn:
            out["revenue"], out["today"] = await _today(conn)
    return out


async def recent_calls(conn: Conn, account: str, limit: int = 20) -> list[dict[str, Any]]:
    """An account's latest CDRs, newest first (the account page, self-care)."""
    rows = await conn.fetch("SELECT * FROM cdrs WHERE account = $1 ORDER BY start_time DESC LIMIT $2", account, limit)
    return [cdrs.document(r) for r in rows]
