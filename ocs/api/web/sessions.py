"""Browser sessions of the dashboard (``/ui``) and self-care (``/my``): server-side, CSRF-protected.

A login creates a session held in this process (the cookie carries only a random id: HttpOnly,
SameSite=Strict, Secure when the request came over HTTPS) with its own CSRF token, which every
form posts back.  The login forms themselves are protected by a double-submit token (a cookie and
a hidden field that must match), so another site cannot log a browser in behind its back.

A dashboard session keeps the API token it logged in with and checks it again on every request
(``TokenCache``), so revoking the token ends the session.  Sessions live in memory: a restart logs
everyone out, and several ocsd behind one address need sticky sessions (docs/api.md).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from ocs.api.web.pages import redirect, render

COOKIE = {"ui": "ocs_ui", "my": "ocs_my"}
LOGIN_CSRF = "ocs_login_csrf"
IDLE_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000


@dataclass
class WebSession:
    kind: str  # "ui" (an API token) or "my" (an account)
    subject: str  # the API token, or the account id
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    seen: float = field(default_factory=time.monotonic)
    flash: str = ""  # one message shown on the next page (after a redirect)


class SessionStore:
    """Sessions by cookie id, bounded: the least recently used goes first beyond ``MAX_SESSIONS``."""

    def __init__(self) -> None:
        self._by_id: OrderedDict[str, WebSession] = OrderedDict()

    def create(self, kind: str, subject: str) -> tuple[str, WebSession]:
        sid = secrets.token_urlsafe(32)
        s = self._by_id[sid] = WebSession(kind, subject)
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return sid, s

    def get(self, request: Request, kind: str) -> WebSession | None:
        sid = request.cookies.get(COOKIE[kind], "")
        s = self._by_id.get(sid)
        if s is None or s.kind != kind:
            return None
        now = time.monotonic()
        if now - s.seen > IDLE_SECONDS:
            del self._by_id[sid]
            return None
        s.seen = now
        self._by_id.move_to_end(sid)
        return s

    def drop(self, request: Request, kind: str) -> None:
        self._by_id.pop(request.cookies.get(COOKIE[kind], ""), None)


def set_cookie(response: Response, request: Request, name: str, value: str, path: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="strict", path=path,
                        secure=request.url.scheme == "https")


def same(a: str, b: str) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(a.encode(), b.encode())


def login_token(request: Request) -> str:
    """The double-submit token of a login form: the cookie's, or a new one (the page sets it)."""
    return request.cookies.get(LOGIN_CSRF) or secrets.token_urlsafe(24)


# -- what the two login forms, their sessions and their logouts share (kind "ui" or "my": also the path) ----

def login_page(request: Request, template: str, kind: str, error: str = "") -> Response:
    """A login form carrying its double-submit token (set as a cookie on the form's path); 401 with an error."""
    token = login_token(request)
    page = render(request, template, error=error, csrf=token, status=401 if error else 200)
    set_cookie(page, request, LOGIN_CSRF, token, f"/{kind}")
    return page


def login_posted(request: Request, csrf: str) -> bool:
    """Did the login post come from our form (its hidden token equals the cookie)?"""
    return same(csrf, request.cookies.get(LOGIN_CSRF, ""))


def start(request: Request, kind: str, subject: str) -> Response:
    """Logged in: a new session, its cookie, and on to the first page."""
    sid, _s = request.app.state.web_sessions.create(kind, subject)
    response = redirect(f"/{kind}")
    set_cookie(response, request, COOKIE[kind], sid, f"/{kind}")
    return response


def end(request: Request, kind: str) -> Response:
    """Logged out: the session dropped, its cookie deleted, back to the login form."""
    request.app.state.web_sessions.drop(request, kind)
    response = redirect(f"/{kind}/login")
    response.delete_cookie(COOKIE[kind], path=f"/{kind}")
    return response
