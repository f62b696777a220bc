"""What every dashboard page shares: the header (navigation that folds into a menu on a phone,
dark-mode toggle, the user menu with the time zone and "Log out"), dark-mode colours, and the "not
found" page.

Dark mode and the time zone are the user's settings (``User.dark_mode``, ``User.time_zone``), so
they follow the user to every browser and every later visit.
"""

from __future__ import annotations

from zoneinfo import available_timezones

from nicegui import Client, app, ui
from nicegui.page import page
from starlette.requests import Request
from starlette.responses import Response

from fleet_server.auth.accounts import current_user, save_user_settings, user_settings
from fleet_server.dashboard.parts.alerts_badge import alerts_badge
from fleet_server.dashboard.parts.server_banner import server_banner

ON_DARK_CHANGE = "on_dark_change"
"""``app.storage.client`` key of the redraws a page registers for a dark-mode switch (canvas charts,
whose colours no CSS reaches)."""
SESSION_CHECK_S = 10.0
"""How often an open page checks that its session is still valid, seconds."""
NAV = (("Overview", "/"), ("Devices", "/devices"), ("Tokens", "/tokens"), ("Sessions", "/sessions"), ("Logs", "/logs"),
       ("Alerts", "/alerts"))

# Tailwind's fixed greys and black are unreadable on Quasar's dark background: lighten them there.
DARK_CSS = """
.body--dark .text-black { color: #f3f4f6 !important; }
.body--dark .text-gray-400 { color: #9ca3af !important; }
.body--dark .text-gray-500, .body--dark .text-gray-600 { color: #b6bcc6 !important; }
.body--dark .text-red-700 { color: #fca5a5 !important; }
.body--dark .text-orange-800 { color: #fdba74 !important; }
.body--dark .bg-gray-100 { background-color: #1f2937 !important; }
.body--dark a:not(.text-white) { color: #93c5fd; }
"""


def dark_mode_toggle() -> None:
    """The header's dark-mode button; the choice is stored as the logged-in user's setting."""
    user = current_user()
    dark = ui.dark_mode(user_settings(user.username).dark_mode if user else False)

    def flip() -> None:
        dark.set_value(not dark.value)
        who = current_user()
        if who is not None:
            save_user_settings(who.username, dark_mode=bool(dark.value))
        button.props(f"icon={'light_mode' if dark.value else 'dark_mode'}")
        for redraw in app.storage.client.get(ON_DARK_CHANGE, []):  # canvas drawings (charts) pick their colours
            redraw()

    button = ui.button(icon="light_mode" if dark.value else "dark_mode", on_click=flip).props(
        'flat round dense color="white" aria-label="toggle dark mode"').tooltip("dark / light").mark("dark-toggle")


def frame(title: str) -> None:
    """Page title and header. Wide screens show the navigation links; below 600 px they fold into a
    menu button (which also holds the admin pages below 1024 px), so the header (brand, menu, dark
    mode, "Log out") fits a 390 px phone."""
    ui.page_title(f"{title} · ClawFleet")
    ui.add_css(DARK_CSS)
    with ui.header().classes("items-center bg-slate-800 px-2 sm:px-4 gap-1 no-wrap"):
        with ui.button(icon="menu").props('flat round dense color="white" aria-label="menu"').classes(
                "lt-md").mark("nav-menu"):
            with ui.menu():
                for label, href in NAV:
                    ui.menu_item(label, lambda href=href: ui.navigate.to(href))
                for label, href in admin_links():
                    ui.menu_item(label, lambda href=href: ui.navigate.to(href))
        ui.link("ClawFleet", "/").classes("text-white text-lg font-bold no-underline")
        with ui.row().classes("gt-xs items-center gap-4 ml-4 no-wrap"):
            for label, href in NAV[1:]:
                ui.link(label, href).classes("text-white no-underline")
        ui.space()
        alerts_badge()  # alerts: firing count on every page
        dark_mode_toggle()
        user_menu()  # auth: who is logged in, admin links (wide screens), log out, session check
    server_banner()  # "the server has lost its broker", while it has


