"""``/api/v1/sessions``, ``/tariffs`` and ``/cdrs`` (docs/api.md).

Sessions come from Redis (:mod:`ocs.store.live_sessions`, as ``ocsctl session list``); DELETE asks
the network to end one through :class:`~ocs.control.dispatch.Dispatcher`, as ``ocsctl session
disconnect``.  A tariff quote is ``ocsctl tariff rate``.  CDRs are paged JSON or the whole selection
as CSV, streamed from a server-side cursor so an export of millions of records never sits in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse

from ocs.api.deps import (
    Page,
    Services,
    allow,
    chunked,
    own_account,
    owned_ids,
    page,
    reseller_of,
    services,
    visible_sessions,
)
from ocs.api.problems import Problem, responses
from ocs.api.tokens import Principal
from ocs.billing import cdrs
from ocs.control.dispatch import Dispatcher
from ocs.control.model import Ack
from ocs.rating import documents
from ocs.rating.engine import CompiledTariff
from ocs.store import tariffs
from ocs.store.control_bus import ControlBus

router = APIRouter(responses=responses(401, 403, 422))
DISCONNECT_STATUS = {Ack.UNKNOWN_SESSION: 404, Ack.NOT_ENABLED: 409, Ack.PEER_GONE: 503, Ack.NO_ANSWER: 504,
                     Ack.REFUSED: 502, Ack.BAD_ANSWER: 502}
TariffName = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/sessions", tags=["sessions"], summary="Open sessions (of one account)")
async def list_sessions(who: Annotated[Principal, Depends(allow("sessions:read"))],
                        svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)],
                        account: Annotated[str | None, Query(min_length=1, max_length=128)] = None
                        ) -> dict[str, Any]:
    rows = await visible_sessions(svc, who, account)
    return pg.document(rows[pg.offset:pg.offset + pg.limit + 1], "sessions")


@router.delete("/sessions/{session_id}", tags=["sessions"], responses=responses(404, 409, 502, 503, 504),
               summary="Disconnect: ask the network to end the session (ASR / Disconnect-Request)")
async def disconnect(session_id: Annotated[str, Path(min_length=1, max_length=512)],
                     who: Annotated[Principal, Depends(allow("sessions:write"))],
                     svc: Annotated[Services, Depends(services)],
                     timeout: Annotated[float, Query(gt=0, le=30, description="seconds to wait for the peer")] = 15
                     ) -> dict[str, Any]:
    bus = ControlBus(svc.redis, svc.keys)
    if who.role == "reseller":
        found = await bus.find(session_id)
        async with svc.pool.acquire() as conn:
            if not found or found[0].account not in (await owned_ids(conn, who) or []):
                raise Problem(404, f"no open session {session_id!r}")
    result, node = await Dispatcher(bus).disconnect(session_id, timeout)
    if not result.ok:
        code = f" (code {result.code})" if result.code else ""
        raise Problem(DISCONNECT_STATUS.get(result.ack, 502), f"not disconnected: {result.ack.value}{code}"
                      + (f": {result.detail}" if result.detail else ""), slug=f"disconnect-{result.ack.value}")
    return {"session_id": session_id, **result.to_dict(), "node": node}


@router.get("/tariffs", tags=["tariffs"], summary="Tariffs and their current versions")
async def list_tariffs(_: Annotated[Principal, Depends(allow("tariffs:read"))],
                       svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)]
                       ) -> dict[str, Any]:
    async with svc.pool.acquire() as conn:
        return pg.document(await tariffs.listing(conn, pg.limit + 1, pg.offset), "tariffs")


class _Compiled:
    """The last few compiled tariff versions: compiling a large tariff is CPU work done once per version
    (in a thread, so the charging path sharing the loop does not wait on it)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.found: dict[tuple[str, int], CompiledTariff] = {}

    async def get(self, svc: Services, name: str) -> CompiledTariff:
        async with svc.pool.acquire() as conn:
            version = await tariffs.current_version(conn, name)
            hit = self.found.get((name, version or 0))
            if hit is not None:
                return hit
            tariff = await tariffs.load_tariff(conn, name, version) if version else None
        if tariff is None:
            raise Problem(404, f"unknown tariff {name!r}")
        compiled = await asyncio.to_thread(CompiledTariff, tariff)
        if len(self.found) >= self.size:
            self.found.pop(next(iter(self.found)))
        self.found[(name, tariff.version)] = compiled
        return compiled


