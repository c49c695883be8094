"""RFC 9457 problem details for every error the API gives (``application/problem+json``).

One shape for all: ``type`` (a URN naming the kind of problem), ``title``, ``status``, ``detail``,
``instance`` (the request path) and, for a bad value, ``field`` (the JSON / query name of the first
offending one) with every offence in ``errors``.  FastAPI's own 422 body and Starlette's plain
HTTP errors are replaced by it, so a client parses one format.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ocs.billing.errors import Invalid, Refused

MEDIA_TYPE = "application/problem+json"
TYPE = "urn:ocs:problem:"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 413: "Payload too large", 422: "Invalid value", 500: "Internal error",
          502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout"}
SLUGS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
         409: "conflict", 413: "too-large", 422: "invalid", 500: "internal", 502: "bad-gateway",
         503: "unavailable", 504: "timeout"}
log = structlog.get_logger("ocs.api")
# PostgreSQL or Redis unreachable (not a query the database refused: that is a bug, 500)
STORE_AWAY: tuple[type[Exception], ...] = (OSError, TimeoutError, asyncpg.InterfaceError,
                                           asyncpg.CannotConnectNowError, asyncpg.ConnectionDoesNotExistError,
                                           RedisConnectionError, RedisTimeoutError)


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, slug: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.field = field
        self.headers = headers
        self.slug = slug


def document(status: int, detail: str, instance: str = "", *, field: str | None = None,
             errors: list[dict[str, str]] | None = None, slug: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": TYPE + (slug or SLUGS.get(status, "error")),
                           "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    if instance:
        doc["instance"] = instance
    if field is not None:
        doc["field"] = field
        doc["errors"] = errors or [{"field": field, "message": detail}]
    return doc


def response(status: int, detail: str, instance: str = "", *, field: str | None = None,
             errors: list[dict[str, str]] | None = None, headers: Mapping[str, str] | None = None,
             slug: str | None = None) -> JSONResponse:
    return JSONResponse(document(status, detail, instance, field=field, errors=errors, slug=slug), status,
                        headers=headers, media_type=MEDIA_TYPE)


def from_service(exc: Refused) -> Problem:
    """A billing service refusal: a bad value is 422 naming its field (``tax-rate`` -> ``tax_rate``),
    an unknown thing 404, any other refusal (a state conflict) 409."""
    if isinstance(exc, Invalid):
        return Problem(422, f"{exc.field.replace('-', '_')}: {exc.message}", field=exc.field.replace("-", "_"))
    text = str(exc)
    return Problem(404 if text.startswith("unknown ") else 409, text)


def _field(loc: tuple[Any, ...]) -> str:
    """``('body', 'amount')`` -> ``amount``; ``('query', 'limit')`` -> ``limit``; nested as ``a.0.b``."""
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "header") else list(map(str, loc))
    return ".".join(parts) or "body"


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"field": _field(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))}
              for e in exc.errors()]
    first = errors[0] if errors else {"field": "body", "message": "invalid"}
    return response(422, f"{first['field']}: {first['message']}", request.url.path, field=first["field"],
                    errors=errors)


async def _problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return response(exc.status, exc.detail, request.url.path, field=exc.field, headers=exc.headers, slug=exc.slug)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return response(exc.status_code, str(exc.detail), request.url.path, headers=exc.headers)


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return await _problem(request, from_service(exc))


async def _store_away(request: Request, exc: Exception) -> JSONResponse:
    log.warning("api_store_unavailable", path=request.url.path, error=repr(exc))
    return response(503, f"a store is unavailable ({type(exc).__name__}); retry", request.url.path,
                    headers={"Retry-After": "2"})


async def _data(request: Request, exc: Exception) -> JSONResponse:
    """A value PostgreSQL will not take (a NUL in a text, an unpaired surrogate, a number out of its
    column's range) came from the request: 422, not a server fault (found by the schemathesis run)."""
    log.info("api_value_refused_by_postgres", path=request.url.path, error=repr(exc))
    text = str(exc).encode("utf-8", "backslashreplace").decode("utf-8")  # the value may hold a surrogate
    return response(422, f"a value cannot be stored: {text}", request.url.path)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("api_error", path=request.url.path, method=request.method, error=repr(exc))
    return response(500, "internal error; see the ocsd log", request.url.path)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Refused, _refused)
    for away in STORE_AWAY:
        app.add_exception_handler(away, _store_away)
    app.add_exception_handler(asyncpg.DataError, _data)
    app.add_exception_handler(Exception, _unexpected)


# Documented on every operation so the OpenAPI document names the problem format.
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "title", "status", "detail"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"}, "instance": {"type": "string"}, "field": {"type": "string"},
                   "errors": {"type": "array", "items": {"type": "object", "properties": {
                       "field": {"type": "string"}, "message": {"type": "string"}}}}}}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"description": TITLES.get(c, "Error"), "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}}}
            for c in codes}
