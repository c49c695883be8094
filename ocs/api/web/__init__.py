"""The web face: the operator's dashboard (``/ui``) and subscriber self-care (``/my``), server-rendered
on the API's app and port (docs/api.md).  :func:`install` adds them to the FastAPI app."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from ocs.api import problems
from ocs.api.problems import Problem
from ocs.api.web import my, ui
from ocs.api.web.pages import STATIC, redirect, render
from ocs.api.web.sessions import SessionStore

log = structlog.get_logger("ocs.api")


async def _to_login(request: Request, exc: Exception) -> Response:
    return redirect("/ui/login" if isinstance(exc, ui.LoggedOut) else "/my/login")


async def _problem(request: Request, exc: Exception) -> Response:
    """A refusal on a page is a page; under /api it stays problem+json."""
    assert isinstance(exc, Problem)
    if request.url.path.startswith(("/ui", "/my")):
        return render(request, "error.html", status=exc.status, status_code=exc.status, detail=exc.detail,
                      home="/ui" if request.url.path.startswith("/ui") else "/my")
    return problems.response(exc.status, exc.detail, request.url.path, field=exc.field, headers=exc.headers,
                             slug=exc.slug)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """As the API's handler (logged, 500), as a page under /ui and /my."""
    log.error("api_error", path=request.url.path, method=request.method, error=repr(exc))
    if request.url.path.startswith(("/ui", "/my")):
        return render(request, "error.html", status=500, status_code=500, detail="Something went wrong on our side;"
                      " the ocsd log says what.", home="/ui" if request.url.path.startswith("/ui") else "/my")
    return problems.response(500, "internal error; see the ocsd log", request.url.path)


def install(app: FastAPI) -> None:
    app.state.web_sessions = SessionStore()
    app.state.my_failures = {}
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(ui.router)
    app.include_router(my.router)
    app.add_exception_handler(ui.LoggedOut, _to_login)
    app.add_exception_handler(my.MyLoggedOut, _to_login)
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(Exception, _unexpected)
