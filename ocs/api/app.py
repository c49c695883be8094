"""The ASGI application: FastAPI routes under ``/api/v1``, problem+json errors, the concurrency cap and
the audit log of writes (docs/api.md).

The app is one FastAPI instance rooted at ``/`` so the web pages (``/ui``, ``/my``) can be added as
routes of the same app and port.  The OpenAPI 3.1 document is at ``/api/v1/openapi.json`` and the
Swagger UI at ``/api/v1/docs`` is served from the files the ``swagger-ui-bundle`` package ships
(no CDN: the API works on a network without Internet access).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ocs import __version__
from ocs.api import problems, routes_accounts, routes_billing, routes_ops, routes_reports, web
from ocs.api.deps import Services
from ocs.api.tokens import Principal, audit
from ocs.metrics import Metrics

PREFIX = "/api/v1"
# Reads handled at once; the others wait their turn (within max_inflight).  Building and encoding a
# page is CPU on the loop the charging path shares: two at a time keep a CCR's wait to a slice or two
# (bench/api_load.py).  Streamed exports do their work between awaits and are not counted.
READ_SLOTS = 2
STREAMED = ("/export",)
MAX_BODY = 1 << 20  # bytes of a request body at most (413): every resource takes a small JSON document
READS = {"GET", "HEAD", "OPTIONS"}
METHODS = READS | {"POST", "PUT", "PATCH", "DELETE"}  # the method label's values (else "other")
BODY_KEPT = 4096  # bytes of a request body kept for the audit summary
SUMMARY_CHARS = 500
SECRET_KEYS = ("password", "token", "secret", "pin")
log = structlog.get_logger("ocs.api")
Recorder = Callable[[Principal, str, str, str, str, int, str], Awaitable[None]]


def _summary(body: bytes) -> str:
    """The request body for the audit log: JSON with secrets masked, cut to :data:`SUMMARY_CHARS`."""
    if not body:
        return ""
    try:
        doc = json.loads(body)
    except ValueError:
        return f"<{len(body)} bytes, not JSON>"
    if isinstance(doc, dict):
        doc = {k: "***" if any(s in str(k).lower() for s in SECRET_KEYS) else v for k, v in doc.items()}
    text = json.dumps(doc, separators=(",", ":"), default=str)
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS - 3] + "..."


def _result(status: int, body: bytes) -> str:
    if status < 400:
        return "ok"
    try:
        return str(json.loads(body).get("detail", ""))[:SUMMARY_CHARS]
    except (ValueError, AttributeError):
        return ""


class Guard:
    """Outermost ASGI layer: caps requests in flight (503 beyond ``max_inflight``, as the Diameter front
    answers 3004), lets :data:`READ_SLOTS` reads run at once, and records every authenticated write in
    the audit log once its answer is sent."""

    def __init__(self, app: ASGIApp, max_inflight: int, record: Recorder, metrics: Metrics | None = None) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.record = record
        self.metrics = metrics
        self.inflight = 0
        self.readers = asyncio.Semaphore(READ_SLOTS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.metrics is None:
            await self._guarded(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                status[0] = int(msg["status"])
            await send(msg)

        try:
            await self._guarded(scope, receive, sending)
        finally:
            m = self.metrics
            method = scope["method"] if scope["method"] in METHODS else "other"
            m.child(m.api_requests, method, str(status[0])).inc()
            m.api_duration.observe(time.perf_counter() - started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY:  # without a length FastAPI's limit cuts it (413 too)
            await problems.response(413, f"a request body may have at most {MAX_BODY} bytes",
                                    scope["path"])(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            await problems.response(503, "too many API requests at once; retry", scope["path"],
                                    headers={"Retry-After": "1"})(scope, receive, send)
            return
        self.inflight += 1
        try:
            if scope["method"] not in READS:
                await self._write(scope, receive, send)
            elif scope["path"].endswith(STREAMED):
                await self.app(scope, receive, send)
            else:
                async with self.readers:
                    await self.app(scope, receive, send)
        finally:
            self.inflight -= 1

    async def _write(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        seen = _Seen()

        async def receiving() -> Message:
            msg = await receive()
            if msg["type"] == "http.request" and len(seen.body) < BODY_KEPT:
                seen.body += msg.get("body", b"")
            return msg

        async def sending(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                seen.status = int(msg["status"])
            elif msg["type"] == "http.response.body" and len(seen.answer) < BODY_KEPT:
                seen.answer += msg.get("body", b"")
            await send(msg)

        try:
            await self.app(scope, receiving, sending)
        finally:
            who = state.get("principal")
            if isinstance(who, Principal):
                target = "/".join(str(v) for v in (scope.get("path_params") or {}).values())
                try:
                    await self.record(who, scope["method"], scope["path"], target, _summary(seen.body[:BODY_KEPT]),
                                      seen.status, _result(seen.status, seen.answer))
                except Exception as exc:  # the answer is sent; say loudly that its trace is missing
                    log.error("api_audit_failed", path=scope["path"], token=who.name, error=repr(exc))


class _Seen:
    """What passed through one write: the request body and the answer's status and body (both cut)."""

    def __init__(self) -> None:
        self.body = b""
        self.status = 500
        self.answer = b""


def _docs(app: FastAPI) -> None:
    import swagger_ui_bundle  # type: ignore[import-untyped]

    app.mount(f"{PREFIX}/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")

    @app.get(f"{PREFIX}/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=f"{PREFIX}/openapi.json", title="OCS API",
                                   swagger_js_url=f"{PREFIX}/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url=f"{PREFIX}/docs/static/swagger-ui.css",
                                   swagger_favicon_url=f"{PREFIX}/docs/static/favicon-32x32.png")


def create_app(svc: Services) -> FastAPI:
    """The FastAPI app over ``svc``'s stores (no server; :mod:`ocs.api.server` runs it inside ocsd)."""
    app = FastAPI(title="OCS API", version=__version__, openapi_url=f"{PREFIX}/openapi.json", docs_url=None,
                  redoc_url=None, max_body_size=MAX_BODY,
                  description="Accounts, money, sessions, tariffs, CDRs, invoices and products"
                  " of the online charging system. Errors are RFC 9457 problem+json. See docs/api.md.")
    app.state.services = svc
    problems.install(app)
    for module in (routes_accounts, routes_ops, routes_billing, routes_reports):
        app.include_router(module.router, prefix=PREFIX)
    _docs(app)
    web.install(app)  # /ui and /my on the same app and port (ocs/api/web)
    return app


def guarded(svc: Services) -> Guard:
    """:func:`create_app` behind the concurrency cap and the audit log, as ocsd serves it."""

    async def record(who: Principal, method: str, path: str, target: str, body: str, status: int,
                     result: str) -> None:
        async with svc.pool.acquire() as conn:
            await audit(conn, who, method, path, target, body, status, result)

    return Guard(create_app(svc), svc.cfg.api.max_inflight, record, svc.metrics)
