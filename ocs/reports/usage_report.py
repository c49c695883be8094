"""Usage reports: attempts, answered calls, minutes, ASR, ACD, revenue, cost and profit per group.

The numbers come from PostgreSQL.  Whole-day periods (the usual case) read the rollups the cdrs
triggers keep (``015_report_rollups.sql``): a month of ten million CDRs is a few thousand rollup
rows.  A period that does not start and end on a UTC day (an hour for ``--by hour``), or a report
of one account, reads the CDRs themselves through their (start_time) and (account, start_time)
indexes.  Both paths sum the same quantities, so a report's totals equal its CDRs.

Definitions (docs/reports.md): attempts = CDRs (refused attempts are CDRs of duration 0);
answered = CDRs with a duration; minutes = answered voice seconds / 60; ASR = answered / attempts
in percent; ACD = answered seconds / answered calls; revenue = charges; cost = provider costs
converted to the charge's currency at the FX rate in force at the end of the period; profit =
revenue - cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ocs import money
from ocs.money import div_round_half_up

Conn = asyncpg.Connection | PoolConnectionProxy

BY = ("account", "destination", "provider", "reseller", "day", "hour")
SERVICES = ("voice", "data", "sms", "all")
COLUMNS = ("attempts", "answered", "minutes", "asr", "acd", "revenue", "cost", "profit", "currency")
TOTAL = "TOTAL"


class ReportError(ValueError):
    """A report that cannot be made as asked (the message names what is wrong)."""


@dataclass(frozen=True)
class Query:
    start: datetime  # inclusive, aware
    end: datetime  # exclusive, aware
    by: str
    account: str | None = None
    service: str = "voice"

    def check(self) -> None:
        if self.by not in BY:
            raise ReportError(f"--by must be one of {', '.join(BY)}, not {self.by!r}")
        if self.service not in SERVICES:
            raise ReportError(f"--service must be one of {', '.join(SERVICES)}, not {self.service!r}")
        if self.start >= self.end:
            raise ReportError(f"the period is empty or the wrong way round: --from {self.start.isoformat()}"
                              f" is not before --to {self.end.isoformat()}")

    def from_rollups(self) -> bool:
        """Whole buckets only: UTC days (hours for the hourly dimension) and no account filter."""
        unit = timedelta(hours=1) if self.by in ("day", "hour") else timedelta(days=1)
        epoch = datetime(2000, 1, 1, tzinfo=UTC)
        aligned = all((t - epoch) % unit == timedelta(0) for t in (self.start, self.end))
        return aligned and self.account is None


@dataclass
class Line:
    """One group of one currency; amounts in micro-units of ``currency``."""

    group: str
    currency: str
    attempts: int = 0
    answered: int = 0
    seconds: int = 0
    revenue: int = 0
    cost: int | None = 0  # None: a cost in a currency with no FX rate to ``currency``
    unconverted: dict[str, int] = field(default_factory=dict)

    def add(self, other: Line) -> None:
        self.attempts += other.attempts
        self.answered += other.answered
        self.seconds += other.seconds
        self.revenue += other.revenue
        self.cost = None if self.cost is None or other.cost is None else self.cost + other.cost
        for cur, amount in other.unconverted.items():
            self.unconverted[cur] = self.unconverted.get(cur, 0) + amount

    @property
    def profit(self) -> int | None:
        return None if self.cost is None else self.revenue - self.cost

    def document(self) -> dict[str, Any]:
        """The line as strings and integers (amounts as decimal strings, like every ocsctl amount)."""
        asr = _ratio(Decimal(self.answered * 100), self.attempts, "0.01")
        acd = _ratio(Decimal(self.seconds), self.answered, "0.1")
        return {"group": self.group, "attempts": self.attempts, "answered": self.answered,
                "minutes": str(_ratio(Decimal(self.seconds), 60, "0.01")),
                "asr": "" if asr is None else str(asr), "acd": "" if acd is None else str(acd),
                "revenue": money.format(self.revenue, places=6),
                "cost": "" if self.cost is None else money.format(self.cost, places=6),
                "profit": "" if self.profit is None else money.format(self.profit, places=6),
                "currency": self.currency}


def _ratio(num: Decimal, den: int, places: str) -> Decimal | None:
    return None if den == 0 else (num / den).quantize(Decimal(places), rounding=ROUND_HALF_UP)


# -- SQL ------------------------------------------------------------------------------------------

_SUMS = "sum(attempts), sum(answered), sum(seconds), sum(revenue), sum(cost)"
_CDR_SUMS = ("count(*), count(*) FILTER (WHERE duration > 0),"
             " coalesce(sum(duration) FILTER (WHERE service = 'voice'), 0), coalesce(sum(charge), 0),"
             " coalesce(sum(cost), 0)")
_ROLLUP_GROUP = {"day": ("hour", "date_trunc('day', bucket, 'UTC')"), "hour": ("hour", "bucket")}
_CDR_GROUP = {"day": "date_trunc('day', start_time, 'UTC')", "hour": "date_trunc('hour', start_time, 'UTC')"}


def _sql(q: Query) -> tuple[str, list[Any]]:
    if q.from_rollups():
        dim, expr = _ROLLUP_GROUP.get(q.by, (q.by, "key"))
        return (f"SELECT {expr} AS grp, currency, cost_currency, {_SUMS} FROM report_rollup"
                " WHERE dim = $1 AND bucket >= $2 AND bucket < $3 AND ($4::text = 'all' OR service = $4)"
                " GROUP BY 1, 2, 3 HAVING sum(attempts) <> 0",  # rows all of whose CDRs were deleted
                [dim, q.start, q.end, q.service])
    expr = _CDR_GROUP.get(q.by, q.by)
    where = "" if q.by != "reseller" else " AND reseller <> ''"
    return (f"SELECT {expr} AS grp, rtrim(currency) AS currency, cost_currency, {_CDR_SUMS} FROM cdrs"
            " WHERE start_time >= $1 AND start_time < $2 AND ($3::text = 'all' OR service = $3)"
            f" AND ($4::text IS NULL OR account = $4){where} GROUP BY 1, 2, 3",
            [q.start, q.end, q.service, q.account])


def _label(by: str, raw: object) -> str:
    if isinstance(raw, datetime):
        t = raw.astimezone(UTC)
        return t.strftime("%Y-%m-%d") if by == "day" else t.strftime("%Y-%m-%dT%H:00Z")
    return str(raw) if raw else "(none)"


async def _fx_rate(conn: Conn, base: str, quote: str, at: datetime) -> Fraction | None:
    """1 ``base`` in ``quote`` at ``at`` from the fx_rates table (direct pair, else the inverse)."""
    if not await conn.fetchval("SELECT to_regclass('fx_rates') IS NOT NULL"):
        return None
    sql = ("SELECT rate::text FROM fx_rates WHERE base = $1 AND quote = $2 AND valid_from <= $3"
           " ORDER BY valid_from DESC LIMIT 1")
    direct = await conn.fetchval(sql, base, quote, at)
    if direct is not None:
        return Fraction(direct)
    inverse = await conn.fetchval(sql, quote, base, at)
    return None if inverse is None else 1 / Fraction(inverse)


async def usage(conn: Conn, q: Query) -> list[Line]:
    """The report's lines, then one TOTAL line per currency."""
    q.check()
    sql, args = _sql(q)
    lines: dict[tuple[str, str], Line] = {}
    rates: dict[tuple[str, str], Fraction | None] = {}
    for r in await conn.fetch(sql, *args):
        cur, cost_cur = r["currency"].strip(), r["cost_currency"].strip()
        part = Line(_label(q.by, r["grp"]), cur, int(r[3]), int(r[4]), int(r[5]), int(r[6]), int(r[7]))
        if part.cost and cost_cur not in ("", cur):
            if (cost_cur, cur) not in rates:
                rates[(cost_cur, cur)] = await _fx_rate(conn, cost_cur, cur, q.end)
            rate = rates[(cost_cur, cur)]
            part.unconverted = {cost_cur: part.cost}
            part.cost = None if rate is None else div_round_half_up(part.cost * rate.numerator, rate.denominator)
        lines.setdefault((part.group, cur), Line(part.group, cur)).add(part)
    return _ordered(q.by, list(lines.values()))


def _ordered(by: str, lines: list[Line]) -> list[Line]:
    if by in ("day", "hour"):
        lines.sort(key=lambda ln: (ln.group, ln.currency))
    else:
        lines.sort(key=lambda ln: (ln.currency, -ln.revenue, ln.group))
    totals: dict[str, Line] = {}
    for ln in lines:
        totals.setdefault(ln.currency, Line(TOTAL, ln.currency)).add(ln)
    return [*lines, *(totals[c] for c in sorted(totals))]


def documents(lines: Sequence[Line]) -> list[dict[str, Any]]:
    return [ln.document() for ln in lines]
