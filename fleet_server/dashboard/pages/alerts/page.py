"""``/alerts``: tabs for incidents, rules, channels, silences and the notification log.

Everyone logged in sees everything (channel URLs masked); acknowledging, snoozing and every change
need an admin (:func:`fleet_server.auth.accounts.admin_only`) and are audited.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import tzinfo

from nicegui import run, ui

from fleet_server.alerts.rules import RuleError
from fleet_server.alerts.silences import acknowledge, snooze
from fleet_server.alerts.views import delivery_rows, incident_rows
from fleet_server.auth.accounts import admin_only, current_user
from fleet_server.dashboard.pages.alerts.channels import render_channels
from fleet_server.dashboard.pages.alerts.rules import render_rules
from fleet_server.dashboard.pages.alerts.silences import render_silences
from fleet_server.dashboard.parts.format import date_time_h
from fleet_server.dashboard.parts.timezone import follow_browser_zone, initial_zone, zone_note
from fleet_server.jobs.alerts import AlertJobs
from fleet_server.state import FleetState

REFRESH_S = 5.0
TABS = ("incidents", "rules", "channels", "silences", "log")
SEVERITY_COLORS = {"critical": "negative", "warning": "orange"}
_COL = {"align": "left", "headerClasses": "text-xs uppercase text-gray-500"}
HISTORY_COLUMNS = [
    {"name": "start", "label": "Start", "field": "start", **_COL},
    {"name": "end", "label": "End", "field": "end", **_COL},
    {"name": "duration", "label": "Duration", "field": "duration", **_COL},
    {"name": "subject", "label": "Where", "field": "subject", **_COL},
    {"name": "rule", "label": "Rule", "field": "rule", **_COL},
    {"name": "ack", "label": "Acknowledged", "field": "ack", **_COL},
    {"name": "sent", "label": "Sent", "field": "sent", **_COL},
]
LOG_COLUMNS = [
    {"name": "when", "label": "When", "field": "when", **_COL},
    {"name": "channel", "label": "Channel", "field": "channel", **_COL},
    {"name": "title", "label": "Message", "field": "title", **_COL, "classes": "whitespace-normal"},
    {"name": "state", "label": "State", "field": "state", **_COL},
    {"name": "attempts", "label": "Attempts", "field": "attempts", **_COL},
    {"name": "error", "label": "Last error", "field": "error", **_COL, "classes": "whitespace-normal"},
]


def actor() -> str:
    """The logged-in user's name for the audit log."""
    user = current_user()
    return user.username if user else "?"


def render_alerts(state: FleetState, alerts: AlertJobs | None, tab: str = "incidents") -> None:
    """Build the page. ``alerts``: the server's alert jobs (the engine is told about rule changes
    at once and the data dir holds the channel key); None: channels cannot be added here."""
    viewer = {"zone": initial_zone()}
    tz = lambda: viewer["zone"].tz  # noqa: E731 - read at each redraw: the browser's zone may come later
    with ui.column().classes("w-full p-2 sm:p-4 gap-3 max-w-6xl"):
        ui.label("Alerts").classes("text-2xl font-semibold")
        note = ui.label(zone_note(viewer["zone"])).classes("text-xs text-gray-500").mark("zone-note")
        with ui.tabs().props("dense inline-label outside-arrows mobile-arrows").classes("w-full") as tabs:
            made = {t: ui.tab(t, label=t.capitalize()).mark(f"tab-{t}") for t in TABS}
        with ui.tab_panels(tabs, value=made.get(tab, made["incidents"])).classes("w-full"):
            with ui.tab_panel(made["incidents"]).classes("px-0"):
                redraw_incidents = render_incidents(state, tz)
            with ui.tab_panel(made["rules"]).classes("px-0"):
                render_rules(state, alerts, tz)
            with ui.tab_panel(made["channels"]).classes("px-0"):
                render_channels(alerts)
            with ui.tab_panel(made["silences"]).classes("px-0"):
                render_silences(state)
            with ui.tab_panel(made["log"]).classes("px-0"):
                redraw_log = render_log(tz)
    follow_browser_zone(viewer, lambda: (redraw_incidents(), redraw_log()), note)


