"""The gate in front of every route, the login hand-off (``/login/finish``) and logout (``POST /logout``).

:func:`install_auth` adds :class:`AuthGate` (a middleware) and the public routes; the ``/login`` page
itself is :mod:`fleet_server.dashboard.pages.login` and ``/healthz`` is :mod:`fleet_server.api.health`. Everything
is private by default: only ``/login``, ``/login/finish``, ``/logout``, ``/healthz``,
``/favicon.ico`` and NiceGUI's own ``/_nicegui…`` routes are reachable without a session.
Unauthenticated page requests are redirected to ``/login?redirect_to=<path>``; unauthenticated
``/api/…`` and ``/metrics`` requests get ``401 {"error": "login required"}``. Those two also accept a
read-only API token (``Authorization: Bearer cft_…``, :mod:`fleet_server.auth.api_tokens`) for GET.

Login flow: the page checks the password over the websocket, then sends the browser to
``/login/finish?token=…`` (a one-time token bound to the browser's session, valid 60 s). That
route gives the browser a new session id (no session fixation) and the next request stores the
login in ``app.storage.user``.

Logout is a POST (the header's "Log out" button submits a form), so another site cannot log a user
out with a link or an image; a cross-site POST carries no session cookie (``SameSite=Lax``) and
is refused when the browser says it is cross-site (``Sec-Fetch-Site``).

Routes added here: ``/login/finish``, ``/logout`` and ``GET /api/v1/whoami`` →
``{"username": …, "role": …}`` (login required).
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from nicegui import app, run
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from fleet_server.auth import api_tokens
from fleet_server.auth.accounts import (
    SESSION_AUTH_MS,
    SESSION_USER,
    check_credentials,
    current_user,
    now_ms,
    safe_redirect_target,
)
from fleet_server.auth.ratelimit import LoginRateLimiter
from fleet_server.store import audit
from fleet_server.store.models import User

log = logging.getLogger("clawfleet.auth")

PUBLIC_PATHS = frozenset({"/login", "/login/finish", "/logout", "/healthz", "/favicon.ico",
                          "/install.sh", "/install.ps1"})  # releases: the agent's install scripts
PUBLIC_PREFIXES = ("/_nicegui/", "/_nicegui_ws/", "/agent/")  # releases: agent packages (no secrets)
HANDOFF_TTL_S = 60.0
SECURITY_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin"}


@dataclass
class _Pending:
    username: str
    auth_ms: int
    session_id: str
    expires: float  # time.monotonic()


_tokens: dict[str, _Pending] = {}  # one-time /login/finish token -> login waiting for it
_handoffs: dict[str, _Pending] = {}  # new session id -> login to store on its first request
_limiter = LoginRateLimiter()


def is_public(path: str) -> bool:
    """True for the routes reachable without logging in."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _is_api(path: str) -> bool:
    """``/api/…`` and ``/metrics``: answered with 401 JSON instead of a login redirect; API tokens work."""
    return path in ("/api", "/metrics") or path.startswith("/api/")


def _prune(store: dict[str, _Pending]) -> None:
    now = time.monotonic()
    for key in [k for k, p in store.items() if p.expires < now]:
        del store[key]


def _adopt_handoff(request: Request) -> None:
    """Store a login finished by ``/login/finish`` in this (new) session's ``app.storage.user``."""
    pending = _handoffs.pop(request.session.get("id", ""), None)
    if pending is not None and pending.expires >= time.monotonic():
        app.storage.user.update({SESSION_USER: pending.username, SESSION_AUTH_MS: pending.auth_ms})