compiled_tariffs = _Compiled()


@router.get("/tariffs/{name}", tags=["tariffs"], responses=responses(404),
            summary="A tariff's current version; its rate rows paged")
async def get_tariff(name: TariffName, _: Annotated[Principal, Depends(allow("tariffs:read"))],
                     svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)]
                     ) -> dict[str, Any]:
    doc = documents.tariff_document((await compiled_tariffs.get(svc, name)).tariff)
    rows = doc.pop("rows")
    return {**doc, **pg.document(rows[pg.offset:pg.offset + pg.limit + 1], "rows")}


@router.get("/tariffs/{name}/quote", tags=["tariffs"], responses=responses(404),
            summary="Price a voice call (as `ocsctl tariff rate`)")
async def quote(name: TariffName, number: Annotated[str, Query(min_length=1, max_length=64)],
                _: Annotated[Principal, Depends(allow("tariffs:read"))],
                svc: Annotated[Services, Depends(services)],
                seconds: Annotated[int, Query(ge=0, le=86_400 * 7)] = 60,
                at: Annotated[datetime | None, Query(description="start; no offset: the tariff's timezone")] = None
                ) -> dict[str, Any]:
    compiled = await compiled_tariffs.get(svc, name)
    start = datetime.now(UTC) if at is None else at if at.tzinfo else at.replace(
        tzinfo=ZoneInfo(compiled.tariff.timezone))
    doc = documents.quote(compiled, number, start, seconds)
    if doc is None:
        raise Problem(404, f"{number}: destination not rated by tariff {name}", field="number")
    return doc


CdrFrom = Annotated[datetime | None, Query(alias="from", description="start time, inclusive (no offset: UTC)")]
CdrTo = Annotated[datetime | None, Query(alias="to", description="start time, exclusive (no offset: UTC)")]
CdrAccount = Annotated[str | None, Query(min_length=1, max_length=128)]


def _utc(ts: datetime | None) -> datetime | None:
    return ts if ts is None or ts.tzinfo else ts.replace(tzinfo=UTC)


async def _scope(svc: Services, who: Principal, account: str | None) -> None:
    if account is not None and who.role == "reseller":
        async with svc.pool.acquire() as conn:
            await own_account(conn, who, account)


@router.get("/cdrs", tags=["cdrs"], summary="CDRs by start time and account (paged)")
async def list_cdrs(who: Annotated[Principal, Depends(allow("cdrs:read"))],
                    svc: Annotated[Services, Depends(services)], pg: Annotated[Page, Depends(page)],
                    start: CdrFrom = None, end: CdrTo = None, account: CdrAccount = None) -> dict[str, Any]:
    await _scope(svc, who, account)
    async with svc.pool.acquire() as conn:
        found = await chunked(lambda n, at: cdrs.page(conn, _utc(start), _utc(end), account, reseller_of(who), n, at),
                              pg.limit + 1, pg.offset)
    return pg.document(found, "cdrs")


@router.get("/cdrs/export", tags=["cdrs"], summary="CDRs as CSV (the `ocsctl cdr export` columns), streamed",
            response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
async def export_cdrs(who: Annotated[Principal, Depends(allow("cdrs:read"))],
                      svc: Annotated[Services, Depends(services)],
                      start: CdrFrom = None, end: CdrTo = None, account: CdrAccount = None) -> StreamingResponse:
    await _scope(svc, who, account)

    async def body() -> AsyncIterator[str]:
        yield cdrs.csv_text([], header=True)
        async with svc.pool.acquire() as conn, conn.transaction(readonly=True):
            async for batch in cdrs.stream(conn, _utc(start), _utc(end), account, reseller_of(who)):
                yield cdrs.csv_text(batch, header=False)

    return StreamingResponse(body(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="cdrs.csv"'})