def render_incidents(state: FleetState, tz: Callable[[], tzinfo]) -> Callable[[], None]:
    """Firing now (cards with acknowledge and snooze), then the history table; times in ``tz()``.
    Returns the redraw."""
    ui.label("Firing now").classes("text-lg font-medium")

    @ui.refreshable
    def firing() -> None:
        rows = incident_rows(limit=200)
        if not rows:
            ui.label("Nothing is firing.").classes("text-gray-500").mark("nothing-firing")
            return
        for r in rows:
            incident_card(r)

    def incident_card(r: dict) -> None:
        with ui.card().classes("w-full gap-1 p-3").mark("incident"):
            with ui.row().classes("items-center gap-2 w-full"):
                ui.badge(r["severity"], color=SEVERITY_COLORS.get(r["severity"], "grey"))
                if r["state"] == "pending":
                    ui.badge("pending", color="grey")
                where = r["device_id"]
                if where:
                    ui.link(r["subject"], f"/device/{where}").classes("font-medium")
                else:
                    ui.label(r["subject"]).classes("font-medium")
                ui.label(r["rule_name"]).classes("text-gray-600")
            ui.label(r["summary"] or "").classes("text-sm")
            since = f"since {date_time_h(r['started_ms'], tz())} ({r['duration']})"
            extra = []
            if r["acked_by"]:
                extra.append(f"acknowledged by {r['acked_by']} {date_time_h(r['acked_ms'], tz())}")
            if r["silenced"]:
                extra.append("silenced (snooze or maintenance)")
            extra.append(f"{r['notifications']} notification(s) sent")
            ui.label(" · ".join([since, *extra])).classes("text-xs text-gray-500")
            if r["state"] == "firing":
                with ui.row().classes("gap-1"):
                    if not r["acked_by"]:
                        ui.button("Acknowledge", on_click=lambda _e, i=r["id"]: ack(i)).props(
                            "dense flat color=primary").mark("ack")
                    scope = f"device:{where}" if where else f"rule:{r['rule_id']}"
                    ui.button("Snooze 1 h", on_click=lambda _e, s=scope: do_snooze(s)).props(
                        "dense flat").mark("snooze-1h")

    @admin_only
    async def ack(incident_id: int) -> None:
        try:
            await run.io_bound(acknowledge, incident_id, actor())
        except RuleError as exc:
            ui.notify(str(exc), type="warning")
        firing.refresh()

    @admin_only
    async def do_snooze(scope: str) -> None:
        await run.io_bound(snooze, scope, 3600, actor(), "from the Alerts page")
        ui.notify(f"{scope} snoozed for 1 hour", type="positive")
        firing.refresh()

    firing()
    ui.label("History").classes("text-lg font-medium pt-2")
    table = ui.table(columns=HISTORY_COLUMNS, rows=[], row_key="id").props("flat bordered dense wrap-cells").classes(
        "w-full").mark("history")

    def history() -> None:
        rows = incident_rows(state="resolved", limit=100)
        table.rows = [{"id": r["id"], "start": date_time_h(r["started_ms"], tz()),
                       "end": date_time_h(r["resolved_ms"], tz()),
                       "duration": r["duration"], "subject": r["subject"], "rule": r["rule_name"],
                       "ack": r["acked_by"] or "–", "sent": r["notifications"]} for r in rows]

    history()
    ui.timer(REFRESH_S, lambda: (firing.refresh(), history()))
    return lambda: (firing.refresh(), history())


def render_log(tz: Callable[[], tzinfo]) -> Callable[[], None]:
    """The notification log: every message, its channel, state, attempts and last error. Returns
    the redraw."""
    ui.label("Every message to every channel; each attempt is kept (retries back off up to 15 min).").classes(
        "text-sm text-gray-600")
    table = ui.table(columns=LOG_COLUMNS, rows=[], row_key="id").props("flat bordered dense wrap-cells").classes(
        "w-full").mark("notification-log")

    def fill() -> None:
        table.rows = [{**r, "when": date_time_h(r["created_ms"], tz()), "error": r["error"] or "–"}
                      for r in delivery_rows(100)]

    fill()
    ui.timer(REFRESH_S, fill)
    return fill
