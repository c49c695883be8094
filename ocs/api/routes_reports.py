"""``/api/v1/reports/usage``: ``ocsctl report usage`` as JSON (docs/reports.md).

The same lines (ocs.reports.usage_report): attempts, answered, minutes, ASR, ACD, revenue, cost,
profit per group and currency, then a total per currency.  A reseller token gets its own
subscribers' traffic only through ``--by`` over its accounts, so reports are for the other roles.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from ocs.api.deps import Services, allow, reseller_of, services
from ocs.api.problems import Problem, responses
from ocs.api.tokens import Principal
from ocs.reports.usage_report import TOTAL, ReportError, documents, usage
from ocs.reports.usage_report import Query as ReportQuery

router = APIRouter(tags=["reports"], responses=responses(401, 403, 422))
By = Literal["account", "destination", "provider", "reseller", "day", "hour"]


def _instant(raw: str, field: str) -> datetime:
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        try:
            ts = datetime.combine(date.fromisoformat(raw), time())
        except ValueError:
            raise Problem(422, f"{field}: not an ISO 8601 date or time: {raw!r}", field=field) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@router.get("/reports/usage", summary="Usage report: attempts, answered, minutes, ASR, ACD, revenue, cost, profit")
async def usage_report(who: Annotated[Principal, Depends(allow("cdrs:read"))],
                       svc: Annotated[Services, Depends(services)],
                       start: Annotated[str, Query(alias="from", max_length=40, examples=["2026-11-01"])],
                       end: Annotated[str, Query(alias="to", max_length=40, examples=["2026-12-01"])],
                       by: Annotated[By, Query()],
                       account: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
                       service: Annotated[Literal["voice", "data", "sms", "all"], Query()] = "voice"
                       ) -> dict[str, Any]:
    if reseller_of(who) is not None:
        raise Problem(403, "role reseller may not read reports (they cover every account)")
    q = ReportQuery(_instant(start, "from"), _instant(end, "to"), by, account, service)
    try:
        q.check()
    except ReportError as exc:
        raise Problem(422, str(exc), field="from") from None
    async with svc.pool.acquire() as conn:
        docs = documents(await usage(conn, q))
    return {"from": q.start.isoformat(), "to": q.end.isoformat(), "by": by, "service": service,
            **({"account": account} if account else {}),
            "lines": [d for d in docs if d["group"] != TOTAL], "totals": [d for d in docs if d["group"] == TOTAL]}
