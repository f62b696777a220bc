"""The ``/login`` page.

The password check, the session hand-off and the gate in front of every route live in
:mod:`fleet_server.auth.gate`.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from nicegui import ui
from peewee import OperationalError
from starlette.responses import RedirectResponse

from fleet_server.auth.accounts import current_user, safe_redirect_target
from fleet_server.auth.gate import authenticate, begin_login

log = logging.getLogger("clawfleet.auth")


def install_login_page() -> None:
    """Register ``/login`` (public: the gate lets it through)."""
    ui.page("/login")(login_page)


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
        token = begin_login(user.username, client.request.session.get("id", ""))
        ui.navigate.to(f"/login/finish?token={token}&redirect_to={quote(target, safe='')}")

    username.on("keydown.enter", submit)
    password.on("keydown.enter", submit)
    button.on_click(submit)
    return None
