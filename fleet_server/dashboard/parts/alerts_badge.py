"""Alerts on every page: the header's bell with the number of firing alerts, and the overview's
banner (what is firing, or that alerts have nowhere to go until a channel is added)."""

from __future__ import annotations

from nicegui import ui

from fleet_server.alerts.views import firing_counts
from fleet_server.store.alert_models import AlertChannel

REFRESH_S = 5.0
"""How often an open page re-reads the firing count, seconds."""


def _counts() -> dict[str, int]:
    try:
        return firing_counts()
    except Exception:
        return {"critical": 0, "warning": 0}


def alerts_badge() -> None:
    """The header's bell linking to ``/alerts``, with the firing count (red: critical, orange: only
    warnings, hidden at 0), re-read every :data:`REFRESH_S` seconds."""
    with ui.link(target="/alerts").classes("no-underline").props('aria-label="alerts"').mark("alerts-bell"):
        with ui.button(icon="notifications").props('flat round dense color="white"'):
            badge = ui.badge("", color="negative").props("floating").mark("alerts-count")

    def update() -> None:
        c = _counts()
        total = c.get("critical", 0) + c.get("warning", 0)
        badge.set_text(str(total))
        badge.props(f'color={"negative" if c.get("critical") else "orange"}')
        badge.set_visibility(total > 0)

    update()
    ui.timer(REFRESH_S, update)


def alerts_banner() -> None:
    """The overview's banner: firing alerts (a link to the Alerts page), or a warning that no
    channel exists, so alerts have nowhere to go."""

    @ui.refreshable
    def banner() -> None:
        c = _counts()
        total = c.get("critical", 0) + c.get("warning", 0)
        has_channel = AlertChannel.select().where(AlertChannel.enabled == True).exists()  # noqa: E712 - SQL
        if total:
            color = "bg-red-100 text-red-900" if c.get("critical") else "bg-orange-100 text-orange-900"
            with ui.row().classes(f"w-full items-center gap-2 rounded px-3 py-2 {color}").mark("alerts-banner"):
                ui.icon("notifications_active")
                ui.label(f"{total} alert{'s' if total != 1 else ''} firing"
                         f"{' (' + str(c['critical']) + ' critical)' if c.get('critical') else ''}").classes(
                    "font-medium")
                ui.link("see Alerts", "/alerts")
        if not has_channel:
            with ui.row().classes("w-full items-center gap-2 rounded px-3 py-2 bg-amber-50 text-amber-900").mark(
                    "alerts-nowhere"):
                ui.icon("notifications_off")
                ui.label("Alerts have nowhere to go: no notification channel yet.")
                ui.link("Add a channel", "/alerts?tab=channels")

    banner()
    ui.timer(REFRESH_S, banner.refresh)
