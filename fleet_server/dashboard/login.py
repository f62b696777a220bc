"""Login (``/login``), logout (``POST /logout``) and the gate in front of every other route.

:func:`install_auth` adds :class:`AuthGate` (a middleware) and the public routes. Everything
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

Routes added here: ``GET /healthz`` → ``{"ok": true}`` (public) and ``GET /api/v1/whoami`` →
``{"username": …, "role": …}`` (login required).
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from nicegui import app, run, ui
from peewee import OperationalError
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

PUBLIC_PATHS = frozenset({"/login", "/login/finish", "/logout", "/healthz", "/favicon.ico"})
PUBLIC_PREFIXES = ("/_nicegui/", "/_nicegui_ws/")
HANDOFF_TTL_S = 60.0
SESSION_CHECK_S = 10.0
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
    """Add the :class:`AuthGate` middleware, ``/login``, ``/login/finish``, ``/logout``, ``/healthz``
    and ``/api/v1/whoami``. Called by :func:`fleet_server.dashboard.register_pages`.

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

    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/api/v1/whoami", whoami, methods=["GET"])
    app.add_api_route("/login/finish", login_finish, methods=["GET"], include_in_schema=False)
    app.add_api_route("/logout", logout, methods=["POST"], include_in_schema=False)
    ui.page("/login")(login_page)


async def healthz() -> dict[str, bool]:
    """``{"ok": true}`` while the web server answers. Public; reveals nothing else."""
    return {"ok": True}


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


def login_page(redirect_to: str = "/") -> RedirectResponse | None:
    """The ``/login`` page: username, password, Enter or the button submits."""
    target = safe_redirect_target(redirect_to)
    if current_user() is not None:
        return RedirectResponse(target, status_code=303)
    ui.page_title("Log in · ClawFleet")
    with ui.card().classes("absolute-center w-80 gap-3"):
        ui.label("ClawFleet").classes("text-xl font-bold")
        username = ui.input("Username").props('autocomplete="username" autofocus').classes("w-full")
        password = ui.input("Password", password=True, password_toggle_button=True).props(
            'autocomplete="current-password"').classes("w-full")
        error = ui.label("").classes("text-red-700 text-sm").props('data-testid="login-error"')
        button = ui.button("Log in").classes("w-full")

    async def submit() -> None:
        client = ui.context.client
        name, pw, ip = (username.value or "").strip().lower(), password.value or "", client.ip or "?"
        if not name or not pw:
            error.text = "enter a username and a password"
            return
        button.disable()
        try:
            user, message = await authenticate(name, pw, ip)
        except OperationalError as exc:  # e.g. SQLite locked by a long writer beyond busy_timeout
            log.warning("login of %s could not be checked: %s", name, exc)
            user, message = None, "the server is busy; try again in a few seconds"
        finally:
            button.enable()
        if user is None:
            password.value = ""
            error.text = message
            return
        token = secrets.token_urlsafe(32)
        _prune(_tokens)
        _tokens[token] = _Pending(user.username, now_ms(), client.request.session.get("id", ""),
                                  time.monotonic() + HANDOFF_TTL_S)
        ui.navigate.to(f"/login/finish?token={token}&redirect_to={quote(target, safe='')}")

    username.on("keydown.enter", submit)
    password.on("keydown.enter", submit)
    button.on_click(submit)
    return None


def user_menu() -> None:
    """Header part: who is logged in, the audit log link (admins), "Log out"; and a session check.

    The check runs every :data:`SESSION_CHECK_S` seconds and sends the page to ``/login`` once the
    session has ended (logout in another tab, user disabled, password changed, expiry).
    """
    user = current_user()
    if user is None:
        return
    with ui.row().classes("items-center gap-4 text-white no-wrap"):
        if user.is_admin:  # on a phone these are in the header's menu (fleet_server.dashboard.frame)
            with ui.row().classes("gt-sm items-center gap-4 no-wrap"):
                ui.link("Audit log", "/audit").classes("text-white no-underline")
                ui.link("API tokens", "/settings/api").classes("text-white no-underline")
                ui.link("MQTT", "/settings/integrations").classes("text-white no-underline")
        ui.label(f"{user.username} ({user.role})").classes("gt-xs text-sm opacity-80")
        with ui.element("form").props('method="post" action="/logout"').classes("m-0"):
            ui.button("Log out").props('type="submit" flat dense no-caps color="white"').mark("logout")

    def check_session() -> None:
        if current_user() is None:
            ui.navigate.to("/login")

    ui.timer(SESSION_CHECK_S, check_session)