class AuthGate(BaseHTTPMiddleware):
    """Lets public routes through, sends everything else to the login page (or 401 for ``/api``).

    Also adds ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff`` and
    ``Referrer-Policy: same-origin`` to every response, and ``Cache-Control: no-store`` to private
    ones. Sets ``request.state.user`` (:class:`fleet_server.auth.accounts.SessionUser`) for private routes.
    """

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if _handoffs:
            _adopt_handoff(request)
        public = is_public(path)
        if not public:
            user = current_user()
            if user is None and _is_api(path):  # API token (read-only) instead of a session
                token = api_tokens.bearer(request.headers.get("authorization"))
                if token is not None:
                    user = api_tokens.user_for_token(token)  # one indexed SELECT, like current_user()
                    if user is None or request.method not in ("GET", "HEAD"):
                        return JSONResponse({"error": "invalid or revoked API token" if user is None else
                                             "API tokens are read-only"}, status_code=401 if user is None else 403,
                                            headers={**SECURITY_HEADERS, "WWW-Authenticate": "Bearer"})
            if user is None:
                if app.storage.user.get(SESSION_USER):
                    app.storage.user.clear()  # expired, disabled or password changed: forget it
                if _is_api(path) or request.method not in ("GET", "HEAD"):
                    return JSONResponse({"error": "login required"}, status_code=401, headers=SECURITY_HEADERS)
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/login?redirect_to={quote(safe_redirect_target(target), safe='')}",
                                        status_code=303, headers=SECURITY_HEADERS)
            request.state.user = user
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if not public:
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def install_auth(limiter: LoginRateLimiter | None = None) -> None:
    """Add the :class:`AuthGate` middleware, ``/login/finish``, ``/logout`` and ``/api/v1/whoami``.
    Called by :func:`fleet_server.dashboard.register_pages`.

    Works before ``ui.run`` (the server) and after it (NiceGUI's user simulation): the gate always
    ends up inside the session middleware, so it can read ``app.storage.user``.

    Args:
        limiter: failed-login limiter (default: backoff after 5 failures per username and address, and
            after 100 per address; see :class:`fleet_server.auth.ratelimit.LoginRateLimiter`).
    """
    global _limiter
    _limiter = limiter or LoginRateLimiter()
    if any(m.cls is SessionMiddleware for m in app.user_middleware):
        app.user_middleware.append(Middleware(AuthGate))  # innermost, after the session middleware
    else:
        app.add_middleware(AuthGate)  # ui.run adds the session middleware around it later

    app.add_api_route("/api/v1/whoami", whoami, methods=["GET"])
    app.add_api_route("/login/finish", login_finish, methods=["GET"], include_in_schema=False)
    app.add_api_route("/logout", logout, methods=["POST"], include_in_schema=False)


async def whoami(request: Request) -> dict[str, str]:
    """``{"username": …, "role": …}`` of the logged-in user (the gate answers 401 otherwise)."""
    user = request.state.user
    return {"username": user.username, "role": user.role}


async def login_finish(request: Request, token: str = "", redirect_to: str = "/") -> RedirectResponse:
    """Turn a one-time login token into a logged-in session with a new session id."""
    pending = _tokens.pop(token, None) if token else None
    session_id = request.session.get("id")
    if pending is None or pending.expires < time.monotonic() or pending.session_id != session_id:
        return RedirectResponse("/login", status_code=303)
    app.storage.user.clear()
    new_id = str(uuid.uuid4())
    request.session["id"] = new_id  # the session middleware sends the new cookie with this response
    _prune(_handoffs)
    _handoffs[new_id] = _Pending(pending.username, pending.auth_ms, new_id, time.monotonic() + HANDOFF_TTL_S)
    return RedirectResponse(safe_redirect_target(redirect_to), status_code=303)


async def logout(request: Request) -> Response:
    """``POST /logout``: end the session (server side) and go to the login page (303). Audited as
    ``logout``. A request the browser marks cross-site gets 403 and changes nothing."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return JSONResponse({"error": "cross-site logout refused"}, status_code=403, headers=SECURITY_HEADERS)
    user = current_user()
    app.storage.user.clear()
    if user is not None:
        audit.record(user.username, "logout", detail=f"from {_ip(request)}")
    return RedirectResponse("/login", status_code=303)


def _ip(request: Request) -> str:
    return request.client.host if request.client else "?"


async def authenticate(username: str, password: str, ip: str) -> tuple[User | None, str]:
    """One login attempt of ``username`` (normalized) from address ``ip`` through the limiter.

    Returns ``(user, "")`` when the password is right and no lock applies, else ``(None, message)``
    with the text to show ("wrong username or password" or "too many failed attempts; …").
    Audited: ``login``, ``login_failed``, ``login_locked``.
    """
    wait_s = _limiter.reserve(username, ip)  # counted as a failure from here until it succeeds
    if wait_s > 0:
        return None, LoginRateLimiter.message(wait_s)
    user = await run.io_bound(check_credentials, username, password)
    if user is None:
        audit.record(username, "login_failed", detail=f"from {ip}")
        wait_s = _limiter.locked_for(username, ip)
        if wait_s > 0:
            audit.record(username, "login_locked", detail=f"from {ip}; locked for {int(wait_s)} s")
            return None, LoginRateLimiter.message(wait_s)
        return None, "wrong username or password"
    _limiter.succeeded(username, ip)
    audit.record(user.username, "login", detail=f"from {ip}")
    return user, ""


def begin_login(username: str, session_id: str) -> str:
    """A one-time token (URL-safe, 256 bits, valid :data:`HANDOFF_TTL_S` seconds) that
    ``/login/finish`` turns into a logged-in session for ``username``, bound to the browser session
    ``session_id`` that checked the password."""
    token = secrets.token_urlsafe(32)
    _prune(_tokens)
    _tokens[token] = _Pending(username, now_ms(), session_id, time.monotonic() + HANDOFF_TTL_S)
    return token