def admin_links() -> list[tuple[str, str]]:
    """The admin pages' links for the phone menu (none for a viewer)."""
    user = current_user()
    if user is None or not user.is_admin:
        return []
    return [("Audit log", "/audit"), ("API tokens", "/settings/api"), ("MQTT integrations", "/settings/integrations")]


def not_found_content(path: str) -> None:
    """The body of a "not found" page: what was asked for and the ways back."""
    with ui.column().classes("w-full items-center gap-3 p-8 text-center"):
        ui.label("404").classes("text-5xl text-gray-500")
        ui.label("This page doesn't exist.").classes("text-xl")
        ui.label(path[:200]).classes("font-mono text-sm text-gray-600 break-all")
        with ui.row().classes("gap-2 justify-center"):
            ui.button("Fleet overview", icon="home", on_click=lambda: ui.navigate.to("/")).mark("go-overview")
            ui.button("Back", icon="arrow_back", on_click=ui.navigate.back).props("flat").mark("go-back")


def install_not_found() -> None:
    """Answer unknown pages with the dashboard's own 404 page (header, overview link, back button)
    instead of NiceGUI's bare one; API and NiceGUI resource paths keep NiceGUI's answer (JSON)."""
    nicegui_404 = app.exception_handlers.get(404)

    async def not_found(request: Request, exc: Exception) -> Response:
        path = request.url.path
        endpoint = request.scope.get("endpoint")
        if nicegui_404 is not None and (path.startswith(("/api/", "/_nicegui")) or path in ("/api", "/metrics")
                                        or endpoint not in (None, app) and not request.scope.get("nicegui_page_path")):
            return await nicegui_404(request, exc)
        with Client(page(""), request=request) as client:
            frame("Not found")
            not_found_content(path)
        return client.build_response(request, 404)

    app.add_exception_handler(404, not_found)


def zone_dialog() -> None:
    """Choose the zone every time on every page is shown in (saved for the user), or the browser's."""
    user = current_user()
    if user is None:
        return
    current = user_settings(user.username).time_zone or ""
    options = {"": "my browser's zone", **{z: z for z in sorted(available_timezones())}}
    with ui.dialog() as dialog, ui.card().classes("w-[26rem] max-w-full"):
        ui.label("Time zone").classes("text-lg font-semibold")
        ui.label("Times and calendar days on every page are shown in this zone.").classes("text-sm text-gray-600")
        choice = ui.select(options, value=current if current in options else "", with_input=True,
                           label="Zone").classes("w-full").mark("zone-select")

        def save() -> None:
            who = current_user()
            if who is not None:
                save_user_settings(who.username, time_zone=choice.value or None)
            dialog.close()
            ui.navigate.reload()

        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Cancel", on_click=dialog.close).props("flat")
            ui.button("Save", on_click=save).mark("zone-save")
    dialog.open()


def user_menu() -> None:
    """Header part: who is logged in, the audit log link (admins), "Log out"; and a session check.

    The check runs every :data:`SESSION_CHECK_S` seconds and sends the page to ``/login`` once the
    session has ended (logout in another tab, user disabled, password changed, expiry).
    """
    user = current_user()
    if user is None:
        return
    with ui.row().classes("items-center gap-4 text-white no-wrap"):
        if user.is_admin:  # on a phone these are in the header's menu (fleet_server.dashboard.parts.frame)
            with ui.row().classes("gt-sm items-center gap-4 no-wrap"):
                ui.link("Audit log", "/audit").classes("text-white no-underline")
                ui.link("API tokens", "/settings/api").classes("text-white no-underline")
                ui.link("MQTT", "/settings/integrations").classes("text-white no-underline")
        ui.label(f"{user.username} ({user.role})").classes("gt-xs text-sm opacity-80")
        ui.button(icon="schedule", on_click=zone_dialog).props(
            'flat round dense color="white" aria-label="time zone"').tooltip("time zone").mark("zone-button")
        with ui.element("form").props('method="post" action="/logout"').classes("m-0"):
            ui.button("Log out").props('type="submit" flat dense no-caps color="white"').mark("logout")

    def check_session() -> None:
        if current_user() is None:
            ui.navigate.to("/login")

    ui.timer(SESSION_CHECK_S, check_session)
