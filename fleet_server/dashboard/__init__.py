"""NiceGUI dashboard: one module per page; :func:`register_pages` adds them all.

Every route needs a login except the ones listed in :mod:`fleet_server.dashboard.login`; pages
check roles with :func:`fleet_server.auth.accounts.require_admin` (page content) and
:func:`fleet_server.auth.accounts.admin_only` (event handlers of admin actions).
"""

from __future__ import annotations

from collections.abc import Callable

from nicegui import ui

from fleet_server.auth.ratelimit import LoginRateLimiter
from fleet_server.dashboard.audit import render_audit
from fleet_server.dashboard.device_detail import render_device
from fleet_server.dashboard.devices import render_devices
from fleet_server.dashboard.health import install_health
from fleet_server.dashboard.login import install_auth, user_menu
from fleet_server.dashboard.overview import render_overview
from fleet_server.devices.actions import DeviceActions
from fleet_server.server import ServerHealth
from fleet_server.state import FleetState


def _frame(title: str) -> None:
    ui.page_title(f"{title} · ClawFleet")
    with ui.header().classes("items-center bg-slate-800"):
        ui.link("ClawFleet", "/").classes("text-white text-lg font-bold no-underline")
        ui.link("Devices", "/devices").classes("text-white no-underline ml-4")
        ui.space()
        user_menu()  # auth: who is logged in, audit link (admins), log out, session check


def register_pages(state: FleetState, *, limiter: LoginRateLimiter | None = None,
                   devices: DeviceActions | None = None, health: Callable[[], ServerHealth] | None = None) -> None:
    """Register the dashboard's pages on the NiceGUI app. Call before ``ui.run``.

    Args:
        state: the in-memory fleet state the pages render.
        limiter: failed-login limiter (tests pass one with a fake clock); default as
            :class:`fleet_server.auth.ratelimit.LoginRateLimiter`.
        devices: device actions (``FleetServer.devices``); None: the devices page is read-only.
        health: ``FleetServer.health``: ``/healthz`` then reports ingest's liveness (503 when dead).
    """
    install_auth(limiter)  # auth: login gate, /login, /logout, /healthz, /api/v1/whoami
    if health is not None:
        install_health(health)

    @ui.page("/")
    def overview() -> None:
        _frame("Fleet")
        render_overview(state)

    @ui.page("/devices")
    def devices_page() -> None:
        _frame("Devices")
        render_devices(state, devices)

    @ui.page("/device/{device_id}")
    def device_page(device_id: str) -> None:
        _frame(device_id)
        render_device(state, device_id)

    @ui.page("/audit")
    def audit_log() -> None:
        _frame("Audit log")
        render_audit()
