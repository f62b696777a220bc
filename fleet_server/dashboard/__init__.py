"""NiceGUI dashboard: one module per page; :func:`register_pages` adds them all.

Every route needs a login except the ones listed in :mod:`fleet_server.auth.gate`; pages
check roles with :func:`fleet_server.auth.accounts.require_admin` (page content) and
:func:`fleet_server.auth.accounts.admin_only` (event handlers of admin actions).
"""

from __future__ import annotations

from collections.abc import Callable

from nicegui import app, ui

from broker.dynsec import DynSecClient
from fleet_server.api.health import install_health
from fleet_server.api.routes import install_api
from fleet_server.auth.gate import install_auth
from fleet_server.auth.ratelimit import LoginRateLimiter
from fleet_server.dashboard.pages.alerts.page import render_alerts
from fleet_server.dashboard.pages.api_settings import render_api_settings
from fleet_server.dashboard.pages.audit import render_audit
from fleet_server.dashboard.pages.device import render_device
from fleet_server.dashboard.pages.devices import render_devices
from fleet_server.dashboard.pages.integrations import render_integrations
from fleet_server.dashboard.pages.login import install_login_page
from fleet_server.dashboard.pages.logs import render_logs
from fleet_server.dashboard.pages.overview.page import render_overview
from fleet_server.dashboard.pages.session import render_session
from fleet_server.dashboard.pages.sessions import render_sessions
from fleet_server.dashboard.pages.tokens import render_tokens
from fleet_server.dashboard.pages.tools import render_tools
from fleet_server.dashboard.pages.versions import render_versions
from fleet_server.dashboard.parts.frame import frame as _frame
from fleet_server.dashboard.parts.frame import install_not_found
from fleet_server.dashboard.parts.server_banner import install as install_banner
from fleet_server.devices.actions import DeviceActions
from fleet_server.jobs.alerts import AlertJobs
from fleet_server.releases.actions import ReleaseActions
from fleet_server.server import ServerHealth
from fleet_server.state import FleetState


def register_pages(state: FleetState, *, limiter: LoginRateLimiter | None = None,
                   devices: DeviceActions | None = None, health: Callable[[], ServerHealth] | None = None,
                   dynsec: Callable[[], DynSecClient | None] | None = None,
                   broker_url: Callable[[], str] | None = None, releases: ReleaseActions | None = None,
                   alerts: Callable[[], AlertJobs | None] | None = None) -> None:
    """Register the dashboard's pages on the NiceGUI app. Call before ``ui.run``.

    Args:
        state: the in-memory fleet state the pages render.
        limiter: failed-login limiter (tests pass one with a fake clock); default as
            :class:`fleet_server.auth.ratelimit.LoginRateLimiter`.
        devices: device actions (``FleetServer.devices``); None: the devices page is read-only.
        health: ``FleetServer.health``: ``/healthz`` then reports ingest's liveness (503 when dead).
        dynsec: the broker admin client (``FleetServer.dynsec``) for MQTT integration accounts.
        broker_url: the URL integrations connect to (``FleetServer.broker_url``).
        releases: agent updates (the device page's "Update agent"); None: no button.
        alerts: the server's alert jobs (``FleetServer.alerts``) for the Alerts page.
    """
    install_auth(limiter)  # auth: login gate, /login/finish, /logout, /api/v1/whoami
    install_login_page()  # /login
    install_health(health)  # /healthz
    install_banner(None if health is None else lambda: health().ingest.get("connected"))  # broker lost?
    install_api(app, state)  # api: /api/v1/…, /api/openapi.json, /api/docs
    install_not_found()  # unknown pages: the dashboard's 404 page with a way back

    @ui.page("/tokens")
    def tokens_page(tz: str = "", start: str = "", end: str = "", device: str = "", tag: str = "", agent: str = "",
                    model: str = "") -> None:
        _frame("Tokens")
        render_tokens(state, tz, start, end, device=device, tag=tag, agent=agent, model=model)

    @ui.page("/logs")
    def logs_page(device: str = "", level: str = "", q: str = "", fingerprint: str = "", view: str = "",
                  range: str = "7d") -> None:  # the URL's name
        _frame("Logs")
        render_logs(state, device=device, level=level, text=q, fingerprint=fingerprint, view=view, since=range)

    @ui.page("/sessions")
    def sessions_page(device: str = "", agent: str = "", model: str = "", status: str = "", range: str = "7d",
                      q: str = "", sort: str = "last") -> None:
        _frame("Sessions")
        render_sessions(state, device, agent, model, status, range, q, sort)

    @ui.page("/session/{device_id}/{agent_id}/{session_id}")
    def session_page(device_id: str, agent_id: str, session_id: str) -> None:
        _frame("Session")
        render_session(device_id, agent_id, session_id)

    @ui.page("/tools")
    def tools_page(device: str = "", range: str = "7d", by: str = "") -> None:
        _frame("Tools")
        render_tools(state, device, range, by)

    @ui.page("/versions")
    def versions_page(kind: str = "openclaw", days: int = 7) -> None:
        _frame("Versions")
        render_versions(state, kind, days)

    @ui.page("/settings/api")
    def api_settings_page() -> None:
        _frame("API tokens")
        render_api_settings()

    @ui.page("/settings/integrations")
    def integrations_page() -> None:
        _frame("MQTT integrations")
        render_integrations(dynsec or (lambda: None), broker_url or (lambda: "(see clawfleet-server run)"))

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
        render_device(state, device_id, releases)

    @ui.page("/alerts")
    def alerts_page(tab: str = "incidents") -> None:
        _frame("Alerts")
        render_alerts(state, alerts() if alerts else None, tab)

    @ui.page("/audit")
    def audit_log() -> None:
        _frame("Audit log")
        render_audit()
